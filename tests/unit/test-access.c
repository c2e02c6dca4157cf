/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Access decisions from peer credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "daemon/access.h"
#include "shared/wire.h"

static const struct dkm_config cfg = { .users_gid = 100, .operators_gid = 200, .approvers_gid = 300,
                                       .reviewers_gid = 400 };

static void test_roles_from_groups(void **state)
{
        struct peer p = { .uid = 5, .gid = 5, .groups = { 7, 200 }, .n_groups = 2 };

        assert_int_equal(access_roles(&cfg, &p), ROLE_OPERATOR);
        p.gid = 100; /* primary group counts too */
        assert_int_equal(access_roles(&cfg, &p), ROLE_USER | ROLE_OPERATOR);
        /* root: no implicit role but the reviewers' (status without keys). */
        p = (struct peer){ .uid = 0, .gid = 0 };
        assert_int_equal(access_roles(&cfg, &p), ROLE_REVIEWER);
        p = (struct peer){ .uid = 9, .gid = 9, .groups = { 400 }, .n_groups = 1 };
        assert_int_equal(access_roles(&cfg, &p), ROLE_REVIEWER);
}

static void test_unresolved_group_matches_nobody(void **state)
{
        struct dkm_config c = cfg;
        struct peer p = { .uid = 1, .gid = (gid_t)-1 };

        c.users_gid = (gid_t)-1;
        c.reviewers_gid = (gid_t)-1;
        assert_int_equal(access_roles(&c, &p), 0);
}

static void test_decisions(void **state)
{
        const char *why;

        assert_int_equal(access_check(ROLE_USER, WIRE_ENCRYPT, &why), 0);
        assert_int_equal(access_check(ROLE_USER, WIRE_DECRYPT, &why), 0);
        assert_int_equal(access_check(ROLE_USER, WIRE_REWRAP, &why), 0);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_DECRYPT, &why), -EPERM);
        assert_string_equal(why, "not in the users group");
        assert_int_equal(access_check(ROLE_APPROVER, WIRE_ENCRYPT, &why), -EPERM);
        assert_int_equal(access_check(ROLE_USER, WIRE_KEY_ROTATE, &why), -EPERM);
        assert_string_equal(why, "not in the operators group");
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_KEY_ROTATE, &why), 0);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_KEY_RETIRE, &why), 0);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_INSPECT, &why), 0);
        assert_int_equal(access_check(ROLE_APPROVER, WIRE_STATUS, &why), 0);
        assert_int_equal(access_check(0, WIRE_STATUS, &why), -EPERM);
        assert_string_equal(why, "not in any dkm group");
        /* A reviewer: status (the grants keyring for keyctl), nothing else. */
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_STATUS, &why), 0);
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_DECRYPT, &why), -EPERM);
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_INSPECT, &why), -EPERM);
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_KEY_LIST, &why), -EPERM);
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_ACCESS_LIST, &why), -EPERM);
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_ACCESS_REVOKE, &why), -EPERM);
        assert_int_equal(access_check(ROLE_REVIEWER, WIRE_POLICY_LIST, &why), -EPERM);
        /* Elevated access: operators ask, approvers decide, both may list and revoke. */
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_ACCESS_REQUEST, &why), 0);
        assert_int_equal(access_check(ROLE_APPROVER, WIRE_ACCESS_REQUEST, &why), -EPERM);
        assert_int_equal(access_check(ROLE_USER, WIRE_ACCESS_REQUEST, &why), -EPERM);
        assert_int_equal(access_check(ROLE_APPROVER, WIRE_ACCESS_APPROVE, &why), 0);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_ACCESS_APPROVE, &why), -EPERM);
        assert_string_equal(why, "not in the approvers group");
        assert_int_equal(access_check(ROLE_APPROVER, WIRE_ACCESS_DENY, &why), 0);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_ACCESS_DENY, &why), -EPERM);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_ACCESS_LIST, &why), 0);
        assert_int_equal(access_check(ROLE_APPROVER, WIRE_ACCESS_REVOKE, &why), 0);
        assert_int_equal(access_check(ROLE_USER, WIRE_ACCESS_LIST, &why), -EPERM);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_KEY_DESTROY, &why), 0);
        assert_int_equal(access_check(ROLE_USER | ROLE_APPROVER, WIRE_KEY_DESTROY, &why), -EPERM);
        /* Backups and store verify: operators only (a backup holds wrapped
         * keys; the reviewer's and the approver's roles need none). */
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_BACKUP, &why), 0);
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_STORE_VERIFY, &why), 0);
        for (unsigned t = WIRE_BACKUP; t <= WIRE_STORE_VERIFY; t++) {
                assert_int_equal(access_check(ROLE_USER | ROLE_APPROVER | ROLE_REVIEWER, t, &why), -EPERM);
                assert_string_equal(why, "not in the operators group");
        }
        /* A reshare request: operators file it, approvers approve it with
         * access approve; nobody else files one. */
        assert_int_equal(access_check(ROLE_OPERATOR, WIRE_RECOVERY_RESHARE, &why), 0);
        assert_int_equal(access_check(ROLE_USER | ROLE_APPROVER | ROLE_REVIEWER, WIRE_RECOVERY_RESHARE, &why),
                         -EPERM);
        assert_string_equal(why, "not in the operators group");
        assert_int_equal(access_check(ROLE_USER | ROLE_OPERATOR | ROLE_APPROVER, WIRE_REPLY_OK, &why),
                         -EOPNOTSUPP);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roles_from_groups),
                cmocka_unit_test(test_unresolved_group_matches_nobody),
                cmocka_unit_test(test_decisions),
        };
        return cmocka_run_group_tests_name("access", tests, NULL, NULL);
}
