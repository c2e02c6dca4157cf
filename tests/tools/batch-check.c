/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checks dkm_batch() and data keys against a running dkmd:
 *   batch-check SOCKET
 * Prints one line per check and exits 0 when all pass.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkm/dkm.h"

static int failures;

static void check(int ok, const char *what)
{
        printf("  %s: %s\n", ok ? "ok" : "FAIL", what);
        if (!ok)
                failures++;
}

int main(int argc, char **argv)
{
        enum { N = 2500 }; /* more than one request's worth */
        static dkm_batch_item items[N], back[N];
        static char texts[N][32];
        dkm_context_pair ctx[] = { { "tenant", "acme" } };
        uint8_t key[32], key2[32], *wrapped;
        size_t wlen;
        dkm_client *c;
        int r, good = 0;

        if (argc != 2 || dkm_connect(argv[1], &c) < 0) {
                fprintf(stderr, "usage: batch-check SOCKET (and a running dkmd)\n");
                return 2;
        }
        for (int i = 0; i < N; i++) {
                snprintf(texts[i], sizeof(texts[i]), "secret %d", i);
                items[i] = (dkm_batch_item){ .op = DKM_BATCH_ENCRYPT, .ctx = ctx, .n_ctx = 1,
                                             .in = texts[i], .in_len = strlen(texts[i]) };
        }
        /* Mixed in: items that must fail on their own. */
        items[7].policy = "no-such-policy";
        items[11].op = DKM_BATCH_DECRYPT;
        items[11].in = "garbage, not a ciphertext";
        items[11].in_len = 25;
        r = dkm_batch(c, items, N);
        check(r == 0, "a batch of 2500 encryptions is answered");
        for (int i = 0; i < N; i++)
                good += items[i].error == 0;
        check(good == N - 2, "every good item succeeded");
        check(items[7].error == -ENOENT && strstr(items[7].message, "no such policy"),
              "an unknown policy fails that item only, with its reason");
        check(items[11].error < 0 && strstr(items[11].message, "not a dkm ciphertext"),
              "a garbage decrypt fails that item only, with its reason");

        for (int i = 0; i < N; i++)
                back[i] = (dkm_batch_item){ .op = DKM_BATCH_DECRYPT, .ctx = ctx, .n_ctx = 1,
                                            .in = items[i].out ? items[i].out : (uint8_t *)"x",
                                            .in_len = items[i].out ? items[i].out_len : 1 };
        back[3].n_ctx = 0; /* wrong context */
        r = dkm_batch(c, back, N);
        good = 0;
        for (int i = 0; i < N; i++)
                if (back[i].error == 0 && back[i].out_len == strlen(texts[i]) &&
                    memcmp(back[i].out, texts[i], back[i].out_len) == 0)
                        good++;
        check(r == 0 && good == N - 3, "the batch decrypts back to every plaintext");
        check(back[3].error == -EBADMSG, "a wrong context fails that item");
        for (int i = 0; i < N; i++) {
                free(items[i].out);
                dkm_free_secret(back[i].out, back[i].out_len);
        }

        r = dkm_datakey(c, NULL, ctx, 1, key, &wrapped, &wlen);
        check(r == 0 && wlen == 32 + 56, "a data key and its wrapped form");
        r = dkm_unwrap_datakey(c, ctx, 1, wrapped, wlen, key2);
        check(r == 0 && memcmp(key, key2, 32) == 0, "the wrapped data key unwraps to the same key");
        r = dkm_unwrap_datakey(c, NULL, 0, wrapped, wlen, key2);
        check(r == -EBADMSG, "not without its context");
        free(wrapped);
        dkm_disconnect(c);
        printf("batch-check: %d failed\n", failures);
        return failures ? 1 : 0;
}
