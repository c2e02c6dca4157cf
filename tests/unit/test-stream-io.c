/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The read-ahead reader of the streaming format: every input length around
 * piece and chunk boundaries comes back whole, in full pieces but the last,
 * with exactly the last one marked; from a file and from a pipe written in
 * odd pieces; read errors come through; and freeing the reader stops its
 * thread while a pipe stays open and silent.  piece_reader_wait() tells when
 * the next piece would block, and a decrypt under a check (a grant) asks it
 * while the input trickles in and stops when it says no.
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
#include <sys/mman.h>

#include "engine/engine.h"
#include "shared/stream.h"
#include "shared/stream-io.h"
#include "shared/util.h"

#define PIECE 4096u

static uint8_t *pattern(size_t n)
{
        uint8_t *p = malloc(n ? n : 1);

        assert_non_null(p);
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)(i * 7 + (i >> 10));
        return p;
}

/* Takes the whole input apart and checks it. */
static void drain_and_check(int fd, size_t piece, const uint8_t *want, size_t n)
{
        struct piece_reader *r = NULL;
        const uint8_t *p;
        size_t len, got = 0, pieces = 0;
        bool last = false;

        assert_int_equal(piece_reader_new(fd, piece, &r), 0);
        while (!last) {
                assert_int_equal(piece_reader_next(r, &p, &len, &last), 0);
                if (!last)
                        assert_int_equal(len, piece);
                else
                        assert_true(len <= piece && (len > 0 || n == 0));
                assert_true(got + len <= n);
                if (len)
                        assert_memory_equal(p, want + got, len);
                got += len;
                pieces++;
        }
        assert_int_equal(got, n);
        assert_int_equal(pieces, n == 0 ? 1 : (n + piece - 1) / piece);
        /* Nothing after the last piece. */
        assert_int_equal(piece_reader_next(r, &p, &len, &last), -EINVAL);
        piece_reader_free(r);
}

static const size_t chunk_pieces = (STREAM_IO_CHUNK + PIECE - 1) / PIECE;

static size_t lengths[] = {
        0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE,
        STREAM_IO_CHUNK - 1, STREAM_IO_CHUNK, STREAM_IO_CHUNK + 1,
        2 * STREAM_IO_CHUNK - PIECE, 2 * STREAM_IO_CHUNK, 2 * STREAM_IO_CHUNK + 5,
        3 * STREAM_IO_CHUNK + PIECE, 5 * STREAM_IO_CHUNK + 77,
};

static void test_file_lengths(void **state)
{
        (void)state;
        assert_int_equal(chunk_pieces * PIECE, STREAM_IO_CHUNK);
        for (size_t i = 0; i < ARRAY_SIZE(lengths); i++) {
                size_t n = lengths[i];
                uint8_t *data = pattern(n);
                int fd = memfd_create("io", MFD_CLOEXEC);

                assert_true(fd >= 0);
                assert_int_equal(write(fd, data, n), (ssize_t)n);
                assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
                drain_and_check(fd, PIECE, data, n);
                /* A piece that does not divide the chunk (a segment and its tag). */
                assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
                drain_and_check(fd, PIECE + 16, data, n);
                close(fd);
                free(data);
        }
}

struct writer {
        int fd;
        const uint8_t *data;
        size_t n, step;
};

static void *write_slowly(void *arg)
{
        struct writer *w = arg;

        for (size_t off = 0; off < w->n;) {
                size_t k = w->n - off < w->step ? w->n - off : w->step;

                if (stream_write_full(w->fd, w->data + off, k) < 0)
                        break;
                off += k;
        }
        close(w->fd);
        return NULL;
}

static void test_pipe_lengths(void **state)
{
        static const size_t steps[] = { 1000, PIECE, 65536, 100003 };

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(lengths); i++) {
                size_t n = lengths[i];
                uint8_t *data = pattern(n);
                int p[2];
                pthread_t t;
                struct writer w = { .data = data, .n = n, .step = steps[i % ARRAY_SIZE(steps)] };

                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
                w.fd = p[1];
                assert_int_equal(pthread_create(&t, NULL, write_slowly, &w), 0);
                drain_and_check(p[0], PIECE + 16, data, n);
                pthread_join(t, NULL);
                close(p[0]);
                free(data);
        }
}

static void test_read_error(void **state)
{
        struct piece_reader *r = NULL;
        const uint8_t *p;
        size_t len;
        bool last;
        int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);  /* read() gives EISDIR */

        (void)state;
        assert_true(fd >= 0);
        assert_int_equal(piece_reader_new(fd, PIECE, &r), 0);
        assert_int_equal(piece_reader_next(r, &p, &len, &last), -EISDIR);
        assert_int_equal(piece_reader_next(r, &p, &len, &last), -EINVAL);
        piece_reader_free(r);
        close(fd);
        assert_int_equal(piece_reader_new(-1, PIECE, &r), -EINVAL);
        assert_int_equal(piece_reader_new(0, 0, &r), -EINVAL);
}

struct feeder {
        int fd;
        const uint8_t *seg;
        size_t n, count;
};

/* Writes count copies of seg and leaves the pipe open. */
static void *feed(void *arg)
{
        struct feeder *f = arg;

        for (size_t i = 0; i < f->count; i++)
                if (stream_write_full(f->fd, f->seg, f->n) < 0)
                        break;
        return NULL;
}

/* The reader waits on a pipe whose writer neither writes nor closes:
 * freeing it must not hang (SIGALRM would end the test as a failure). */
static void test_free_while_waiting(void **state)
{
        struct piece_reader *r = NULL;
        const uint8_t *p;
        size_t len;
        bool last;
        int fds[2];
        uint8_t some[PIECE + 10];

        (void)state;
        memset(some, 1, sizeof(some));
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        assert_int_equal(write(fds[1], some, sizeof(some)), (ssize_t)sizeof(some));
        alarm(20);
        assert_int_equal(piece_reader_new(fds[0], PIECE, &r), 0);
        usleep(100 * 1000);  /* let the thread block in its wait */
        piece_reader_free(r);

        /* The same after pieces were taken: one chunk and a bit came, the
         * reader waits for the rest of the second. */
        {
                struct feeder f = { fds[1], some, sizeof(some), STREAM_IO_CHUNK / sizeof(some) + 2 };
                pthread_t t;

                assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
                r = NULL;
                assert_int_equal(piece_reader_new(fds[0], PIECE, &r), 0);
                assert_int_equal(piece_reader_next(r, &p, &len, &last), 0);
                assert_int_equal(len, PIECE);
                assert_false(last);
                pthread_join(t, NULL);
                usleep(100 * 1000);
                piece_reader_free(r);
        }
        alarm(0);
        close(fds[0]);
        close(fds[1]);
}

/* A stream whose first segment fails, on a pipe that its writer keeps open
 * after one chunk: the decryptor returns the failure at once, its reader
 * (waiting for the next chunk) stopped. */
static void test_decrypt_fails_on_open_pipe(void **state)
{
        static const uint8_t key[32] = { 9 }, policy[16] = { 1 };
        struct engine_aead *a = NULL;
        struct stream_header h;
        struct stream_enc *e = NULL;
        uint8_t hdr[STREAM_HEADER_MAX], pt[PIECE] = { 0 }, ct[PIECE + 16];
        const char *why = NULL;
        size_t hl, n;
        uint64_t total;
        pthread_t t;
        struct feeder f;
        int fds[2], out = open("/dev/null", O_WRONLY | O_CLOEXEC);

        (void)state;
        assert_true(out >= 0);
        assert_int_equal(engine_openssl_ops.aead_new(&a), 0);
        assert_int_equal(stream_enc_new(&engine_openssl_ops, a, key, policy, 1, NULL, 0, PIECE, &e, hdr,
                                        &hl), 0);
        assert_int_equal(stream_enc_segment(e, pt, PIECE, false, ct, &n), 0);
        stream_enc_free(e);
        ct[3] ^= 1;
        assert_int_equal(stream_parse_header(hdr, hl, &h, &why), 0);
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        f = (struct feeder){ fds[1], ct, n, (STREAM_IO_CHUNK + n - 1) / n };
        assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
        alarm(20);
        assert_int_equal(stream_decrypt_fd(&engine_openssl_ops, a, key, &h, NULL, 0, fds[0], out, &total,
                                           &why), -EBADMSG);
        assert_string_equal(why, "segment failed authentication");
        alarm(0);
        pthread_join(t, NULL);
        close(fds[0]);
        close(fds[1]);
        close(out);
        engine_openssl_ops.aead_free(a);
}

/* piece_reader_wait() says -ETIMEDOUT exactly when next() would block. */
static void test_wait(void **state)
{
        uint8_t *data = pattern(STREAM_IO_CHUNK);
        struct piece_reader *r = NULL;
        struct feeder f;
        const uint8_t *p;
        uint64_t t0;
        size_t len;
        bool last;
        pthread_t t;
        int fds[2];

        (void)state;
        alarm(20);
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        assert_int_equal(piece_reader_new(fds[0], PIECE, &r), 0);
        /* Nothing came: it waits about as long as asked. */
        t0 = now_mono_usec();
        assert_int_equal(piece_reader_wait(r, 100), -ETIMEDOUT);
        assert_true(now_mono_usec() - t0 >= 90000);
        /* One whole chunk, the pipe left open: every piece but its last
         * comes without waiting... */
        f = (struct feeder){ fds[1], data, STREAM_IO_CHUNK, 1 };
        assert_int_equal(pthread_create(&t, NULL, feed, &f), 0);
        assert_int_equal(piece_reader_wait(r, 10000), 0);
        for (size_t i = 0; i + 1 < chunk_pieces; i++) {
                assert_int_equal(piece_reader_wait(r, 0), 0);
                assert_int_equal(piece_reader_next(r, &p, &len, &last), 0);
                assert_false(last);
        }
        /* ...the last needs the next chunk, to tell whether it ends the input. */
        assert_int_equal(piece_reader_wait(r, 50), -ETIMEDOUT);
        pthread_join(t, NULL);
        close(fds[1]);
        assert_int_equal(piece_reader_wait(r, 10000), 0);
        assert_int_equal(piece_reader_next(r, &p, &len, &last), 0);
        assert_true(last);
        assert_int_equal(len, PIECE);
        assert_int_equal(piece_reader_wait(r, 0), 0); /* done: nothing to wait for */
        piece_reader_free(r);
        assert_int_equal(piece_reader_wait(NULL, 0), -EINVAL);
        alarm(0);
        close(fds[0]);
        free(data);
}

/* A whole stream of n segments of PIECE bytes (the last one final). */
static uint8_t *make_stream(struct engine_aead *a, const uint8_t key[32], size_t n, uint8_t *plain,
                            struct stream_header *h, size_t *ret_len)
{
        static const uint8_t policy[16] = { 2 };
        struct stream_enc *e = NULL;
        uint8_t *ct = malloc(STREAM_HEADER_MAX + n * (PIECE + 16));
        const char *why;
        size_t hl, k, len;

        assert_non_null(ct);
        assert_int_equal(stream_enc_new(&engine_openssl_ops, a, key, policy, 1, NULL, 0, PIECE, &e, ct, &hl),
                         0);
        assert_int_equal(stream_parse_header(ct, hl, h, &why), 0);
        len = hl;
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(stream_enc_segment(e, plain + i * PIECE, PIECE, i + 1 == n, ct + len, &k), 0);
                len += k;
        }
        stream_enc_free(e);
        *ret_len = len;
        return ct;
}

struct slow_feed {
        int fd;
        const uint8_t *data;
        size_t first, n;
        unsigned pause_ms; /* after the first bytes; 0: leave the pipe open after them */
};

static void *feed_slowly(void *arg)
{
        struct slow_feed *f = arg;

        if (stream_write_full(f->fd, f->data, f->first) < 0 || !f->pause_ms)
                return NULL;
        usleep(f->pause_ms * 1000);
        (void)stream_write_full(f->fd, f->data + f->first, f->n - f->first);
        close(f->fd);
        return NULL;
}

struct counted_check {
        unsigned calls, allow; /* says no from call allow + 1 on */
};

static int count_check(void *userdata)
{
        struct counted_check *c = userdata;

        return ++c->calls > c->allow ? -EKEYREVOKED : 0;
}

/* Under a check, a stream whose input pauses: asked while it waits, and
 * completes while the check holds; stopped, with nothing more written, once
 * it does not. */
static void test_decrypt_checked(void **state)
{
        static const uint8_t key[32] = { 5 };
        const size_t n = 3 * chunk_pieces;
        uint8_t *plain = pattern(n * PIECE), *ct, *out = malloc(n * PIECE);
        struct engine_aead *a = NULL;
        struct stream_header h;
        struct counted_check cc;
        struct stream_check check = { count_check, &cc, 20 };
        struct slow_feed f;
        const char *why = NULL;
        size_t ct_len, hl;
        uint64_t total = 0;
        pthread_t t;
        int fds[2], o;

        (void)state;
        alarm(20);
        assert_non_null(out);
        assert_int_equal(engine_openssl_ops.aead_new(&a), 0);
        ct = make_stream(a, key, n, plain, &h, &ct_len);
        hl = stream_header_length(ct);

        /* Holds throughout: asked during the pause, and the output is whole. */
        cc = (struct counted_check){ 0, UINT32_MAX };
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        o = memfd_create("out", MFD_CLOEXEC);
        f = (struct slow_feed){ fds[1], ct + hl, (ct_len - hl) / 2, ct_len - hl, 300 };
        assert_int_equal(pthread_create(&t, NULL, feed_slowly, &f), 0);
        assert_int_equal(stream_decrypt_fd_checked(&engine_openssl_ops, a, key, &h, NULL, 0, fds[0], o, &check,
                                                   &total, &why), 0);
        pthread_join(t, NULL);
        assert_int_equal(total, n * PIECE);
        assert_true(cc.calls >= 5);
        assert_int_equal(pread(o, out, n * PIECE, 0), (ssize_t)(n * PIECE));
        assert_memory_equal(out, plain, n * PIECE);
        close(o);
        close(fds[0]);

        /* Says no while the input waits (the pipe stays open): stopped at
         * once, with only what came before written. */
        cc = (struct counted_check){ 0, 3 };
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        o = memfd_create("out", MFD_CLOEXEC);
        f = (struct slow_feed){ fds[1], ct + hl, (ct_len - hl) / 2, ct_len - hl, 0 };
        assert_int_equal(pthread_create(&t, NULL, feed_slowly, &f), 0);
        assert_int_equal(stream_decrypt_fd_checked(&engine_openssl_ops, a, key, &h, NULL, 0, fds[0], o, &check,
                                                   &total, &why), -EKEYREVOKED);
        assert_string_equal(why, "stopped");
        assert_int_equal(cc.calls, 4);
        assert_true(lseek(o, 0, SEEK_END) < (off_t)(n * PIECE / 2));
        pthread_join(t, NULL);
        close(o);
        close(fds[0]);
        close(fds[1]);

        /* A check must have a function and an interval. */
        check.interval_ms = 0;
        assert_int_equal(stream_decrypt_fd_checked(&engine_openssl_ops, a, key, &h, NULL, 0, 0, 1, &check,
                                                   &total, &why), -EINVAL);
        alarm(0);
        engine_openssl_ops.aead_free(a);
        free(ct);
        free(out);
        free(plain);
}

/* Under a timeout, a pipe whose other end is held open and silent, or that
 * nobody reads, gives -ETIME instead of holding the caller for ever. */
static void test_timeouts(void **state)
{
        struct piece_reader *r = NULL;
        static uint8_t big[1024 * 1024];
        const uint8_t *p;
        uint8_t buf[16];
        uint64_t start;
        size_t len;
        bool last;
        int fds[2];

        (void)state;
        alarm(20);
        stream_io_set_timeout_usec(200000);
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        start = now_mono_usec();
        assert_int_equal(stream_read_full(fds[0], buf, sizeof(buf), &len), -ETIME);
        assert_true(now_mono_usec() - start >= 200000);
        assert_int_equal(piece_reader_new(fds[0], PIECE, &r), 0);
        assert_int_equal(piece_reader_next(r, &p, &len, &last), -ETIME);
        piece_reader_free(r);
        /* The pipe holds 64 KiB; the rest waits for a reader that never comes. */
        assert_int_equal(stream_write_full(fds[1], big, sizeof(big)), -ETIME);
        close(fds[1]);
        stream_io_set_timeout_usec(0);
        close(fds[0]);
        alarm(0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_timeouts),
                cmocka_unit_test(test_file_lengths),
                cmocka_unit_test(test_pipe_lengths),
                cmocka_unit_test(test_read_error),
                cmocka_unit_test(test_free_while_waiting),
                cmocka_unit_test(test_decrypt_fails_on_open_pipe),
                cmocka_unit_test(test_wait),
                cmocka_unit_test(test_decrypt_checked),
        };

        signal(SIGPIPE, SIG_IGN);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
