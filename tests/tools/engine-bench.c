/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * engine-bench [SECONDS]: seal throughput of each engine present, single
 * thread, for 64 B, 1 KiB, 64 KiB and 1 MiB messages, about SECONDS (default
 * 1) per cell.  MB/s with 1 MB = 10^6 bytes, as `openssl speed` counts.  The
 * key is set on every call, as dkm does.
 */
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "shared/util.h"

static const size_t sizes[] = { 64, 1024, 65536, 1048576 };
static const char *const labels[] = { "64 B", "1 KiB", "64 KiB", "1 MiB" };

/* MB/s, or a negative errno. */
static double measure(const struct engine_ops *ops, struct engine_aead *a, size_t len, double seconds,
                      int *ret_err)
{
        uint8_t key[ENGINE_KEY_SIZE], nonce[ENGINE_NONCE_SIZE], aad[32];
        uint8_t *in = malloc(len), *out = malloc(len + ENGINE_TAG_SIZE);
        uint64_t start = 0, now = 0, budget = (uint64_t)(seconds * 1e6), ops_done = 0;
        int r = 0;

        *ret_err = 0;
        if (!in || !out) {
                *ret_err = -ENOMEM;
                goto out;
        }
        if (engine_random(key, sizeof(key)) < 0 || engine_random(nonce, sizeof(nonce)) < 0 ||
            engine_random(aad, sizeof(aad)) < 0 || engine_random(in, len) < 0) {
                *ret_err = -EIO;
                goto out;
        }
        /* One warm-up call, which also finds out whether the size is served. */
        r = ops->seal(a, key, nonce, aad, sizeof(aad), in, len, out);
        if (r < 0) {
                *ret_err = r;
                goto out;
        }
        start = now = now_mono_usec();
        while (now - start < budget) {
                for (int i = 0; i < 16; i++) {
                        nonce[0]++;
                        r = ops->seal(a, key, nonce, aad, sizeof(aad), in, len, out);
                        if (r < 0) {
                                *ret_err = r;
                                goto out;
                        }
                }
                ops_done += 16;
                now = now_mono_usec();
        }
out:
        free(in);
        free(out);
        if (*ret_err)
                return 0;
        return (double)ops_done * (double)len / (double)(now - start);  /* bytes/us = MB/s */
}

int main(int argc, char **argv)
{
        const struct engine_ops *engines[] = { &engine_kernel_ops, &engine_openssl_ops };
        double seconds = 1.0;

        if (argc > 2 || (argc == 2 && (seconds = strtod(argv[1], NULL)) <= 0)) {
                fprintf(stderr, "usage: engine-bench [SECONDS]\n");
                return 2;
        }

        printf("AES-256-GCM seal, 32-byte AAD, key set per call, single thread, ~%.1f s per cell; MB/s (10^6 bytes)\n\n",
               seconds);
        printf("%-8s  %-36s", "engine", "driver");
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
                printf("  %12s", labels[i]);
        printf("\n");

        for (size_t e = 0; e < ARRAY_SIZE(engines); e++) {
                const struct engine_ops *ops = engines[e];
                char reason[256] = "", driver[128] = "";
                struct engine_aead *a = NULL;
                int r;

                r = ops->probe(reason, sizeof(reason));
                if (r < 0) {
                        printf("%-8s  absent: %s\n", ops->name, reason);
                        continue;
                }
                if (ops->driver(driver, sizeof(driver)) < 0)
                        snprintf(driver, sizeof(driver), "unknown");
                r = ops->aead_new(&a);
                if (r < 0) {
                        printf("%-8s  absent: aead_new: %s\n", ops->name, strerror(-r));
                        continue;
                }
                printf("%-8s  %-36s", ops->name, driver);
                fflush(stdout);
                for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                        int err;
                        double mbs = measure(ops, a, sizes[i], seconds, &err);

                        if (err == -EMSGSIZE)
                                printf("  %12s", "too large");
                        else if (err < 0)
                                printf("  %12s", strerror(-err));
                        else
                                printf("  %12.1f", mbs);
                        fflush(stdout);
                }
                printf("\n");
                ops->aead_free(a);
        }
        return 0;
}
