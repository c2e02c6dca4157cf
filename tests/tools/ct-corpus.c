/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Many ciphertexts made and checked through dkm_batch(), for tests that
 * move a store (test-migrate.sh):
 *   ct-corpus SOCKET encrypt FILE FIRST COUNT POLICY...
 *       encrypts "secret <i>" for i in FIRST..FIRST+COUNT-1 under
 *       POLICY[i % n] with the context i=<i>, appending each to FILE
 *   ct-corpus SOCKET decrypt FILE
 *       decrypts every ciphertext in FILE and compares it with its
 *       plaintext; prints "decrypted N of M" and the first failures
 * Exit 0 when every item succeeded.  FILE: per item, u32 index, u32
 * length, the ciphertext (host byte order: made and read on one machine).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkm/dkm.h"

struct item {
        uint32_t index;
        uint8_t *ct;
        uint32_t len;
        char text[32], num[16];
        dkm_context_pair ctx;
};

static int usage(void)
{
        fprintf(stderr, "usage: ct-corpus SOCKET encrypt FILE FIRST COUNT POLICY... | ct-corpus SOCKET "
                        "decrypt FILE\n");
        return 2;
}

static void prepare(struct item *it, uint32_t index)
{
        it->index = index;
        snprintf(it->text, sizeof(it->text), "secret %u", index);
        snprintf(it->num, sizeof(it->num), "%u", index);
        it->ctx = (dkm_context_pair){ "i", it->num };
}

static int do_encrypt(dkm_client *c, const char *path, uint32_t first, uint32_t count, char **policies,
                      int n_policies)
{
        dkm_batch_item *b = calloc(count, sizeof(*b));
        struct item *it = calloc(count, sizeof(*it));
        FILE *f = fopen(path, "ab");
        int r, bad = 0;

        if (!b || !it || !f) {
                perror("ct-corpus");
                return 1;
        }
        for (uint32_t i = 0; i < count; i++) {
                prepare(&it[i], first + i);
                b[i] = (dkm_batch_item){ .op = DKM_BATCH_ENCRYPT, .policy = policies[(first + i) % n_policies],
                                         .ctx = &it[i].ctx, .n_ctx = 1, .in = it[i].text,
                                         .in_len = strlen(it[i].text) };
        }
        r = dkm_batch(c, b, count);
        if (r < 0) {
                fprintf(stderr, "ct-corpus: batch: %s\n", strerror(-r));
                return 1;
        }
        for (uint32_t i = 0; i < count; i++) {
                uint32_t len = (uint32_t)b[i].out_len;

                if (b[i].error) {
                        if (bad++ < 5)
                                fprintf(stderr, "ct-corpus: item %u: %s\n", it[i].index, b[i].message);
                        continue;
                }
                if (fwrite(&it[i].index, 4, 1, f) != 1 || fwrite(&len, 4, 1, f) != 1 ||
                    fwrite(b[i].out, 1, len, f) != len)
                        bad++;
                free(b[i].out);
        }
        if (fclose(f) != 0)
                bad++;
        free(b);
        free(it);
        printf("encrypted %u of %u\n", count - (uint32_t)bad, count);
        return bad ? 1 : 0;
}

static int do_decrypt(dkm_client *c, const char *path)
{
        struct item *it = NULL;
        dkm_batch_item *b;
        size_t n = 0, good = 0;
        FILE *f = fopen(path, "rb");
        uint32_t idx, len;
        int r;

        if (!f) {
                perror(path);
                return 1;
        }
        while (fread(&idx, 4, 1, f) == 1) {
                struct item *v = realloc(it, (n + 1) * sizeof(*it));

                if (!v || fread(&len, 4, 1, f) != 1 || len > (1u << 20)) {
                        fprintf(stderr, "ct-corpus: %s is cut short or malformed\n", path);
                        return 1;
                }
                it = v;
                prepare(&it[n], idx);
                it[n].len = len;
                it[n].ct = malloc(len ? len : 1);
                if (!it[n].ct || fread(it[n].ct, 1, len, f) != len) {
                        fprintf(stderr, "ct-corpus: %s is cut short\n", path);
                        return 1;
                }
                n++;
        }
        fclose(f);
        b = calloc(n ? n : 1, sizeof(*b));
        if (!b)
                return 1;
        for (size_t i = 0; i < n; i++) {
                it[i].ctx.value = it[i].num; /* it moved as it grew */
                b[i] = (dkm_batch_item){ .op = DKM_BATCH_DECRYPT, .ctx = &it[i].ctx, .n_ctx = 1, .in = it[i].ct,
                                         .in_len = it[i].len };
        }
        r = n ? dkm_batch(c, b, n) : 0;
        if (r < 0) {
                fprintf(stderr, "ct-corpus: batch: %s\n", strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < n; i++) {
                if (b[i].error == 0 && b[i].out_len == strlen(it[i].text) &&
                    memcmp(b[i].out, it[i].text, b[i].out_len) == 0)
                        good++;
                else if (i - good < 5)
                        fprintf(stderr, "ct-corpus: ciphertext %u: %s\n", it[i].index,
                                b[i].error ? b[i].message : "decrypts to another plaintext");
                dkm_free_secret(b[i].out, b[i].out_len);
                free(it[i].ct);
        }
        printf("decrypted %zu of %zu\n", good, n);
        free(b);
        free(it);
        return good == n && n > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
        dkm_client *c;
        int r;

        if (argc < 4)
                return usage();
        if (strcmp(argv[2], "encrypt") == 0 && argc < 7)
                return usage();
        r = dkm_connect(argv[1], &c);
        if (r < 0) {
                fprintf(stderr, "ct-corpus: cannot connect to %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        if (strcmp(argv[2], "encrypt") == 0)
                r = do_encrypt(c, argv[3], (uint32_t)strtoul(argv[4], NULL, 10),
                               (uint32_t)strtoul(argv[5], NULL, 10), argv + 6, argc - 6);
        else if (strcmp(argv[2], "decrypt") == 0 && argc == 4)
                r = do_decrypt(c, argv[3]);
        else
                r = usage();
        dkm_disconnect(c);
        return r;
}
