/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* encrypt, decrypt, rewrap, inspect: the verbs of the service accounts. */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "shared/format.h"
#include "shared/util.h"
#include "shared/wire.h"

struct crypt_args {
        const char *in, *out, *policy, *key_out;
        bool json;
        dkm_context_pair ctx[CONTEXT_MAX_PAIRS];
        size_t n_ctx;
};

static int parse_crypt_args(int argc, char **argv, bool allow_policy, bool allow_json,
                            struct crypt_args *a)
{
        static const struct option opts[] = {
                { "in", required_argument, NULL, 'i' },
                { "out", required_argument, NULL, 'o' },
                { "policy", required_argument, NULL, 'p' },
                { "context", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "key-out", required_argument, NULL, 'K' },
                {},
        };
        int c;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+", opts, NULL)) >= 0) {
                char *eq;

                switch (c) {
                case 'K':
                        if (strcmp(argv[0], "datakey") != 0)
                                return fail("%s takes no --key-out", argv[0]);
                        a->key_out = optarg;
                        break;
                case 'i':
                        a->in = optarg;
                        break;
                case 'o':
                        a->out = optarg;
                        break;
                case 'p':
                        if (!allow_policy)
                                return fail("%s takes no --policy: the ciphertext names its policy", argv[0]);
                        a->policy = optarg;
                        break;
                case 'j':
                        if (!allow_json)
                                return fail("%s has no --json output", argv[0]);
                        a->json = true;
                        break;
                case 'c':
                        eq = strchr(optarg, '=');
                        if (!eq || eq == optarg)
                                return fail("bad --context '%s': expected KEY=VALUE", optarg);
                        if (a->n_ctx == CONTEXT_MAX_PAIRS)
                                return fail("too many --context pairs (at most %d)", CONTEXT_MAX_PAIRS);
                        *eq = 0;
                        a->ctx[a->n_ctx].key = optarg;
                        a->ctx[a->n_ctx++].value = eq + 1;
                        break;
                default:
                        return fail("%s: unknown or incomplete option '%s'", argv[0], argv[optind - 1]);
                }
        }
        if (optind < argc)
                return fail("%s: unexpected argument '%s'", argv[0], argv[optind]);
        return 0;
}

typedef int (*crypt_fn)(dkm_client *c, const char *policy, const dkm_context_pair *ctx,
                        size_t n, const void *in, size_t len, uint8_t **ret, size_t *ret_len);

static int run_crypt(struct ctl *ctl, int argc, char **argv, bool is_encrypt, crypt_fn fn,
                     bool secret_out)
{
        struct crypt_args a = { 0 };
        uint8_t *in = NULL, *out = NULL;
        size_t in_len = 0, out_len = 0;
        int r;

        if (parse_crypt_args(argc, argv, is_encrypt, false, &a))
                return 1;
        if (read_input(a.in, is_encrypt ? WIRE_MAX_DATA : WIRE_MAX_DATA + FORMAT_OVERHEAD, &in,
                       &in_len))
                return 1;
        if (ctl_connect(ctl)) {
                dkm_free_secret(in, in_len);
                return 1;
        }
        r = fn(ctl->client, a.policy, a.ctx, a.n_ctx, in, in_len, &out, &out_len);
        dkm_free_secret(in, in_len);
        if (r < 0)
                return fail_dkm(ctl, r, argv[0]);
        r = write_output(a.out, out, out_len, secret_out);
        dkm_free_secret(out, out_len);
        return r;
}

static int encrypt_fn(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n,
                      const void *in, size_t len, uint8_t **ret, size_t *ret_len)
{
        return dkm_encrypt(c, policy, ctx, n, in, len, ret, ret_len);
}

static int decrypt_fn(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n,
                      const void *in, size_t len, uint8_t **ret, size_t *ret_len)
{
        return dkm_decrypt(c, ctx, n, in, len, ret, ret_len);
}

static int rewrap_fn(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n,
                     const void *in, size_t len, uint8_t **ret, size_t *ret_len)
{
        return dkm_rewrap(c, ctx, n, in, len, ret, ret_len);
}

int verb_encrypt(struct ctl *ctl, int argc, char **argv)
{
        return run_crypt(ctl, argc, argv, true, encrypt_fn, false);
}

int verb_decrypt(struct ctl *ctl, int argc, char **argv)
{
        return run_crypt(ctl, argc, argv, false, decrypt_fn, true);
}

int verb_rewrap(struct ctl *ctl, int argc, char **argv)
{
        return run_crypt(ctl, argc, argv, false, rewrap_fn, false);
}

int verb_inspect(struct ctl *ctl, int argc, char **argv)
{
        struct crypt_args a = { 0 };
        dkm_inspect_info info;
        uint8_t *in = NULL;
        size_t in_len = 0;
        int r;

        if (parse_crypt_args(argc, argv, false, true, &a))
                return 1;
        if (a.n_ctx || a.out)
                return fail("inspect takes only --in and --json");
        if (read_input(a.in, WIRE_MAX_DATA + FORMAT_OVERHEAD, &in, &in_len))
                return 1;
        if (ctl_connect(ctl)) {
                free(in);
                return 1;
        }
        r = dkm_inspect(ctl->client, in, in_len, &info);
        free(in);
        if (r < 0)
                return fail_dkm(ctl, r, "inspect");
        if (a.json) {
                json_object *o = json_object_new_object();

                json_object_object_add(o, "version", json_object_new_int((int)info.version));
                json_object_object_add(o, "algorithm", json_object_new_string(info.algorithm));
                json_object_object_add(o, "policy", info.policy_name[0] ? json_object_new_string(info.policy_name) : NULL);
                json_object_object_add(o, "policy_id", json_object_new_string(info.policy_id));
                json_object_object_add(o, "generation", json_object_new_int64(info.generation));
                json_object_object_add(o, "state", json_object_new_string(info.state));
                json_object_object_add(o, "payload_bytes", json_object_new_int64((int64_t)info.payload_len));
                json_object_object_add(o, "decryptable", json_object_new_boolean(info.decryptable));
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
                json_object_put(o);
                return 0;
        }
        printf("format:      dkm ciphertext v%u\n", info.version);
        printf("algorithm:   %s\n", info.algorithm);
        printf("policy:      %s (%s)\n", info.policy_name[0] ? info.policy_name : "unknown", info.policy_id);
        printf("generation:  %u (%s)\n", info.generation, info.state);
        printf("payload:     %zu bytes\n", info.payload_len);
        printf("decryptable: %s\n", info.decryptable ? "yes" : "no");
        return 0;
}

int verb_datakey(struct ctl *ctl, int argc, char **argv)
{
        struct crypt_args a = { 0 };
        uint8_t key[32], *wrapped = NULL;
        size_t len = 0;
        int r;

        if (parse_crypt_args(argc, argv, true, false, &a))
                return 1;
        if (a.in)
                return fail("datakey takes no --in: dkmd makes the key");
        if (!a.out)
                return fail("datakey: --out FILE is required for the wrapped key");
        if (a.key_out && strcmp(a.key_out, "-") != 0 && strcmp(a.key_out, a.out) == 0)
                return fail("datakey: --out and --key-out must differ");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_datakey(ctl->client, a.policy, a.ctx, a.n_ctx, key, &wrapped, &len);
        if (r < 0)
                return fail_dkm(ctl, r, "datakey");
        r = write_output(a.out, wrapped, len, false);
        free(wrapped);
        if (r == 0) {
                if (!a.key_out && isatty(STDOUT_FILENO))
                        r = fail("datakey: refusing to write the plaintext key to a terminal (use --key-out FILE)");
                else
                        r = write_output(a.key_out, key, sizeof(key), true);
        }
        secure_wipe(key, sizeof(key));
        return r;
}
