/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * engine-compare [N]: seals N random messages (0..64 KiB, AAD 0..256 bytes,
 * random keys and nonces) with the kernel and the openssl engines, checks the
 * outputs are identical byte for byte, and that each engine opens the other's
 * output.  Exit 0 when identical, 1 on any mismatch, 77 when an engine is
 * absent.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "shared/util.h"

#define MAX_DATA (64u * 1024)
#define MAX_AAD 256u

struct side {
        const struct engine_ops *ops;
        struct engine_aead *a;
        char driver[128];
};

static uint32_t random_u32(void)
{
        uint32_t v;

        if (engine_random(&v, sizeof(v)) < 0)
                abort();
        return v;
}

static int setup(struct side *s, const struct engine_ops *ops)
{
        char reason[256] = "";
        int r;

        s->ops = ops;
        r = ops->probe(reason, sizeof(reason));
        if (r < 0) {
                printf("SKIPPED: %s engine unavailable: %s\n", ops->name, reason);
                return 77;
        }
        r = ops->driver(s->driver, sizeof(s->driver));
        if (r < 0)
                snprintf(s->driver, sizeof(s->driver), "unknown (%s)", strerror(-r));
        r = ops->aead_new(&s->a);
        if (r < 0) {
                fprintf(stderr, "engine-compare: %s: aead_new: %s\n", ops->name, strerror(-r));
                return 1;
        }
        return 0;
}

static int mismatch(size_t i, const char *what, size_t len, size_t aad_len, int r)
{
        fprintf(stderr, "engine-compare: input %zu (%zu bytes, AAD %zu): %s%s%s\n", i, len, aad_len,
                what, r < 0 ? ": " : "", r < 0 ? strerror(-r) : "");
        return 1;
}

int main(int argc, char **argv)
{
        struct side k = {}, o = {};
        unsigned long n = 200;
        uint8_t *pt, *ct_k, *ct_o, *back;
        int r;

        if (argc > 2 || (argc == 2 && (n = strtoul(argv[1], NULL, 10)) == 0)) {
                fprintf(stderr, "usage: engine-compare [N]\n");
                return 2;
        }
        r = setup(&k, &engine_kernel_ops);
        if (r)
                return r;
        r = setup(&o, &engine_openssl_ops);
        if (r)
                return r;

        pt = malloc(MAX_DATA);
        back = malloc(MAX_DATA);
        ct_k = malloc(MAX_DATA + ENGINE_TAG_SIZE);
        ct_o = malloc(MAX_DATA + ENGINE_TAG_SIZE);
        if (!pt || !back || !ct_k || !ct_o)
                return 1;

        for (size_t i = 0; i < n; i++) {
                uint8_t key[ENGINE_KEY_SIZE], nonce[ENGINE_NONCE_SIZE], aad[MAX_AAD];
                size_t len = random_u32() % (MAX_DATA + 1), aad_len = random_u32() % (MAX_AAD + 1);

                /* The edges deserve more than their random share. */
                if (i == 0)
                        len = aad_len = 0;
                else if (i == 1)
                        len = MAX_DATA, aad_len = MAX_AAD;
                if (engine_random(key, sizeof(key)) < 0 || engine_random(nonce, sizeof(nonce)) < 0 ||
                    engine_random(aad, aad_len) < 0 || engine_random(pt, len) < 0)
                        return 1;

                r = k.ops->seal(k.a, key, nonce, aad, aad_len, pt, len, ct_k);
                if (r < 0)
                        return mismatch(i, "kernel seal failed", len, aad_len, r);
                r = o.ops->seal(o.a, key, nonce, aad, aad_len, pt, len, ct_o);
                if (r < 0)
                        return mismatch(i, "openssl seal failed", len, aad_len, r);
                if (memcmp(ct_k, ct_o, len + ENGINE_TAG_SIZE) != 0)
                        return mismatch(i, "ciphertexts differ", len, aad_len, 0);

                r = k.ops->open(k.a, key, nonce, aad, aad_len, ct_o, len + ENGINE_TAG_SIZE, back);
                if (r < 0 || memcmp(back, pt, len) != 0)
                        return mismatch(i, "kernel cannot open openssl's output", len, aad_len, r);
                r = o.ops->open(o.a, key, nonce, aad, aad_len, ct_k, len + ENGINE_TAG_SIZE, back);
                if (r < 0 || memcmp(back, pt, len) != 0)
                        return mismatch(i, "openssl cannot open the kernel's output", len, aad_len, r);

                /* And both reject the same forgery. */
                ct_k[random_u32() % (len + ENGINE_TAG_SIZE)] ^= (uint8_t)(1u << (random_u32() % 8));
                if (k.ops->open(k.a, key, nonce, aad, aad_len, ct_k, len + ENGINE_TAG_SIZE, back) != -EBADMSG ||
                    o.ops->open(o.a, key, nonce, aad, aad_len, ct_k, len + ENGINE_TAG_SIZE, back) != -EBADMSG)
                        return mismatch(i, "a tampered message was not rejected by both", len, aad_len, 0);
        }

        printf("engine-compare: %lu inputs, kernel driver %s, openssl driver %s: identical\n", n,
               k.driver, o.driver);
        k.ops->aead_free(k.a);
        o.ops->aead_free(o.a);
        free(pt);
        free(back);
        free(ct_k);
        free(ct_o);
        return 0;
}
