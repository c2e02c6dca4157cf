/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The ordered pool (stream-pool.c): what N threads write is what one thread
 * writes and reads (both ways), at every size around segment and slot
 * boundaries, from files and pipes; a corrupted middle segment, a cut and an
 * extended stream stop the output exactly before the bad segment, with the
 * single-thread messages; a check that says no stops it; the thread setting.
 * Each engine; one whose probe fails is SKIPPED unless
 * DKM_EXPECT_KERNEL_ENGINE=1 demands the kernel.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>

#include "engine/engine.h"
#include "shared/stream-pool.h"
#include "shared/stream.h"
#include "shared/util.h"

#define SEG 4096u
#define FULL (SEG + STREAM_TAG_SIZE)
/* Segments of SEG in one slot of the ring. */
#define PER_SLOT (STREAM_POOL_SLOT / SEG)

static const uint8_t key[32] = {
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
        0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f,
};
static const uint8_t policy[16] = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                                    0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf };
static const uint8_t ctx[] = "context: pool";
#define GEN 3

struct buf {
        uint8_t *p;
        size_t n;
};

static const struct engine_ops *engine_of(void **state)
{
        const struct engine_ops *ops = *state;
        const char *e = getenv("DKM_EXPECT_KERNEL_ENGINE");
        char reason[256] = "";

        if (ops->probe(reason, sizeof(reason)) >= 0)
                return ops;
        if (ops == &engine_kernel_ops && e && strcmp(e, "1") == 0)
                fail_msg("DKM_EXPECT_KERNEL_ENGINE=1 but the kernel engine is unavailable: %s", reason);
        print_message("%s engine unavailable: %s\n", ops->name, reason);
        skip();
        return NULL;
}

static struct buf pattern(size_t n, unsigned seed)
{
        struct buf b = { malloc(n ? n : 1), n };

        assert_non_null(b.p);
        for (size_t i = 0; i < n; i++)
                b.p[i] = (uint8_t)(i * 131 + seed + (i >> 12));
        return b;
}

static int memfd_with(const uint8_t *p, size_t n)
{
        int fd = memfd_create("test-stream-pool", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, n), (ssize_t)n);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static struct buf slurp_from_start(int fd)
{
        struct buf b = { NULL, 0 };
        size_t cap = 0;

        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
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

/* threads 1: the single-thread functions, for comparison. */
static struct buf encrypt_with(const struct engine_ops *ops, unsigned threads, struct buf pt, uint32_t seg)
{
        int in = memfd_with(pt.p, pt.n), out = memfd_create("ct", MFD_CLOEXEC);
        const char *why = NULL;
        uint64_t n = 12345;
        struct buf ct;
        int r;

        assert_true(out >= 0);
        if (threads == 1) {
                struct engine_aead *a;

                assert_int_equal(ops->aead_new(&a), 0);
                r = stream_encrypt_fd(ops, a, key, policy, GEN, ctx, sizeof(ctx), seg, in, out, &n, &why);
                ops->aead_free(a);
        } else
                r = stream_encrypt_fd_pool(ops, key, policy, GEN, ctx, sizeof(ctx), seg, in, out, threads, &n,
                                           &why);
        if (r != 0)
                fail_msg("encrypt with %u threads: %d %s", threads, r, why ? why : "");
        assert_int_equal(n, pt.n);
        ct = slurp_from_start(out);
        close(in);
        close(out);
        return ct;
}

/* Decrypts; *ret_pt gets what was written, also on failure. */
static int decrypt_with(const struct engine_ops *ops, unsigned threads, const uint8_t *ct, size_t len,
                        const struct stream_check *check, struct buf *ret_pt, const char **ret_why)
{
        int in = memfd_with(ct, len), out = memfd_create("pt", MFD_CLOEXEC);
        struct stream_header h;
        uint64_t n = 0;
        int r;

        assert_true(out >= 0);
        r = stream_read_header_fd(in, &h, ret_why);
        assert_int_equal(r, 0);
        if (threads == 1) {
                struct engine_aead *a;

                assert_int_equal(ops->aead_new(&a), 0);
                r = stream_decrypt_fd_checked(ops, a, key, &h, ctx, sizeof(ctx), in, out, check, &n, ret_why);
                ops->aead_free(a);
        } else
                r = stream_decrypt_fd_pool(ops, key, &h, ctx, sizeof(ctx), in, out, check, threads, &n,
                                           ret_why);
        *ret_pt = slurp_from_start(out);
        if (r >= 0)
                assert_int_equal(ret_pt->n, n);
        close(in);
        close(out);
        return r;
}

static size_t segments_for(size_t n, uint32_t seg)
{
        return n == 0 ? 1 : (n + seg - 1) / seg;
}

/* Sizes around segment and slot boundaries, both ways against one thread. */
static void test_roundtrip(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        const size_t slot = (size_t)PER_SLOT * SEG;
        const size_t sizes[] = { 0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, slot - 1, slot, slot + 1,
                                 2 * slot, 2 * slot + SEG, 5 * 1024 * 1024 + 7 };
        const unsigned threads[] = { 2, 3, 8 };

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                struct buf pt = pattern(sizes[i], (unsigned)i);

                for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
                        struct buf ct = encrypt_with(ops, threads[t], pt, SEG), one, back;
                        const char *why = NULL;

                        assert_int_equal(ct.n, STREAM_HEADER_MAX + pt.n +
                                                       segments_for(pt.n, SEG) * STREAM_TAG_SIZE);
                        /* What N threads wrote, one reads, and the other way. */
                        assert_int_equal(decrypt_with(ops, 1, ct.p, ct.n, NULL, &back, &why), 0);
                        assert_int_equal(back.n, pt.n);
                        assert_memory_equal(back.p, pt.p, pt.n);
                        free(back.p);
                        one = encrypt_with(ops, 1, pt, SEG);
                        assert_int_equal(decrypt_with(ops, threads[t], one.p, one.n, NULL, &back, &why), 0);
                        assert_int_equal(back.n, pt.n);
                        assert_memory_equal(back.p, pt.p, pt.n);
                        free(back.p);
                        assert_int_equal(decrypt_with(ops, threads[t], ct.p, ct.n, NULL, &back, &why), 0);
                        assert_int_equal(back.n, pt.n);
                        assert_memory_equal(back.p, pt.p, pt.n);
                        free(back.p);
                        free(one.p);
                        free(ct.p);
                }
                free(pt.p);
        }
}

/* The largest segments: one a slot, and the ring at its memory bound. */
static void test_large_segment(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct buf pt = pattern(5 * STREAM_SEGMENT_MAX + 3, 9), ct, back;
        const char *why = NULL;

        if (ops->max_message && ops->max_message() < STREAM_SEGMENT_MAX + 1024) {
                free(pt.p);
                skip(); /* the kernel engine's limit: test-stream checks the refusal */
        }
        ct = encrypt_with(ops, 64, pt, STREAM_SEGMENT_MAX);
        assert_int_equal(decrypt_with(ops, 1, ct.p, ct.n, NULL, &back, &why), 0);
        assert_int_equal(back.n, pt.n);
        assert_memory_equal(back.p, pt.p, pt.n);
        free(back.p);
        free(ct.p);
        free(pt.p);
}

/* A rejected segment in the middle of a slot: the output holds exactly the
 * segments before it, with N threads as with one. */
static void test_bad_middle_segment(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        const size_t nseg = 5 * PER_SLOT + 3;
        const size_t bads[] = { 0, 1, PER_SLOT - 1, PER_SLOT, 2 * PER_SLOT + 17, nseg - 2 };
        const unsigned threads[] = { 1, 2, 4, 8 };
        struct buf pt = pattern(nseg * SEG - 100, 3);
        struct buf ct = encrypt_with(ops, 2, pt, SEG);

        for (size_t b = 0; b < sizeof(bads) / sizeof(bads[0]); b++) {
                size_t off = STREAM_HEADER_MAX + bads[b] * FULL + 77;

                ct.p[off] ^= 0x20;
                for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
                        struct buf out;
                        const char *why = NULL;
                        int r = decrypt_with(ops, threads[t], ct.p, ct.n, NULL, &out, &why);

                        assert_int_equal(r, -EBADMSG);
                        assert_string_equal(why, "segment failed authentication");
                        if (threads[t] > 1) {
                                /* exactly before it */
                                if (out.n != bads[b] * SEG)
                                        fail_msg("%u threads, bad segment %zu: %zu bytes out, want %zu",
                                                 threads[t], bads[b], out.n, bads[b] * SEG);
                        } else
                                /* one thread writes per chunk: never past it */
                                assert_true(out.n <= bads[b] * SEG);
                        assert_memory_equal(out.p, pt.p, out.n);
                        free(out.p);
                }
                ct.p[off] ^= 0x20;
        }
        free(ct.p);
        free(pt.p);
}

/* Cut at a segment boundary, cut inside a segment, extended, and empty:
 * the single-thread messages, and nothing past the bad segment. */
static void test_cut_and_extended(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        const size_t nseg = 2 * PER_SLOT + 5;
        struct buf pt = pattern(nseg * SEG, 5); /* the final segment is full */
        struct buf ct = encrypt_with(ops, 3, pt, SEG), out;
        const char *why = NULL;
        uint8_t *longer = malloc(ct.n + FULL);

        /* Cut after segment PER_SLOT + 1: it was sealed as not final. */
        assert_int_equal(decrypt_with(ops, 2, ct.p, STREAM_HEADER_MAX + (PER_SLOT + 2) * FULL, NULL, &out,
                                      &why), -EBADMSG);
        assert_string_equal(why, "stream truncated");
        assert_int_equal(out.n, (PER_SLOT + 1) * SEG);
        assert_memory_equal(out.p, pt.p, out.n);
        free(out.p);
        /* Cut inside a segment. */
        assert_int_equal(decrypt_with(ops, 2, ct.p, ct.n - 100, NULL, &out, &why), -EBADMSG);
        assert_string_equal(why, "segment failed authentication");
        assert_int_equal(out.n, (nseg - 1) * SEG);
        free(out.p);
        /* Only the header. */
        assert_int_equal(decrypt_with(ops, 4, ct.p, STREAM_HEADER_MAX, NULL, &out, &why), -EBADMSG);
        assert_string_equal(why, "stream truncated");
        assert_int_equal(out.n, 0);
        free(out.p);
        /* The final segment again after it. */
        assert_non_null(longer);
        memcpy(longer, ct.p, ct.n);
        memcpy(longer + ct.n, ct.p + ct.n - FULL, FULL);
        assert_int_equal(decrypt_with(ops, 2, longer, ct.n + FULL, NULL, &out, &why), -EBADMSG);
        assert_string_equal(why, "data after the final segment");
        assert_int_equal(out.n, (nseg - 1) * SEG);
        free(out.p);
        free(longer);
        free(ct.p);
        free(pt.p);
}

/* --- pipes ------------------------------------------------------------- */

struct feeder {
        int fd;
        const uint8_t *p;
        size_t n;
        unsigned delay_ms; /* between 64 KiB writes */
};

static void *feed(void *userdata)
{
        struct feeder *f = userdata;

        for (size_t off = 0; off < f->n;) {
                size_t k = f->n - off < 65536 ? f->n - off : 65536;
                ssize_t w = write(f->fd, f->p + off, k);

                if (w <= 0)
                        break;
                off += (size_t)w;
                if (f->delay_ms)
                        usleep(f->delay_ms * 1000);
        }
        close(f->fd);
        return NULL;
}

struct drainer {
        int fd;
        struct buf got;
};

static void *drain(void *userdata)
{
        struct drainer *d = userdata;
        size_t cap = 0;

        for (;;) {
                ssize_t k;

                if (d->got.n == cap) {
                        cap = cap ? 2 * cap : 65536;
                        d->got.p = realloc(d->got.p, cap);
                }
                k = read(d->fd, d->got.p + d->got.n, cap - d->got.n);
                if (k <= 0)
                        break;
                d->got.n += (size_t)k;
        }
        close(d->fd);
        return NULL;
}

static int count_calls(void *userdata)
{
        int *calls = userdata;

        return ++*calls > 2 ? -EPERM : 0;
}

/* Both ways between pipes; a slow pipe with a check that says no after two
 * answers stops the stream with "stopped" and its error. */
static void test_pipes(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        struct buf pt = pattern(3 * 1024 * 1024 + 11, 7);
        int pin[2], pout[2], calls = 0;
        struct feeder f;
        struct drainer d = { 0 };
        pthread_t tf, td;
        const char *why = NULL;
        struct stream_header h;
        const struct stream_check check = { count_calls, &calls, 20 };
        uint64_t n = 0;
        struct buf ct;

        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
        assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
        f = (struct feeder){ pin[1], pt.p, pt.n, 0 };
        d.fd = pout[0];
        pthread_create(&tf, NULL, feed, &f);
        pthread_create(&td, NULL, drain, &d);
        assert_int_equal(stream_encrypt_fd_pool(ops, key, policy, GEN, ctx, sizeof(ctx), SEG, pin[0], pout[1], 2,
                                                &n, &why),
                         0);
        close(pin[0]);
        close(pout[1]);
        pthread_join(tf, NULL);
        pthread_join(td, NULL);
        assert_int_equal(n, pt.n);
        ct = d.got;

        /* Back through pipes, the input trickling in; the check stops it. */
        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
        assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
        f = (struct feeder){ pin[1], ct.p, ct.n, 15 };
        d = (struct drainer){ pout[0], { NULL, 0 } };
        pthread_create(&tf, NULL, feed, &f);
        pthread_create(&td, NULL, drain, &d);
        assert_int_equal(stream_read_header_fd(pin[0], &h, &why), 0);
        assert_int_equal(stream_decrypt_fd_pool(ops, key, &h, ctx, sizeof(ctx), pin[0], pout[1], &check, 2, &n,
                                                &why),
                         -EPERM);
        assert_string_equal(why, "stopped");
        assert_int_equal(calls, 3);
        /* The reader thread stopped while the pipe stays open. */
        close(pin[0]);
        close(pout[1]);
        pthread_join(tf, NULL);
        pthread_join(td, NULL);
        assert_true(d.got.n < pt.n);
        assert_memory_equal(d.got.p, pt.p, d.got.n);
        free(d.got.p);

        /* And whole, with a check that always agrees. */
        calls = -1000000;
        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
        assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
        f = (struct feeder){ pin[1], ct.p, ct.n, 0 };
        d = (struct drainer){ pout[0], { NULL, 0 } };
        pthread_create(&tf, NULL, feed, &f);
        pthread_create(&td, NULL, drain, &d);
        assert_int_equal(stream_read_header_fd(pin[0], &h, &why), 0);
        assert_int_equal(stream_decrypt_fd_pool(ops, key, &h, ctx, sizeof(ctx), pin[0], pout[1], &check, 4, &n,
                                                &why),
                         0);
        close(pin[0]);
        close(pout[1]);
        pthread_join(tf, NULL);
        pthread_join(td, NULL);
        assert_int_equal(d.got.n, pt.n);
        assert_memory_equal(d.got.p, pt.p, pt.n);
        free(d.got.p);
        free(ct.p);
        free(pt.p);
}

/* Bad arguments are refused before anything starts. */
static void test_bad_args(void **state)
{
        const struct engine_ops *ops = engine_of(state);
        const char *why = NULL;
        struct stream_header h = { .version = 2, .algorithm = 1, .generation = 1, .segment_size = SEG };

        assert_int_equal(stream_encrypt_fd_pool(ops, key, policy, GEN, ctx, sizeof(ctx), SEG, 0, 1, 1, NULL,
                                                &why),
                         -EINVAL);
        assert_int_equal(stream_encrypt_fd_pool(ops, key, policy, GEN, ctx, sizeof(ctx), SEG, 0, 1,
                                                STREAM_POOL_THREADS_MAX + 1, NULL, &why),
                         -EINVAL);
        assert_int_equal(stream_encrypt_fd_pool(ops, key, policy, GEN, ctx, sizeof(ctx), 100, 0, 1, 2, NULL,
                                                &why),
                         -EINVAL);
        assert_string_equal(why, "cannot start the stream"); /* as with one thread */
        assert_int_equal(stream_decrypt_fd_pool(ops, key, &h, ctx, sizeof(ctx), -1, 1, NULL, 2, NULL, &why),
                         -EINVAL);
        h.segment_size = 1;
        assert_int_equal(stream_decrypt_fd_pool(ops, key, &h, ctx, sizeof(ctx), 0, 1, NULL, 2, NULL, &why),
                         -EINVAL);
}

/* auto is the CPUs this process may run on; N is N, bounded. */
static void test_threads_setting(void **state)
{
        cpu_set_t set;

        (void)state;
        assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
        stream_pool_set_threads(0);
        assert_int_equal(stream_pool_threads(),
                         CPU_COUNT(&set) > 64 ? 64u : (unsigned)CPU_COUNT(&set));
        stream_pool_set_threads(1);
        assert_int_equal(stream_pool_threads(), 1);
        stream_pool_set_threads(7);
        assert_int_equal(stream_pool_threads(), 7);
        stream_pool_set_threads(1000);
        assert_int_equal(stream_pool_threads(), STREAM_POOL_THREADS_MAX);
        /* Narrowed to one CPU, auto follows. */
        {
                cpu_set_t one;

                CPU_ZERO(&one);
                for (int c = 0; c < CPU_SETSIZE; c++)
                        if (CPU_ISSET(c, &set)) {
                                CPU_SET(c, &one);
                                break;
                        }
                assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
                stream_pool_set_threads(0);
                assert_int_equal(stream_pool_threads(), 1);
                assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
        }
}

#define POOL_TESTS(ops, tag)                                                                          \
        { tag ": round trip", test_roundtrip, NULL, NULL, (void *)(uintptr_t)(ops) },                 \
        { tag ": large segment", test_large_segment, NULL, NULL, (void *)(uintptr_t)(ops) },          \
        { tag ": bad middle segment", test_bad_middle_segment, NULL, NULL, (void *)(uintptr_t)(ops) }, \
        { tag ": cut and extended", test_cut_and_extended, NULL, NULL, (void *)(uintptr_t)(ops) },    \
        { tag ": pipes", test_pipes, NULL, NULL, (void *)(uintptr_t)(ops) },                          \
        { tag ": bad arguments", test_bad_args, NULL, NULL, (void *)(uintptr_t)(ops) }

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_threads_setting),
                POOL_TESTS(&engine_openssl_ops, "openssl"),
                POOL_TESTS(&engine_kernel_ops, "kernel"),
        };

        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
