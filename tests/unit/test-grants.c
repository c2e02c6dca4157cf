/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Grants without the store: a grant approved before the store lost quorum
 * still serves on a node whose keyring holds its key; a grant key revoked
 * with keyctl is still refused; when the store answers again a revocation
 * another node recorded applies at the next use.  Real kernel keyrings, a
 * store that can lose quorum (flaky-store.h), audit_record spied.
 */
/* wrap: audit_record audit_can_write */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <keyutils.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/grants-internal.h"
#include "daemon/grants.h"
#include "shared/util.h"
#include "flaky-store.h"

static char audit_log[8192];

int __wrap_audit_can_write(void);
int __wrap_audit_can_write(void)
{
        return 0;
}

int __wrap_audit_record(enum audit_kind kind, const char *op, const struct audit_subject *subj,
                        bool success, const char *fmt, ...);
int __wrap_audit_record(enum audit_kind kind, const char *op, const struct audit_subject *subj,
                        bool success, const char *fmt, ...)
{
        size_t n = strlen(audit_log);

        (void)kind;
        (void)subj;
        (void)fmt;
        snprintf(audit_log + n, sizeof(audit_log) - n, "op=%s res=%s;", op,
                 success ? "success" : "failed");
        return 0;
}

struct fixture {
        struct dkm_config cfg_a, cfg_b; /* two nodes, each its own grants keyring */
        char dir_a[64], dir_b[64];
        struct store *store;
        struct grants *a, *b;
};

static void node_cfg(struct dkm_config *c, char *dir, size_t size, const char *name)
{
        snprintf(dir, size, "/tmp/dkm-test-grants-%d-%s", (int)getpid(), name);
        c->state_dir = dir;
        c->approvals_required = 2;
        c->max_duration_usec = 8 * 3600ULL * 1000000;
        c->request_ttl_usec = 3600ULL * 1000000;
        c->audit_fail_closed = true;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        char err[GRANT_ERR_MAX] = "";

        flaky_down = false;
        flaky_write_error = 0;
        audit_log[0] = 0;
        node_cfg(&f->cfg_a, f->dir_a, sizeof(f->dir_a), "a");
        node_cfg(&f->cfg_b, f->dir_b, sizeof(f->dir_b), "b");
        assert_int_equal(store_open(&flaky_ops, ":memory:", &f->store), 0);
        assert_int_equal(grants_new(&f->cfg_a, f->store, NULL, &f->a, err), 0);
        assert_int_equal(grants_new(&f->cfg_b, f->store, NULL, &f->b, err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        flaky_down = false;
        keyctl_unlink(grants_keyring(f->a), KEY_SPEC_USER_KEYRING);
        keyctl_unlink(grants_keyring(f->b), KEY_SPEC_USER_KEYRING);
        grants_free(f->a);
        grants_free(f->b);
        store_close(f->store);
        free(f);
        return 0;
}

static const struct audit_subject holder = { .uid = 4001 }, appr1 = { .uid = 4002 },
                                  appr2 = { .uid = 4003 };

static uint32_t grant(struct grants *g)
{
        char err[GRANT_ERR_MAX] = "", st[64];
        uint32_t id;

        assert_int_equal(grants_request(g, &holder, "ticket 7", "30m", "decrypt", NULL, 0, &id, err), 0);
        assert_int_equal(grants_approve(g, &appr1, id, st, sizeof(st), err), 0);
        assert_int_equal(grants_approve(g, &appr2, id, st, sizeof(st), err), 0);
        assert_string_equal(st, "granted");
        return id;
}

static int check(struct grants *g, uint32_t *ret_id, char *err)
{
        struct grant_use use = { 0 };
        int r = grants_check(g, &holder, SCOPE_DECRYPT, "default", &use, err);

        if (r == 0 && ret_id)
                *ret_id = use.id;
        return r;
}

static void test_grant_without_quorum(void **state)
{
        struct fixture *f = *state;
        char err[GRANT_ERR_MAX] = "", desc[32];
        keyring_serial_t key;
        uint32_t id = grant(f->a), used = 0;

        /* Node b mirrors the grant approved on a at its first use. */
        assert_int_equal(check(f->b, &used, err), 0);
        assert_int_equal(used, id);
        flaky_down = true;
        assert_int_equal(check(f->a, &used, err), 0);
        assert_int_equal(used, id);
        assert_int_equal(check(f->b, &used, err), 0);
        assert_int_equal(used, id);
        /* keyctl revoke on b: refused there, without the store. */
        snprintf(desc, sizeof(desc), "dkm:grant:%u", id);
        assert_int_equal(keyring_search(grants_keyring(f->b), desc, &key), 0);
        if (keyctl_revoke(key) < 0)
                fail_msg("keyctl_revoke %d: %s", key, strerror(errno));
        err[0] = 0;
        assert_int_equal(check(f->b, NULL, err), -EKEYREVOKED);
        assert_non_null(strstr(err, "revoked"));
        /* a still serves it: its own key is live. */
        assert_int_equal(check(f->a, &used, err), 0);
        flaky_down = false;
        assert_int_equal(check(f->b, NULL, err), -EKEYREVOKED);
}

static void test_revocation_elsewhere_applies_when_back(void **state)
{
        struct fixture *f = *state;
        char err[GRANT_ERR_MAX] = "";
        uint32_t id = grant(f->a), used = 0;

        assert_int_equal(check(f->b, &used, err), 0);
        flaky_down = true;
        assert_int_equal(check(f->b, &used, err), 0);
        /* The store is back; a revokes (b's watch has not run): b's next
         * check reads the store and refuses. */
        flaky_down = false;
        assert_int_equal(grants_revoke(f->a, &appr1, id, err), 0);
        err[0] = 0;
        assert_int_equal(check(f->b, NULL, err), -EKEYREVOKED);
        assert_non_null(strstr(err, "revoked"));
        /* And the cache learnt it: still refused when the store goes away again. */
        flaky_down = true;
        assert_int_equal(check(f->b, NULL, err), -EKEYREVOKED);
}

/* A store that refuses writes (a full disk): each record says what the
 * caller was told, and nothing is left half-done: no grant key for a
 * request the store kept pending, a revocation that failed leaves the grant
 * as it was. */
static void test_outcome_on_full_store(void **state)
{
        struct fixture *f = *state;
        char err[GRANT_ERR_MAX] = "", st[64], desc[32];
        keyring_serial_t key;
        uint32_t id, granted;

        assert_int_equal(grants_request(f->a, &holder, "ticket 9", "30m", "decrypt", NULL, 0, &id, err), 0);
        assert_int_equal(grants_approve(f->a, &appr1, id, st, sizeof(st), err), 0);
        snprintf(desc, sizeof(desc), "dkm:grant:%u", id);

        audit_log[0] = 0;
        flaky_write_error = -ENOSPC;
        assert_int_equal(grants_approve(f->a, &appr2, id, st, sizeof(st), err), -ENOSPC);
        assert_string_equal(audit_log, "op=grant-create res=failed;op=access-approve res=failed;");
        /* Dropped: revoked, then gone. */
        assert_true(keyring_search(grants_keyring(f->a), desc, &key) < 0);
        assert_int_equal(check(f->a, NULL, err), -EPERM);
        audit_log[0] = 0;
        assert_int_equal(grants_deny(f->a, &appr2, id, "no", err), -ENOSPC);
        assert_string_equal(audit_log, "op=access-deny res=failed;");

        flaky_write_error = 0;
        assert_int_equal(grants_approve(f->a, &appr2, id, st, sizeof(st), err), 0);
        assert_string_equal(st, "granted");
        assert_int_equal(check(f->a, NULL, err), 0);
        granted = id;

        audit_log[0] = 0;
        flaky_write_error = -ENOSPC;
        assert_int_equal(grants_revoke(f->a, &appr1, id, err), -ENOSPC);
        assert_string_equal(audit_log, "op=grant-revoke res=failed;");
        assert_int_equal(check(f->a, NULL, err), 0); /* the caller was told it failed */
        audit_log[0] = 0;
        assert_int_equal(grants_request(f->a, &holder, "ticket 10", "30m", "decrypt", NULL, 0, &id, err),
                         -ENOSPC);
        assert_string_equal(audit_log, "op=access-request res=failed;");

        flaky_write_error = 0;
        audit_log[0] = 0;
        assert_int_equal(grants_revoke(f->a, &appr1, granted, err), 0);
        assert_string_equal(audit_log, "op=grant-revoke res=success;");
        assert_int_equal(check(f->a, NULL, err), -EKEYREVOKED);
}

/* A grant this node never held a key for is not taken from the cache (it
 * may have been revoked elsewhere since): refused with a clear reason. */
static void test_unseen_grant_without_quorum(void **state)
{
        struct fixture *f = *state;
        char err[GRANT_ERR_MAX] = "";
        uint32_t id = grant(f->a);

        grants_maintain(f->a); /* a full read: fills a's cache; b's was filled at start */
        {
                /* b read the store once (at start) before the grant: refresh
                 * its cache without using the grant (list does a full walk). */
                char *json;
                assert_int_equal(grants_list_json(f->b, &json, err), 0);
                free(json);
        }
        {
                char desc[32];
                keyring_serial_t key;
                snprintf(desc, sizeof(desc), "dkm:grant:%u", id);
                /* list does not mirror: b has no key for it yet. */
                assert_int_equal(keyring_search(grants_keyring(f->b), desc, &key), -ENOKEY);
        }
        flaky_down = true;
        err[0] = 0;
        assert_int_equal(check(f->b, NULL, err), -EPERM);
        assert_non_null(strstr(err, "store is unavailable"));
        flaky_down = false;
        assert_int_equal(check(f->b, NULL, err), 0);
}

/* approvals_required at its largest (config.c caps it at the approvals a
 * request records): the last approver fills the array and grants, and the
 * request with all its approvers survives the store (node b reads it). */
static void test_most_approvals_can_be_met(void **state)
{
        struct fixture *f = *state;
        char err[GRANT_ERR_MAX] = "", st[64], want[64];
        uint32_t id, used = 0;

        f->cfg_a.approvals_required = CONFIG_APPROVALS_MAX;
        assert_int_equal(MAX_APPROVERS, CONFIG_APPROVALS_MAX);
        assert_int_equal(grants_request(f->a, &holder, "all hands", "30m", "decrypt", NULL, 0, &id, err), 0);
        for (unsigned i = 1; i <= CONFIG_APPROVALS_MAX; i++) {
                struct audit_subject who = { .uid = 5000 + i };

                if (grants_approve(f->a, &who, id, st, sizeof(st), err) != 0)
                        fail_msg("approval %u: %s", i, err);
                if (i < CONFIG_APPROVALS_MAX)
                        snprintf(want, sizeof(want), "pending (%u of %u approvals)", i, CONFIG_APPROVALS_MAX);
                else
                        snprintf(want, sizeof(want), "granted");
                assert_string_equal(st, want);
        }
        assert_int_equal(check(f->a, &used, err), 0);
        assert_int_equal(used, id);
        assert_int_equal(check(f->b, &used, err), 0);
        assert_int_equal(used, id);
}

/* Nothing ever read: no guessing. */
static void test_no_cache(void **state)
{
        struct fixture *f = *state;
        char err[GRANT_ERR_MAX] = "";
        struct grants *c;
        struct dkm_config cfg;
        char dir[64];

        memset(&cfg, 0, sizeof(cfg));
        node_cfg(&cfg, dir, sizeof(dir), "c");
        grant(f->a);
        flaky_down = true;
        assert_int_equal(grants_new(&cfg, f->store, NULL, &c, err), 0);
        assert_int_equal(check(c, NULL, err), -EAGAIN);
        assert_non_null(strstr(err, "cannot read grants"));
        flaky_down = false;
        assert_int_equal(check(c, NULL, err), 0);
        keyctl_unlink(grants_keyring(c), KEY_SPEC_USER_KEYRING);
        grants_free(c);
}

/* The seen list, kept sorted for start-ups with many grants: inserts in any
 * order, no duplicates, removals from the middle and of absent ids. */
static void test_seen_list(void **state)
{
        struct fixture *f = *state;
        static const uint32_t ins[] = { 500, 1, 9000, 3, 70, 3, 4000000000u, 2 };
        static const uint32_t want[] = { 1, 2, 3, 70, 500, 9000, 4000000000u };

        for (size_t i = 0; i < ARRAY_SIZE(ins); i++)
                grant_seen_set(f->a, ins[i], true);
        assert_int_equal(f->a->n_seen, ARRAY_SIZE(want));
        for (size_t i = 0; i < ARRAY_SIZE(want); i++)
                assert_int_equal(f->a->seen[i], want[i]);
        for (uint32_t id = 0; id < 600; id++)
                assert_int_equal(grant_seen_has(f->a, id), id == 1 || id == 2 || id == 3 || id == 70 || id == 500);
        grant_seen_set(f->a, 70, false);
        grant_seen_set(f->a, 71, false);
        grant_seen_set(f->a, 1, false);
        grant_seen_set(f->a, 4000000000u, false);
        assert_int_equal(f->a->n_seen, 4);
        assert_false(grant_seen_has(f->a, 70));
        assert_false(grant_seen_has(f->a, 1));
        assert_true(grant_seen_has(f->a, 2) && grant_seen_has(f->a, 3) && grant_seen_has(f->a, 500) &&
                    grant_seen_has(f->a, 9000));
        for (uint32_t id = 10000; id > 5000; id--)
                grant_seen_set(f->a, id, true);
        for (size_t i = 1; i < f->a->n_seen; i++)
                assert_true(f->a->seen[i - 1] < f->a->seen[i]);
        assert_int_equal(f->a->n_seen, 4 + 5000 - 1); /* 9000 was there */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_grant_without_quorum, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revocation_elsewhere_applies_when_back, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outcome_on_full_store, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unseen_grant_without_quorum, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(test_seen_list, setup, teardown),
                cmocka_unit_test_setup_teardown(test_most_approvals_can_be_met, setup, teardown),
        };
        return cmocka_run_group_tests_name("grants", tests, NULL, NULL);
}
