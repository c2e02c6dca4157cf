/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a Customer Key provider (ckey-file.c, ckey-pkcs11.c) needs and no
 * more: the provider table it fills in, the administrator's allow lists
 * (ckey-allow.c) and the error helper (ckey-err.c).  Providers include only
 * this header; ckey.c, above them, calls them through their tables, so
 * nothing here calls back up into ckey.c.  Errors as in ckey.h.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define CKEY_KEY_SIZE 32
#define CKEY_NONCE_SIZE 12

/* --- providers ------------------------------------------------------------ */

/* A provider turns a nonce into a 32-byte KEK with the customer key; the
 * blob format, AEAD and label binding are common (ckey.c).  derive() is never
 * called concurrently for one key (the key's lock is held), may block, and
 * returns 0 or -errno as in ckey.h's table, with a message in err. */
struct ckey_provider {
        const char *scheme; /* "file" for "file:..." URIs; lower case */
        char kind;          /* blob kind byte, unique per provider */
        int (*open)(const char *uri, void **ret_state, char **ret_redacted, char *err,
                    size_t err_size);
        void (*close)(void *state);
        int (*derive)(void *state, const uint8_t nonce[CKEY_NONCE_SIZE],
                      uint8_t ret_kek[CKEY_KEY_SIZE], char *err, size_t err_size);
        /* Optional: ckey_check() for this kind of key. */
        int (*check)(void *state, char *err, size_t err_size);
};

extern const struct ckey_provider ckey_file_provider;
extern const struct ckey_provider ckey_pkcs11_provider;

/* --- what the administrator allows (ckey-allow.c) --------------------------- */

/* The module file to load for module-path=path: its canonical path in
 * *ret_path (malloc'd; may be NULL), 0; -EINVAL refused (message names the
 * setting); -ENOENT allowed but absent or unreadable. */
int ckey_allow_module_path(const char *path, char **ret_path, char *err, size_t err_size);
/* module-name=name: 0 or -EINVAL. */
int ckey_allow_module_name(const char *name, char *err, size_t err_size);
/* Opens a key or PIN file (what: "key file", "PIN file") read-only: 0 and
 * *ret_fd; -EINVAL refused (not in key_dirs, a symlink leading out, not a
 * regular file, wrong owner or mode); -ENOENT, -ENOTDIR, -EACCES, ... as
 * open(2) would say (the file is missing or unreadable). */
int ckey_allow_open_file(const char *path, const char *what, int *ret_fd, char *err, size_t err_size);

/* Formats an error message into err (always NUL-terminated; ckey-err.c). */
void ckey_err(char *err, size_t err_size, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
