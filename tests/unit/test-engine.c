/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The crypto engines: known answers from the GCM specification (McGrew and
 * Viega, test cases 13-16: AES-256, 96-bit IV), tampering, round trips, and
 * the choice of engine.  Every per-engine test runs against each engine; an
 * engine whose probe fails is reported SKIPPED with the reason, unless
 * DKM_EXPECT_KERNEL_ENGINE=1 demands the kernel engine (the VM test sets it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <linux/if_alg.h>

#include "engine/engine.h"
#include "shared/keyring.h"
#include "shared/util.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif

struct vector {
        const char *name, *key, *iv, *pt, *aad, *ct, *tag;
};

#define K0 "0000000000000000000000000000000000000000000000000000000000000000"
#define K1 "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
#define P15 "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" \
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
#define C15 "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" \
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad"

static const struct vector vectors[] = {
        { "TC13 (empty plaintext, no AAD)", K0, "000000000000000000000000", "", "", "",
          "530f8afbc74536b9a963b4f1c4cb738b" },
        { "TC14 (one block)", K0, "000000000000000000000000",
          "00000000000000000000000000000000", "", "cea7403d4d606b6e074ec5d3baf39d18",
          "d0d1c8a799996bf0265b98b5d48ab919" },
        { "TC15 (four blocks)", K1, "cafebabefacedbaddecaf888", P15, "", C15,
          "b094dac5d93471bdec1a502270e3cc6c" },
        /* 60 bytes of TC15's plaintext, with 20 bytes of AAD. */
        { "TC16 (partial block, AAD)", K1, "cafebabefacedbaddecaf888",
          "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
          "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
          "feedfacedeadbeeffeedfacedeadbeefabaddad2",
          "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
          "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
          "76fc6ece0f4e1768cddf8853bb2d551b" },
};

struct bytes {
        uint8_t b[128];
        size_t n;
};

static struct bytes unhex(const char *s)
{
        struct bytes r = {};

        assert_true(strlen(s) % 2 == 0 && strlen(s) / 2 <= sizeof(r.b));
        for (; s[0] && s[1]; s += 2) {
                unsigned v;

                assert_int_equal(sscanf(s, "%2x", &v), 1);
                r.b[r.n++] = (uint8_t)v;
        }
        return r;
}

static bool expect_kernel(void)
{
        const char *e = getenv("DKM_EXPECT_KERNEL_ENGINE");

        return e && strcmp(e, "1") == 0;
}

/* Skips the calling test when ops is absent, saying why; never passes it. */
static void require_engine(const struct engine_ops *ops)
{
        char reason[256] = "";

        if (ops->probe(reason, sizeof(reason)) >= 0)
                return;
        if (ops == &engine_kernel_ops && expect_kernel())
                fail_msg("DKM_EXPECT_KERNEL_ENGINE=1 but the kernel engine is unavailable: %s", reason);
        print_message("%s engine unavailable: %s\n", ops->name, reason);
        skip();
}

static const struct engine_ops *engine_of(void **state)
{
        const struct engine_ops *ops = *state;

        require_engine(ops);
        return ops;
}

static struct engine_aead *new_aead(const struct engine_ops *ops)
{
        struct engine_aead *a = NULL;

        assert_int_equal(ops->aead_new(&a), 0);
        assert_non_null(a);
        return a;
}

static void test_kat_seal(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);

        for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
                const struct vector *v = &vectors[i];
                struct bytes key = unhex(v->key), iv = unhex(v->iv), pt = unhex(v->pt),
                             aad = unhex(v->aad), ct = unhex(v->ct), tag = unhex(v->tag);
                uint8_t out[sizeof(pt.b) + ENGINE_TAG_SIZE];

                print_message("%s: %s\n", ops->name, v->name);
                memset(out, 0xee, sizeof(out));
                assert_int_equal(ops->seal(a, key.b, iv.b, aad.n ? aad.b : NULL, aad.n,
                                           pt.n ? pt.b : NULL, pt.n, out), 0);
                assert_memory_equal(out, ct.b, ct.n);
                assert_memory_equal(out + pt.n, tag.b, ENGINE_TAG_SIZE);
                /* Nothing written past ciphertext || tag. */
                assert_int_equal(out[pt.n + ENGINE_TAG_SIZE], 0xee);
        }
        ops->aead_free(a);
}

static void test_kat_open(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);

        for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
                const struct vector *v = &vectors[i];
                struct bytes key = unhex(v->key), iv = unhex(v->iv), pt = unhex(v->pt),
                             aad = unhex(v->aad), ct = unhex(v->ct), tag = unhex(v->tag);
                uint8_t in[sizeof(ct.b) + ENGINE_TAG_SIZE], out[sizeof(pt.b) + 1];

                memcpy(in, ct.b, ct.n);
                memcpy(in + ct.n, tag.b, ENGINE_TAG_SIZE);
                memset(out, 0xee, sizeof(out));
                assert_int_equal(ops->open(a, key.b, iv.b, aad.n ? aad.b : NULL, aad.n, in,
                                           ct.n + ENGINE_TAG_SIZE, out), 0);
                assert_memory_equal(out, pt.b, pt.n);
                assert_int_equal(out[pt.n], 0xee);
        }
        ops->aead_free(a);
}

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/* Opens a tampered TC13/TC16 and expects -EBADMSG with out wiped. */
static void expect_badmsg(const struct engine_ops *ops, struct engine_aead *a, const struct vector *v,
                          int what)
{
        struct bytes key = unhex(v->key), iv = unhex(v->iv), aad = unhex(v->aad),
                     ct = unhex(v->ct), tag = unhex(v->tag);
        uint8_t in[sizeof(ct.b) + ENGINE_TAG_SIZE], out[sizeof(ct.b)];

        memcpy(in, ct.b, ct.n);
        memcpy(in + ct.n, tag.b, ENGINE_TAG_SIZE);
        switch (what) {
        case 0: in[ct.n + ENGINE_TAG_SIZE - 1] ^= 0x01; break;  /* tag */
        case 1: if (ct.n) in[0] ^= 0x80; else in[ct.n] ^= 0x80; break;  /* ciphertext */
        case 2:  /* AAD changed, or added where there was none */
                if (aad.n)
                        aad.b[aad.n - 1] ^= 0x01;
                else
                        aad.n = 1;
                break;
        case 3: iv.b[11] ^= 0x01; break;  /* nonce */
        case 4: key.b[0] ^= 0x01; break;  /* key */
        }
        memset(out, 0xaa, sizeof(out));
        assert_int_equal(ops->open(a, key.b, iv.b, aad.n ? aad.b : NULL, aad.n, in,
                                   ct.n + ENGINE_TAG_SIZE, ct.n ? out : NULL), -EBADMSG);
        assert_true(all_zero(out, ct.n));
}

static void test_tamper(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);

        for (int what = 0; what < 5; what++) {
                expect_badmsg(ops, a, &vectors[3], what);
                /* Empty input and no AAD: only the tag is checked. */
                expect_badmsg(ops, a, &vectors[0], what);
        }
        /* The transform still works after failures. */
        test_kat_open(state);
        ops->aead_free(a);
}

static void test_bad_args(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops);
        uint8_t key[ENGINE_KEY_SIZE] = {}, nonce[ENGINE_NONCE_SIZE] = {}, buf[64] = {};

        assert_int_equal(ops->open(a, key, nonce, NULL, 0, buf, ENGINE_TAG_SIZE - 1, buf), -EINVAL);
        assert_int_equal(ops->seal(a, key, nonce, NULL, 5, buf, 8, buf + 16), -EINVAL);
        assert_int_equal(ops->seal(a, key, nonce, NULL, 0, NULL, 8, buf + 16), -EINVAL);
        assert_int_equal(ops->seal(a, key, nonce, NULL, 0, buf, 8, NULL), -EINVAL);
        ops->aead_free(a);
        ops->aead_free(NULL);
}

static void fill_random(void *p, size_t n)
{
        assert_int_equal(engine_random(p, n), 0);
}

static size_t random_below(size_t n)
{
        uint32_t v;

        fill_random(&v, sizeof(v));
        return n ? v % n : 0;
}

/* Round trips of many sizes through one transform with a fresh key each time;
 * for the kernel engine also compared byte for byte with openssl. */
static void test_roundtrip(void **state)
{
        static const size_t sizes[] = { 0, 1, 15, 16, 17, 255, 4095, 4096, 4097, 8193, 65536 };
        const struct engine_ops *ops = engine_of(state);
        struct engine_aead *a = new_aead(ops), *ref = NULL;
        uint8_t *pt = malloc(65536), *ct = malloc(65536 + ENGINE_TAG_SIZE), *back = malloc(65536);
        uint8_t *ref_ct = malloc(65536 + ENGINE_TAG_SIZE);
        char reason[256];

        assert_non_null(pt);
        assert_non_null(ct);
        assert_non_null(back);
        assert_non_null(ref_ct);
        if (ops != &engine_openssl_ops && engine_openssl_ops.probe(reason, sizeof(reason)) == 0)
                assert_int_equal(engine_openssl_ops.aead_new(&ref), 0);

        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                for (int seal_twice = 0; seal_twice < 2; seal_twice++) {
                        uint8_t key[ENGINE_KEY_SIZE], nonce[ENGINE_NONCE_SIZE], aad[256];
                        size_t n = sizes[i], aad_len = random_below(sizeof(aad) + 1);

                        fill_random(key, sizeof(key));
                        fill_random(nonce, sizeof(nonce));
                        fill_random(aad, sizeof(aad));
                        fill_random(pt, n);
                        assert_int_equal(ops->seal(a, key, nonce, aad, aad_len, pt, n, ct), 0);
                        if (ref) {
                                assert_int_equal(engine_openssl_ops.seal(ref, key, nonce, aad, aad_len,
                                                                         pt, n, ref_ct), 0);
                                assert_memory_equal(ct, ref_ct, n + ENGINE_TAG_SIZE);
                        }
                        memset(back, 0, n);
                        assert_int_equal(ops->open(a, key, nonce, aad, aad_len, ct,
                                                   n + ENGINE_TAG_SIZE, back), 0);
                        assert_memory_equal(back, pt, n);
                }
        }
        /* In place: out == in. */
        {
                uint8_t key[ENGINE_KEY_SIZE] = { 1 }, nonce[ENGINE_NONCE_SIZE] = { 2 };

                fill_random(pt, 1000);
                memcpy(ct, pt, 1000);
                assert_int_equal(ops->seal(a, key, nonce, NULL, 0, ct, 1000, ct), 0);
                assert_int_equal(ops->open(a, key, nonce, NULL, 0, ct, 1000 + ENGINE_TAG_SIZE, ct), 0);
                assert_memory_equal(ct, pt, 1000);
        }
        if (ref)
                engine_openssl_ops.aead_free(ref);
        ops->aead_free(a);
        free(pt);
        free(ct);
        free(back);
        free(ref_ct);
}

static void test_driver(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        char driver[128] = "", tiny[4];

        assert_int_equal(ops->driver(driver, sizeof(driver)), 0);
        print_message("%s driver: %s\n", ops->name, driver);
        assert_true(driver[0] != 0);
        if (ops == &engine_openssl_ops)
                assert_true(strncmp(driver, "OpenSSL ", 8) == 0);
        memset(tiny, 'x', sizeof(tiny));
        assert_int_equal(ops->driver(tiny, sizeof(tiny)), -ENOBUFS);
        assert_memory_equal(tiny, "xxxx", sizeof(tiny));  /* untouched on failure */
}

/* --- kernel engine only ----------------------------------------------------- */

static bool alg_socket_absent(void)
{
        int fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd >= 0) {
                close(fd);
                return false;
        }
        return errno == EAFNOSUPPORT;
}

/* Where the kernel has no AF_ALG (as on a kernel built without it), the
 * kernel engine must say exactly that and refuse everything. */
static void test_kernel_absent_reason(void **state)
{
        char reason[256] = "", driver[128];
        struct engine_aead *a = NULL;
        int r;

        if (!alg_socket_absent()) {
                print_message("AF_ALG exists here; the absent path cannot be exercised\n");
                skip();
        }
        r = engine_kernel_ops.probe(reason, sizeof(reason));
        print_message("kernel probe: %d (%s)\n", r, reason);
        assert_int_equal(r, -ENOTSUP);
        assert_string_equal(reason,
                            "CONFIG_CRYPTO_USER_API_AEAD (af_alg, algif_aead) not available in this kernel");
        assert_int_equal(engine_kernel_ops.aead_new(&a), -ENOTSUP);
        assert_null(a);
        assert_true(engine_kernel_ops.driver(driver, sizeof(driver)) < 0);
}

static void count_alg_fds(int *ret_alg, int *ret_alg_cloexec, int *ret_inheritable)
{
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;

        assert_non_null(d);
        *ret_alg = *ret_alg_cloexec = *ret_inheritable = 0;
        while ((de = readdir(d))) {
                int fd = atoi(de->d_name), domain, flags;
                socklen_t len = sizeof(domain);

                if (de->d_name[0] == '.' || fd == dirfd(d))
                        continue;
                flags = fcntl(fd, F_GETFD);
                if (flags < 0)
                        continue;
                if (!(flags & FD_CLOEXEC))
                        (*ret_inheritable)++;
                if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_ALG) {
                        (*ret_alg)++;
                        if (flags & FD_CLOEXEC)
                                (*ret_alg_cloexec)++;
                }
        }
        closedir(d);
}

/* libkcapi opens its sockets and pipes without CLOEXEC; the engine fixes
 * that, so nothing it holds may leak into an exec'd child. */
static void test_kernel_cloexec(void **state)
{
        struct engine_aead *a;
        int alg0, alg_ce0, inh0, alg, alg_ce, inh;
        uint8_t key[ENGINE_KEY_SIZE] = {}, nonce[ENGINE_NONCE_SIZE] = {}, out[32];

        require_engine(&engine_kernel_ops);
        count_alg_fds(&alg0, &alg_ce0, &inh0);
        a = new_aead(&engine_kernel_ops);
        assert_int_equal(engine_kernel_ops.seal(a, key, nonce, NULL, 0, key, 16, out), 0);
        count_alg_fds(&alg, &alg_ce, &inh);
        print_message("AF_ALG sockets: %d (%d close-on-exec); inheritable fds: %d -> %d\n",
                      alg, alg_ce, inh0, inh);
        assert_true(alg >= alg0 + 2);  /* the transform and the operation socket */
        assert_int_equal(alg, alg_ce);
        assert_int_equal(inh, inh0);
        engine_kernel_ops.aead_free(a);
}

/* A message larger than the socket buffers must fail, not hang. */
static void test_kernel_emsgsize(void **state)
{
        const size_t n = 4u << 20;
        uint8_t key[ENGINE_KEY_SIZE] = {}, nonce[ENGINE_NONCE_SIZE] = {}, small[64];
        uint8_t *pt, *ct;
        struct engine_aead *a;

        require_engine(&engine_kernel_ops);
        pt = calloc(1, n);
        ct = malloc(n + ENGINE_TAG_SIZE);
        assert_non_null(pt);
        assert_non_null(ct);
        a = new_aead(&engine_kernel_ops);
        assert_int_equal(engine_kernel_ops.seal(a, key, nonce, NULL, 0, pt, n, ct), -EMSGSIZE);
        assert_int_equal(engine_kernel_ops.open(a, key, nonce, NULL, 0, ct, n + ENGINE_TAG_SIZE, pt),
                         -EMSGSIZE);
        assert_int_equal(engine_kernel_ops.seal(a, key, nonce, NULL, 0, pt, 32, small), 0);
        engine_kernel_ops.aead_free(a);
        free(pt);
        free(ct);
}

/* --- zero copy through vmsplice (kernel engine) ---------------------------- */

/* libkcapi calls vmsplice() through the dynamic linker, so this definition
 * (visible: the build hides symbols by default) takes its calls: it counts
 * what went to the kernel without a copy and can play a kernel that
 * refuses. */
static size_t vmsplice_calls, vmsplice_bytes;
static bool vmsplice_refuse;

__attribute__((visibility("default")))
ssize_t vmsplice(int fd, const struct iovec *iov, size_t n, unsigned int flags)
{
        long r;

        vmsplice_calls++;
        if (vmsplice_refuse) {
                errno = EINVAL;
                return -1;
        }
        r = syscall(SYS_vmsplice, fd, iov, n, flags);
        if (r > 0)
                vmsplice_bytes += (size_t)r;
        return r;
}

static size_t round_up(size_t n, size_t to)
{
        return (n + to - 1) / to * to;
}

/* Seals and opens n bytes at offset off of a page-aligned buffer with aad_len
 * bytes of AAD (likewise placed), checks the ciphertext against openssl,
 * then that a flipped bit anywhere is refused with the output wiped.
 * Returns the bytes vmspliced by the seal and by the good open. */
static void zc_case(struct engine_aead *a, struct engine_aead *ref, size_t n, size_t off,
                    size_t aad_len, size_t *ret_seal_zc, size_t *ret_open_zc)
{
        size_t page = (size_t)sysconf(_SC_PAGESIZE), cap = off + n + ENGINE_TAG_SIZE;
        uint8_t key[ENGINE_KEY_SIZE], nonce[ENGINE_NONCE_SIZE];
        uint8_t *pt = aligned_alloc(page, round_up(cap, page));
        uint8_t *ct = aligned_alloc(page, round_up(cap, page));
        uint8_t *back = aligned_alloc(page, round_up(cap, page));
        uint8_t *aadb = aligned_alloc(page, round_up(off + aad_len + 1, page));
        uint8_t *ref_ct = malloc(n + ENGINE_TAG_SIZE);
        size_t before;

        if (!pt || !ct || !back || !aadb || !ref_ct)
                fail_msg("out of memory");
        fill_random(key, sizeof(key));
        fill_random(nonce, sizeof(nonce));
        fill_random(pt + off, n);
        fill_random(aadb + off, aad_len);

        before = vmsplice_bytes;
        assert_int_equal(engine_kernel_ops.seal(a, key, nonce, aadb + off, aad_len, pt + off, n,
                                                ct + off), 0);
        *ret_seal_zc = vmsplice_bytes - before;
        assert_int_equal(engine_openssl_ops.seal(ref, key, nonce, aadb + off, aad_len, pt + off, n,
                                                 ref_ct), 0);
        assert_memory_equal(ct + off, ref_ct, n + ENGINE_TAG_SIZE);

        before = vmsplice_bytes;
        memset(back, 0x55, cap);
        assert_int_equal(engine_kernel_ops.open(a, key, nonce, aadb + off, aad_len, ct + off,
                                                n + ENGINE_TAG_SIZE, back + off), 0);
        *ret_open_zc = vmsplice_bytes - before;
        assert_memory_equal(back + off, pt + off, n);
        assert_int_equal(back[off + n], 0x55);  /* nothing past the plaintext */

        /* Tampering: first and last ciphertext byte, the tag, the AAD. */
        for (int what = 0; what < 4; what++) {
                uint8_t *p = what == 0 ? ct + off : what == 1 ? ct + off + (n ? n - 1 : 0) :
                             what == 2 ? ct + off + n + ENGINE_TAG_SIZE - 1 : aadb + off;

                if ((what < 2 && n == 0) || (what == 3 && aad_len == 0))
                        continue;
                *p ^= 0x04;
                memset(back, 0x55, cap);
                assert_int_equal(engine_kernel_ops.open(a, key, nonce, aadb + off, aad_len, ct + off,
                                                        n + ENGINE_TAG_SIZE, back + off), -EBADMSG);
                assert_true(all_zero(back + off, n));
                *p ^= 0x04;
        }

        /* In place (out == in), as a caller that reuses one buffer does. */
        memcpy(back + off, pt + off, n);
        assert_int_equal(engine_kernel_ops.seal(a, key, nonce, aadb + off, aad_len, back + off, n,
                                                back + off), 0);
        assert_memory_equal(back + off, ref_ct, n + ENGINE_TAG_SIZE);
        assert_int_equal(engine_kernel_ops.open(a, key, nonce, aadb + off, aad_len, back + off,
                                                n + ENGINE_TAG_SIZE, back + off), 0);
        assert_memory_equal(back + off, pt + off, n);
        free(pt);
        free(ct);
        free(ref_ct);
        free(back);
        free(aadb);
}

/*
 * Sizes on both sides of page, 16-page and pipe boundaries, at aligned and
 * unaligned addresses, up to the largest message the engine takes.  Mid
 * sizes must reach the kernel through vmsplice (every byte of AAD and input
 * exactly once); small ones are copied, as are those beyond the pipe.
 */
static void test_kernel_zerocopy(void **state)
{
        const size_t P = (size_t)sysconf(_SC_PAGESIZE);
        const size_t max = engine_kernel_ops.max_message();
        const size_t sizes[] = { 0, 1, P - 1, P, P + 1, 2 * P - 16, 2 * P + 1, 4 * P,
                                 16 * P - 40, 16 * P - 1, 16 * P, 16 * P + 1, 17 * P, 17 * P + 1,
                                 30 * P, 31 * P - 340, 31 * P - 300, 31 * P - 40, 31 * P - 1,
                                 31 * P, 32 * P - 1, 32 * P, 32 * P + 1, 48 * P, 100000 };
        const size_t offs[] = { 0, 4093 % P };
        const size_t aads[] = { 0, 40, 300 };
        struct engine_aead *a, *ref;
        size_t zc_cases = 0, copied_cases = 0;

        (void)state;
        require_engine(&engine_kernel_ops);
        require_engine(&engine_openssl_ops);
        a = new_aead(&engine_kernel_ops);
        ref = new_aead(&engine_openssl_ops);
        print_message("max message %zu bytes, page %zu\n", max, P);
        for (size_t i = 0; i < ARRAY_SIZE(sizes) + 1; i++) {
                for (size_t j = 0; j < ARRAY_SIZE(offs); j++) {
                        for (size_t k = 0; k < ARRAY_SIZE(aads); k++) {
                                size_t aad_len = aads[k], in, seal_zc, open_zc, n;

                                /* The last round: the largest message allowed. */
                                n = i < ARRAY_SIZE(sizes) ? sizes[i] :
                                    max - aad_len - ENGINE_TAG_SIZE;
                                if (aad_len + n + ENGINE_TAG_SIZE > max)
                                        continue;
                                in = aad_len + n;
                                zc_case(a, ref, n, offs[j], aad_len, &seal_zc, &open_zc);
                                /* All or nothing: never a message split between
                                 * a splice and a copy. */
                                assert_true(seal_zc == 0 || seal_zc == in);
                                assert_true(open_zc == 0 || open_zc == in + ENGINE_TAG_SIZE);
                                if (in >= 4 * P && in + ENGINE_TAG_SIZE <= 14 * P) {
                                        if (seal_zc != in || open_zc != in + ENGINE_TAG_SIZE)
                                                fail_msg("%zu bytes + %zu AAD at offset %zu: "
                                                         "spliced %zu/%zu, expected all",
                                                         n, aad_len, offs[j], seal_zc, open_zc);
                                }
                                if (in < P)
                                        assert_int_equal(seal_zc + open_zc, 0);
                                if (seal_zc)
                                        zc_cases++;
                                else
                                        copied_cases++;
                        }
                }
        }
        print_message("%zu cases spliced, %zu copied; vmsplice called %zu times\n", zc_cases,
                      copied_cases, vmsplice_calls);
        assert_true(zc_cases > 0 && copied_cases > 0);
        /* Nothing above made the engine give up splicing (it would after a
         * refused or half-taken vmsplice). */
        {
                size_t seal_zc, open_zc;

                zc_case(a, ref, 8 * P, 0, 40, &seal_zc, &open_zc);
                assert_int_equal(seal_zc, 8 * P + 40);
                assert_int_equal(open_zc, 8 * P + 40 + ENGINE_TAG_SIZE);
        }
        engine_kernel_ops.aead_free(a);
        engine_openssl_ops.aead_free(ref);
}

/* A kernel that refuses splicing: the operation still succeeds (with
 * copies, on a fresh transform), and that engine_aead stops trying. */
static void test_kernel_zerocopy_refused(void **state)
{
        const size_t n = 20000;
        uint8_t key[ENGINE_KEY_SIZE] = { 7 }, nonce[ENGINE_NONCE_SIZE] = { 9 }, aad[40] = { 3 };
        uint8_t *pt, *ct, *ref_ct, *back;
        struct engine_aead *a, *ref;
        size_t calls;

        (void)state;
        /* Before any allocation: a skip leaves the function at once. */
        require_engine(&engine_kernel_ops);
        require_engine(&engine_openssl_ops);
        pt = malloc(n);
        ct = malloc(n + ENGINE_TAG_SIZE);
        ref_ct = malloc(n + ENGINE_TAG_SIZE);
        back = malloc(n);
        assert_non_null(pt);
        assert_non_null(ct);
        assert_non_null(ref_ct);
        assert_non_null(back);
        fill_random(pt, n);
        a = new_aead(&engine_kernel_ops);
        ref = new_aead(&engine_openssl_ops);
        assert_int_equal(engine_openssl_ops.seal(ref, key, nonce, aad, sizeof(aad), pt, n, ref_ct), 0);

        vmsplice_refuse = true;
        calls = vmsplice_calls;
        assert_int_equal(engine_kernel_ops.seal(a, key, nonce, aad, sizeof(aad), pt, n, ct), 0);
        assert_int_equal(vmsplice_calls, calls + 1);  /* tried once, then copied */
        assert_memory_equal(ct, ref_ct, n + ENGINE_TAG_SIZE);
        assert_int_equal(engine_kernel_ops.open(a, key, nonce, aad, sizeof(aad), ct,
                                                n + ENGINE_TAG_SIZE, back), 0);
        assert_memory_equal(back, pt, n);
        ct[5] ^= 1;
        assert_int_equal(engine_kernel_ops.open(a, key, nonce, aad, sizeof(aad), ct,
                                                n + ENGINE_TAG_SIZE, back), -EBADMSG);
        assert_int_equal(vmsplice_calls, calls + 1);  /* not tried again */
        vmsplice_refuse = false;
        engine_kernel_ops.aead_free(a);
        engine_openssl_ops.aead_free(ref);
        free(pt);
        free(ct);
        free(ref_ct);
        free(back);
}

/* --- message size from the socket buffers ----------------------------------- */

/* What an operation socket of gcm(aes) reports: the sizes the engine must
 * live within.  0 when it cannot be told. */
static size_t op_socket_budget(void)
{
        struct sockaddr_alg sa = { .salg_family = AF_ALG, .salg_type = "aead", .salg_name = "gcm(aes)" };
        uint8_t key[ENGINE_KEY_SIZE] = {};
        size_t page = (size_t)sysconf(_SC_PAGESIZE), m = 0;
        int tfm, op = -1, w = 0, r = 0;
        socklen_t wl = sizeof(w), rl = sizeof(r);

        tfm = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (tfm < 0)
                return 0;
        if (bind(tfm, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            setsockopt(tfm, SOL_ALG, ALG_SET_KEY, key, sizeof(key)) == 0)
                op = accept4(tfm, NULL, NULL, SOCK_CLOEXEC);
        if (op >= 0 && getsockopt(op, SOL_SOCKET, SO_SNDBUF, &w, &wl) == 0 &&
            getsockopt(op, SOL_SOCKET, SO_RCVBUF, &r, &rl) == 0 && w > 0 && r > 0)
                m = ((size_t)(w < r ? w : r) & ~(page - 1)) - page;
        if (op >= 0)
                close(op);
        close(tfm);
        return m;
}

/* In the child: 0 when the engine sizes messages by the operation socket
 * and works; 77 when no network namespace can be made; else a failure. */
static int netns_child(size_t parent_max)
{
        uint8_t key[ENGINE_KEY_SIZE] = { 1 }, nonce[ENGINE_NONCE_SIZE] = { 2 }, buf[64] = { 3 };
        uint8_t ct[64 + ENGINE_TAG_SIZE], back[64];
        struct engine_aead *a = NULL;
        size_t max;
        bool hidden;

        if (unshare(CLONE_NEWNET) < 0)
                return 77;
        hidden = access("/proc/sys/net/core/wmem_default", F_OK) < 0;
        max = engine_kernel_ops.max_message();
        printf("private network namespace: net.core.wmem_default %s; max message %zu (outside %zu,"
               " op socket %zu)\n", hidden ? "hidden" : "visible", max, parent_max, op_socket_budget());
        fflush(stdout);
        if (max != parent_max || max != op_socket_budget())
                return 1;
        if (engine_kernel_ops.aead_new(&a) < 0 ||
            engine_kernel_ops.seal(a, key, nonce, NULL, 0, buf, sizeof(buf), ct) < 0 ||
            engine_kernel_ops.open(a, key, nonce, NULL, 0, ct, sizeof(ct), back) < 0 ||
            memcmp(back, buf, sizeof(buf)) != 0)
                return 2;
        engine_kernel_ops.aead_free(a);
        return 0;
}

/* The engine reads its message limit from the AF_ALG socket, not from
 * /proc/sys/net/core, which a private network namespace (systemd's
 * PrivateNetwork=) hides on 6.1: the limit must be the same inside one. */
static void test_kernel_max_message(void **state)
{
        size_t max, budget;
        pid_t pid;
        int st;

        (void)state;
        require_engine(&engine_kernel_ops);
        max = engine_kernel_ops.max_message();
        budget = op_socket_budget();
        print_message("max message %zu, operation socket allows %zu\n", max, budget);
        assert_true(budget > 0);
        assert_int_equal(max, budget);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(netns_child(max));
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        if (WEXITSTATUS(st) == 77) {
                print_message("cannot unshare the network namespace here\n");
                if (expect_kernel() && geteuid() == 0)
                        fail_msg("root in the VM must be able to unshare the network namespace");
                skip();
        }
        assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_expect_kernel(void **state)
{
        char reason[256] = "";
        int r;

        if (!expect_kernel()) {
                print_message("DKM_EXPECT_KERNEL_ENGINE is not 1: the kernel engine is optional here\n");
                skip();
        }
        r = engine_kernel_ops.probe(reason, sizeof(reason));
        if (r < 0)
                fail_msg("DKM_EXPECT_KERNEL_ENGINE=1 but the kernel engine is unavailable: %s", reason);
}

/* --- /proc/crypto parsing --------------------------------------------------- */

static const char proc_crypto[] =
        "name         : gcm(aes)\n"
        "driver       : gcm_base(ctr(aes-generic),ghash-generic)\n"
        "module       : gcm\n"
        "priority     : 100\n"
        "internal     : no\n"
        "type         : aead\n"
        "\n"
        "name         : __gcm(aes)\n"
        "driver       : __generic-gcm-aesni\n"
        "priority     : 401\n"
        "internal     : yes\n"
        "\n"
        "name         : gcm(aes)\n"
        "driver       : hidden-internal\n"
        "priority     : 900\n"
        "internal     : yes\n"
        "\n"
        "name         : gcm(aes)\n"
        "driver       : no-priority\n"
        "\n"
        "garbage line without a colon\n"
        "name         : gcm(aes)\n"
        "driver       : bad-priority\n"
        "priority     : 12x\n"
        "\n\n"
        "name\t: gcm(aes)\r\n"
        "driver\t: generic-gcm-aesni\r\n"
        "priority\t: 400\r\n"
        "name         : gcm(aes)\n"                  /* no blank line before it */
        "driver       : gcm-lower\n"
        "priority     : 300";                        /* nor a newline at the end */

static int parse(const char *text, char *ret, size_t size)
{
        FILE *f = fmemopen((void *)(uintptr_t)text, strlen(text), "r");
        int r;

        assert_non_null(f);
        r = engine_kernel_parse_crypto(f, "gcm(aes)", ret, size);
        fclose(f);
        return r;
}

static void test_parse_crypto(void **state)
{
        char driver[128], tiny[8];

        assert_int_equal(parse(proc_crypto, driver, sizeof(driver)), 0);
        assert_string_equal(driver, "generic-gcm-aesni");
        memset(tiny, 'x', sizeof(tiny));
        assert_int_equal(parse(proc_crypto, tiny, sizeof(tiny)), -ENOBUFS);
        assert_memory_equal(tiny, "xxxxxxxx", sizeof(tiny));
        assert_int_equal(parse("name : cbc(aes)\ndriver : x\npriority : 1\n", driver, sizeof(driver)),
                         -ENOENT);
        assert_int_equal(parse("", driver, sizeof(driver)), -ENOENT);
        assert_int_equal(engine_kernel_parse_crypto(NULL, "gcm(aes)", driver, sizeof(driver)), -EINVAL);
}

/* --- choosing ---------------------------------------------------------------- */

static void test_kind_from_string(void **state)
{
        enum engine_kind k = (enum engine_kind)99;

        assert_int_equal(engine_kind_from_string("auto", &k), 0);
        assert_int_equal(k, ENGINE_AUTO);
        assert_int_equal(engine_kind_from_string("kernel", &k), 0);
        assert_int_equal(k, ENGINE_KERNEL);
        assert_int_equal(engine_kind_from_string("openssl", &k), 0);
        assert_int_equal(k, ENGINE_OPENSSL);
        k = (enum engine_kind)99;
        assert_int_equal(engine_kind_from_string("Kernel", &k), -EINVAL);
        assert_int_equal(engine_kind_from_string("", &k), -EINVAL);
        assert_int_equal(engine_kind_from_string("openssl ", &k), -EINVAL);
        assert_int_equal(engine_kind_from_string(NULL, &k), -EINVAL);
        assert_int_equal(k, 99);  /* untouched on failure */
}

static void test_select_auto(void **state)
{
        const struct engine_ops *ops = NULL;
        struct engine_info info = {};
        char kreason[256] = "";
        bool kernel = engine_kernel_ops.probe(kreason, sizeof(kreason)) == 0;

        assert_int_equal(engine_select(ENGINE_AUTO, &ops, &info), 0);
        print_message("auto: %s, driver %s, because %s\n", info.name, info.driver, info.reason);
        assert_true(info.driver[0] != 0);
        assert_true(info.reason[0] != 0);
        if (kernel) {
                assert_ptr_equal(ops, &engine_kernel_ops);
                assert_string_equal(info.name, "kernel");
        } else {
                if (expect_kernel())
                        fail_msg("DKM_EXPECT_KERNEL_ENGINE=1 but auto fell back: %s", info.reason);
                assert_ptr_equal(ops, &engine_openssl_ops);
                assert_string_equal(info.name, "openssl");
                /* The reason names what the kernel lacks. */
                assert_non_null(strstr(info.reason, kreason));
                assert_non_null(strstr(info.reason, "openssl"));
                assert_true(strncmp(info.driver, "OpenSSL ", 8) == 0);
        }
}

static void test_select_kernel(void **state)
{
        const struct engine_ops *ops = NULL;
        struct engine_info info = {};
        int r;

        r = engine_select(ENGINE_KERNEL, &ops, &info);
        print_message("kernel: %d, %s / %s\n", r, info.driver, info.reason);
        if (r == 0) {
                /* The same binary runs in the VM, where AF_ALG exists. */
                assert_ptr_equal(ops, &engine_kernel_ops);
                assert_string_equal(info.name, "kernel");
                assert_true(info.driver[0] != 0);
                assert_null(strstr(info.driver, "unknown"));
        } else {
                if (expect_kernel())
                        fail_msg("DKM_EXPECT_KERNEL_ENGINE=1 but engine=kernel failed: %s", info.reason);
                assert_int_equal(r, -ENOTSUP);
                assert_null(ops);  /* not written on failure */
                assert_true(strlen(info.reason) > strlen("kernel engine requested but unavailable: "));
                if (alg_socket_absent())
                        assert_non_null(strstr(info.reason, "CONFIG_CRYPTO_USER_API_AEAD"));
        }
}

static void test_select_openssl(void **state)
{
        const struct engine_ops *ops = NULL;
        struct engine_info info = {};

        assert_int_equal(engine_select(ENGINE_OPENSSL, &ops, &info), 0);
        assert_ptr_equal(ops, &engine_openssl_ops);
        assert_string_equal(info.name, "openssl");
        assert_true(strncmp(info.driver, "OpenSSL ", 8) == 0);
        assert_int_equal(engine_select((enum engine_kind)42, &ops, &info), -EINVAL);
        assert_int_equal(engine_select(ENGINE_AUTO, NULL, &info), -EINVAL);
}

static void test_random(void **state)
{
        const size_t big = (32u << 20) + 4097;  /* more than one getrandom() call returns */
        uint8_t a[64] = {}, b[64] = {};
        uint8_t *p = malloc(big);
        size_t zeros = 0;

        assert_int_equal(engine_random(a, sizeof(a)), 0);
        assert_int_equal(engine_random(b, sizeof(b)), 0);
        assert_memory_not_equal(a, b, sizeof(a));
        assert_false(all_zero(a, sizeof(a)));
        assert_int_equal(engine_random(NULL, 0), 0);
        assert_int_equal(engine_random(NULL, 1), -EINVAL);
        assert_non_null(p);
        memset(p, 0, big);
        assert_int_equal(engine_random(p, big), 0);
        /* The tail was filled too: a run of 4096 zero bytes is not random. */
        for (size_t i = big - 4096; i < big; i++)
                zeros += p[i] == 0;
        assert_true(zeros < 4096 / 8);
        free(p);
}

/* --- kernel custody: transforms keyed by keyring serial ------------------ */

/* Whether this kernel must key by serial (6.2 and later): the VM test sets
 * DKM_EXPECT_SERIAL_KEYS=1 on 6.12, 0 on 6.1, where the fallback must show. */
static int expect_serial(void)
{
        const char *e = getenv("DKM_EXPECT_SERIAL_KEYS");

        return e ? strcmp(e, "1") == 0 : -1;
}

static keyring_serial_t logon_key(const uint8_t *bytes)
{
        keyring_serial_t ring, key;

        assert_int_equal(keyring_open("dkm-test-engine", 1, &ring), 0);
        assert_int_equal(keyring_add_logon(ring, "dkm:test-engine", bytes, ENGINE_KEY_SIZE, 600, &key), 0);
        return key;
}

/* Skips unless keying by serial works, saying why; fails when the VM says
 * this kernel must (or must not) have it. */
static void require_serial(void)
{
        static const uint8_t zero[ENGINE_KEY_SIZE];
        char reason[256] = "";
        keyring_serial_t key;
        int r;

        require_engine(&engine_kernel_ops);
        key = logon_key(zero);
        r = engine_serial_probe(key, reason, sizeof(reason));
        keyring_invalidate(key);
        print_message("keying by serial: %s\n", r == 0 ? "works" : reason);
        if (expect_serial() == 0) {
                assert_int_equal(r, -ENOTSUP);
                assert_non_null(strstr(reason, "ALG_SET_KEY_BY_KEY_SERIAL needs Linux 6.2"));
                skip();
        }
        if (r < 0 && expect_serial() == 1)
                fail_msg("DKM_EXPECT_SERIAL_KEYS=1 but: %s", reason);
        if (r < 0)
                skip();
}

/* Where there is no AF_ALG the probe names that, not the kernel version. */
static void test_serial_absent(void **state)
{
        static const uint8_t zero[ENGINE_KEY_SIZE];
        struct engine_serial *t = NULL;
        char reason[256] = "";
        keyring_serial_t key;

        (void)state;
        if (!alg_socket_absent()) {
                print_message("AF_ALG exists here; the absent path cannot be exercised\n");
                skip();
        }
        key = logon_key(zero);
        assert_int_equal(engine_serial_probe(key, reason, sizeof(reason)), -ENOTSUP);
        assert_string_equal(reason, "no AF_ALG socket");
        assert_int_equal(engine_serial_new(key, &t), -ENOTSUP);
        assert_null(t);
        assert_int_equal(engine_serial_new(0, &t), -EINVAL);
        keyring_invalidate(key);
}

static void serial_seal(struct engine_serial *t, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t n, uint8_t *out)
{
        struct engine_serial_op op;

        assert_int_equal(engine_serial_accept(t, &op), 0);
        assert_int_equal(engine_serial_seal(&op, nonce, aad, aad_len, in, n, out), 0);
        engine_serial_op_close(&op);
        assert_int_equal(op.fd, -1);
}

static int serial_open(struct engine_serial *t, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t n, uint8_t *out)
{
        struct engine_serial_op op;
        int r;

        assert_int_equal(engine_serial_accept(t, &op), 0);
        r = engine_serial_open(&op, nonce, aad, aad_len, in, n, out);
        engine_serial_op_close(&op);
        return r;
}

/* The GCM spec's vectors through a transform keyed from a logon key, which
 * this process cannot read back; then random messages, byte for byte equal
 * to openssl's; tampering, a dead key, and close-on-exec. */
static void test_serial(void **state)
{
        static const size_t sizes[] = { 0, 1, 16, 17, 1024, 4097, 65536 };
        uint8_t *pt, *ct, *ref, *back, buf[64];
        struct engine_aead *o;
        struct engine_serial *t;
        keyring_serial_t key;
        size_t len;
        int alg, alg_ce, inh, alg0, alg_ce0, inh0;

        (void)state;
        /* Allocated after the skip: a skipped test must not leak. */
        require_serial();
        pt = malloc(65536);
        ct = malloc(65536 + ENGINE_TAG_SIZE);
        ref = malloc(65536 + ENGINE_TAG_SIZE);
        back = malloc(65536);
        assert_non_null(pt);
        assert_non_null(ct);
        assert_non_null(ref);
        assert_non_null(back);
        for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
                const struct vector *v = &vectors[i];
                struct bytes k = unhex(v->key), iv = unhex(v->iv), p = unhex(v->pt), a = unhex(v->aad);
                struct bytes c = unhex(v->ct), tag = unhex(v->tag);

                key = logon_key(k.b);
                assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), -EOPNOTSUPP);
                assert_int_equal(engine_serial_new(key, &t), 0);
                serial_seal(t, iv.b, a.b, a.n, p.b, p.n, ct);
                assert_memory_equal(ct, c.b, c.n);
                assert_memory_equal(ct + c.n, tag.b, ENGINE_TAG_SIZE);
                assert_int_equal(serial_open(t, iv.b, a.b, a.n, ct, c.n + ENGINE_TAG_SIZE, back), 0);
                assert_memory_equal(back, p.b, p.n);
                ct[0] ^= 1;
                assert_int_equal(serial_open(t, iv.b, a.b, a.n, ct, c.n + ENGINE_TAG_SIZE, back), -EBADMSG);
                engine_serial_free(t);
                keyring_invalidate(key);
        }

        assert_int_equal(engine_openssl_ops.aead_new(&o), 0);
        count_alg_fds(&alg0, &alg_ce0, &inh0);
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                uint8_t k[ENGINE_KEY_SIZE], nonce[ENGINE_NONCE_SIZE], aad[100];
                size_t n = sizes[i], aad_len = random_below(sizeof(aad) + 1);

                fill_random(k, sizeof(k));
                fill_random(nonce, sizeof(nonce));
                fill_random(aad, sizeof(aad));
                fill_random(pt, n);
                key = logon_key(k);
                assert_int_equal(engine_serial_new(key, &t), 0);
                serial_seal(t, nonce, aad, aad_len, pt, n, ct);
                assert_int_equal(engine_openssl_ops.seal(o, k, nonce, aad, aad_len, pt, n, ref), 0);
                assert_memory_equal(ct, ref, n + ENGINE_TAG_SIZE);
                /* One transform, many operations: the key stays set. */
                serial_seal(t, nonce, aad, aad_len, pt, n, ct);
                assert_memory_equal(ct, ref, n + ENGINE_TAG_SIZE);
                assert_int_equal(serial_open(t, nonce, aad, aad_len, ct, n + ENGINE_TAG_SIZE, back), 0);
                assert_memory_equal(back, pt, n);
                if (i == ARRAY_SIZE(sizes) - 1) {
                        struct engine_serial_op op;

                        assert_int_equal(engine_serial_accept(t, &op), 0);
                        count_alg_fds(&alg, &alg_ce, &inh);
                        print_message("AF_ALG sockets: %d (%d close-on-exec)\n", alg, alg_ce);
                        assert_int_equal(alg, alg0 + 2);
                        assert_int_equal(alg, alg_ce);
                        assert_int_equal(inh, inh0);
                        /* Too large for the socket buffers: refused, not
                         * stuck, and out untouched (it is smaller here). */
                        assert_true(op.max_msg > 65536);
                        assert_int_equal(engine_serial_seal(&op, nonce, NULL, 0, pt, op.max_msg, ct),
                                         -EMSGSIZE);
                        engine_serial_op_close(&op);
                }
                engine_serial_free(t);
                /* A dead key keys nothing. */
                keyring_invalidate(key);
                t = NULL;
                {
                        int r = engine_serial_new(key, &t);

                        assert_true(r == -ENOKEY || r == -EKEYREVOKED || r == -EKEYEXPIRED);
                        assert_null(t);
                }
        }
        engine_openssl_ops.aead_free(o);
        free(pt);
        free(ct);
        free(ref);
        free(back);
}

#define ENGINE_TESTS(ops, tag)                                                          \
        { tag ": kat seal", test_kat_seal, NULL, NULL, (void *)(uintptr_t)(ops) },      \
        { tag ": kat open", test_kat_open, NULL, NULL, (void *)(uintptr_t)(ops) },      \
        { tag ": tamper", test_tamper, NULL, NULL, (void *)(uintptr_t)(ops) },          \
        { tag ": bad args", test_bad_args, NULL, NULL, (void *)(uintptr_t)(ops) },      \
        { tag ": round trip", test_roundtrip, NULL, NULL, (void *)(uintptr_t)(ops) },   \
        { tag ": driver", test_driver, NULL, NULL, (void *)(uintptr_t)(ops) }

int main(void)
{
        const struct CMUnitTest tests[] = {
                ENGINE_TESTS(&engine_kernel_ops, "kernel"),
                ENGINE_TESTS(&engine_openssl_ops, "openssl"),
                cmocka_unit_test(test_expect_kernel),
                cmocka_unit_test(test_kernel_absent_reason),
                cmocka_unit_test(test_kernel_cloexec),
                cmocka_unit_test(test_kernel_emsgsize),
                cmocka_unit_test(test_kernel_zerocopy),
                cmocka_unit_test(test_kernel_zerocopy_refused),
                cmocka_unit_test(test_kernel_max_message),
                cmocka_unit_test(test_serial_absent),
                cmocka_unit_test(test_serial),
                cmocka_unit_test(test_parse_crypto),
                cmocka_unit_test(test_kind_from_string),
                cmocka_unit_test(test_select_auto),
                cmocka_unit_test(test_select_kernel),
                cmocka_unit_test(test_select_openssl),
                cmocka_unit_test(test_random),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
