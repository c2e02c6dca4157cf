/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-uid budgets for journal lines and refusal records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "daemon/ratelimit.h"

#define T0 (UINT64_C(1000) * 1000000) /* any monotonic start */

static struct {
        unsigned calls;
        uid_t uid;
        unsigned suppressed;
        pid_t pid;
} rep;

static void report(uid_t uid, unsigned n, const struct audit_subject *last, void *userdata)
{
        (void)userdata;
        rep.calls++;
        rep.uid = uid;
        rep.suppressed = n;
        rep.pid = last->pid;
}

static void test_burst_then_count(void **state)
{
        struct ratelimit rl = RATELIMIT_INIT;
        struct audit_subject s = { .pid = 77, .uid = 5 };
        unsigned ok = 0;

        (void)state;
        memset(&rep, 0, sizeof(rep));
        for (int i = 0; i < 1000; i++)
                ok += ratelimit_allow(&rl, 5, T0 + (uint64_t)i, &s, report, NULL);
        assert_int_equal(ok, RATELIMIT_BURST);
        assert_int_equal(rep.calls, 0);
        /* Another uid has a budget of its own. */
        assert_true(ratelimit_allow(&rl, 6, T0, NULL, report, NULL));
        /* Not before the interval has ended... */
        ratelimit_flush(&rl, T0 + RATELIMIT_INTERVAL_USEC - 1, report, NULL);
        assert_int_equal(rep.calls, 0);
        /* ...and then the count, with the last subject left out. */
        ratelimit_flush(&rl, T0 + RATELIMIT_INTERVAL_USEC, report, NULL);
        assert_int_equal(rep.calls, 1);
        assert_int_equal(rep.uid, 5);
        assert_int_equal(rep.suppressed, 1000 - RATELIMIT_BURST);
        assert_int_equal(rep.pid, 77);
        /* Reported once; the uid starts afresh. */
        ratelimit_flush(&rl, T0 + 3 * RATELIMIT_INTERVAL_USEC, report, NULL);
        assert_int_equal(rep.calls, 1);
        assert_true(ratelimit_allow(&rl, 5, T0 + 3 * RATELIMIT_INTERVAL_USEC, &s, report, NULL));
}

/* Without a flush, the next allowed line is preceded by the count. */
static void test_count_before_next_line(void **state)
{
        struct ratelimit rl = RATELIMIT_INIT;

        (void)state;
        memset(&rep, 0, sizeof(rep));
        for (int i = 0; i < RATELIMIT_BURST + 3; i++)
                ratelimit_allow(&rl, 9, T0, NULL, report, NULL);
        assert_true(ratelimit_allow(&rl, 9, T0 + RATELIMIT_INTERVAL_USEC, NULL, report, NULL));
        assert_int_equal(rep.calls, 1);
        assert_int_equal(rep.uid, 9);
        assert_int_equal(rep.suppressed, 3);
}

/* More uids than slots: the oldest is reported and forgotten, so no count
 * is lost and the table stays bounded. */
static void test_many_uids(void **state)
{
        struct ratelimit rl = RATELIMIT_INIT;

        (void)state;
        memset(&rep, 0, sizeof(rep));
        for (int i = 0; i < RATELIMIT_BURST + 2; i++)
                ratelimit_allow(&rl, 1000, T0, NULL, report, NULL);
        for (uid_t u = 1; u < RATELIMIT_UIDS; u++)
                assert_true(ratelimit_allow(&rl, 1000 + u, T0 + u, NULL, report, NULL));
        assert_int_equal(rep.calls, 0);
        assert_true(ratelimit_allow(&rl, 5000, T0 + 100, NULL, report, NULL));
        assert_int_equal(rep.calls, 1);
        assert_int_equal(rep.uid, 1000);
        assert_int_equal(rep.suppressed, 2);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_burst_then_count),
                cmocka_unit_test(test_count_before_next_line),
                cmocka_unit_test(test_many_uids),
        };
        return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
