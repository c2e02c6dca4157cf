/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* encrypt, decrypt, rewrap, inspect: the verbs of the service accounts. */
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sys/stat.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "shared/format.h"
#include "shared/util.h"
#include "shared/wire.h"

/* Up to this much goes inline in one message (format v1); more is streamed
 * by dkmd between passed descriptors (format v2).  64 KiB keeps a message
 * within what the kernel engine carries in one AF_ALG operation. */
#define INLINE_MAX (64 * 1024)

/* Feeds dkmd a pipe holding what dkmctl already read, then the rest of the
 * input, for inputs that cannot be handed over as they are. */
struct pump {
        int from, to;
        uint8_t *prefix;
        size_t prefix_len;
        pthread_t thread;
};

static void *pump_run(void *p)
{
        struct pump *pm = p;
        uint8_t buf[65536];
        size_t off = 0;

        while (off < pm->prefix_len) {
                ssize_t n = write(pm->to, pm->prefix + off, pm->prefix_len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        goto out;
                off += (size_t)n;
        }
        for (;;) {
                ssize_t n = read(pm->from, buf, sizeof(buf)), w = 0;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                while (w < n) {
                        ssize_t k = write(pm->to, buf + w, (size_t)(n - w));
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0)
                                goto out;
                        w += k;
                }
        }
out:
        close(pm->to);
        return NULL;
}

static int pump_start(struct pump *pm, int from, uint8_t *prefix, size_t prefix_len, int *ret_fd)
{
        int p[2];

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        *pm = (struct pump){ .from = from, .to = p[1], .prefix = prefix, .prefix_len = prefix_len };
        if (pthread_create(&pm->thread, NULL, pump_run, pm) != 0) {
                close(p[0]);
                close(p[1]);
                return -EAGAIN;
        }
        *ret_fd = p[0];
        return 0;
}

static int run_stream(struct ctl *ctl, struct ctl_args *a, bool is_encrypt, int in_fd)
{
        struct output o;
        uint64_t bytes;
        int r;

        if (output_open(&o, a->out, !is_encrypt))
                return 1;
        if (ctl_connect(ctl)) {
                output_close(&o, false);
                return 1;
        }
        r = is_encrypt ? dkm_encrypt_fd(ctl->client, a->policy, a->ctx, a->n_ctx, in_fd, o.fd, &bytes)
                       : dkm_decrypt_fd(ctl->client, a->ctx, a->n_ctx, in_fd, o.fd, &bytes);
        if (r < 0) {
                output_close(&o, false);
                return fail_dkm(ctl, r, is_encrypt ? "encrypt" : "decrypt");
        }
        return output_close(&o, true);
}

static int run_inline(struct ctl *ctl, struct ctl_args *a, uint16_t kind, const uint8_t *in,
                      size_t in_len, const char *verb)
{
        uint8_t *out = NULL;
        size_t out_len = 0;
        int r;

        if (ctl_connect(ctl))
                return 1;
        if (kind == 'e')
                r = dkm_encrypt(ctl->client, a->policy, a->ctx, a->n_ctx, in, in_len, &out, &out_len);
        else if (kind == 'd')
                r = dkm_decrypt(ctl->client, a->ctx, a->n_ctx, in, in_len, &out, &out_len);
        else
                r = dkm_rewrap(ctl->client, a->ctx, a->n_ctx, in, in_len, &out, &out_len);
        if (r < 0)
                return fail_dkm(ctl, r, verb);
        r = write_output(a->out, out, out_len, kind == 'd');
        dkm_free_secret(out, out_len);
        return r;
}

/* encrypt and decrypt: small inputs inline, large ones streamed by dkmd. */
static int run_crypt(struct ctl *ctl, struct ctl_args *a, bool is_encrypt)
{
        _cleanup_close_ int in_fd = -1;
        size_t peek = is_encrypt ? INLINE_MAX + 1 : WIRE_MAX_DATA + FORMAT_OVERHEAD + 1, got = 0;
        uint8_t *buf;
        struct stat st;
        int r;

        in_fd = a->in && strcmp(a->in, "-") ? open(a->in, O_RDONLY | O_CLOEXEC) : dup(STDIN_FILENO);
        if (in_fd < 0)
                return fail("cannot open %s: %s", a->in ? a->in : "standard input", strerror(errno));
        if (fstat(in_fd, &st) < 0)
                return fail("cannot read %s: %s", a->in ? a->in : "standard input", strerror(errno));
        /* A regular file is handed to dkmd as it is, when large (encrypt) or
         * a stream (decrypt: the version byte says). */
        if (S_ISREG(st.st_mode)) {
                uint8_t head[5];

                if (is_encrypt && st.st_size > INLINE_MAX)
                        return run_stream(ctl, a, true, in_fd);
                if (!is_encrypt && pread(in_fd, head, 5, 0) == 5 && memcmp(head, "DKMC", 4) == 0 &&
                    head[4] == 2)
                        return run_stream(ctl, a, false, in_fd);
        }
        buf = malloc(peek);
        if (!buf)
                return fail("out of memory");
        /* Decrypt of a pipe: 5 bytes tell the format. */
        r = read_full(in_fd, buf, is_encrypt ? peek : 5, &got);
        if (r >= 0 && !is_encrypt && !(got == 5 && memcmp(buf, "DKMC", 4) == 0 && buf[4] == 2)) {
                size_t more = 0;
                r = read_full(in_fd, buf + got, peek - got, &more);
                got += more;
        }
        if (r < 0) {
                dkm_free_secret(buf, peek);
                return fail("cannot read %s: %s", a->in ? a->in : "standard input", strerror(-r));
        }
        if ((is_encrypt && got <= INLINE_MAX) || (!is_encrypt && !(got == 5 && buf[4] == 2))) {
                if (!is_encrypt && got == peek) {
                        dkm_free_secret(buf, peek);
                        return fail("decrypt: input larger than any version 1 ciphertext");
                }
                r = run_inline(ctl, a, is_encrypt ? 'e' : 'd', buf, got, a->verb);
        } else {
                struct pump pm;
                int pipe_fd = -1;

                r = pump_start(&pm, in_fd, buf, got, &pipe_fd);
                if (r < 0)
                        r = fail("cannot start a pipe: %s", strerror(-r));
                else {
                        r = run_stream(ctl, a, is_encrypt, pipe_fd);
                        close(pipe_fd); /* a pump still writing gets EPIPE and stops */
                        pthread_join(pm.thread, NULL);
                }
        }
        dkm_free_secret(buf, peek);
        return r;
}

int verb_encrypt(struct ctl *ctl, struct ctl_args *a)
{
        return run_crypt(ctl, a, true);
}

int verb_decrypt(struct ctl *ctl, struct ctl_args *a)
{
        return run_crypt(ctl, a, false);
}

int verb_rewrap(struct ctl *ctl, struct ctl_args *a)
{
        uint8_t *in = NULL;
        size_t in_len = 0;
        int r;

        if (read_input(a->in, WIRE_MAX_DATA + FORMAT_OVERHEAD, &in, &in_len))
                return 1;
        r = run_inline(ctl, a, 'r', in, in_len, "rewrap");
        dkm_free_secret(in, in_len);
        return r;
}

int verb_inspect(struct ctl *ctl, struct ctl_args *a)
{
        dkm_inspect_info info;
        uint8_t *in = NULL;
        size_t in_len = 0;
        int r;

        if (read_input(a->in, WIRE_MAX_DATA + FORMAT_OVERHEAD, &in, &in_len))
                return 1;
        if (ctl_connect(ctl)) {
                free(in);
                return 1;
        }
        r = dkm_inspect(ctl->client, in, in_len, &info);
        free(in);
        if (r < 0)
                return fail_dkm(ctl, r, "inspect");
        if (a->json) {
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

int verb_datakey(struct ctl *ctl, struct ctl_args *a)
{
        uint8_t key[32], *wrapped = NULL;
        size_t len = 0;
        int r;

        if (!a->out)
                return fail("datakey: --out FILE is required for the wrapped key");
        if (a->key_out && strcmp(a->key_out, "-") != 0 && strcmp(a->key_out, a->out) == 0)
                return fail("datakey: --out and --key-out must differ");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_datakey(ctl->client, a->policy, a->ctx, a->n_ctx, key, &wrapped, &len);
        if (r < 0)
                return fail_dkm(ctl, r, "datakey");
        r = write_output(a->out, wrapped, len, false);
        free(wrapped);
        if (r == 0) {
                if (!a->key_out && isatty(STDOUT_FILENO))
                        r = fail("datakey: refusing to write the plaintext key to a terminal (use --key-out FILE)");
                else
                        r = write_output(a->key_out, key, sizeof(key), true);
        }
        secure_wipe(key, sizeof(key));
        return r;
}
