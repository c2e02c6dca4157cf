/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Streaming format v2: header layout and parser (both layouts), the subkey
 * derivation against fixed vectors, the STREAM nonces and subkey checked
 * independently of the encoder, round trips through the incremental API, pipes
 * and files, every kind of tampering, the counter limit, flat memory, and a
 * stream of the first (unsalted) layout that must stay readable.
 * Every per-engine test runs against each engine; an engine whose probe fails
 * is reported SKIPPED, unless DKM_EXPECT_KERNEL_ENGINE=1 demands the kernel.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine/engine.h"
#include "shared/format.h"
#include "shared/stream.h"
#include "shared/util.h"

#include "data/stream-v2-legacy.h"

#define SEG 4096u
#define FULL (SEG + STREAM_TAG_SIZE)
/* The header dkm writes (salted layout), and the part both layouts share. */
#define H STREAM_HEADER_MAX
#define H0 STREAM_HEADER_SIZE

static const uint8_t key[32] = {
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
};
static const uint8_t policy[16] = {
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
};
#define GEN 3

struct buf {
        uint8_t *p;
        size_t n;
};

/* --- helpers ---------------------------------------------------------------- */

static bool expect_kernel(void)
{
        const char *e = getenv("DKM_EXPECT_KERNEL_ENGINE");

        return e && strcmp(e, "1") == 0;
}

static const struct engine_ops *engine_of(void **state)
{
        const struct engine_ops *ops = *state;
        char reason[256] = "";

        if (ops->probe(reason, sizeof(reason)) >= 0)
                return ops;
        if (ops == &engine_kernel_ops && expect_kernel())
                fail_msg("DKM_EXPECT_KERNEL_ENGINE=1 but the kernel engine is unavailable: %s", reason);
        print_message("%s engine unavailable: %s\n", ops->name, reason);
        skip();
        return NULL;
}

static struct engine_aead *new_aead(const struct engine_ops *ops)
{
        struct engine_aead *a = NULL;

        assert_int_equal(ops->aead_new(&a), 0);
        return a;
}

/* The canonical encoding of a small context. */
static struct buf context(const char *file)
{
        struct context_pair pairs[] = { { "file", file }, { "purpose", "backup" } };
        const char *why = NULL;
        struct buf b;

        assert_int_equal(format_context_encode(pairs, 2, &b.p, &b.n, &why), 0);
        return b;
}

static struct buf pattern(size_t n, uint8_t seed)
{
        struct buf b = { malloc(n ? n : 1), n };

        assert_non_null(b.p);
        for (size_t i = 0; i < n; i++)
                b.p[i] = (uint8_t)(i * 131 + seed + (i >> 12));
        return b;
}

static int memfd_with(const uint8_t *p, size_t n)
{
        int fd = memfd_create("test-stream", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, n), (ssize_t)n);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static struct buf slurp(int fd)
{
        struct buf b = { NULL, 0 };
        size_t cap = 0;

        for (;;) {
                ssize_t k;

                if (b.n == cap) {
                        cap = cap ? 2 * cap : 65536;
                        b.p = realloc(b.p, cap);
                        assert_non_null(b.p);
                }
                k = read(fd, b.p + b.n, cap - b.n);
                assert_true(k >= 0);
                if (k == 0)
                        return b;
                b.n += (size_t)k;
        }
}

static struct buf slurp_from_start(int fd)
{
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return slurp(fd);
}

static struct buf encrypt_buf(const struct engine_ops *ops, struct engine_aead *a, struct buf pt,
                              struct buf ctx, uint32_t seg)
{
        int in = memfd_with(pt.p, pt.n), out = memfd_create("ct", MFD_CLOEXEC);
        const char *why = NULL;
        uint64_t n = 12345;
        struct buf ct;

        assert_true(out >= 0);
        assert_int_equal(stream_encrypt_fd(ops, a, key, policy, GEN, ctx.p, ctx.n, seg, in, out, &n,
                                           &why), 0);
        assert_int_equal(n, pt.n);
        ct = slurp_from_start(out);
        close(in);
        close(out);
        return ct;
}

/* Decrypts through the fd API; returns its result, *ret_pt only on success. */
static int decrypt_buf(const struct engine_ops *ops, struct engine_aead *a, const uint8_t *ct,
                       size_t len, struct buf ctx, struct buf *ret_pt, const char **ret_why)
{
        int in = memfd_with(ct, len), out = memfd_create("pt", MFD_CLOEXEC);
        struct stream_header h;
        uint64_t n = 0;
        int r;

        assert_true(out >= 0);
        r = stream_read_header_fd(in, &h, ret_why);
        if (r >= 0)
                r = stream_decrypt_fd(ops, a, key, &h, ctx.p, ctx.n, in, out, &n, ret_why);
        if (r >= 0) {
                *ret_pt = slurp_from_start(out);
                assert_int_equal(ret_pt->n, n);
        }
        close(in);
        close(out);
        return r;
}

static void expect_reject(const struct engine_ops *ops, struct engine_aead *a, const uint8_t *ct,
                          size_t len, struct buf ctx, const char *msg)
{
        const char *why = NULL;
        struct buf pt = {};
        int r = decrypt_buf(ops, a, ct, len, ctx, &pt, &why);

        if (r != -EBADMSG || !why || strcmp(why, msg) != 0)
                fail_msg("expected -EBADMSG \"%s\", got %d \"%s\"", msg, r, why ? why : "(none)");
}

static size_t segments_for(size_t n, uint32_t seg)
{
        return n == 0 ? 1 : (n + seg - 1) / seg;
}

/* --- parser (engine independent) --------------------------------------------- */

/* A salted header (72 bytes), or with salted false one of the first layout
 * (40 bytes). */
static void sample_header_of(uint8_t out[H], bool salted)
{
        struct stream_header h = { .version = 2, .algorithm = 1, .generation = 7,
                                   .segment_size = 65536, .flags = salted ? STREAM_FLAG_SALTED : 0 };

        memcpy(h.policy_id, policy, 16);
        for (int i = 0; i < STREAM_PREFIX_SIZE; i++)
                h.nonce_prefix[i] = (uint8_t)(0xc0 + i);
        for (int i = 0; i < STREAM_SALT_SIZE; i++)
                h.salt[i] = (uint8_t)(0xd0 + i);
        stream_header_write(&h, out);
}

static void sample_header(uint8_t out[H])
{
        sample_header_of(out, true);
}

static void test_header_layout(void **state)
{
        uint8_t b[H];
        struct stream_header h;
        const char *why = NULL;

        sample_header(b);
        assert_memory_equal(b, "DKMC", 4);
        assert_int_equal(b[4], 2);
        assert_int_equal(b[5], 1);
        assert_int_equal(b[6], 1);  /* STREAM_FLAG_SALTED, little-endian */
        assert_int_equal(b[7], 0);
        assert_memory_equal(b + 8, policy, 16);
        assert_int_equal(b[24], 7);
        assert_int_equal(b[25] | b[26] | b[27], 0);
        assert_int_equal(b[28], 0xc0);
        assert_int_equal(b[34], 0xc6);
        assert_int_equal(b[35], 0);
        assert_int_equal(b[36], 0x00); /* 65536 little-endian */
        assert_int_equal(b[37], 0x00);
        assert_int_equal(b[38], 0x01);
        assert_int_equal(b[39], 0x00);
        assert_int_equal(b[40], 0xd0);  /* the salt */
        assert_int_equal(b[71], 0xef);
        assert_int_equal(stream_header_length(b), 72);

        assert_int_equal(stream_parse_header(b, sizeof(b), &h, &why), 0);
        assert_int_equal(h.version, 2);
        assert_int_equal(h.flags, STREAM_FLAG_SALTED);
        assert_int_equal(h.generation, 7);
        assert_int_equal(h.segment_size, 65536);
        assert_int_equal(h.nonce_prefix[6], 0xc6);
        assert_int_equal(h.salt[0], 0xd0);
        assert_int_equal(h.salt[31], 0xef);
        assert_memory_equal(h.policy_id, policy, 16);
        assert_int_equal(stream_header_size(&h), 72);

        /* The first layout: 40 bytes, flags 0, no salt. */
        memset(b, 0xee, sizeof(b));
        sample_header_of(b, false);
        assert_int_equal(b[6] | b[7], 0);
        assert_int_equal(b[40], 0xee);  /* nothing written past 40 */
        assert_int_equal(stream_header_length(b), 40);
        assert_int_equal(stream_parse_header(b, H0, &h, &why), 0);
        assert_int_equal(h.flags, 0);
        assert_int_equal(stream_header_size(&h), 40);
}

/* HKDF-SHA256 against RFC 5869 (test case 1 and 3), and the subkey of the
 * sample header against a value computed outside dkm (Python's hmac and
 * hashlib, from the formula in stream.h). */
static void test_subkey_vectors(void **state)
{
        static const uint8_t okm1[42] = {
                0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
                0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
                0xec, 0xc4, 0xc5, 0xbf, 0x34, 0x00, 0x72, 0x08, 0xd5, 0xb8, 0x87, 0x18, 0x58, 0x65,
        };
        static const uint8_t okm3[42] = {
                0x8d, 0xa4, 0xe7, 0x75, 0xa5, 0x63, 0xc1, 0x8f, 0x71, 0x5f, 0x80, 0x2a, 0x06, 0x3c,
                0x5a, 0x31, 0xb8, 0xa1, 0x1f, 0x5c, 0x5e, 0xe1, 0x87, 0x9e, 0xc3, 0x45, 0x4e, 0x5f,
                0x3c, 0x73, 0x8d, 0x2d, 0x9d, 0x20, 0x13, 0x95, 0xfa, 0xa4, 0xb6, 0x1a, 0x96, 0xc8,
        };
        static const uint8_t subkey[32] = {
                0x04, 0x90, 0x6e, 0x46, 0x33, 0x47, 0x10, 0x9d, 0xff, 0x62, 0x9b, 0x8b, 0xe5, 0x09, 0x34, 0x52,
                0xaa, 0x7b, 0x41, 0xf0, 0x29, 0x57, 0x34, 0x07, 0x6b, 0x7d, 0xc3, 0x87, 0xe0, 0x42, 0x24, 0x03,
        };
        uint8_t ikm[22], salt[13], info[10], out[42], b[H], sk[32];
        struct stream_header h;
        const char *why = NULL;

        memset(ikm, 0x0b, sizeof(ikm));
        for (size_t i = 0; i < sizeof(salt); i++)
                salt[i] = (uint8_t)i;
        for (size_t i = 0; i < sizeof(info); i++)
                info[i] = (uint8_t)(0xf0 + i);
        assert_int_equal(engine_hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), info, sizeof(info),
                                            out, sizeof(out)), 0);
        assert_memory_equal(out, okm1, sizeof(okm1));
        assert_int_equal(engine_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, out, sizeof(out)), 0);
        assert_memory_equal(out, okm3, sizeof(okm3));
        assert_int_equal(engine_hkdf_sha256(NULL, 0, NULL, 0, NULL, 0, out, 32), -EINVAL);
        assert_int_equal(engine_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, NULL, 0, out, 0), -EINVAL);

        sample_header(b);
        assert_int_equal(stream_parse_header(b, H, &h, &why), 0);
        assert_int_equal(stream_segment_key(&h, key, sk), 0);
        assert_memory_equal(sk, subkey, 32);
        /* Every input counts: the salt, and the fixed part of the header. */
        h.salt[31] ^= 1;
        assert_int_equal(stream_segment_key(&h, key, sk), 0);
        assert_memory_not_equal(sk, subkey, 32);
        h.salt[31] ^= 1;
        h.generation++;
        assert_int_equal(stream_segment_key(&h, key, sk), 0);
        assert_memory_not_equal(sk, subkey, 32);
        /* The first layout seals with the generation key itself. */
        sample_header_of(b, false);
        assert_int_equal(stream_parse_header(b, H0, &h, &why), 0);
        assert_int_equal(stream_segment_key(&h, key, sk), 0);
        assert_memory_equal(sk, key, 32);
}

static void expect_parse_error(const uint8_t *b, size_t len, int err, const char *msg)
{
        struct stream_header h = { .generation = 999 };
        const char *why = NULL;

        assert_int_equal(stream_parse_header(b, len, &h, &why), err);
        assert_non_null(why);
        assert_string_equal(why, msg);
        assert_int_equal(h.generation, 999); /* untouched on error */
}

static void test_header_rejects(void **state)
{
        static const uint32_t bad_sizes[] = { 0, 1, 4095, 1048577, 0x7fffffff, 0xffffffff };
        static const uint32_t good_sizes[] = { 4096, 4097, 65536, 200000, 1048576 };
        struct stream_header h;
        const char *why = NULL;
        uint8_t b[H];

        sample_header(b);
        expect_parse_error(b, 0, -EBADMSG, "not a dkm ciphertext (bad magic)");
        expect_parse_error(b, 3, -EBADMSG, "not a dkm ciphertext (bad magic)");
        expect_parse_error(b, 4, -EBADMSG, "truncated stream header");
        expect_parse_error(b, H0 - 1, -EBADMSG, "truncated stream header");
        expect_parse_error(b, H - 1, -EBADMSG, "truncated stream header");  /* salt cut */
        b[1] ^= 0x20;
        expect_parse_error(b, H, -EBADMSG, "not a dkm ciphertext (bad magic)");
        sample_header(b);
        for (int v = 0; v < 256; v++) {
                if (v == 2)
                        continue;
                b[4] = (uint8_t)v;
                expect_parse_error(b, H, -EPROTONOSUPPORT, "unsupported ciphertext version");
        }
        sample_header(b);
        b[5] = 2;
        expect_parse_error(b, H, -EPROTONOSUPPORT, "unsupported ciphertext algorithm");
        for (unsigned f = 2; f < 0x10000; f = f < 0x100 ? f + 1 : f << 1) {
                sample_header(b);
                put_le16(b + 6, (uint16_t)f);
                expect_parse_error(b, H, -EBADMSG, "unknown ciphertext flags");
        }
        /* The first layout is 40 bytes; both parse from the same prefix. */
        sample_header_of(b, false);
        assert_int_equal(stream_parse_header(b, H0, &h, &why), 0);
        sample_header(b);
        memset(b + 24, 0, 4);
        expect_parse_error(b, H, -EBADMSG, "invalid generation 0 in ciphertext");
        sample_header(b);
        b[35] = 1;
        expect_parse_error(b, H, -EBADMSG, "nonzero reserved byte in stream header");
        for (size_t i = 0; i < ARRAY_SIZE(bad_sizes); i++) {
                sample_header(b);
                put_le32(b + 36, bad_sizes[i]);
                expect_parse_error(b, H, -EBADMSG, "stream segment size out of range");
        }
        for (size_t i = 0; i < ARRAY_SIZE(good_sizes); i++) {
                sample_header(b);
                put_le32(b + 36, good_sizes[i]);
                assert_int_equal(stream_parse_header(b, H, &h, &why), 0);
                assert_int_equal(h.segment_size, good_sizes[i]);
        }
        /* Only the header's bytes matter. */
        {
                uint8_t longer[H + 5];

                sample_header(longer);
                assert_int_equal(stream_parse_header(longer, sizeof(longer), &h, &why), 0);
        }
}

/* v1's parser keeps rejecting v2 as it always did; the peek dispatches. */
static void test_v1_dispatch(void **state)
{
        uint8_t b[H + FORMAT_TAG_SIZE] = {};
        struct format_header fh;
        const char *why = NULL;
        uint8_t v = 0;

        sample_header(b);
        assert_int_equal(format_parse(b, sizeof(b), &fh, &why), -EPROTONOSUPPORT);
        assert_string_equal(why, "unsupported ciphertext version");
        assert_int_equal(format_peek_version(b, sizeof(b), &v, &why), 0);
        assert_int_equal(v, 2);
        assert_int_equal(format_peek_version(b, 4, &v, &why), -EBADMSG);
        assert_string_equal(why, "truncated ciphertext");
        b[0] = 'X';
        assert_int_equal(format_peek_version(b, sizeof(b), &v, &why), -EBADMSG);
        assert_string_equal(why, "not a dkm ciphertext (bad magic)");
}

/* --- per engine ------------------------------------------------------------- */

/* The wire format computed independently of stream.c: every segment opens
 * under HKDF-SHA256(key, salt, label || header[0..40]) with prefix || BE32(i)
 * || last flag and AAD = the 72-byte header || context, and not with the
 * other flag nor under the generation key itself. */
static void test_known_layout(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("known"), pt = pattern(2 * SEG + 10, 1), ct, aad;
        struct stream_header h;
        const char *why = NULL;
        uint8_t out[SEG], sk[32], info[sizeof(STREAM_SUBKEY_LABEL) - 1 + H0];

        ct = encrypt_buf(ops, a, pt, ctx, SEG);
        assert_int_equal(ct.n, H + 3 * STREAM_TAG_SIZE + pt.n);
        assert_int_equal(stream_parse_header(ct.p, ct.n, &h, &why), 0);
        assert_int_equal(get_le16(ct.p + 6), STREAM_FLAG_SALTED);
        memcpy(info, "dkm stream subkey", 17);
        memcpy(info + 17, ct.p, H0);
        assert_int_equal(engine_hkdf_sha256(key, 32, ct.p + H0, 32, info, sizeof(info), sk, 32), 0);
        assert_int_equal(h.segment_size, SEG);
        assert_int_equal(h.generation, GEN);
        assert_memory_equal(h.policy_id, policy, 16);

        aad.n = H + ctx.n;
        aad.p = malloc(aad.n);
        memcpy(aad.p, ct.p, H);
        memcpy(aad.p + H, ctx.p, ctx.n);
        for (uint32_t i = 0; i < 3; i++) {
                size_t off = H + (size_t)i * FULL, len = i < 2 ? FULL : 10 + STREAM_TAG_SIZE;
                uint8_t nonce[12];

                memcpy(nonce, h.nonce_prefix, 7);
                nonce[7] = nonce[8] = nonce[9] = 0;
                nonce[10] = (uint8_t)i;
                nonce[11] = i == 2;
                assert_int_equal(ops->open(a, sk, nonce, aad.p, aad.n, ct.p + off, len, out), 0);
                assert_memory_equal(out, pt.p + (size_t)i * SEG, len - STREAM_TAG_SIZE);
                assert_int_equal(ops->open(a, key, nonce, aad.p, aad.n, ct.p + off, len, out), -EBADMSG);
                nonce[11] ^= 1;
                assert_int_equal(ops->open(a, sk, nonce, aad.p, aad.n, ct.p + off, len, out), -EBADMSG);
        }
        /* Two streams of the same input differ: a fresh prefix each time. */
        {
                struct buf ct2 = encrypt_buf(ops, a, pt, ctx, SEG);

                assert_memory_not_equal(ct.p + 28, ct2.p + 28, STREAM_PREFIX_SIZE);
                assert_memory_not_equal(ct.p + H0, ct2.p + H0, STREAM_SALT_SIZE);
                assert_memory_not_equal(ct.p + H, ct2.p + H, 64);
                free(ct2.p);
        }
        free(aad.p);
        free(ct.p);
        free(pt.p);
        free(ctx.p);
        ops->aead_free(a);
}

static void roundtrip(const struct engine_ops *ops, struct engine_aead *a, size_t n, uint32_t seg)
{
        struct buf ctx = context("rt"), pt = pattern(n, (uint8_t)n), ct, back = {};
        const char *why = NULL;

        ct = encrypt_buf(ops, a, pt, ctx, seg);
        assert_int_equal(ct.n, H + segments_for(n, seg) * STREAM_TAG_SIZE + n);
        if (decrypt_buf(ops, a, ct.p, ct.n, ctx, &back, &why) != 0)
                fail_msg("%s: %zu bytes, segment %u: %s", ops->name, n, seg, why);
        assert_int_equal(back.n, n);
        if (n)
                assert_memory_equal(back.p, pt.p, n);
        free(back.p);
        free(ct.p);
        free(pt.p);
        free(ctx.p);
}

static void test_roundtrip_sizes(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        static const size_t sizes[] = { 0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 37 * SEG,
                                        37 * SEG + 123, 100 * SEG + 1 };

        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
                roundtrip(ops, a, sizes[i], SEG);
        roundtrip(ops, a, 200000, STREAM_SEGMENT_DEFAULT);
        roundtrip(ops, a, 3 * 5000 + 7, 5000);   /* not a power of two */
        ops->aead_free(a);
}

/* The largest segment, where the engine carries it (openssl); the kernel
 * engine refuses it up front instead of failing mid-stream. */
static void test_large_segment(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("big");
        uint8_t hdr[H];
        struct stream_enc *s = NULL;
        size_t max = ops->max_message ? ops->max_message() : SIZE_MAX, hl;
        int r;

        r = stream_enc_new(ops, a, key, policy, GEN, ctx.p, ctx.n, STREAM_SEGMENT_MAX, &s, hdr, &hl);
        if (max < STREAM_SEGMENT_MAX + 100) {
                struct stream_header h;
                struct stream_dec *d = NULL;
                const char *why = NULL;

                assert_int_equal(r, -EMSGSIZE);
                sample_header(hdr);
                put_le32(hdr + 36, STREAM_SEGMENT_MAX);
                assert_int_equal(stream_parse_header(hdr, H, &h, &why), 0);
                assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), -EMSGSIZE);
                assert_string_equal(why, "stream segment size too large for this engine");
        } else {
                assert_int_equal(r, 0);
                stream_enc_free(s);
                roundtrip(ops, a, 2 * STREAM_SEGMENT_MAX + 5, STREAM_SEGMENT_MAX);
        }
        free(ctx.p);
        ops->aead_free(a);
}

struct pump {
        int fd;
        struct buf b;
};

static void *pump_write(void *arg)
{
        struct pump *p = arg;
        size_t off = 0;

        while (off < p->b.n) {
                /* Odd-sized writes, so the reader sees short reads. */
                size_t step = p->b.n - off < 777 ? p->b.n - off : 777;
                ssize_t k = write(p->fd, p->b.p + off, step);

                if (k <= 0)
                        break;
                off += (size_t)k;
        }
        close(p->fd);
        return NULL;
}

static void *pump_read(void *arg)
{
        struct pump *p = arg;

        p->b = slurp(p->fd);
        close(p->fd);
        return NULL;
}

/* Runs f between two pipes fed and drained by threads; no seeking possible. */
static int through_pipes(struct buf in, struct buf *ret_out,
                         int (*f)(int in_fd, int out_fd, void *ud), void *ud)
{
        int pin[2], pout[2], r;
        struct pump w, rd;
        pthread_t tw, tr;

        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
        assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
        w = (struct pump){ pin[1], in };
        rd = (struct pump){ pout[0], {} };
        assert_int_equal(pthread_create(&tw, NULL, pump_write, &w), 0);
        assert_int_equal(pthread_create(&tr, NULL, pump_read, &rd), 0);
        r = f(pin[0], pout[1], ud);
        close(pin[0]);   /* unblocks the writer if f stopped early */
        close(pout[1]);
        pthread_join(tw, NULL);
        pthread_join(tr, NULL);
        *ret_out = rd.b;
        return r;
}

struct job {
        const struct engine_ops *ops;
        struct engine_aead *a;
        struct buf ctx;
        const char *why;
};

static int enc_job(int in_fd, int out_fd, void *ud)
{
        struct job *j = ud;

        return stream_encrypt_fd(j->ops, j->a, key, policy, GEN, j->ctx.p, j->ctx.n, SEG, in_fd,
                                 out_fd, NULL, &j->why);
}

static int dec_job(int in_fd, int out_fd, void *ud)
{
        struct job *j = ud;
        struct stream_header h;
        int r = stream_read_header_fd(in_fd, &h, &j->why);

        if (r < 0)
                return r;
        return stream_decrypt_fd(j->ops, j->a, key, &h, j->ctx.p, j->ctx.n, in_fd, out_fd, NULL,
                                 &j->why);
}

static void test_pipes(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct job j = { ops, new_aead(ops), context("pipe"), NULL };
        static const size_t sizes[] = { 0, 1, SEG, 50 * SEG, 50 * SEG + 999 };

        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                struct buf pt = pattern(sizes[i], 9), ct, back;

                assert_int_equal(through_pipes(pt, &ct, enc_job, &j), 0);
                assert_int_equal(ct.n, H + segments_for(pt.n, SEG) * STREAM_TAG_SIZE + pt.n);
                assert_int_equal(through_pipes(ct, &back, dec_job, &j), 0);
                assert_int_equal(back.n, pt.n);
                if (pt.n)
                        assert_memory_equal(back.p, pt.p, pt.n);
                /* A cut-off stream fails through a pipe too. */
                if (i == 3) {
                        ct.n -= FULL;
                        free(back.p);
                        assert_int_equal(through_pipes(ct, &back, dec_job, &j), -EBADMSG);
                        assert_string_equal(j.why, "stream truncated");
                }
                free(back.p);
                free(ct.p);
                free(pt.p);
        }
        free(j.ctx.p);
        ops->aead_free(j.a);
}

/* Regular files on disk, opened the way dkmctl will. */
static void test_files(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("files"), pt = pattern(10 * SEG + 5, 4), back;
        char dir[] = "/tmp/test-stream-XXXXXX", p1[64], p2[64], p3[64];
        struct stream_header h;
        const char *why = NULL;
        uint64_t n = 0;
        int fd1, fd2, fd3;

        assert_non_null(mkdtemp(dir));
        snprintf(p1, sizeof(p1), "%s/plain", dir);
        snprintf(p2, sizeof(p2), "%s/cipher", dir);
        snprintf(p3, sizeof(p3), "%s/back", dir);
        fd1 = open(p1, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd1 >= 0);
        assert_int_equal(write(fd1, pt.p, pt.n), (ssize_t)pt.n);
        close(fd1);

        fd1 = open(p1, O_RDONLY | O_CLOEXEC);
        fd2 = open(p2, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd1 >= 0 && fd2 >= 0);
        assert_int_equal(stream_encrypt_fd(ops, a, key, policy, GEN, ctx.p, ctx.n, SEG, fd1, fd2, &n,
                                           &why), 0);
        assert_int_equal(n, pt.n);
        close(fd1);
        close(fd2);

        fd2 = open(p2, O_RDONLY | O_CLOEXEC);
        fd3 = open(p3, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd2 >= 0 && fd3 >= 0);
        assert_int_equal(stream_read_header_fd(fd2, &h, &why), 0);
        assert_int_equal(stream_decrypt_fd(ops, a, key, &h, ctx.p, ctx.n, fd2, fd3, &n, &why), 0);
        back = slurp_from_start(fd3);
        assert_int_equal(back.n, pt.n);
        assert_memory_equal(back.p, pt.p, pt.n);
        close(fd2);
        close(fd3);
        unlink(p1);
        unlink(p2);
        unlink(p3);
        rmdir(dir);
        free(back.p);
        free(pt.p);
        free(ctx.p);
        ops->aead_free(a);
}

/* A copy of ct with [off, off + cut) removed and `ins` (n bytes) put there. */
static struct buf edit(struct buf ct, size_t off, size_t cut, const uint8_t *ins, size_t n)
{
        struct buf r = { malloc(ct.n - cut + n + 1), ct.n - cut + n };

        assert_non_null(r.p);
        memcpy(r.p, ct.p, off);
        if (n)
                memcpy(r.p + off, ins, n);
        memcpy(r.p + off + n, ct.p + off + cut, ct.n - off - cut);
        return r;
}

static void reject_edit(const struct engine_ops *ops, struct engine_aead *a, struct buf ct,
                        struct buf ctx, size_t off, size_t cut, const uint8_t *ins, size_t n,
                        const char *msg)
{
        struct buf e = edit(ct, off, cut, ins, n);

        expect_reject(ops, a, e.p, e.n, ctx, msg);
        free(e.p);
}

#define SEGOFF(i) (H + (size_t)(i) * FULL)
#define AUTH "segment failed authentication"

static void test_tamper(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("tamper"), other_ctx = context("tamper2");
        /* Four segments, the final one short; and three, the final one full. */
        struct buf pt = pattern(3 * SEG + 100, 2), ptx = pattern(3 * SEG, 3);
        struct buf ct = encrypt_buf(ops, a, pt, ctx, SEG), ctx_full = encrypt_buf(ops, a, ptx, ctx, SEG);
        struct buf ct2 = encrypt_buf(ops, a, pt, ctx, SEG); /* same key, context, input */
        struct buf back = {};
        const char *why = NULL;
        uint8_t junk[2 * FULL];

        memset(junk, 0x5a, sizeof(junk));
        assert_int_equal(ct.n, SEGOFF(3) + 100 + STREAM_TAG_SIZE);
        assert_int_equal(ctx_full.n, SEGOFF(3));
        /* Sanity: untouched they decrypt. */
        assert_int_equal(decrypt_buf(ops, a, ct.p, ct.n, ctx, &back, &why), 0);
        free(back.p);

        /* Truncation: at each segment boundary, inside segments, inside a tag. */
        expect_reject(ops, a, ct.p, SEGOFF(3), ctx, "stream truncated");    /* final dropped */
        expect_reject(ops, a, ct.p, SEGOFF(1), ctx, "stream truncated");
        expect_reject(ops, a, ct.p, H, ctx, "stream truncated");            /* no segment at all */
        expect_reject(ops, a, ctx_full.p, SEGOFF(2), ctx, "stream truncated");
        expect_reject(ops, a, ct.p, SEGOFF(1) + 2000, ctx, AUTH);
        expect_reject(ops, a, ct.p, ct.n - 1, ctx, AUTH);
        expect_reject(ops, a, ct.p, SEGOFF(2) + 15, ctx, "stream truncated");
        expect_reject(ops, a, ct.p, SEGOFF(2) + FULL - 1, ctx, AUTH);
        expect_reject(ops, a, ct.p, H - 1, ctx, "truncated stream header");  /* inside the salt */
        expect_reject(ops, a, ct.p, H0, ctx, "truncated stream header");
        expect_reject(ops, a, ct.p, H0 - 1, ctx, "truncated stream header");
        expect_reject(ops, a, ct.p, 0, ctx, "not a dkm ciphertext (bad magic)");

        /* Reordering: swap segments 0 and 1, and 1 and 2. */
        for (int i = 0; i < 2; i++) {
                struct buf e = edit(ct, 0, 0, NULL, 0);

                memcpy(e.p + SEGOFF(i), ct.p + SEGOFF(i + 1), FULL);
                memcpy(e.p + SEGOFF(i + 1), ct.p + SEGOFF(i), FULL);
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                free(e.p);
        }
        /* Duplication: segment 1 twice; the final segment twice. */
        reject_edit(ops, a, ct, ctx, SEGOFF(2), 0, ct.p + SEGOFF(1), FULL, AUTH);
        reject_edit(ops, a, ct, ctx, ct.n, 0, ct.p + SEGOFF(3), ct.n - SEGOFF(3), AUTH);
        reject_edit(ops, a, ctx_full, ctx, ctx_full.n, 0, ctx_full.p + SEGOFF(2), FULL,
                    "data after the final segment");
        /* Dropping a middle segment. */
        reject_edit(ops, a, ct, ctx, SEGOFF(1), FULL, NULL, 0, AUTH);

        /* Splicing from another stream under the same key and context:
         * one segment, and the other stream's header with our segments. */
        reject_edit(ops, a, ct, ctx, SEGOFF(1), FULL, ct2.p + SEGOFF(1), FULL, AUTH);
        reject_edit(ops, a, ct, ctx, 0, H, ct2.p, H, AUTH);
        reject_edit(ops, a, ct, ctx, SEGOFF(3), ct.n - SEGOFF(3), ct2.p + SEGOFF(3),
                    ct2.n - SEGOFF(3), AUTH);

        /* Appended garbage: after a full final segment it is named exactly;
         * after a short one the final segment no longer authenticates. */
        reject_edit(ops, a, ctx_full, ctx, ctx_full.n, 0, junk, 1, "data after the final segment");
        reject_edit(ops, a, ctx_full, ctx, ctx_full.n, 0, junk, FULL + 3, "data after the final segment");
        reject_edit(ops, a, ct, ctx, ct.n, 0, junk, 1, AUTH);
        reject_edit(ops, a, ct, ctx, ct.n, 0, junk, sizeof(junk), AUTH);

        /* Every header byte, flipped: the parser or the tag catches it; a
         * salt byte changes the subkey and the AAD, so the tag. */
        for (size_t i = 0; i < H; i++) {
                struct buf e = edit(ct, 0, 0, NULL, 0);
                struct buf dummy = {};

                e.p[i] ^= 0x01;
                why = NULL;
                assert_true(decrypt_buf(ops, a, e.p, e.n, ctx, &dummy, &why) < 0);
                assert_non_null(why);
                if (i >= H0)
                        assert_string_equal(why, AUTH);
                free(e.p);
        }
        /* Downgrade: the same bytes read as the first layout (flags 0), so
         * the salt would be taken as segment data under the generation key;
         * or the salt dropped as well. */
        {
                struct buf e = edit(ct, 0, 0, NULL, 0);

                put_le16(e.p + 6, 0);
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                free(e.p);
                e = edit(ct, H0, STREAM_SALT_SIZE, NULL, 0);
                put_le16(e.p + 6, 0);
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                free(e.p);
        }
        /* The salt of another stream with our segments, and the salt alone
         * spliced between two streams of the same key and context. */
        reject_edit(ops, a, ct, ctx, H0, STREAM_SALT_SIZE, ct2.p + H0, STREAM_SALT_SIZE, AUTH);
        /* A flipped bit in a segment's ciphertext or tag. */
        for (size_t off = H; off < ct.n; off += 1031) {
                struct buf e = edit(ct, 0, 0, NULL, 0);

                e.p[off] ^= 0x04;
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                free(e.p);
        }

        /* Wrong context, no context, wrong key. */
        expect_reject(ops, a, ct.p, ct.n, other_ctx, AUTH);
        expect_reject(ops, a, ct.p, ct.n, (struct buf){ NULL, 0 }, AUTH);
        {
                struct stream_header h;
                struct stream_dec *d = NULL;
                uint8_t k2[32], out[SEG];
                size_t n;

                memcpy(k2, key, 32);
                k2[31] ^= 1;
                assert_int_equal(stream_parse_header(ct.p, ct.n, &h, &why), 0);
                assert_int_equal(stream_dec_new(ops, a, k2, &h, ctx.p, ctx.n, &d, &why), 0);
                assert_int_equal(stream_dec_segment(d, ct.p + H, FULL, false, out, &n, &why), -EBADMSG);
                assert_string_equal(why, AUTH);
                stream_dec_free(d);
        }

        /* Segment size: out of range in the header, or changed within it. */
        {
                static const uint32_t sizes[] = { 0, 4095, 1048577, 0xffffffff };

                for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                        struct buf e = edit(ct, 0, 0, NULL, 0);

                        put_le32(e.p + 36, sizes[i]);
                        expect_reject(ops, a, e.p, e.n, ctx, "stream segment size out of range");
                        free(e.p);
                }
        }
        {
                struct buf e = edit(ct, 0, 0, NULL, 0);

                put_le32(e.p + 36, 2 * SEG);
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                put_le32(e.p + 36, SEG - 16 + 1);
                expect_reject(ops, a, e.p, e.n, ctx, "stream segment size out of range");
                free(e.p);
        }

        free(ct.p);
        free(ct2.p);
        free(ctx_full.p);
        free(pt.p);
        free(ptx.p);
        free(ctx.p);
        free(other_ctx.p);
        ops->aead_free(a);
}

/* The incremental API's rules, and the counter that must not wrap. */
static void test_incremental(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("inc"), pt = pattern(SEG, 5);
        uint8_t hdr[H], hdr_keep[H], c0[FULL], c1[FULL], out[SEG];
        struct stream_enc *e = NULL;
        struct stream_dec *d = NULL;
        struct stream_header h;
        const char *why = NULL;
        size_t n0, n1, n, hl = 0;

        /* Arguments. */
        assert_int_equal(stream_enc_new(ops, a, key, policy, 0, ctx.p, ctx.n, SEG, &e, hdr, &hl), -EINVAL);
        assert_int_equal(stream_enc_new(ops, a, key, policy, GEN, ctx.p, ctx.n, SEG - 1, &e, hdr, &hl),
                         -EINVAL);
        assert_int_equal(stream_enc_new(ops, a, key, policy, GEN, ctx.p, ctx.n, STREAM_SEGMENT_MAX + 1,
                                        &e, hdr, &hl), -EINVAL);
        assert_int_equal(stream_enc_new(ops, a, key, policy, GEN, NULL, 3, SEG, &e, hdr, &hl), -EINVAL);
        assert_int_equal(stream_enc_new(ops, a, key, policy, GEN, ctx.p, ctx.n, SEG, &e, hdr, NULL), -EINVAL);
        assert_null(e);
        assert_int_equal(hl, 0);

        assert_int_equal(stream_enc_new(ops, a, key, policy, GEN, ctx.p, ctx.n, SEG, &e, hdr, &hl), 0);
        assert_int_equal(hl, H);
        memcpy(hdr_keep, hdr, H);
        assert_int_equal(stream_enc_segment(e, pt.p, SEG - 1, false, c0, &n0), -EINVAL);
        assert_int_equal(stream_enc_segment(e, pt.p, SEG + 1, true, c0, &n0), -EINVAL);
        assert_int_equal(stream_enc_segment(e, pt.p, SEG, false, c0, &n0), 0);
        assert_int_equal(n0, FULL);
        /* An empty final segment only for an empty stream. */
        assert_int_equal(stream_enc_segment(e, NULL, 0, true, c1, &n1), -EINVAL);
        assert_int_equal(stream_enc_segment(e, pt.p, 7, true, c1, &n1), 0);
        assert_int_equal(n1, 7 + STREAM_TAG_SIZE);
        assert_int_equal(stream_enc_segment(e, pt.p, 7, true, c1, &n), -EINVAL); /* after final */
        stream_enc_free(e);

        assert_int_equal(stream_parse_header(hdr_keep, H, &h, &why), 0);
        assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), 0);
        assert_int_equal(stream_dec_segment(d, c0, FULL - 1, false, out, &n, &why), -EINVAL);
        assert_int_equal(stream_dec_segment(d, c0, FULL, false, out, &n, &why), 0);
        assert_int_equal(n, SEG);
        assert_memory_equal(out, pt.p, SEG);
        assert_false(stream_dec_done(d));
        assert_int_equal(stream_dec_segment(d, c1, n1, true, out, &n, &why), 0);
        assert_int_equal(n, 7);
        assert_true(stream_dec_done(d));
        assert_int_equal(stream_dec_segment(d, c1, n1, true, out, &n, &why), -EBADMSG);
        assert_string_equal(why, "data after the final segment");
        assert_false(stream_dec_done(d));
        stream_dec_free(d);

        /* A failure is sticky: the next, valid segment is refused too. */
        assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), 0);
        c0[5] ^= 1;
        assert_int_equal(stream_dec_segment(d, c0, FULL, false, out, &n, &why), -EBADMSG);
        c0[5] ^= 1;
        why = NULL;
        assert_int_equal(stream_dec_segment(d, c0, FULL, false, out, &n, &why), -EBADMSG);
        assert_string_equal(why, AUTH);
        stream_dec_free(d);

        /* An empty final segment after data, made by hand, is refused after
         * it authenticates. */
        {
                uint8_t nonce[12], aad[H + 256], tag[STREAM_TAG_SIZE], sk[32];

                assert_true(ctx.n <= 256);
                memcpy(aad, hdr_keep, H);
                memcpy(aad + H, ctx.p, ctx.n);
                memcpy(nonce, h.nonce_prefix, 7);
                memcpy(nonce + 7, "\0\0\0\1\1", 5);
                assert_int_equal(stream_segment_key(&h, key, sk), 0);
                assert_int_equal(ops->seal(a, sk, nonce, aad, H + ctx.n, (const uint8_t *)"", 0, tag), 0);
                assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), 0);
                assert_int_equal(stream_dec_segment(d, c0, FULL, false, out, &n, &why), 0);
                assert_int_equal(stream_dec_segment(d, tag, sizeof(tag), true, out, &n, &why), -EBADMSG);
                assert_string_equal(why, "empty final segment");
                stream_dec_free(d);
        }

        free(pt.p);
        free(ctx.p);
        ops->aead_free(a);
}

static void test_counter_limit(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("limit"), pt = pattern(SEG, 6);
        uint8_t hdr[H], c[FULL], out[SEG];
        struct stream_enc *e = NULL;
        struct stream_dec *d = NULL;
        struct stream_header h;
        const char *why = NULL;
        size_t n, nc, hl;

        assert_int_equal(stream_enc_new(ops, a, key, policy, GEN, ctx.p, ctx.n, SEG, &e, hdr, &hl), 0);
        stream_enc_test_set_counter(e, STREAM_MAX_COUNTER - 1);
        assert_int_equal(stream_enc_segment(e, pt.p, SEG, false, c, &nc), 0);
        /* Segment 2^32 - 1 can only be the final one. */
        assert_int_equal(stream_enc_segment(e, pt.p, SEG, false, c, &nc), -EFBIG);
        assert_int_equal(stream_enc_segment(e, pt.p, 9, true, c, &nc), 0);
        stream_enc_free(e);

        assert_int_equal(stream_parse_header(hdr, H, &h, &why), 0);
        assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), 0);
        stream_dec_test_set_counter(d, STREAM_MAX_COUNTER);
        assert_int_equal(stream_dec_segment(d, c, nc, true, out, &n, &why), 0);
        assert_int_equal(n, 9);
        assert_memory_equal(out, pt.p, 9);
        stream_dec_free(d);

        assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), 0);
        stream_dec_test_set_counter(d, STREAM_MAX_COUNTER);
        memset(c, 0, sizeof(c));
        assert_int_equal(stream_dec_segment(d, c, FULL, false, out, &n, &why), -EBADMSG);
        assert_string_equal(why, "stream too long");
        stream_dec_free(d);

        free(pt.p);
        free(ctx.p);
        ops->aead_free(a);
}

/* Short reads of the header from a pipe. */
static void test_read_header_fd(void **state)
{
        uint8_t b[H];
        struct stream_header h;
        const char *why = NULL;
        int p[2];

        sample_header(b);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], b, 10), 10);
        close(p[1]);
        assert_int_equal(stream_read_header_fd(p[0], &h, &why), -EBADMSG);
        assert_string_equal(why, "truncated stream header");
        close(p[0]);

        /* A salted header cut inside its salt. */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], b, 50), 50);
        close(p[1]);
        assert_int_equal(stream_read_header_fd(p[0], &h, &why), -EBADMSG);
        assert_string_equal(why, "truncated stream header");
        close(p[0]);

        for (int salted = 1; salted >= 0; salted--) {
                size_t len = salted ? H : H0;

                sample_header_of(b, salted);
                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
                assert_int_equal(write(p[1], b, 20), 20);   /* short reads */
                assert_int_equal(write(p[1], b + 20, len - 20), (ssize_t)(len - 20));
                assert_int_equal(write(p[1], "x", 1), 1);
                close(p[1]);
                assert_int_equal(stream_read_header_fd(p[0], &h, &why), 0);
                assert_int_equal(h.segment_size, 65536);
                assert_int_equal(h.flags, salted ? STREAM_FLAG_SALTED : 0);
                assert_int_equal(read(p[0], b, 1), 1);  /* exactly the header was taken */
                assert_int_equal(b[0], 'x');
                close(p[0]);
        }
}

/* --- flat memory -------------------------------------------------------------- */

#define BIG (64u << 20)

static long maxrss_kib(void)
{
        struct rusage ru;

        return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* In a fresh child, so that the peak starts at the current size: encrypt a
 * 64 MiB sparse input and decrypt the result.  Exit status: 0 ok, 1 growth
 * too large, 2 error.  A stream holds about 1.5 MiB; the bound leaves room
 * for AddressSanitizer, which keeps freed buffers in quarantine, and is
 * still far below the 64 MiB a stream that buffers its input would take. */
#define FLAT_GROWTH_KIB (16 * 1024)
static int flat_child(const struct engine_ops *ops, int report)
{
        struct engine_aead *a = NULL;
        const char *why = NULL;
        int in, mid, devnull;
        uint64_t n = 0;
        struct stream_header h;
        long before, after;

        before = maxrss_kib();
        in = memfd_create("sparse", MFD_CLOEXEC);
        mid = memfd_create("mid", MFD_CLOEXEC);
        devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (in < 0 || mid < 0 || devnull < 0 || ftruncate(in, BIG) < 0 || ops->aead_new(&a) < 0)
                return 2;
        if (stream_encrypt_fd(ops, a, key, policy, GEN, NULL, 0, STREAM_SEGMENT_DEFAULT, in, mid,
                              &n, &why) < 0 || n != BIG)
                return 2;
        if (lseek(mid, 0, SEEK_SET) != 0 || stream_read_header_fd(mid, &h, &why) < 0 ||
            stream_decrypt_fd(ops, a, key, &h, NULL, 0, mid, devnull, &n, &why) < 0 || n != BIG)
                return 2;
        ops->aead_free(a);
        after = maxrss_kib();
        if (write(report, (long[2]){ before, after }, 2 * sizeof(long)) < 0)
                return 2;
        return after - before < FLAT_GROWTH_KIB ? 0 : 1;
}

static void test_flat_memory(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        long rss[2] = { -1, -1 };
        int p[2], status;
        pid_t pid;

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                _exit(flat_child(ops, p[1]));
        }
        close(p[1]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        (void)!read(p[0], rss, sizeof(rss));
        close(p[0]);
        assert_true(WIFEXITED(status));
        print_message("%s: peak RSS %ld KiB -> %ld KiB over 64 MiB each way\n", ops->name, rss[0], rss[1]);
        assert_int_not_equal(WEXITSTATUS(status), 2);
        assert_int_equal(WEXITSTATUS(status), 0);
}

/* A stream of the first layout (flags 0, no salt, segments under the
 * generation key), written by that layout's encoder before the salted one
 * existed (data/stream-v2-legacy.h): it still decrypts, whole and segment by
 * segment, and every tampering still fails. */
static void test_legacy_layout(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        struct buf ctx = context("legacy"), other = context("legacy2"), pt = pattern(SEG + 50, 5);
        struct buf ct = { malloc(stream_v2_legacy_len), stream_v2_legacy_len }, back = {};
        struct stream_header h;
        struct stream_dec *d = NULL;
        const char *why = NULL;
        uint8_t out[SEG], junk = 0x5a;
        size_t n;

        assert_non_null(ct.p);
        memcpy(ct.p, stream_v2_legacy, ct.n);
        assert_int_equal(ct.n, H0 + FULL + 50 + STREAM_TAG_SIZE);
        assert_int_equal(stream_parse_header(ct.p, ct.n, &h, &why), 0);
        assert_int_equal(h.flags, 0);
        assert_int_equal(stream_header_size(&h), H0);
        assert_int_equal(h.generation, GEN);
        assert_int_equal(h.segment_size, SEG);
        assert_memory_equal(h.policy_id, policy, 16);
        if (decrypt_buf(ops, a, ct.p, ct.n, ctx, &back, &why) != 0)
                fail_msg("%s: a stream of the first layout no longer decrypts: %s", ops->name, why);
        assert_int_equal(back.n, pt.n);
        assert_memory_equal(back.p, pt.p, pt.n);
        free(back.p);

        assert_int_equal(stream_dec_new(ops, a, key, &h, ctx.p, ctx.n, &d, &why), 0);
        assert_int_equal(stream_dec_segment(d, ct.p + H0, FULL, false, out, &n, &why), 0);
        assert_memory_equal(out, pt.p, SEG);
        assert_int_equal(stream_dec_segment(d, ct.p + H0 + FULL, 50 + STREAM_TAG_SIZE, true, out, &n,
                                            &why), 0);
        assert_int_equal(n, 50);
        assert_memory_equal(out, pt.p + SEG, 50);
        assert_true(stream_dec_done(d));
        stream_dec_free(d);

        for (size_t i = 0; i < H0; i++) {
                struct buf e = edit(ct, 0, 0, NULL, 0), dummy = {};

                e.p[i] ^= 0x01;
                why = NULL;
                assert_true(decrypt_buf(ops, a, e.p, e.n, ctx, &dummy, &why) < 0);
                assert_non_null(why);
                free(e.p);
        }
        for (size_t off = H0; off < ct.n; off += 97) {
                struct buf e = edit(ct, 0, 0, NULL, 0);

                e.p[off] ^= 0x04;
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                free(e.p);
        }
        expect_reject(ops, a, ct.p, H0 + FULL, ctx, "stream truncated");
        expect_reject(ops, a, ct.p, H0, ctx, "stream truncated");
        expect_reject(ops, a, ct.p, ct.n - 1, ctx, AUTH);
        reject_edit(ops, a, ct, ctx, ct.n, 0, &junk, 1, AUTH);
        reject_edit(ops, a, ct, ctx, H0, FULL, NULL, 0, AUTH);       /* first segment dropped */
        expect_reject(ops, a, ct.p, ct.n, other, AUTH);
        /* Claimed to be salted: 32 bytes of the first segment become salt. */
        {
                struct buf e = edit(ct, 0, 0, NULL, 0);

                put_le16(e.p + 6, STREAM_FLAG_SALTED);
                expect_reject(ops, a, e.p, e.n, ctx, AUTH);
                free(e.p);
        }

        free(ct.p);
        free(pt.p);
        free(ctx.p);
        free(other.p);
        ops->aead_free(a);
}

#define STREAM_TESTS(ops, tag)                                                                  \
        { tag ": first layout (legacy)", test_legacy_layout, NULL, NULL, (void *)(uintptr_t)(ops) }, \
        { tag ": known layout", test_known_layout, NULL, NULL, (void *)(uintptr_t)(ops) },      \
        { tag ": round trip sizes", test_roundtrip_sizes, NULL, NULL, (void *)(uintptr_t)(ops) }, \
        { tag ": large segment", test_large_segment, NULL, NULL, (void *)(uintptr_t)(ops) },    \
        { tag ": pipes", test_pipes, NULL, NULL, (void *)(uintptr_t)(ops) },                    \
        { tag ": files", test_files, NULL, NULL, (void *)(uintptr_t)(ops) },                    \
        { tag ": tamper", test_tamper, NULL, NULL, (void *)(uintptr_t)(ops) },                  \
        { tag ": incremental", test_incremental, NULL, NULL, (void *)(uintptr_t)(ops) },        \
        { tag ": counter limit", test_counter_limit, NULL, NULL, (void *)(uintptr_t)(ops) },    \
        { tag ": flat memory", test_flat_memory, NULL, NULL, (void *)(uintptr_t)(ops) }

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_layout),
                cmocka_unit_test(test_header_rejects),
                cmocka_unit_test(test_subkey_vectors),
                cmocka_unit_test(test_v1_dispatch),
                cmocka_unit_test(test_read_header_fd),
                STREAM_TESTS(&engine_openssl_ops, "openssl"),
                STREAM_TESTS(&engine_kernel_ops, "kernel"),
        };

        /* A pipe test that stops early must fail, not die of SIGPIPE. */
        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
