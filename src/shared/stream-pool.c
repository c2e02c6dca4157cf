/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One stream on several threads; see stream-pool.h. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shared/stream-io.h"
#include "shared/stream-pool.h"
#include "shared/util.h"

static _Atomic unsigned threads_setting;

void stream_pool_set_threads(unsigned n)
{
        atomic_store(&threads_setting, n > STREAM_POOL_THREADS_MAX ? STREAM_POOL_THREADS_MAX : n);
}

unsigned stream_pool_threads(void)
{
        unsigned n = atomic_load(&threads_setting);
        cpu_set_t set;

        if (n)
                return n;
        /* auto: the CPUs we may run on (a cgroup cpuset or taskset narrows
         * them), not all the machine has. */
        if (sched_getaffinity(0, sizeof(set), &set) == 0)
                n = (unsigned)CPU_COUNT(&set);
        else {
                long k = sysconf(_SC_NPROCESSORS_ONLN);

                n = k > 0 ? (unsigned)k : 1;
        }
        if (n < 1)
                n = 1;
        return n > STREAM_POOL_THREADS_MAX ? STREAM_POOL_THREADS_MAX : n;
}

enum slot_state { SLOT_FREE, SLOT_READY, SLOT_BUSY, SLOT_DONE };

struct slot {
        uint8_t *in, *out;
        size_t in_len;          /* bytes read into in */
        size_t out_len;         /* bytes of out to write */
        uint64_t seq;           /* the slot's place in the stream */
        int error;              /* read (why NULL) or crypto failure */
        const char *why;
        bool last;              /* holds the final segment */
        bool touched;           /* has held data: wiped at the end */
        enum slot_state state;
};

struct pool {
        pthread_mutex_t lock;
        pthread_cond_t free_cv, work_cv, done_cv;
        struct slot *slots;
        unsigned n_slots;
        uint8_t *mem;
        size_t mem_size, in_cap, out_cap;
        size_t piece;           /* input bytes per segment */
        unsigned per_slot;      /* segments per slot */
        uint64_t next_work;     /* the slot the workers take next */
        bool stop;
        int stop_fd;
        int in_fd;
        uint32_t segment_size;
        bool encrypting;        /* else decrypting: which buffers hold plaintext */
        const struct stream_enc *enc; /* one of these two */
        const struct stream_dec *dec;
        struct engine_aead **aead;
        pthread_t reader, *workers;
        unsigned n_workers, started;
        bool reader_started;
};

/* --- reader ------------------------------------------------------------- */

static void publish(struct pool *p, struct slot *s, uint64_t seq, bool last)
{
        pthread_mutex_lock(&p->lock);
        s->seq = seq;
        s->last = last;
        s->state = SLOT_READY;
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->lock);
}

/* Fills the slots in turn.  A full slot is held back until the next read
 * tells whether the input ends right after it: then it holds the final
 * segment. */
static void *reader_main(void *userdata)
{
        struct pool *p = userdata;
        struct slot *pending = NULL;

        for (uint64_t seq = 0;; seq++) {
                struct slot *s = &p->slots[seq % p->n_slots];
                size_t got = 0;
                int r;

                pthread_mutex_lock(&p->lock);
                while (s->state != SLOT_FREE && !p->stop)
                        pthread_cond_wait(&p->free_cv, &p->lock);
                if (p->stop) {
                        pthread_mutex_unlock(&p->lock);
                        return NULL;
                }
                pthread_mutex_unlock(&p->lock);
                s->touched = true;
                s->error = 0;
                s->why = NULL;
                r = stream_read_stoppable(p->in_fd, s->in, p->in_cap, p->stop_fd, &got);
                s->in_len = got;
                if (r < 0) {
                        if (pending)
                                publish(p, pending, seq - 1, false);
                        s->error = r;
                        publish(p, s, seq, false);
                        return NULL;
                }
                if (got == p->in_cap) {
                        if (pending)
                                publish(p, pending, seq - 1, false);
                        pending = s;
                        continue;
                }
                /* The input ended. */
                if (got == 0 && pending) {
                        publish(p, pending, seq - 1, true);
                        return NULL;
                }
                if (pending)
                        publish(p, pending, seq - 1, false);
                publish(p, s, seq, true);
                return NULL;
        }
}

/* --- workers ------------------------------------------------------------ */

static void seal_slot(struct pool *p, struct engine_aead *a, struct slot *s)
{
        size_t S = p->segment_size, full = S + STREAM_TAG_SIZE;
        size_t count = s->in_len == 0 ? 1 : (s->in_len + S - 1) / S;

        s->out_len = 0;
        for (size_t j = 0; j < count; j++) {
                size_t len = j + 1 < count ? S : s->in_len - j * S;
                int r = stream_enc_seal_at(p->enc, a, s->seq * p->per_slot + j, s->in + j * S, len,
                                           s->last && j + 1 == count, s->out + j * full);

                if (r < 0) {
                        s->error = r;
                        s->why = r == -EFBIG ? "stream too long" : "encryption failed";
                        return;
                }
                s->out_len += len + STREAM_TAG_SIZE;
        }
}

/* Opens the slot's segments in order and stops at the first rejected one:
 * out_len then covers those before it. */
static void open_slot(struct pool *p, struct engine_aead *a, struct slot *s)
{
        size_t S = p->segment_size, full = S + STREAM_TAG_SIZE;
        size_t count = s->in_len == 0 ? 1 : (s->in_len + full - 1) / full;

        s->out_len = 0;
        for (size_t j = 0; j < count; j++) {
                size_t len = j + 1 < count ? full : s->in_len - j * full;
                const char *why = "decryption failed";
                int r = stream_dec_open_at(p->dec, a, s->seq * p->per_slot + j, s->in + j * full, len,
                                           s->last && j + 1 == count, s->out + j * S, &why);

                if (r < 0) {
                        s->error = r;
                        s->why = why;
                        return;
                }
                s->out_len += len - STREAM_TAG_SIZE;
        }
}

struct worker_arg {
        struct pool *p;
        unsigned i;
};

static void *worker_main(void *userdata)
{
        struct worker_arg *w = userdata;
        struct pool *p = w->p;
        struct engine_aead *a = p->aead[w->i];

        for (;;) {
                struct slot *s;

                /* Slots are taken in stream order, so the one the writer
                 * waits for is never behind later ones. */
                pthread_mutex_lock(&p->lock);
                for (;;) {
                        s = &p->slots[p->next_work % p->n_slots];
                        if (p->stop || (s->state == SLOT_READY && s->seq == p->next_work))
                                break;
                        pthread_cond_wait(&p->work_cv, &p->lock);
                }
                if (p->stop) {
                        pthread_mutex_unlock(&p->lock);
                        return NULL;
                }
                s->state = SLOT_BUSY;
                p->next_work++;
                pthread_mutex_unlock(&p->lock);

                if (!s->error) {
                        if (p->encrypting)
                                seal_slot(p, a, s);
                        else
                                open_slot(p, a, s);
                }

                pthread_mutex_lock(&p->lock);
                s->state = SLOT_DONE;
                pthread_cond_broadcast(&p->done_cv);
                pthread_mutex_unlock(&p->lock);
        }
}

/* --- the pool ----------------------------------------------------------- */

static void pool_stop(struct pool *p)
{
        pthread_mutex_lock(&p->lock);
        p->stop = true;
        pthread_cond_broadcast(&p->free_cv);
        pthread_cond_broadcast(&p->work_cv);
        pthread_cond_broadcast(&p->done_cv);
        pthread_mutex_unlock(&p->lock);
        if (p->stop_fd >= 0)
                (void)!write(p->stop_fd, &(uint64_t){ 1 }, sizeof(uint64_t));
        if (p->reader_started)
                pthread_join(p->reader, NULL);
        for (unsigned i = 0; i < p->started; i++)
                pthread_join(p->workers[i], NULL);
        p->reader_started = false;
        p->started = 0;
}

/* Stops the threads, wipes what held plaintext and frees. */
static void pool_free(struct pool *p, const struct engine_ops *ops)
{
        pool_stop(p);
        if (p->mem) {
                for (unsigned i = 0; p->slots && i < p->n_slots; i++) {
                        struct slot *s = &p->slots[i];

                        if (!s->touched)
                                continue; /* never written: nothing to wipe, no page to fault in */
                        if (p->encrypting)
                                secure_wipe(s->in, p->in_cap);
                        else
                                secure_wipe(s->out, p->out_cap);
                }
                munmap(p->mem, p->mem_size);
        }
        for (unsigned i = 0; p->aead && i < p->n_workers; i++)
                if (p->aead[i])
                        ops->aead_free(p->aead[i]);
        free(p->aead);
        free(p->workers);
        free(p->slots);
        if (p->stop_fd >= 0)
                close(p->stop_fd);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->free_cv);
        pthread_cond_destroy(&p->work_cv);
        pthread_cond_destroy(&p->done_cv);
}

/* Sizes the ring and makes the transforms; the threads start later, in
 * pool_start. */
static int pool_init(struct pool *p, const struct engine_ops *ops, uint32_t segment_size, bool enc,
                     unsigned threads)
{
        size_t full = (size_t)segment_size + STREAM_TAG_SIZE, slot_bytes;
        unsigned max_slots;
        pthread_condattr_t ca;
        int r;

        *p = (struct pool){ .stop_fd = -1, .segment_size = segment_size, .encrypting = enc };
        pthread_mutex_init(&p->lock, NULL);
        /* The writer waits with a deadline by the monotonic clock. */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->done_cv, &ca);
        pthread_condattr_destroy(&ca);
        pthread_cond_init(&p->free_cv, NULL);
        pthread_cond_init(&p->work_cv, NULL);

        p->per_slot = (STREAM_POOL_SLOT + segment_size - 1) / segment_size;
        p->piece = enc ? segment_size : full;
        p->in_cap = p->per_slot * p->piece;
        p->out_cap = p->per_slot * (enc ? full : segment_size);
        slot_bytes = p->in_cap + p->out_cap;
        /* Two slots a worker (one worked on, one waiting), and two more for
         * the reader and the writer, within the memory bound. */
        max_slots = (unsigned)(STREAM_POOL_MEM_MAX / slot_bytes);
        if (max_slots < 3)
                max_slots = 3;
        p->n_slots = 2 * threads + 2 < max_slots ? 2 * threads + 2 : max_slots;
        p->n_workers = threads < p->n_slots - 2 ? threads : p->n_slots - 2;

        p->mem_size = p->n_slots * slot_bytes;
        p->mem = mmap(NULL, p->mem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p->mem == MAP_FAILED) {
                p->mem = NULL;
                return -ENOMEM;
        }
        /* Plaintext passes through: not into a core dump. */
        (void)madvise(p->mem, p->mem_size, MADV_DONTDUMP);
        p->slots = calloc(p->n_slots, sizeof(*p->slots));
        p->aead = calloc(p->n_workers, sizeof(*p->aead));
        p->workers = calloc(p->n_workers, sizeof(*p->workers));
        if (!p->slots || !p->aead || !p->workers)
                return -ENOMEM;
        for (unsigned i = 0; i < p->n_slots; i++) {
                p->slots[i].in = p->mem + i * slot_bytes;
                p->slots[i].out = p->slots[i].in + p->in_cap;
        }
        /* One transform a worker: engine_aead is single-threaded (for the
         * kernel engine, an operation socket each). */
        for (unsigned i = 0; i < p->n_workers; i++) {
                r = ops->aead_new(&p->aead[i]);
                if (r < 0)
                        return r;
        }
        p->stop_fd = eventfd(0, EFD_CLOEXEC);
        return p->stop_fd < 0 ? negative_errno() : 0;
}

static int pool_start(struct pool *p, int in_fd, struct worker_arg *args)
{
        pthread_attr_t attr;
        int r;

        p->in_fd = in_fd;
        r = -pthread_attr_init(&attr);
        if (r < 0)
                return r;
        pthread_attr_setstacksize(&attr, 256 * 1024);
        for (unsigned i = 0; i < p->n_workers && r >= 0; i++) {
                args[i] = (struct worker_arg){ p, i };
                r = -pthread_create(&p->workers[i], &attr, worker_main, &args[i]);
                if (r >= 0)
                        p->started++;
        }
        if (r >= 0) {
                r = -pthread_create(&p->reader, &attr, reader_main, p);
                p->reader_started = r >= 0;
        }
        pthread_attr_destroy(&attr);
        return r;
}

/* Asks check when it is due (at or after *next_usec), and sets when it is
 * due next. */
static int check_due(const struct stream_check *check, uint64_t *next_usec)
{
        uint64_t now = now_mono_usec();

        if (!check || now < *next_usec)
                return 0;
        *next_usec = now + check->interval_ms * UINT64_C(1000);
        return check->fn(check->userdata);
}

/* Waits for slot seq to be done, asking check whenever it is due. */
static int await_slot(struct pool *p, uint64_t seq, const struct stream_check *check, uint64_t *next_check)
{
        struct slot *s = &p->slots[seq % p->n_slots];

        for (;;) {
                bool ready;
                int r = check_due(check, next_check);

                if (r < 0)
                        return r;
                pthread_mutex_lock(&p->lock);
                if (!(s->state == SLOT_DONE && s->seq == seq)) {
                        if (check) {
                                struct timespec ts = { .tv_sec = (time_t)(*next_check / 1000000),
                                                       .tv_nsec = (long)(*next_check % 1000000) * 1000 };

                                pthread_cond_timedwait(&p->done_cv, &p->lock, &ts);
                        } else
                                pthread_cond_wait(&p->done_cv, &p->lock);
                }
                ready = s->state == SLOT_DONE && s->seq == seq;
                pthread_mutex_unlock(&p->lock);
                if (ready)
                        return 0;
        }
}

static void release(struct pool *p, struct slot *s)
{
        pthread_mutex_lock(&p->lock);
        s->state = SLOT_FREE;
        pthread_cond_broadcast(&p->free_cv);
        pthread_mutex_unlock(&p->lock);
}

/* The caller's part: writes the slots out in order.  header (encryption)
 * goes out just before the first slot. */
static int write_slots(struct pool *p, int out_fd, const uint8_t *header, size_t header_len,
                       const struct stream_check *check, uint64_t next_check, uint64_t *ret_total,
                       const char **ret_why)
{
        uint64_t total = 0;
        int r;

        for (uint64_t seq = 0;; seq++) {
                struct slot *s = &p->slots[seq % p->n_slots];
                bool last;

                *ret_why = "stopped";
                r = await_slot(p, seq, check, &next_check);
                if (r < 0)
                        return r;
                if (s->error && !s->why) {
                        *ret_why = "reading the input failed";
                        return s->error;
                }
                if (s->error && p->encrypting) {
                        *ret_why = s->why;
                        return s->error;
                }
                if (header_len) {
                        *ret_why = "writing the output failed";
                        r = stream_write_full(out_fd, header, header_len);
                        if (r < 0)
                                return r;
                        header_len = 0;
                }
                /* Only segments that opened are written; under a check, a
                 * segment at a time, each when it still holds. */
                {
                        size_t step = check ? p->segment_size : s->out_len;

                        for (size_t off = 0; off < s->out_len; off += step) {
                                *ret_why = "stopped";
                                r = check_due(check, &next_check);
                                if (r < 0)
                                        return r;
                                *ret_why = "writing the output failed";
                                r = stream_write_full(out_fd, s->out + off,
                                                      s->out_len - off < step ? s->out_len - off : step);
                                if (r < 0)
                                        return r;
                        }
                }
                if (!p->encrypting)
                        secure_wipe(s->out, s->out_len);
                total += p->encrypting ? s->in_len : s->out_len;
                if (s->error) {
                        *ret_why = s->why;
                        return s->error;
                }
                last = s->last;
                release(p, s);
                if (last)
                        break;
        }
        *ret_total = total;
        return 0;
}

int stream_encrypt_fd_pool(const struct engine_ops *ops, const uint8_t key[ENGINE_KEY_SIZE],
                           const uint8_t policy_id[FORMAT_POLICY_ID_SIZE], uint32_t generation,
                           const uint8_t *ctx, size_t ctx_len, uint32_t segment_size, int in_fd,
                           int out_fd, unsigned threads, uint64_t *ret_plaintext_size,
                           const char **ret_error)
{
        struct worker_arg args[STREAM_POOL_THREADS_MAX];
        uint8_t header[STREAM_HEADER_MAX];
        struct stream_enc *s = NULL;
        size_t header_len = 0;
        uint64_t total = 0;
        const char *why = "out of memory";
        struct pool p;
        int r;

        if (!ops || !ret_error || in_fd < 0 || out_fd < 0 || threads < 2 ||
            threads > STREAM_POOL_THREADS_MAX)
                return -EINVAL;
        /* A segment size a client asked for: what stream_encrypt_fd says. */
        if (segment_size < STREAM_SEGMENT_MIN || segment_size > STREAM_SEGMENT_MAX) {
                *ret_error = "cannot start the stream";
                return -EINVAL;
        }
        r = pool_init(&p, ops, segment_size, true, threads);
        if (r < 0) {
                why = r == -ENOMEM ? "out of memory" : "cannot start the stream";
                goto out;
        }
        r = stream_enc_new(ops, p.aead[0], key, policy_id, generation, ctx, ctx_len, segment_size, &s,
                           header, &header_len);
        if (r < 0) {
                why = r == -EMSGSIZE ? "stream segment size too large for this engine" :
                      "cannot start the stream";
                goto out;
        }
        p.enc = s;
        why = "cannot start the stream";
        r = pool_start(&p, in_fd, args);
        if (r < 0)
                goto out;
        r = write_slots(&p, out_fd, header, header_len, NULL, 0, &total, &why);
out:
        pool_free(&p, ops);  /* wipes the plaintext it read */
        stream_enc_free(s);
        if (r < 0)
                *ret_error = why;
        else if (ret_plaintext_size)
                *ret_plaintext_size = total;
        return r;
}

int stream_decrypt_fd_pool(const struct engine_ops *ops, const uint8_t key[ENGINE_KEY_SIZE],
                           const struct stream_header *h, const uint8_t *ctx, size_t ctx_len,
                           int in_fd, int out_fd, const struct stream_check *check, unsigned threads,
                           uint64_t *ret_plaintext_size, const char **ret_error)
{
        struct worker_arg args[STREAM_POOL_THREADS_MAX];
        struct stream_dec *s = NULL;
        uint64_t total = 0, next_check = 0;
        const char *why = "out of memory";
        struct pool p;
        int r;

        if (!ops || !ret_error || !h || in_fd < 0 || out_fd < 0 || threads < 2 ||
            threads > STREAM_POOL_THREADS_MAX || (check && (!check->fn || !check->interval_ms)))
                return -EINVAL;
        if (h->segment_size < STREAM_SEGMENT_MIN || h->segment_size > STREAM_SEGMENT_MAX)
                return -EINVAL;
        /* The caller has just asked: the first answer is due an interval on. */
        if (check)
                next_check = now_mono_usec() + check->interval_ms * UINT64_C(1000);
        r = pool_init(&p, ops, h->segment_size, false, threads);
        if (r < 0) {
                why = r == -ENOMEM ? "out of memory" : "cannot start the stream";
                goto out;
        }
        why = "cannot start the stream";
        r = stream_dec_new(ops, p.aead[0], key, h, ctx, ctx_len, &s, &why);
        if (r < 0)
                goto out;
        p.dec = s;
        why = "cannot start the stream";
        r = pool_start(&p, in_fd, args);
        if (r < 0)
                goto out;
        r = write_slots(&p, out_fd, NULL, 0, check, next_check, &total, &why);
out:
        pool_free(&p, ops);
        stream_dec_free(s);
        if (r < 0)
                *ret_error = why;
        else if (ret_plaintext_size)
                *ret_plaintext_size = total;
        return r;
}
