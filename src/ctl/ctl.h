/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "dkm/dkm.h"
#include "shared/format.h"

struct ctl {
        const char *socket;
        bool json;
        dkm_client *client;
};

/* A verb's options and positional arguments, parsed (pointers into argv). */
struct ctl_args {
        const char *verb;
        const char *args[2];
        size_t n_args;
        const char *in, *out, *key_out, *policy, *reason, *duration, *scope, *uid, *gid;
        const char *customer_keys[2];
        size_t n_customer_keys;
        dkm_context_pair ctx[CONTEXT_MAX_PAIRS];
        size_t n_ctx;
        bool json, new_policy_key;
};

struct verb {
        const char *name;   /* "encrypt", or "key rotate" for two-word verbs */
        int min_args, max_args; /* positional arguments after the verb (at most 2) */
        const char *options; /* the options it takes, by their codes in args.c */
        int (*run)(struct ctl *ctl, struct ctl_args *a);
        const char *usage;
};

/* Parses argv (argv[0] is the verb's last word) into *a, refusing options
 * the verb does not take; on failure prints why and returns 1. */
int ctl_parse_args(const struct verb *v, int argc, char **argv, struct ctl_args *a);

/* Prints the long options a verb takes, space-separated, each as "--name"
 * or, when it takes a value, "--name=" (for --list-verbs). */
void ctl_print_options(const struct verb *v, FILE *f);

/* Prints "dkmctl: <message>" on stderr and returns 1 (the exit status). */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports a libdkm error: dkmd's own reason when there is one. */
int fail_dkm(struct ctl *ctl, int r, const char *what);
int ctl_connect(struct ctl *ctl);

/* A decimal argument (no sign, no junk) into *ret; with nonzero, 0 is
 * refused too.  On failure prints "VERB: 'S' is not a WHAT" and returns 1. */
int parse_number_arg(const char *verb, const char *what, const char *s, bool nonzero, uint32_t *ret);

/* Whole input from path ("-" or NULL: stdin), at most max bytes. */
int read_input(const char *path, size_t max, uint8_t **ret, size_t *ret_len);
/* An output file written beside its final path and renamed into place only
 * on success (mode 0600), or standard output when path is NULL or "-". */
struct output {
        const char *path;
        char *tmp;
        int fd;
};
int output_open(struct output *o, const char *path, bool secret);
int output_close(struct output *o, bool ok);

/* Writes to path atomically (temp file + rename), or to stdout. */
int write_output(const char *path, const uint8_t *buf, size_t len, bool secret);
/* Prints JSON text pretty or as is. */
void print_json(const char *json);

int verb_status(struct ctl *ctl, struct ctl_args *a);
int verb_encrypt(struct ctl *ctl, struct ctl_args *a);
int verb_decrypt(struct ctl *ctl, struct ctl_args *a);
int verb_rewrap(struct ctl *ctl, struct ctl_args *a);
int verb_datakey(struct ctl *ctl, struct ctl_args *a);
int verb_inspect(struct ctl *ctl, struct ctl_args *a);
int verb_key_list(struct ctl *ctl, struct ctl_args *a);
int verb_key_rotate(struct ctl *ctl, struct ctl_args *a);
int verb_key_retire(struct ctl *ctl, struct ctl_args *a);
int verb_key_destroy(struct ctl *ctl, struct ctl_args *a);
int verb_access_request(struct ctl *ctl, struct ctl_args *a);
int verb_access_approve(struct ctl *ctl, struct ctl_args *a);
int verb_access_deny(struct ctl *ctl, struct ctl_args *a);
int verb_access_list(struct ctl *ctl, struct ctl_args *a);
int verb_access_revoke(struct ctl *ctl, struct ctl_args *a);
int verb_policy_create(struct ctl *ctl, struct ctl_args *a);
int verb_policy_list(struct ctl *ctl, struct ctl_args *a);
int verb_policy_show(struct ctl *ctl, struct ctl_args *a);
int verb_policy_assign(struct ctl *ctl, struct ctl_args *a);
int verb_policy_rekey(struct ctl *ctl, struct ctl_args *a);
int verb_policy_purge(struct ctl *ctl, struct ctl_args *a);
int verb_recovery_reshare(struct ctl *ctl, struct ctl_args *a);
int verb_backup(struct ctl *ctl, struct ctl_args *a);
int verb_store_verify(struct ctl *ctl, struct ctl_args *a);
