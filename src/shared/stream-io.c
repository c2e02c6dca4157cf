/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Read-ahead input for the streaming format; see stream-io.h. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>

#include "shared/stream-io.h"
#include "shared/util.h"

struct chunk {
        uint8_t *buf;
        size_t len;
        int error;  /* negative errno of a failed read, else 0 */
        bool eof;   /* the input ends in this chunk (or it failed) */
        bool full;  /* filled, and not yet given back by the consumer */
};

struct piece_reader {
        int fd;
        int stop_fd;            /* eventfd: wakes a reader waiting in poll */
        bool poll_first;        /* not a regular file: wait in poll, not read */
        size_t piece, cap;
        struct chunk c[2];      /* filled in turn: 0, 1, 0, ... */
        pthread_mutex_t lock;   /* guards full and stop */
        pthread_cond_t cond;
        pthread_t thread;
        bool threaded, stop;
        bool input_done;        /* threadless: the input has ended */
        /* the consumer */
        int cur;                /* chunk being taken apart, -1: none */
        int want;               /* the chunk after it */
        size_t off;             /* within cur */
        int release;            /* chunk to give back on the next call, -1: none */
        bool any, done;
};

/* How long a pipe or socket may go without moving data; 0: no limit.  One
 * setting for the process: dkmd sets it from [daemon] stream_timeout, and
 * the client side never does. */
static _Atomic uint64_t timeout_usec;

void stream_io_set_timeout_usec(uint64_t usec)
{
        atomic_store(&timeout_usec, usec);
}

/* poll() on fd for events (beside stop_fd when it is >= 0) for at most the
 * timeout: 0 ready, -ETIME, -ECANCELED when stop_fd fired. */
static int wait_fd(int fd, short events, int stop_fd)
{
        uint64_t t = atomic_load(&timeout_usec);
        uint64_t deadline = t ? now_mono_usec() + t : 0;

        for (;;) {
                struct pollfd p[2] = { { fd, events, 0 }, { stop_fd, POLLIN, 0 } };
                int ms = -1, k;

                if (deadline) {
                        uint64_t now = now_mono_usec();

                        if (now >= deadline)
                                return -ETIME;
                        ms = (int)((deadline - now) / 1000 + 1);
                }
                k = poll(p, stop_fd >= 0 ? 2 : 1, ms);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        continue;
                if (stop_fd >= 0 && p[1].revents)
                        return -ECANCELED;
                if (p[0].revents & POLLNVAL)
                        return -EBADF;
                return 0;
        }
}

static bool is_regular(int fd)
{
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* One read of at most n bytes; 0 at end of input.  Before reading a pipe or
 * socket it waits in poll(), beside stop_fd, so that a stop ends the wait,
 * and a silent one times out. */
static ssize_t read_some(struct piece_reader *r, uint8_t *buf, size_t n)
{
        for (;;) {
                ssize_t k;

                if (r->poll_first) {
                        int e = wait_fd(r->fd, POLLIN, r->stop_fd);

                        if (e < 0)
                                return e;
                }
                k = read(r->fd, buf, n);
                if (k >= 0)
                        return k;
                if (errno == EINTR || (errno == EAGAIN && r->poll_first))
                        continue;
                return negative_errno();
        }
}

int stream_read_full(int fd, void *buf, size_t size, size_t *ret_len)
{
        return stream_read_stoppable(fd, buf, size, -1, ret_len);
}

int stream_read_stoppable(int fd, void *buf, size_t size, int stop_fd, size_t *ret_len)
{
        bool wait = !is_regular(fd);
        uint8_t *p = buf;
        size_t got = 0;

        while (got < size) {
                ssize_t n;

                if (wait) {
                        int e = wait_fd(fd, POLLIN, stop_fd);

                        if (e < 0)
                                return e;
                }
                n = read(fd, p + got, size - got);
                if (n < 0 && (errno == EINTR || (errno == EAGAIN && wait)))
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        *ret_len = got;
        return 0;
}

/* Fills c with up to cap bytes: short only at end of input or on error. */
static void fill(struct piece_reader *r, struct chunk *c)
{
        size_t got = 0;
        ssize_t k = 1;

        while (got < r->cap) {
                k = read_some(r, c->buf + got, r->cap - got);
                if (k <= 0)
                        break;
                got += (size_t)k;
        }
        c->len = got;
        c->error = k < 0 ? (int)k : 0;
        c->eof = k <= 0;
}

static void *reader_thread(void *p)
{
        struct piece_reader *r = p;

        for (int i = 0;; i ^= 1) {
                struct chunk *c = &r->c[i];
                bool stop;

                pthread_mutex_lock(&r->lock);
                while (c->full && !r->stop)
                        pthread_cond_wait(&r->cond, &r->lock);
                stop = r->stop;
                pthread_mutex_unlock(&r->lock);
                if (stop)
                        break;
                /* The consumer leaves c alone until full is set. */
                fill(r, c);
                pthread_mutex_lock(&r->lock);
                c->full = true;
                pthread_cond_broadcast(&r->cond);
                pthread_mutex_unlock(&r->lock);
                if (c->eof)
                        break;
        }
        return NULL;
}

/* Waits for chunk i (threadless: reads it now). */
static struct chunk *take(struct piece_reader *r, int i)
{
        struct chunk *c = &r->c[i];

        if (!r->threaded) {
                if (r->input_done) {
                        c->len = 0;
                        c->error = 0;
                        c->eof = true;
                } else {
                        fill(r, c);
                        r->input_done = c->eof;
                }
                c->full = true;
                return c;
        }
        pthread_mutex_lock(&r->lock);
        while (!c->full)
                pthread_cond_wait(&r->cond, &r->lock);
        pthread_mutex_unlock(&r->lock);
        return c;
}

static void give_back(struct piece_reader *r, int i)
{
        pthread_mutex_lock(&r->lock);
        r->c[i].full = false;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
}

int piece_reader_new(int fd, size_t piece, struct piece_reader **ret)
{
        struct piece_reader *r;
        pthread_attr_t attr;
        struct stat st;
        size_t alloc;

        if (fd < 0 || piece == 0 || !ret)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->fd = fd;
        r->piece = piece;
        r->cap = piece * ((STREAM_IO_CHUNK + piece - 1) / piece);
        r->cur = r->release = -1;
        r->poll_first = fstat(fd, &st) < 0 || !S_ISREG(st.st_mode);
        /* A file is read once, front to back: a larger read-ahead window
         * for a cold one.  Only advice; its failure changes nothing. */
        if (!r->poll_first)
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        pthread_mutex_init(&r->lock, NULL);
        {
                /* piece_reader_wait() times out by the monotonic clock. */
                pthread_condattr_t ca;

                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&r->cond, &ca);
                pthread_condattr_destroy(&ca);
        }
        /* Page-aligned, so the kernel copies whole pages into them. */
        alloc = (r->cap + 4095) & ~(size_t)4095;
        for (int i = 0; i < 2; i++) {
                r->c[i].buf = aligned_alloc(4096, alloc);
                if (!r->c[i].buf) {
                        r->stop_fd = -1;
                        piece_reader_free(r);
                        return -ENOMEM;
                }
        }
        /* Without a thread the reads happen in next(); nothing is lost but
         * the overlap. */
        r->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (r->stop_fd >= 0 && pthread_attr_init(&attr) == 0) {
                pthread_attr_setstacksize(&attr, 64 * 1024);
                r->threaded = pthread_create(&r->thread, &attr, reader_thread, r) == 0;
                pthread_attr_destroy(&attr);
        }
        *ret = r;
        return 0;
}

static int fail(struct piece_reader *r, int error)
{
        r->done = true;
        return error;
}

int piece_reader_next(struct piece_reader *r, const uint8_t **ret_p, size_t *ret_len, bool *ret_last)
{
        struct chunk *c;
        size_t n;
        int held;

        if (!r || !ret_p || !ret_len || !ret_last || r->done)
                return -EINVAL;
        if (r->release >= 0) {
                give_back(r, r->release);
                r->release = -1;
        }
        for (;;) {
                if (r->cur < 0) {
                        r->cur = r->want;
                        r->want ^= 1;
                        r->off = 0;
                        if (take(r, r->cur)->error)
                                return fail(r, r->c[r->cur].error);
                }
                c = &r->c[r->cur];
                if (r->off < c->len)
                        break;
                if (c->eof) {
                        /* Only an empty input gets here: one empty last piece. */
                        r->any = r->done = true;
                        r->release = r->cur;
                        *ret_p = c->buf;
                        *ret_len = 0;
                        *ret_last = true;
                        return 0;
                }
                give_back(r, r->cur);
                r->cur = -1;
        }
        n = c->len - r->off < r->piece ? c->len - r->off : r->piece;
        *ret_p = c->buf + r->off;
        *ret_len = n;
        r->off += n;
        r->any = true;
        if (r->off < c->len) {
                *ret_last = false;
                return 0;
        }
        if (c->eof) {
                *ret_last = r->done = true;
                r->release = r->cur;
                r->cur = -1;
                return 0;
        }
        /* The last piece of a full chunk: the input's last only when nothing
         * follows, which the next chunk tells.  Ours stays valid (it is
         * given back on the next call) while the reader fills the other. */
        held = r->cur;
        r->cur = r->want;
        r->want ^= 1;
        r->off = 0;
        r->release = held;
        c = take(r, r->cur);
        if (c->error)
                return fail(r, c->error);
        *ret_last = c->len == 0;
        r->done = *ret_last;
        return 0;
}

/* The chunk that piece_reader_next() would wait for now, -1 for none: it
 * follows next()'s steps without taking anything.  Under r->lock. */
static int blocking_chunk(const struct piece_reader *r)
{
        const struct chunk *c;
        int cur = r->cur, want = r->want;
        size_t off = r->off;

        if (cur < 0) {
                if (!r->c[want].full)
                        return want;
                cur = want;
                want ^= 1;
                off = 0;
        }
        c = &r->c[cur];
        if (c->error || c->eof || off + r->piece < c->len)
                return -1;
        /* The piece ends this chunk: next() takes the following one to
         * tell whether it was the last. */
        return r->c[want].full ? -1 : want;
}

int piece_reader_wait(struct piece_reader *r, unsigned timeout_ms)
{
        struct timespec deadline;
        int e = 0, i;

        if (!r)
                return -EINVAL;
        if (!r->threaded || r->done)
                return 0;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
                deadline.tv_sec++;
                deadline.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&r->lock);
        while ((i = blocking_chunk(r)) >= 0 && e != ETIMEDOUT)
                e = pthread_cond_timedwait(&r->cond, &r->lock, &deadline);
        pthread_mutex_unlock(&r->lock);
        return i >= 0 ? -ETIMEDOUT : 0;
}

void piece_reader_free(struct piece_reader *r)
{
        if (!r)
                return;
        if (r->threaded) {
                pthread_mutex_lock(&r->lock);
                r->stop = true;
                pthread_cond_broadcast(&r->cond);
                pthread_mutex_unlock(&r->lock);
                (void)!write(r->stop_fd, &(uint64_t){ 1 }, sizeof(uint64_t));
                pthread_join(r->thread, NULL);
        }
        if (r->stop_fd >= 0)
                close(r->stop_fd);
        for (int i = 0; i < 2; i++) {
                if (r->c[i].buf)
                        secure_wipe(r->c[i].buf, r->cap);
                free(r->c[i].buf);
        }
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cond);
        free(r);
}

/* How much a write to fd can take now without blocking: what the pipe has
 * room for; PIPE_BUF for anything else that is not a regular file (a
 * socket or terminal that poll() called writable takes that much). */
static size_t writable_now(int fd, const struct stat *st, size_t n)
{
        int size, used;

        if (S_ISFIFO(st->st_mode) && (size = fcntl(fd, F_GETPIPE_SZ)) > 0 &&
            ioctl(fd, FIONREAD, &used) == 0)
                return size > used ? ((size_t)(size - used) < n ? (size_t)(size - used) : n) : 0;
        return n < PIPE_BUF ? n : PIPE_BUF;
}

int stream_write_full(int fd, const uint8_t *buf, size_t n)
{
        struct stat st;
        /* A pipe that nobody reads must not hold the writer for ever: wait
         * in poll() (with the timeout), then write only what fits. */
        bool wait = atomic_load(&timeout_usec) && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode);

        while (n > 0) {
                size_t now = n;
                ssize_t k;

                if (wait) {
                        int e = wait_fd(fd, POLLOUT, -1);

                        if (e < 0)
                                return e;
                        now = writable_now(fd, &st, n);
                        if (now == 0)
                                continue;
                }
                k = write(fd, buf, now);
                if (k < 0 && errno == EAGAIN && wait)
                        continue;

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return -EIO;
                buf += k;
                n -= (size_t)k;
        }
        return 0;
}
