/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The secret arena: one mapping, locked once, never dumped, wiped on fork and
 * on free.  Allocation is first-fit over two bitmaps of 16-byte units (one
 * marks units in use, the other the first unit of each block).  Keeping the
 * bookkeeping outside the arena means neither an overrun of a secret nor
 * MADV_WIPEONFORK in a child can corrupt it, and free units simply merge with
 * their neighbours.
 */
#include <pthread.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "shared/secret.h"
#include "shared/util.h"

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define UNIT 16u
#define DEFAULT_SIZE ((size_t)1 << 20)
#define WORD_BITS 64u

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static struct {
        uint8_t *map;      /* the mapping, with a guard page at each end */
        size_t map_size;
        uint8_t *base;     /* the arena itself */
        size_t size;
        size_t units;
        size_t words;
        uint64_t *used;    /* bit set: unit in use */
        uint64_t *head;    /* bit set: unit starts a block */
        size_t in_use;     /* bytes, counted in whole units */
        size_t want_size;  /* from secret_arena_init(); 0 = default */
        bool locked;
} arena;

static bool bit(const uint64_t *map, size_t i) { return map[i / WORD_BITS] >> (i % WORD_BITS) & 1; }
static void set_bit(uint64_t *map, size_t i) { map[i / WORD_BITS] |= (uint64_t)1 << (i % WORD_BITS); }
static void clear_bit(uint64_t *map, size_t i) { map[i / WORD_BITS] &= ~((uint64_t)1 << (i % WORD_BITS)); }

/* A child of a multi-threaded parent must not inherit the lock held. */
static void atfork_prepare(void) { pthread_mutex_lock(&lock); }
static void atfork_release(void) { pthread_mutex_unlock(&lock); }
static void register_atfork(void) { pthread_atfork(atfork_prepare, atfork_release, atfork_release); }

static size_t page_size(void)
{
        long p = sysconf(_SC_PAGESIZE);

        return p > 0 ? (size_t)p : 4096;
}

/* Called with the lock held.  A failed setup leaves nothing behind, so the
 * next allocation tries again. */
static int arena_setup(void)
{
        size_t page = page_size(), size = arena.want_size ? arena.want_size : DEFAULT_SIZE;
        size_t units = size / UNIT, words = (units + WORD_BITS - 1) / WORD_BITS;
        uint8_t *map = NULL, *base;
        uint64_t *used = NULL, *head = NULL;
        bool locked;
        int r;

        map = mmap(NULL, size + 2 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED)
                return negative_errno();
        base = map + page;
        if (mprotect(base, size, PROT_READ | PROT_WRITE) < 0 ||
            madvise(base, size, MADV_DONTDUMP) < 0) {
                r = negative_errno();
                goto fail;
        }
        /* Children see zeros instead of our secrets; before Linux 4.14 they
         * do not see the arena at all. */
        if (madvise(base, size, MADV_WIPEONFORK) < 0 &&
            (errno != EINVAL || madvise(base, size, MADV_DONTFORK) < 0)) {
                r = negative_errno();
                goto fail;
        }
        /* Without CAP_IPC_LOCK the RLIMIT_MEMLOCK may be too small: the arena
         * still works, it can just be swapped out, and secret_is_locked()
         * says so.  The raw system call, because sanitizer runtimes replace
         * mlock() with a stub that reports success without locking. */
        if (syscall(SYS_mlock, base, size) == 0)
                locked = true;
        else if (errno == EPERM || errno == ENOMEM || errno == EAGAIN)
                locked = false;
        else {
                r = negative_errno();
                goto fail;
        }

        used = calloc(words, sizeof(uint64_t));
        head = calloc(words, sizeof(uint64_t));
        if (!used || !head) {
                r = -ENOMEM;
                goto fail;
        }
        /* Bits past the end of the arena are permanently in use. */
        for (size_t i = units; i < words * WORD_BITS; i++)
                set_bit(used, i);

        arena.map = map;
        arena.map_size = size + 2 * page;
        arena.base = base;
        arena.size = size;
        arena.units = units;
        arena.words = words;
        arena.used = used;
        arena.head = head;
        arena.locked = locked;
        pthread_once(&atfork_once, register_atfork);
        return 0;
fail:
        free(used);
        free(head);
        munmap(map, size + 2 * page);
        return r;
}

int secret_arena_init(size_t size)
{
        size_t page = page_size();
        int r = 0;

        if (size == 0 || size > SIZE_MAX / 2)
                return -EINVAL;
        size = (size + page - 1) & ~(page - 1);
        pthread_mutex_lock(&lock);
        if (arena.base)
                r = -EBUSY;
        else
                arena.want_size = size;
        pthread_mutex_unlock(&lock);
        return r;
}

/* First fit: the lowest run of n free units, or SIZE_MAX. */
static size_t find_free(size_t n)
{
        size_t run = 0, start = 0;

        for (size_t w = 0; w < arena.words; w++) {
                uint64_t u = arena.used[w];

                if (u == UINT64_MAX) {
                        run = 0;
                        continue;
                }
                if (u == 0) {
                        if (run == 0)
                                start = w * WORD_BITS;
                        run += WORD_BITS;
                        if (run >= n)
                                return start;
                        continue;
                }
                for (unsigned b = 0; b < WORD_BITS; b++) {
                        if (u >> b & 1) {
                                run = 0;
                                continue;
                        }
                        if (run == 0)
                                start = w * WORD_BITS + b;
                        if (++run >= n)
                                return start;
                }
        }
        return SIZE_MAX;
}

void *secret_alloc(size_t size)
{
        size_t n, at;
        void *p;
        int r;

        if (size > SIZE_MAX - UNIT) {
                errno = ENOMEM;
                return NULL;
        }
        n = size ? (size + UNIT - 1) / UNIT : 1;

        pthread_mutex_lock(&lock);
        if (!arena.base) {
                r = arena_setup();
                if (r < 0) {
                        pthread_mutex_unlock(&lock);
                        errno = -r;
                        return NULL;
                }
        }
        at = n <= arena.units ? find_free(n) : SIZE_MAX;
        if (at == SIZE_MAX) {
                pthread_mutex_unlock(&lock);
                errno = ENOMEM;
                return NULL;
        }
        for (size_t i = at; i < at + n; i++)
                set_bit(arena.used, i);
        set_bit(arena.head, at);
        arena.in_use += n * UNIT;
        p = arena.base + at * UNIT;
        pthread_mutex_unlock(&lock);

        /* Free units are already zero; this only guards against a stray
         * write after free. */
        memset(p, 0, n * UNIT);
        return p;
}

void secret_free(void *p)
{
        int saved = errno;
        size_t at, end;

        if (!p)
                return;
        pthread_mutex_lock(&lock);
        if (!arena.base || (uint8_t *)p < arena.base || (uint8_t *)p >= arena.base + arena.size ||
            ((uint8_t *)p - arena.base) % UNIT != 0)
                abort();  /* not ours: a bug that must not go on quietly */
        at = (size_t)((uint8_t *)p - arena.base) / UNIT;
        if (!bit(arena.head, at) || !bit(arena.used, at))
                abort();  /* double free, or a pointer into the middle of a block */

        for (end = at + 1; end < arena.units && bit(arena.used, end) && !bit(arena.head, end); end++)
                ;
        /* Wipe before the units can be handed out again. */
        secure_wipe(p, (end - at) * UNIT);
        clear_bit(arena.head, at);
        for (size_t i = at; i < end; i++)
                clear_bit(arena.used, i);
        arena.in_use -= (end - at) * UNIT;
        pthread_mutex_unlock(&lock);
        errno = saved;
}

int secret_is_locked(const void *p)
{
        int r;

        pthread_mutex_lock(&lock);
        r = arena.base && arena.locked && (const uint8_t *)p >= arena.base &&
            (const uint8_t *)p < arena.base + arena.size;
        pthread_mutex_unlock(&lock);
        return r;
}

size_t secret_in_use(void)
{
        size_t r;

        pthread_mutex_lock(&lock);
        r = arena.in_use;
        pthread_mutex_unlock(&lock);
        return r;
}
