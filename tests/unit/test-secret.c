/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The secret arena: zeroed, aligned, wiped on free, full means ENOMEM, free
 * blocks merge, threads do not trip over each other, and the kernel sees the
 * arena as never-dumped (and locked, wiped on fork) in /proc/self/smaps.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "shared/secret.h"
#include "shared/util.h"

#define ARENA (256u * 1024)

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

static bool have_cap_ipc_lock(void)
{
        FILE *f = fopen("/proc/self/status", "re");
        char line[256];
        unsigned long long caps = 0;

        if (!f)
                return false;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "CapEff: %llx", &caps) == 1)
                        break;
        fclose(f);
        return caps >> 14 & 1;  /* CAP_IPC_LOCK */
}

static void test_alloc_basics(void **state)
{
        static const size_t sizes[] = { 0, 1, 15, 16, 17, 100, 4096, 5000 };
        void *p[ARRAY_SIZE(sizes)];
        int on_stack;

        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
                p[i] = secret_alloc(sizes[i]);
                assert_non_null(p[i]);
                assert_int_equal((uintptr_t)p[i] % 16, 0);
                assert_true(all_zero(p[i], sizes[i]));
                memset(p[i], 0x5a, sizes[i]);
                for (size_t j = 0; j < i; j++)
                        assert_ptr_not_equal(p[i], p[j]);
        }
        if (have_cap_ipc_lock())
                assert_int_equal(secret_is_locked(p[0]), 1);
        else
                print_message("no CAP_IPC_LOCK: arena locked = %d\n", secret_is_locked(p[0]));
        assert_int_equal(secret_is_locked(&on_stack), 0);
        for (size_t i = 0; i < ARRAY_SIZE(sizes); i++)
                secret_free(p[i]);
        secret_free(NULL);
        assert_int_equal(secret_in_use(), 0);
}

static void test_init_after_use(void **state)
{
        void *p = secret_alloc(1);

        assert_non_null(p);
        assert_int_equal(secret_arena_init(4096), -EBUSY);
        assert_int_equal(secret_arena_init(0), -EINVAL);
        secret_free(p);
}

static void test_wipe_on_free(void **state)
{
        uint8_t *p = secret_alloc(100), *q;

        assert_non_null(p);
        memset(p, 0xa5, 100);
        secret_free(p);
        /* The arena stays mapped, so the freed bytes can be inspected. */
        assert_true(all_zero(p, 112));
        q = secret_alloc(100);
        assert_ptr_equal(q, p);  /* first fit */
        assert_true(all_zero(q, 100));
        secret_free(q);
}

static void test_in_use(void **state)
{
        void *a, *b, *c;

        assert_int_equal(secret_in_use(), 0);
        a = secret_alloc(1);
        assert_int_equal(secret_in_use(), 16);
        b = secret_alloc(17);
        assert_int_equal(secret_in_use(), 48);
        c = secret_alloc(0);
        assert_int_equal(secret_in_use(), 64);
        secret_free(b);
        assert_int_equal(secret_in_use(), 32);
        secret_free(a);
        secret_free(c);
        assert_int_equal(secret_in_use(), 0);
}

static void test_full(void **state)
{
        static void *blocks[ARENA / 16];
        size_t n = 0;
        void *p;

        while ((p = secret_alloc(4096)))
                blocks[n++] = p;
        assert_int_equal(errno, ENOMEM);
        while ((p = secret_alloc(16)))
                blocks[n++] = p;
        assert_int_equal(errno, ENOMEM);
        assert_int_equal(secret_in_use(), ARENA);
        assert_null(secret_alloc(1));
        while (n)
                secret_free(blocks[--n]);
        assert_int_equal(secret_in_use(), 0);

        /* Everything merged back: the whole arena is one block again. */
        p = secret_alloc(ARENA);
        assert_non_null(p);
        secret_free(p);
        errno = 0;
        assert_null(secret_alloc(ARENA + 1));
        assert_int_equal(errno, ENOMEM);
        assert_null(secret_alloc(SIZE_MAX));
        assert_int_equal(errno, ENOMEM);
}

static void test_coalesce(void **state)
{
        const size_t q = ARENA / 4;
        uint8_t *a = secret_alloc(q), *b = secret_alloc(q), *c = secret_alloc(q), *d = secret_alloc(q), *e;

        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(c);
        assert_non_null(d);
        assert_null(secret_alloc(1));
        secret_free(b);
        assert_null(secret_alloc(2 * q));
        secret_free(c);
        e = secret_alloc(2 * q);   /* only fits where b and c merged */
        assert_ptr_equal(e, b);
        secret_free(a);
        secret_free(d);
        secret_free(e);
        assert_int_equal(secret_in_use(), 0);
}

struct worker {
        pthread_t t;
        unsigned seed;
        uint8_t tag;
        int failures;
};

static void *work(void *arg)
{
        struct worker *w = arg;
        struct { uint8_t *p; size_t n; } live[8] = {};

        for (int i = 0; i < 20000; i++) {
                size_t k = (size_t)rand_r(&w->seed) % ARRAY_SIZE(live);

                if (live[k].p) {
                        for (size_t j = 0; j < live[k].n; j++)
                                if (live[k].p[j] != w->tag)
                                        w->failures++;  /* someone else wrote into our block */
                        secret_free(live[k].p);
                        live[k].p = NULL;
                        continue;
                }
                live[k].n = 1 + (size_t)rand_r(&w->seed) % 600;
                live[k].p = secret_alloc(live[k].n);
                if (!live[k].p || !all_zero(live[k].p, live[k].n)) {
                        w->failures++;
                        continue;
                }
                memset(live[k].p, w->tag, live[k].n);
        }
        for (size_t k = 0; k < ARRAY_SIZE(live); k++)
                secret_free(live[k].p);
        return NULL;
}

static void test_threads(void **state)
{
        struct worker w[8];

        for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
                w[i] = (struct worker){ .seed = (unsigned)i * 7919u + 1, .tag = (uint8_t)(0x11 * (i + 1)) };
                assert_int_equal(pthread_create(&w[i].t, NULL, work, &w[i]), 0);
        }
        for (size_t i = 0; i < ARRAY_SIZE(w); i++) {
                assert_int_equal(pthread_join(w[i].t, NULL), 0);
                assert_int_equal(w[i].failures, 0);
        }
        assert_int_equal(secret_in_use(), 0);
}

/* The VmFlags of the /proc/self/smaps entry holding p, and its size. */
static bool smaps_flags(const void *p, char *flags, size_t size, size_t *ret_len)
{
        FILE *f = fopen("/proc/self/smaps", "re");
        char line[512];
        bool inside = false, found = false;

        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                unsigned long lo, hi;

                if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
                        inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
                        if (inside)
                                *ret_len = hi - lo;
                } else if (inside && strncmp(line, "VmFlags:", 8) == 0) {
                        snprintf(flags, size, "%s", line + 8);
                        found = true;
                        break;
                }
        }
        fclose(f);
        return found;
}

static bool has_flag(const char *flags, const char *flag)
{
        char padded[512], want[8];

        snprintf(padded, sizeof(padded), " %s ", flags);
        for (char *c = padded; *c; c++)
                if (*c == '\n')
                        *c = ' ';
        snprintf(want, sizeof(want), " %s ", flag);
        return strstr(padded, want) != NULL;
}

static void test_smaps(void **state)
{
        void *p = secret_alloc(32);
        char flags[512];
        size_t len = 0;

        assert_non_null(p);
        assert_true(smaps_flags(p, flags, sizeof(flags), &len));
        print_message("arena VmFlags:%s", flags);
        assert_int_equal(len, ARENA);                  /* one region, guard pages apart */
        assert_true(has_flag(flags, "dd"));            /* MADV_DONTDUMP */
        assert_true(has_flag(flags, "wf") || has_flag(flags, "dc"));  /* WIPEONFORK or DONTFORK */
        if (secret_is_locked(p))
                assert_true(has_flag(flags, "lo"));    /* mlock */
        secret_free(p);
}

static void test_wipe_on_fork(void **state)
{
        uint8_t *p = secret_alloc(64);
        char flags[512];
        size_t len;
        int status;
        pid_t pid;

        assert_non_null(p);
        assert_true(smaps_flags(p, flags, sizeof(flags), &len));
        if (!has_flag(flags, "wf")) {
                secret_free(p);
                print_message("MADV_WIPEONFORK unsupported by this kernel\n");
                skip();
        }
        memset(p, 0x5a, 64);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(all_zero(p, 64) ? 0 : 1);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(p[0], 0x5a);  /* the parent keeps its copy */
        secret_free(p);
}

static void expect_abort(void (*f)(void))
{
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                /* Keep the expected crash quiet. */
                int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

                if (devnull >= 0)
                        dup2(devnull, STDERR_FILENO);
                f();
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void free_foreign(void)
{
        static char not_ours[64];

        secret_free(not_ours + 16);
}

static void free_twice(void)
{
        void *p = secret_alloc(10);

        secret_free(p);
        secret_free(p);
}

static void free_middle(void)
{
        uint8_t *p = secret_alloc(64);

        secret_free(p + 16);
}

static void test_bad_free_aborts(void **state)
{
        expect_abort(free_foreign);
        expect_abort(free_twice);
        expect_abort(free_middle);
}

/* Re-executed as "--unlocked-child" without CAP_IPC_LOCK and with
 * RLIMIT_MEMLOCK 0: the arena must work and say it is not locked. */
static int unlocked_child(void)
{
        uint8_t *p = secret_alloc(64);

        if (!p || secret_is_locked(p) != 0)
                return 1;
        memset(p, 1, 64);
        secret_free(p);
        return secret_in_use() == 0 && all_zero(p, 64) ? 0 : 1;
}

static void test_unlocked(void **state)
{
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                struct rlimit none = { 0, 0 };

                if (setrlimit(RLIMIT_MEMLOCK, &none) < 0)
                        _exit(77);
                if (geteuid() == 0 &&
                    (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
                        _exit(77);
                execl("/proc/self/exe", "test-secret", "--unlocked-child", (char *)NULL);
                _exit(77);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                print_message("cannot run a child without CAP_IPC_LOCK here\n");
                skip();
        }
        assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_alloc_basics),
                cmocka_unit_test(test_init_after_use),
                cmocka_unit_test(test_wipe_on_free),
                cmocka_unit_test(test_in_use),
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_coalesce),
                cmocka_unit_test(test_threads),
                cmocka_unit_test(test_smaps),
                cmocka_unit_test(test_wipe_on_fork),
                cmocka_unit_test(test_bad_free_aborts),
                cmocka_unit_test(test_unlocked),
        };

        if (argc > 1 && strcmp(argv[1], "--unlocked-child") == 0)
                return unlocked_child();
        /* A small arena keeps "full" quick; sized before the first use. */
        if (secret_arena_init(ARENA) < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
