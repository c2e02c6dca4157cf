/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <libgfshare.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>

#include "shamir.h"

/* libgfshare reports nothing from its random source, and by default has
 * none (or random()): ours says here when getrandom() failed, per thread. */
static _Thread_local bool rand_failed;

static void fill_rand(unsigned char *buf, unsigned int len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t n = getrandom(buf + done, len - done, 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        rand_failed = true;
                        memset(buf + done, 0, len - done);
                        return;
                }
                done += (size_t)n;
        }
}

int shamir_split(const uint8_t *secret, size_t len, unsigned n, unsigned k, uint8_t *ret_shares)
{
        unsigned char numbers[255];
        gfshare_ctx *ctx;

        if (!secret || !ret_shares || len == 0 || len > UINT32_MAX || k < 2 || k > n || n > 255)
                return -EINVAL;
        for (unsigned i = 0; i < n; i++)
                numbers[i] = (unsigned char)(i + 1);
        /* The same function every time, so concurrent callers agree. */
        gfshare_fill_rand = fill_rand;
        rand_failed = false;
        ctx = gfshare_ctx_init_enc(numbers, n, (unsigned char)k, (unsigned)len);
        if (!ctx)
                return -ENOMEM;
        /* setsecret draws the random coefficients; it does not keep a
         * const promise, hence the cast. */
        gfshare_ctx_enc_setsecret(ctx, (unsigned char *)secret);
        for (unsigned i = 0; i < n; i++)
                gfshare_ctx_enc_getshare(ctx, (unsigned char)i, ret_shares + (size_t)i * len);
        /* gfshare_ctx_free overwrites its buffers (the coefficients, the
         * secret's copy) through gfshare_fill_rand before freeing them. */
        gfshare_ctx_free(ctx);
        if (rand_failed) {
                explicit_bzero(ret_shares, (size_t)n * len);
                return -EIO;
        }
        return 0;
}

int shamir_combine(const uint8_t *const *shares, const uint8_t *numbers, unsigned count, size_t len,
                   uint8_t *ret_secret)
{
        unsigned char nrs[255];
        gfshare_ctx *ctx;

        if (!shares || !numbers || !ret_secret || count == 0 || count > 255 || len == 0 || len > UINT32_MAX)
                return -EINVAL;
        for (unsigned i = 0; i < count; i++) {
                if (numbers[i] == 0)
                        return -EINVAL;
                for (unsigned j = 0; j < i; j++)
                        if (numbers[j] == numbers[i])
                                return -EINVAL;
                nrs[i] = numbers[i];
        }
        gfshare_fill_rand = fill_rand; /* gfshare_ctx_free scrubs with it */
        ctx = gfshare_ctx_init_dec(nrs, count, (unsigned)len);
        if (!ctx)
                return -ENOMEM;
        for (unsigned i = 0; i < count; i++)
                gfshare_ctx_dec_giveshare(ctx, (unsigned char)i, (unsigned char *)shares[i]);
        gfshare_ctx_dec_extract(ctx, ret_secret);
        gfshare_ctx_free(ctx);
        return 0;
}
