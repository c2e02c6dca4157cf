/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-uid connection limits: a flood by one uid leaves room for the others. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "daemon/connlimit.h"

static void test_nonmember_share(void **state)
{
        static struct connlimit cl = CONNLIMIT_INIT;
        char why[200];

        (void)state;
        for (int i = 0; i < CONNLIMIT_NONMEMBER_PER_UID; i++)
                assert_int_equal(connlimit_take(&cl, 2904, false, 64, why, sizeof(why)), 0);
        assert_int_equal(connlimit_take(&cl, 2904, false, 64, why, sizeof(why)), -EUSERS);
        assert_string_equal(why, "uid 2904 has 4 connections open, the most a uid in no dkm group may hold");
        /* Many non-member uids together stop at their pool... */
        for (uid_t u = 1; cl.nonmembers < CONNLIMIT_NONMEMBERS; u++)
                assert_int_equal(connlimit_take(&cl, 10000 + u, false, 64, why, sizeof(why)), 0);
        assert_int_equal(connlimit_take(&cl, 9999, false, 64, why, sizeof(why)), -EUSERS);
        assert_non_null(strstr(why, "the rest are kept for members"));
        /* ...and members fill the reserve, each uid to its share. */
        for (uid_t u = 0; cl.total < CONNLIMIT_MAX; u++)
                for (int i = 0; i < 64 && cl.total < CONNLIMIT_MAX; i++)
                        assert_int_equal(connlimit_take(&cl, 20000 + u, true, 64, why, sizeof(why)), 0);
        assert_int_equal(connlimit_take(&cl, 30000, true, 64, why, sizeof(why)), -EUSERS);
        assert_string_equal(why, "dkmd serves 512 connections at most, and all are in use");
        /* One given back is one to take again. */
        connlimit_give_back(&cl, 2904, false);
        assert_int_equal(connlimit_take(&cl, 2904, false, 64, why, sizeof(why)), 0);
}

static void test_member_share(void **state)
{
        static struct connlimit cl = CONNLIMIT_INIT;
        char why[200];

        (void)state;
        for (int i = 0; i < 3; i++)
                assert_int_equal(connlimit_take(&cl, 2901, true, 3, why, sizeof(why)), 0);
        assert_int_equal(connlimit_take(&cl, 2901, true, 3, why, sizeof(why)), -EUSERS);
        assert_string_equal(why, "uid 2901 has 3 connections open, the most [daemon] max_connections_per_uid allows");
        /* Another member is not affected. */
        assert_int_equal(connlimit_take(&cl, 2902, true, 3, why, sizeof(why)), 0);
        for (int i = 0; i < 3; i++)
                connlimit_give_back(&cl, 2901, true);
        connlimit_give_back(&cl, 2902, true);
        assert_int_equal(cl.total, 0);
        /* A uid with none open gives nothing back. */
        connlimit_give_back(&cl, 2901, true);
        assert_int_equal(cl.total, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_nonmember_share),
                cmocka_unit_test(test_member_share),
        };
        return cmocka_run_group_tests_name("connlimit", tests, NULL, NULL);
}
