/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * file: customer keys (RFC 8089 "file:/path", "file:///path",
 * "file://localhost/path"): 32 raw bytes, used as the KEK.  The file is read
 * again on every call so that deleting it revokes the key at once.  For
 * development and for customers whose key store is a mounted volume.
 */
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#include "ckey/ckey-provider.h"
#include "shared/util.h"

struct file_key {
        char *path;
};

/* Percent-decodes an absolute path; refuses what a path cannot hold. */
static int decode_path(const char *s, char **ret, char *err, size_t err_size)
{
        _cleanup_free_ char *p = NULL;
        size_t n = 0;

        if (*s != '/') {
                ckey_err(err, err_size, "file: URI needs an absolute path (file:/path or file:///path)");
                return -EINVAL;
        }
        p = malloc(strlen(s) + 1);
        if (!p)
                return -ENOMEM;
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (c == '?' || c == '#') {
                        ckey_err(err, err_size, "file: URI must not have a query or fragment ('%c')", c);
                        return -EINVAL;
                }
                if (c <= 0x20 || c == 0x7f) {
                        ckey_err(err, err_size, "file: URI contains a space or control character (percent-encode it)");
                        return -EINVAL;
                }
                if (c == '%') {
                        int hi = unhexchar(s[1]), lo = hi < 0 ? -EINVAL : unhexchar(s[2]);

                        if (lo < 0) {
                                ckey_err(err, err_size, "file: URI has a bad percent-escape");
                                return -EINVAL;
                        }
                        c = (unsigned char)(hi << 4 | lo);
                        if (c == 0) {
                                ckey_err(err, err_size, "file: URI path contains %%00");
                                return -EINVAL;
                        }
                        s += 2;
                }
                p[n++] = (char)c;
        }
        p[n] = '\0';
        if (n >= PATH_MAX) {
                ckey_err(err, err_size, "file: URI path is too long");
                return -EINVAL;
        }
        if (p[n - 1] == '/') {
                ckey_err(err, err_size, "file: URI names a directory, not a key file");
                return -EINVAL;
        }
        *ret = p;
        p = NULL;
        return 0;
}

/* "file:" + the path with everything but unreserved characters and '/'
 * percent-encoded, so that it parses back to the same path. */
static char *format_uri(const char *path)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(7 + 3 * strlen(path) + 1), *o;

        if (!out)
                return NULL;
        /* "file://x" would read as host x: give a path with "//" an empty authority. */
        o = stpcpy(out, path[1] == '/' ? "file://" : "file:");
        for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
                if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                    (*c >= '0' && *c <= '9') || strchr("-._~/", *c))
                        *o++ = (char)*c;
                else {
                        *o++ = '%';
                        *o++ = hex[*c >> 4];
                        *o++ = hex[*c & 15];
                }
        }
        *o = '\0';
        return out;
}

static int file_open(const char *uri, void **ret_state, char **ret_redacted, char *err,
                     size_t err_size)
{
        const char *rest = uri + strlen("file:");
        struct file_key *fk;
        char *path = NULL;
        int r;

        if (rest[0] == '/' && rest[1] == '/') {
                /* An authority: only the local host. */
                const char *host = rest + 2, *slash = strchr(host, '/');
                size_t hlen = slash ? (size_t)(slash - host) : strlen(host);

                if (!slash) {
                        ckey_err(err, err_size, "file: URI has no path after the host");
                        return -EINVAL;
                }
                if (hlen && !(hlen == 9 && strncasecmp(host, "localhost", 9) == 0)) {
                        ckey_err(err, err_size, "file: URI names host '%.*s'; only local files are supported",
                                 (int)(hlen > 64 ? 64 : hlen), host);
                        return -EINVAL;
                }
                rest = slash;
        }
        if (!*rest) {
                ckey_err(err, err_size, "file: URI has no path");
                return -EINVAL;
        }
        r = decode_path(rest, &path, err, err_size);
        if (r < 0)
                return r;
        fk = calloc(1, sizeof(*fk));
        *ret_redacted = format_uri(path);
        if (!fk || !*ret_redacted) {
                free(fk);
                free(path);
                free(*ret_redacted);
                return -ENOMEM;
        }
        fk->path = path;
        *ret_state = fk;
        return 0;
}

static void file_close(void *state)
{
        struct file_key *fk = state;

        if (fk) {
                free(fk->path);
                free(fk);
        }
}

/* The file is missing: gone (revoked) when its directory is there, absent
 * storage (unavailable) when the directory is not. */
static int missing(const char *path, char *err, size_t err_size)
{
        _cleanup_free_ char *copy = strdup(path);
        struct stat st;

        if (!copy)
                return -ENOMEM;
        if (stat(dirname(copy), &st) < 0 || !S_ISDIR(st.st_mode)) {
                ckey_err(err, err_size, "directory of key file %s is absent (storage not mounted?)", path);
                return -ENODEV;
        }
        ckey_err(err, err_size, "key file %s is gone", path);
        return -EKEYREVOKED;
}

static int file_derive(void *state, const uint8_t nonce[CKEY_NONCE_SIZE],
                       uint8_t ret_kek[CKEY_KEY_SIZE], char *err, size_t err_size)
{
        struct file_key *fk = state;
        _cleanup_close_ int fd = -EBADF;
        uint8_t buf[CKEY_KEY_SIZE + 1];
        size_t got = 0;
        int r;

        /* Only from [policy] key_dirs, and only a file that is safe there. */
        r = ckey_allow_open_file(fk->path, "key file", &fd, err, err_size);
        if (r == -ENOENT || r == -ENOTDIR)
                return missing(fk->path, err, err_size);
        if (r < 0)
                return r == -EPERM ? -EACCES : r; /* EACCES: revoked; EIO & co: unavailable */
        /* Read one byte more than a key to notice a file that grew. */
        r = read_full(fd, buf, sizeof(buf), &got);
        if (r < 0) {
                secure_wipe(buf, sizeof(buf));
                ckey_err(err, err_size, "cannot read key file %s: %s", fk->path, strerror(-r));
                return r;
        }
        if (got != CKEY_KEY_SIZE) {
                secure_wipe(buf, sizeof(buf));
                if (got == 0) {
                        ckey_err(err, err_size, "key file %s is empty (wiped)", fk->path);
                        return -EKEYREVOKED;
                }
                ckey_err(err, err_size, "key file %s holds %s%zu bytes, not %d", fk->path,
                         got > CKEY_KEY_SIZE ? "more than " : "", got > CKEY_KEY_SIZE ? got - 1 : got,
                         CKEY_KEY_SIZE);
                return -EINVAL;
        }
        (void)nonce; /* the key is the KEK; the nonce is the AEAD's */
        memcpy(ret_kek, buf, CKEY_KEY_SIZE);
        secure_wipe(buf, sizeof(buf));
        return 0;
}

/* Refused only for what the configuration does not allow; a file that is
 * missing or unreadable shows when the key is used. */
static int file_check(void *state, char *err, size_t err_size)
{
        struct file_key *fk = state;
        _cleanup_close_ int fd = -EBADF;
        int r = ckey_allow_open_file(fk->path, "key file", &fd, err, err_size);

        if (r == -EINVAL || r == -ENOMEM)
                return r;
        ckey_err(err, err_size, "%s", "");
        return 0;
}

const struct ckey_provider ckey_file_provider = {
        .scheme = "file",
        .kind = 'F',
        .open = file_open,
        .close = file_close,
        .derive = file_derive,
        .check = file_check,
};
