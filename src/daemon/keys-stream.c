/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Large data: the streaming format (v2) between passed file descriptors. */
#include <stdio.h>
#include <unistd.h>

#include "keys-internal.h"
#include "log.h"
#include "shared/secret.h"
#include "shared/stream-io.h"
#include "shared/stream-pool.h"
#include "shared/stream.h"
#include "shared/wire.h"
#include "shared/util.h"
#include "wrap.h"

/* g's key into key, by way of the thread's key buffer (wiped after). */
static int gen_key_copy(struct keys *k, struct policy *p, struct generation *g,
                        uint8_t key[ENGINE_KEY_SIZE], char *err)
{
        uint8_t *buf;
        int r;

        r = crypto_keybuf(&buf);
        if (r < 0)
                return r;
        r = gen_key(k, p, g, buf, err);
        if (r >= 0)
                memcpy(key, buf, ENGINE_KEY_SIZE);
        secure_wipe(buf, KEYBUF_SIZE);
        return r;
}

struct active_key {
        uint8_t *key;
        uint8_t *policy_id;
        uint32_t *gen;
};

static int active_key_use(struct keys *k, struct policy *p, struct generation *g, void *userdata,
                          char *err)
{
        struct active_key *a = userdata;
        int r;

        r = gen_key_copy(k, p, g, a->key, err);
        if (r >= 0) {
                memcpy(a->policy_id, p->id, 16);
                *a->gen = g->rec.generation;
        }
        return r;
}

/* The active generation's key of policy (NULL: default) into key.  One use:
 * each stream seals under its own subkey (see stream.h), so streams cannot
 * share nonces. */
static int active_key(struct keys *k, const char *policy, uint8_t key[ENGINE_KEY_SIZE],
                      uint8_t ret_policy_id[16], uint32_t *ret_gen, char *err)
{
        struct active_key a = { .key = key, .policy_id = ret_policy_id, .gen = ret_gen };

        return with_active_gen(k, NULL, policy ? policy : DEFAULT_POLICY, active_key_use, &a, err);
}

int keys_stream_encrypt(struct keys *k, const char *policy, const uint8_t *ctx, size_t ctx_len,
                        uint32_t segment_size, int in_fd, int out_fd, uint64_t *ret_bytes, char *err)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(ENGINE_KEY_SIZE);
        struct engine_aead *a;
        const char *why = NULL;
        uint8_t id[16];
        uint32_t gen = 0;
        unsigned threads;
        int r;

        if (!key)
                return -ENOMEM;
        r = active_key(k, policy, key, id, &gen, err);
        if (r < 0)
                return r;
        /* [daemon] stream_threads: one thread is the plain loop on this
         * thread's transform; more, a pool with a transform each. */
        threads = stream_pool_threads();
        if (threads > 1)
                r = stream_encrypt_fd_pool(crypto_engine(), key, id, gen, ctx, ctx_len, segment_size, in_fd,
                                           out_fd, threads, ret_bytes, &why);
        else {
                r = crypto_aead(&a);
                if (r >= 0)
                        r = stream_encrypt_fd(crypto_engine(), a, key, id, gen, ctx, ctx_len, segment_size,
                                              in_fd, out_fd, ret_bytes, &why);
        }
        if (r < 0)
                keys_seterr(err, "%s", why ? why : strerror(-r));
        return r;
}

/* A v1 ciphertext arriving on a descriptor: read it whole (it is small by
 * construction) and decrypt it as a message. */
static int decrypt_v1_fd(struct keys *k, const uint8_t *ctx, size_t ctx_len,
                         const uint8_t hdr[FORMAT_HEADER_SIZE], int in_fd, int out_fd,
                         keys_stream_gate gate, void *userdata, uint64_t *ret_bytes, char *err)
{
        struct format_header h;
        const char *why;
        char policy[65];
        size_t max = WIRE_MAX_DATA + FORMAT_OVERHEAD, n = 0, plain_len = 0;
        _cleanup_free_ uint8_t *buf = malloc(max + 1);
        uint8_t *plain = NULL;
        int r;

        if (!buf)
                return -ENOMEM;
        memcpy(buf, hdr, FORMAT_HEADER_SIZE);
        r = stream_read_full(in_fd, buf + FORMAT_HEADER_SIZE, max + 1 - FORMAT_HEADER_SIZE, &n);
        if (r < 0) {
                keys_seterr(err, "cannot read the input: %s", strerror(-r));
                return r;
        }
        n += FORMAT_HEADER_SIZE;
        if (n > max) {
                keys_seterr(err, "a version 1 ciphertext larger than %zu bytes is not valid", max);
                return -EBADMSG;
        }
        if (gate) {
                r = keys_policy_of(k, buf, n, policy, err);
                if (r < 0)
                        return r;
                r = format_parse(buf, n, &h, &why);
                if (r < 0) {
                        keys_seterr(err, "%s", why);
                        return r;
                }
                r = gate(userdata, policy, h.generation, err);
                if (r < 0)
                        return r;
        }
        r = keys_decrypt(k, ctx, ctx_len, buf, n, &plain, &plain_len, err);
        if (r < 0)
                return r;
        r = stream_write_full(out_fd, plain, plain_len);
        secure_wipe(plain, plain_len);
        free(plain);
        if (r < 0) {
                keys_seterr(err, "cannot write the output: %s", strerror(-r));
                return r;
        }
        *ret_bytes = plain_len;
        return 0;
}

/* The name of the policy a stream header names, for the gate. */
static int stream_policy_name(struct keys *k, const struct stream_header *h, char name[65], char *err)
{
        struct policy *p;
        char id[37];
        int r = 0;

        pthread_rwlock_rdlock(&k->lock);
        p = find_policy_id(k, h->policy_id);
        if (p)
                snprintf(name, 65, "%s", p->rec.name);
        pthread_rwlock_unlock(&k->lock);
        if (!p) {
                uuid_to_string(h->policy_id, id);
                keys_seterr(err, "ciphertext belongs to unknown policy %s", id);
                r = -ENOKEY;
        }
        return r;
}

/* The gate, asked again while the stream flows (stream_check). */
struct recheck {
        keys_stream_gate gate;
        void *userdata;
        const char *policy;
        uint32_t generation;
        char *err;
        bool stopped; /* the gate said no: err says why */
};

static int recheck_gate(void *userdata)
{
        struct recheck *c = userdata;
        int r = c->gate(c->userdata, c->policy, c->generation, c->err);

        c->stopped = r < 0;
        return r;
}

int keys_stream_decrypt(struct keys *k, const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                        keys_stream_gate gate, void *userdata, uint64_t *ret_bytes, char *err)
{
        struct recheck rc = { gate, userdata, NULL, 0, err, false };
        const struct stream_check check = { recheck_gate, &rc, KEYS_STREAM_RECHECK_MS };
        char name[65];
        _cleanup_secret_ uint8_t *key = secret_alloc(ENGINE_KEY_SIZE);
        uint8_t raw[STREAM_HEADER_MAX];
        struct stream_header h;
        struct policy *p;
        struct generation *g;
        struct engine_aead *a;
        const char *why = NULL;
        size_t n;
        char id[37];
        unsigned threads;
        int r;

        if (!key)
                return -ENOMEM;
        r = stream_read_full(in_fd, raw, STREAM_HEADER_SIZE, &n);
        if (r < 0) {
                keys_seterr(err, "cannot read the input: %s", strerror(-r));
                return r;
        }
        /* Both versions start with a 40-byte header: dispatch on it. */
        if (n >= 5 && memcmp(raw, FORMAT_MAGIC, 4) == 0 && raw[4] == FORMAT_VERSION) {
                if (n < FORMAT_HEADER_SIZE) {
                        keys_seterr(err, "truncated ciphertext");
                        return -EBADMSG;
                }
                return decrypt_v1_fd(k, ctx, ctx_len, raw, in_fd, out_fd, gate, userdata, ret_bytes, err);
        }
        /* The salted layout's salt follows the 40 bytes. */
        if (n == STREAM_HEADER_SIZE && stream_header_length(raw) > n) {
                size_t more = 0;

                r = stream_read_full(in_fd, raw + n, stream_header_length(raw) - n, &more);
                if (r < 0) {
                        keys_seterr(err, "cannot read the input: %s", strerror(-r));
                        return r;
                }
                n += more;
        }
        r = stream_parse_header(raw, n, &h, &why);
        if (r < 0) {
                keys_seterr(err, "%s", why ? why : strerror(-r));
                return r;
        }
        /* Decided on the header alone, before any key is taken out or any
         * byte written.  No lock is held while the gate audits. */
        if (gate) {
                r = stream_policy_name(k, &h, name, err);
                if (r >= 0)
                        r = gate(userdata, name, h.generation, err);
                if (r < 0)
                        return r;
                rc.policy = name;
                rc.generation = h.generation;
        }
        pthread_rwlock_rdlock(&k->lock);
        p = find_policy_id(k, h.policy_id);
        g = p ? find_gen(p, h.generation) : NULL;
        if (!p) {
                uuid_to_string(h.policy_id, id);
                keys_seterr(err, "ciphertext belongs to unknown policy %s", id);
                r = -ENOKEY;
        } else if (p->rec.purged) {
                keys_seterr(err, "policy '%s' was purged: its data can no longer be decrypted", p->rec.name);
                r = -EKEYREVOKED;
        } else if (!g) {
                keys_seterr(err, "ciphertext names unknown generation %u of policy '%s'", h.generation,
                            p->rec.name);
                r = -ENOKEY;
        } else if (g->rec.state == GEN_RETIRED || g->rec.state == GEN_DESTROYED) {
                keys_seterr(err, "generation %u of policy '%s' %s", g->rec.generation, p->rec.name,
                            g->rec.state == GEN_RETIRED ? "is retired" : "was destroyed");
                r = -EKEYREVOKED;
        } else
                r = gen_key_copy(k, p, g, key, err);
        pthread_rwlock_unlock(&k->lock);
        if (r < 0)
                return r;
        threads = stream_pool_threads();
        if (threads > 1)
                r = stream_decrypt_fd_pool(crypto_engine(), key, &h, ctx, ctx_len, in_fd, out_fd,
                                           gate ? &check : NULL, threads, ret_bytes, &why);
        else {
                r = crypto_aead(&a);
                if (r >= 0)
                        r = stream_decrypt_fd_checked(crypto_engine(), a, key, &h, ctx, ctx_len, in_fd,
                                                      out_fd, gate ? &check : NULL, ret_bytes, &why);
        }
        if (rc.stopped)
                return r; /* err is the gate's */
        if (r == -EBADMSG)
                keys_seterr(err, "%s (wrong context, or the stream was altered)", why ? why : "stream rejected");
        else if (r < 0)
                keys_seterr(err, "%s", why ? why : strerror(-r));
        return r;
}
