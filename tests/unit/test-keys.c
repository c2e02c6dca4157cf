/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The key manager's rollover logic against a real kernel keyring, an
 * in-memory SQLite store and the openssl engine.  audit_record is replaced
 * by a spy that can also refuse, to prove fail-closed behaviour.
 */
/* wrap: audit_record audit_can_write pthread_mutex_lock */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <keyutils.h>
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>

#include "ckey/ckey.h"
#include "daemon/keys.h"
#include "daemon/keys-internal.h"
#include "daemon/wrap.h"
#include "shared/format.h"
#include "shared/util.h"
#include "flaky-store.h"

static char audit_log[8192];
static int audit_fail;

int __wrap_audit_can_write(void);
int __wrap_audit_can_write(void)
{
        return audit_fail ? -EIO : 0;
}

int __wrap_audit_record(enum audit_kind kind, const char *op, const struct audit_subject *subj,
                        bool success, const char *fmt, ...);
int __wrap_audit_record(enum audit_kind kind, const char *op, const struct audit_subject *subj,
                        bool success, const char *fmt, ...)
{
        size_t n = strlen(audit_log);

        snprintf(audit_log + n, sizeof(audit_log) - n, "op=%s res=%s;", op,
                 success ? "success" : "failed");
        return audit_fail ? -EIO : 0;
}

struct fixture {
        struct dkm_config cfg;
        struct store *store;
        keyring_serial_t ring, master;
        struct keys *keys;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        uint8_t mk[32];
        char err[KEYS_ERR_MAX] = "";
        struct keys_env env;

        audit_fail = 0;
        keyctl_join_session_keyring(NULL);
        f->cfg.max_uses = 3;
        f->cfg.max_policies = 50;
        f->cfg.hedge_delay_usec = 50000;
        f->cfg.max_age_usec = 3600ULL * 1000000;
        f->cfg.cache_ttl_usec = 3600ULL * 1000000;
        f->cfg.audit_fail_closed = true;
        crypto_set_engine(&engine_openssl_ops);
        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &f->store), 0);
        assert_int_equal(keyring_open("dkm:test-keys", 0, &f->ring), 0);
        memset(mk, 0x5a, sizeof(mk));
        assert_int_equal(keyring_add(f->ring, "dkm:master", mk, sizeof(mk), 0, &f->master), 0);
        env = (struct keys_env){ &f->cfg, f->store, f->ring, f->master };
        assert_int_equal(keys_new(&env, &f->keys), 0);
        assert_int_equal(keys_load(f->keys, err), 0);
        audit_log[0] = 0;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        keys_free(f->keys);
        store_close(f->store);
        free(f);
        return 0;
}

static uint32_t encrypt_gen(struct fixture *f, const char *text, uint8_t **ret, size_t *ret_len)
{
        char err[KEYS_ERR_MAX] = "";
        struct format_header h;
        const char *why;

        assert_int_equal(keys_encrypt(f->keys, NULL, NULL, 0, (const uint8_t *)text, strlen(text),
                                      ret, ret_len, err), 0);
        assert_int_equal(format_parse(*ret, *ret_len, &h, &why), 0);
        return h.generation;
}

static void expect_plain(struct fixture *f, const uint8_t *ct, size_t len, const char *text)
{
        char err[KEYS_ERR_MAX] = "";
        uint8_t *pt;
        size_t n;

        assert_int_equal(keys_decrypt(f->keys, NULL, 0, ct, len, &pt, &n, err), 0);
        assert_int_equal(n, strlen(text));
        assert_memory_equal(pt, text, n);
        free(pt);
}

static void test_default_policy_created(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", *json;

        assert_int_equal(keys_list_json(f->keys, "default", &json, err), 0);
        assert_non_null(strstr(json, "\"generation\":1"));
        assert_non_null(strstr(json, "\"state\":\"active\""));
        free(json);
}

static void test_rollover_by_use(void **state)
{
        struct fixture *f = *state;
        uint8_t *ct[5];
        size_t len[5];

        /* max_uses = 3: the fourth encryption goes to generation 2. */
        assert_int_equal(encrypt_gen(f, "a", &ct[0], &len[0]), 1);
        assert_int_equal(encrypt_gen(f, "b", &ct[1], &len[1]), 1);
        assert_int_equal(encrypt_gen(f, "c", &ct[2], &len[2]), 1);
        assert_int_equal(encrypt_gen(f, "d", &ct[3], &len[3]), 2);
        assert_non_null(strstr(audit_log, "op=generation-rotate res=success"));
        /* Archived generation 1 still decrypts. */
        expect_plain(f, ct[0], len[0], "a");
        expect_plain(f, ct[3], len[3], "d");
        for (int i = 0; i < 4; i++)
                free(ct[i]);
}

static void test_rotate_retire(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "";
        struct audit_subject subj = { .uid = 1 };
        uint8_t *ct1, *pt;
        size_t l1, n;
        uint32_t g;

        assert_int_equal(encrypt_gen(f, "x", &ct1, &l1), 1);
        assert_int_equal(keys_rotate(f->keys, NULL, &subj, &g, err), 0);
        assert_int_equal(g, 2);
        assert_int_equal(keys_retire(f->keys, NULL, 2, &subj, err), -EBUSY);
        assert_non_null(strstr(err, "rotate first"));
        assert_int_equal(keys_retire(f->keys, NULL, 1, &subj, err), 0);
        assert_int_equal(keys_decrypt(f->keys, NULL, 0, ct1, l1, &pt, &n, err), -EKEYREVOKED);
        assert_non_null(strstr(err, "retired"));
        assert_int_equal(keys_retire(f->keys, NULL, 1, &subj, err), -EALREADY);
        assert_int_equal(keys_retire(f->keys, NULL, 9, &subj, err), -ENOENT);
        assert_int_equal(keys_rotate(f->keys, "nope", &subj, &g, err), -ENOENT);
        free(ct1);
}

static void test_fail_closed(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", *json;
        struct audit_subject subj = { .uid = 1 };
        uint32_t g = 0;

        audit_fail = 1;
        assert_int_equal(keys_rotate(f->keys, NULL, &subj, &g, err), -EIO);
        assert_non_null(strstr(err, "audit"));
        /* Nothing changed: still one generation. */
        assert_int_equal(keys_list_json(f->keys, NULL, &json, err), 0);
        assert_null(strstr(json, "\"generation\":2"));
        free(json);
}

static void test_restart_keeps_state(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "";
        struct keys_env env = { &f->cfg, f->store, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        uint8_t *ct;
        size_t l;
        uint32_t g;

        assert_int_equal(encrypt_gen(f, "kept", &ct, &l), 1);
        assert_int_equal(keys_rotate(f->keys, NULL, &subj, &g, err), 0);
        for (int i = 0; i < 2; i++) {
                uint8_t *c2;
                size_t l2;
                assert_int_equal(encrypt_gen(f, "g2", &c2, &l2), 2);
                free(c2);
        }
        keys_free(f->keys);
        assert_int_equal(keys_new(&env, &f->keys), 0);
        assert_int_equal(keys_load(f->keys, err), 0);
        expect_plain(f, ct, l, "kept");
        free(ct);
        /* Two of generation 2's three uses were spent before the restart:
         * one more fits, the next one rolls over. */
        assert_int_equal(encrypt_gen(f, "n", &ct, &l), 2);
        free(ct);
        assert_int_equal(encrypt_gen(f, "n", &ct, &l), 3);
        free(ct);
}

/* Two nodes on one store: a second key manager follows the first one's
 * rollover through keys_sync(), and a rotation that loses the
 * compare-and-swap (its node had not synced yet) reports the generation the
 * other node made instead of making a second one. */
static void test_two_nodes(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", *json;
        struct keys_env env = { &f->cfg, f->store, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        struct keys *b;
        uint8_t *ct, *pt;
        size_t l, n;
        uint32_t g;

        f->cfg.max_uses = 1000;
        assert_int_equal(keys_new(&env, &b), 0);
        assert_int_equal(keys_load(b, err), 0);
        assert_int_equal(keys_rotate(f->keys, NULL, &subj, &g, err), 0);
        assert_int_equal(g, 2);
        /* b has not synced: its rotation loses the race and meets generation 2. */
        assert_int_equal(keys_rotate(b, NULL, &subj, &g, err), 0);
        assert_int_equal(g, 2);
        assert_int_equal(keys_list_json(b, "default", &json, err), 0);
        assert_null(strstr(json, "\"generation\":3"));
        free(json);
        /* A rotation on a that b learns of through keys_sync. */
        sleep(1); /* past the coalescing window */
        assert_int_equal(keys_rotate(f->keys, NULL, &subj, &g, err), 0);
        assert_int_equal(g, 3);
        assert_int_equal(keys_sync(b, NULL), 0);
        assert_int_equal(keys_encrypt(b, NULL, NULL, 0, (const uint8_t *)"x", 1, &ct, &l, err), 0);
        {
                struct format_header h;
                const char *why;
                assert_int_equal(format_parse(ct, l, &h, &why), 0);
                assert_int_equal(h.generation, 3);
        }
        /* Retired on a: b refuses it after syncing. */
        assert_int_equal(keys_rotate(f->keys, NULL, &subj, &g, err), 0);
        assert_int_equal(keys_sync(b, NULL), 0);
        assert_int_equal(keys_retire(f->keys, NULL, 3, &subj, err), 0);
        assert_int_equal(keys_decrypt(b, NULL, 0, ct, l, &pt, &n, err), 0);
        free(pt);
        assert_int_equal(keys_sync(b, NULL), 0);
        assert_int_equal(keys_decrypt(b, NULL, 0, ct, l, &pt, &n, err), -EKEYREVOKED);
        free(ct);
        keys_free(b);
}

static void test_context_and_tamper(void **state)
{
        struct fixture *f = *state;
        struct context_pair pairs[] = { { "tenant", "acme" } };
        char err[KEYS_ERR_MAX] = "";
        uint8_t *ctx, *ct, *pt;
        size_t cl, l, n;
        const char *why;

        assert_int_equal(format_context_encode(pairs, 1, &ctx, &cl, &why), 0);
        assert_int_equal(keys_encrypt(f->keys, NULL, ctx, cl, (const uint8_t *)"s", 1, &ct, &l, err), 0);
        assert_int_equal(keys_decrypt(f->keys, NULL, 0, ct, l, &pt, &n, err), -EBADMSG);
        assert_int_equal(keys_decrypt(f->keys, ctx, cl, ct, l, &pt, &n, err), 0);
        free(pt);
        ct[l - 1] ^= 1;
        assert_int_equal(keys_decrypt(f->keys, ctx, cl, ct, l, &pt, &n, err), -EBADMSG);
        assert_non_null(strstr(err, "authentication"));
        free(ct);
        free(ctx);
}

static void test_wrong_master_key(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "";
        struct keys_env env = { &f->cfg, f->store, f->ring, 0 };
        uint8_t other[32];
        struct keys *k;

        memset(other, 0x11, sizeof(other));
        assert_int_equal(keyring_add(f->ring, "dkm:master2", other, 32, 0, &env.master), 0);
        /* Drop the cached keys so that loading must unwrap. */
        keys_free(f->keys);
        f->keys = NULL;
        keyctl_clear(f->ring);
        assert_int_equal(keyring_add(f->ring, "dkm:master2", other, 32, 0, &env.master), 0);
        assert_int_equal(keys_new(&env, &k), 0);
        assert_int_equal(keys_load(k, err), -EBADMSG);
        assert_non_null(strstr(err, "wrong master key"));
        keys_free(k);
        /* Put the right one back for teardown. */
        assert_int_equal(keys_new(&(struct keys_env){ &f->cfg, f->store, f->ring, 0 }, &f->keys), 0);
}

/* uses_reserved of generation gen of the default policy, as the store has it. */
struct find_gen_ctx {
        uint32_t gen;
        long long reserved;
};

static int find_reserved(const struct store_kv *kv, void *userdata)
{
        struct find_gen_ctx *c = userdata;
        char suffix[32], *v;

        snprintf(suffix, sizeof(suffix), "/gens/%010u", c->gen);
        if (strlen(kv->key) < strlen(suffix) ||
            strcmp(kv->key + strlen(kv->key) - strlen(suffix), suffix) != 0)
                return 0;
        v = strndup((const char *)kv->value, kv->value_len);
        assert_non_null(v);
        assert_non_null(strstr(v, "\"uses_reserved\":"));
        c->reserved = atoll(strstr(v, "\"uses_reserved\":") + strlen("\"uses_reserved\":"));
        free(v);
        return 0;
}

static long long store_reserved(struct store *s, uint32_t gen)
{
        struct find_gen_ctx c = { gen, -1 };

        assert_int_equal(store_sqlite_ops.range(inner(s), "policies/", find_reserved, &c), 0);
        return c.reserved;
}

static int encrypt_rc(struct keys *k, uint32_t *ret_gen, char *err)
{
        struct format_header h;
        const char *why;
        uint8_t *ct;
        size_t l;
        int r = keys_encrypt(k, NULL, NULL, 0, (const uint8_t *)"d", 1, &ct, &l, err);

        if (r < 0)
                return r;
        assert_int_equal(format_parse(ct, l, &h, &why), 0);
        *ret_gen = h.generation;
        free(ct);
        return 0;
}

/* On a shared store a node holds the block it spends and the next one:
 * without the store it encrypts through both (more than one block), then
 * refuses clearly; refusals do not eat uses, and when the store is back
 * the next reservation follows on from what was counted. */
static void test_degraded_uses(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", *json;
        struct keys_env env = { &f->cfg, NULL, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        struct keys *k;
        uint8_t *ct, *pt;
        size_t l, n;
        uint32_t g;

        flaky_down = false;
        f->cfg.max_uses = 64; /* blocks of 4 */
        assert_int_equal(store_open(&flaky_ops, ":memory:", &env.store), 0);
        assert_int_equal(keys_new(&env, &k), 0);
        assert_int_equal(keys_load(k, err), 0);
        assert_int_equal(encrypt_rc(k, &g, err), 0);
        assert_int_equal(g, 1);
        /* The first reservation takes two blocks: one to spend, one ahead. */
        assert_int_equal(store_reserved(env.store, 1), 8);
        for (int i = 0; i < 4; i++)
                assert_int_equal(encrypt_rc(k, &g, err), 0);
        /* Five spent: the block ahead is being spent, the next one is reserved. */
        assert_int_equal(store_reserved(env.store, 1), 12);
        assert_int_equal(keys_encrypt(k, NULL, NULL, 0, (const uint8_t *)"x", 1, &ct, &l, err), 0);

        flaky_down = true;
        /* Uses 7..12 are this node's: six more, more than one block. */
        for (int i = 0; i < 6; i++) {
                assert_int_equal(encrypt_rc(k, &g, err), 0);
                assert_int_equal(g, 1);
        }
        for (int i = 0; i < 50; i++) {
                err[0] = 0;
                assert_int_equal(encrypt_rc(k, &g, err), -EAGAIN);
                assert_non_null(strstr(err, "store unavailable: use reservation exhausted"));
        }
        /* Reads go on from the cached keys; changes are refused, nothing done. */
        assert_int_equal(keys_decrypt(k, NULL, 0, ct, l, &pt, &n, err), 0);
        free(pt);
        assert_true(keys_rotate(k, NULL, &subj, &g, err) < 0);
        assert_int_equal(keys_list_json(k, "default", &json, err), 0);
        assert_null(strstr(json, "\"generation\":2"));
        free(json);

        flaky_down = false;
        assert_int_equal(encrypt_rc(k, &g, err), 0);
        assert_int_equal(g, 1);
        /* Follows on from the 12 counted: the 50 refusals took nothing. */
        assert_int_equal(store_reserved(env.store, 1), 20);
        assert_int_equal(keys_decrypt(k, NULL, 0, ct, l, &pt, &n, err), 0);
        free(pt);
        free(ct);
        keys_free(k);
        store_close(env.store);
}

/* A store that refuses writes (a full disk): rotate, retire and destroy
 * fail, and each record says so (res=failed), with nothing changed; once
 * writes work again each succeeds and says that. */
static void test_outcome_on_full_store(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", *json;
        struct keys_env env = { &f->cfg, NULL, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        struct keys *k;
        uint32_t g;

        flaky_down = false;
        flaky_write_error = 0;
        assert_int_equal(store_open(&flaky_ops, ":memory:", &env.store), 0);
        assert_int_equal(keys_new(&env, &k), 0);
        assert_int_equal(keys_load(k, err), 0);
        assert_int_equal(keys_rotate(k, NULL, &subj, &g, err), 0);
        assert_int_equal(g, 2);

        audit_log[0] = 0;
        flaky_write_error = -ENOSPC;
        assert_int_equal(keys_rotate(k, NULL, &subj, &g, err), -ENOSPC);
        assert_int_equal(keys_retire(k, NULL, 1, &subj, err), -ENOSPC);
        assert_int_equal(keys_destroy(k, NULL, 1, &subj, 7, err), -ENOSPC);
        assert_string_equal(audit_log, "op=generation-rotate res=failed;op=generation-retire res=failed;"
                                       "op=generation-destroy res=failed;");
        assert_int_equal(keys_list_json(k, "default", &json, err), 0);
        assert_null(strstr(json, "\"generation\":3"));
        assert_null(strstr(json, "retired"));
        assert_null(strstr(json, "destroyed"));
        free(json);

        audit_log[0] = 0;
        flaky_write_error = 0;
        assert_int_equal(keys_retire(k, NULL, 1, &subj, err), 0);
        assert_string_equal(audit_log, "op=generation-retire res=success;");
        keys_free(k);
        store_close(env.store);
}

/* The use limit holds: with two nodes on the store spending the
 * generation, nobody encrypts past max_uses, counted in the store. */
static void test_degraded_limit(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "";
        struct keys_env env = { &f->cfg, NULL, f->ring, f->master };
        struct keys *a, *b;
        unsigned per_gen[16] = { 0 };
        uint32_t g;

        flaky_down = false;
        f->cfg.max_uses = 32;
        assert_int_equal(store_open(&flaky_ops, ":memory:", &env.store), 0);
        assert_int_equal(keys_new(&env, &a), 0);
        assert_int_equal(keys_load(a, err), 0);
        assert_int_equal(keys_new(&env, &b), 0);
        assert_int_equal(keys_load(b, err), 0);
        for (int i = 0; i < 100; i++) {
                struct keys *k = i % 3 ? a : b;

                flaky_down = i % 7 == 3; /* now and then no quorum */
                if (encrypt_rc(k, &g, err) == 0) {
                        assert_true(g < 16);
                        per_gen[g]++;
                } else
                        assert_non_null(strstr(err, "store unavailable"));
                flaky_down = false;
                keys_sync(k == a ? b : a, NULL);
        }
        for (uint32_t i = 1; i < 16; i++) {
                assert_true(per_gen[i] <= f->cfg.max_uses);
                if (per_gen[i])
                        assert_true(store_reserved(env.store, i) <= (long long)f->cfg.max_uses);
                if (per_gen[i])
                        assert_true(store_reserved(env.store, i) >= (long long)per_gen[i]);
        }
        keys_free(a);
        keys_free(b);
        store_close(env.store);
}

static void test_store_unavailable(void **state)
{
        struct fixture *f = *state;
        struct store *s;

        assert_false(store_unavailable(f->store, -EAGAIN)); /* SQLite: local */
        assert_int_equal(store_open(&flaky_ops, ":memory:", &s), 0);
        assert_true(store_unavailable(s, -EAGAIN));
        assert_true(store_unavailable(s, -ETIMEDOUT));
        assert_false(store_unavailable(s, -ESTALE));
        assert_false(store_unavailable(s, -E2BIG));
        assert_false(store_unavailable(NULL, -EAGAIN));
        store_close(s);
}

/* --- changes that meet another node's ------------------------------------------ */

static void write_key_file(const char *path, uint8_t fill)
{
        uint8_t k[32];
        FILE *fp = fopen(path, "we");

        memset(k, fill, sizeof(k));
        assert_non_null(fp);
        assert_int_equal(fwrite(k, 1, sizeof(k), fp), sizeof(k));
        fclose(fp);
        /* What [policy] key_dirs accepts: others may not read a key. */
        assert_int_equal(chmod(path, 0600), 0);
}

/* As dkmd.conf's [policy] key_dirs=dir would. */
static void allow_key_dir(char *dir)
{
        char *dirs[] = { dir, NULL };

        assert_int_equal(ckey_allow_set(NULL, dirs), 0);
}

/* Node b changes a policy after node a changed it, before b's watch has
 * read a's change: b's compare-and-swap fails, it reads the policy again
 * and its change is made, whole (assign, rekey, rekey with a new policy
 * key over a generation a reserved uses of, purge). */
static void test_stale_changes_retry(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", *json, dir[] = "/tmp/dkm-test-keys-XXXXXX", ka[64], kb[64], kc[64];
        char ua[80], ub[80], uc[80];
        struct keys_env env = { &f->cfg, f->store, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        const char *uris_ab[2] = { ua, ub }, *uris_bc[2] = { ub, uc };
        struct keys *b;
        uint8_t *ct, *pt;
        size_t l, n;
        uint32_t g;

        f->cfg.max_uses = 1000;
        assert_non_null(mkdtemp(dir));
        allow_key_dir(dir);
        snprintf(ka, sizeof(ka), "%s/a.key", dir);
        snprintf(kb, sizeof(kb), "%s/b.key", dir);
        snprintf(kc, sizeof(kc), "%s/c.key", dir);
        write_key_file(ka, 0xa1);
        write_key_file(kb, 0xb2);
        write_key_file(kc, 0xc3);
        snprintf(ua, sizeof(ua), "file:%s", ka);
        snprintf(ub, sizeof(ub), "file:%s", kb);
        snprintf(uc, sizeof(uc), "file:%s", kc);
        assert_int_equal(keys_policy_create(f->keys, "p2", NULL, &subj, err), 0);
        assert_int_equal(keys_new(&env, &b), 0);
        assert_int_equal(keys_load(b, err), 0);

        /* assign: the later one wins, both succeed. */
        assert_int_equal(keys_policy_assign(f->keys, "p2", false, 5, &subj, err), 0);
        assert_int_equal(keys_policy_assign(b, DEFAULT_POLICY, false, 5, &subj, err), 0);
        assert_int_equal(keys_sync(f->keys, NULL), 0);
        {
                char got[65];
                assert_true(keys_policy_for(f->keys, 5, 5, NULL, 0, got));
                assert_string_equal(got, DEFAULT_POLICY);
                assert_true(keys_policy_for(b, 5, 5, NULL, 0, got));
                assert_string_equal(got, DEFAULT_POLICY);
        }

        /* rekey after a rotation elsewhere. */
        assert_int_equal(keys_rotate(f->keys, "p2", &subj, &g, err), 0);
        assert_int_equal(keys_policy_rekey(b, "p2", uris_ab, false, &subj, err), 0);
        assert_int_equal(keys_sync(f->keys, NULL), 0);
        assert_int_equal(keys_policy_list_json(f->keys, "p2", &json, err), 0);
        assert_non_null(strstr(json, "\"managed_by\":\"customer\""));
        assert_non_null(strstr(json, "\"active_generation\":2"));
        free(json);

        /* rekey with a new policy key after a reserved uses of the active
         * generation: the reservation is kept, not written over. */
        assert_int_equal(keys_encrypt(f->keys, "p2", NULL, 0, (const uint8_t *)"r", 1, &ct, &l, err), 0);
        assert_int_equal(keys_policy_rekey(b, "p2", uris_bc, true, &subj, err), 0);
        assert_int_equal(keys_sync(f->keys, NULL), 0);
        assert_int_equal(keys_decrypt(f->keys, NULL, 0, ct, l, &pt, &n, err), 0);
        free(pt);
        assert_int_equal(keys_decrypt(b, NULL, 0, ct, l, &pt, &n, err), 0);
        free(pt);
        free(ct);
        {
                /* a's reservation (one block: SQLite) is still in the store. */
                struct keys *c;
                assert_int_equal(keys_new(&env, &c), 0);
                assert_int_equal(keys_load(c, err), 0);
                assert_int_equal(keys_list_json(c, "p2", &json, err), 0);
                {
                        const char *g2 = strstr(json, "\"generation\":2,\"state\":\"active\"");
                        assert_non_null(g2);
                        assert_non_null(strstr(g2, "\"uses\":"));
                        assert_true(atoi(strstr(g2, "\"uses\":") + 7) >= 62);
                }
                free(json);
                keys_free(c);
        }

        /* purge after a rotation elsewhere. */
        assert_int_equal(keys_rotate(f->keys, "p2", &subj, &g, err), 0);
        assert_int_equal(keys_purge(b, "p2", &subj, 7, err), 0);
        assert_int_equal(keys_sync(f->keys, NULL), 0);
        assert_int_equal(keys_encrypt(f->keys, "p2", NULL, 0, (const uint8_t *)"r", 1, &ct, &l, err),
                         -EKEYREVOKED);

        /* create: the same name on two nodes is a clear conflict. */
        assert_int_equal(keys_policy_create(f->keys, "p3", NULL, &subj, err), 0);
        err[0] = 0;
        assert_int_equal(keys_policy_create(b, "p3", NULL, &subj, err), -EEXIST);
        assert_non_null(strstr(err, "already exists"));
        keys_free(b);
        unlink(ka);
        unlink(kb);
        unlink(kc);
        rmdir(dir);
}

/* --- rekey with a new policy key, in steps ------------------------------------ */

/* A store whose transactions carry at most 4 compares or operations, and
 * that fails (as without quorum) once small_txns_left reaches 0. */
static unsigned small_txns_left = ~0u;

static int small_txn(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                     const struct store_op *ops, size_t n_ops, uint64_t *ret_revision)
{
        if (n_cmps > 4 || n_ops > 4)
                return -E2BIG;
        if (small_txns_left == 0)
                return -EAGAIN;
        small_txns_left--;
        return flaky_txn(s, cmps, n_cmps, ops, n_ops, ret_revision);
}

struct count_ctx {
        const char *text;
        size_t n;
};

static int count_in_store(const struct store_kv *kv, void *userdata)
{
        struct count_ctx *c = userdata;
        char *v = strndup((const char *)kv->value, kv->value_len);

        assert_non_null(v);
        if (strstr(v, c->text))
                c->n++;
        free(v);
        return 0;
}

/* Records under "policies/" whose value contains text. */
static size_t store_count(struct store *s, const char *text)
{
        struct count_ctx c = { text, 0 };

        assert_int_equal(store_sqlite_ops.range(inner(s), "policies/", count_in_store, &c), 0);
        return c.n;
}

/* The same on a plain SQLite store. */
static size_t store_count_sqlite(struct store *s, const char *text)
{
        struct count_ctx c = { text, 0 };

        assert_int_equal(store_sqlite_ops.range(s, "policies/", count_in_store, &c), 0);
        return c.n;
}

static void test_rekey_in_steps(void **state)
{
        struct fixture *f = *state;
        struct store_ops small_ops = flaky_ops;
        char err[KEYS_ERR_MAX] = "", *json, dir[] = "/tmp/dkm-test-keys-XXXXXX", ka[64], kb[64];
        char ua[80], ub[80];
        const char *uris[2] = { ua, ub };
        struct keys_env env = { &f->cfg, NULL, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        struct keys *k, *c;
        uint8_t *ct[11], *pt;
        size_t l[11], n;
        uint32_t g;

        small_ops.txn = small_txn;
        small_ops.max_txn_ops = 4;
        small_txns_left = ~0u;
        flaky_down = false;
        f->cfg.max_uses = 1000;
        assert_non_null(mkdtemp(dir));
        allow_key_dir(dir);
        snprintf(ka, sizeof(ka), "%s/a.key", dir);
        snprintf(kb, sizeof(kb), "%s/b.key", dir);
        write_key_file(ka, 0x1a);
        write_key_file(kb, 0x2b);
        snprintf(ua, sizeof(ua), "file:%s", ka);
        snprintf(ub, sizeof(ub), "file:%s", kb);
        assert_int_equal(store_open(&small_ops, ":memory:", &env.store), 0);
        assert_int_equal(keys_new(&env, &k), 0);
        assert_int_equal(keys_load(k, err), 0);
        for (int i = 0; i < 11; i++) {
                if (i)
                        assert_int_equal(keys_rotate(k, NULL, &subj, &g, err), 0);
                assert_int_equal(keys_encrypt(k, NULL, NULL, 0, (const uint8_t *)"s", 1, &ct[i], &l[i], err), 0);
        }
        /* 11 generations, 4 a transaction: the rekey, 3 steps, the end.
         * The store fails after the rekey and two steps. */
        small_txns_left = 3;
        assert_int_equal(keys_policy_rekey(k, DEFAULT_POLICY, uris, true, &subj, err), 0);
        assert_int_equal(keys_policy_list_json(k, DEFAULT_POLICY, &json, err), 0);
        assert_non_null(strstr(json, "\"policy_key_version\":1"));
        assert_non_null(strstr(json, "\"generations_to_rewrap\":3"));
        free(json);
        assert_int_equal(store_count(env.store, "\"previous_key\""), 1);
        assert_int_equal(store_count(env.store, "\"key_version\":1"), 1 + 8);

        /* A node that starts now (nothing cached) reads every generation. */
        keyctl_clear(f->ring);
        assert_int_equal(keyring_add(f->ring, "dkm:master", (uint8_t[32]){ [0 ... 31] = 0x5a }, 32, 0,
                                     &env.master), 0);
        assert_int_equal(keys_new(&env, &c), 0);
        assert_int_equal(keys_load(c, err), 0);
        for (int i = 0; i < 11; i++) {
                assert_int_equal(keys_decrypt(c, NULL, 0, ct[i], l[i], &pt, &n, err), 0);
                free(pt);
        }
        /* With the store back, its maintenance finishes the work. */
        small_txns_left = ~0u;
        keys_maintain(c);
        assert_int_equal(store_count(env.store, "\"previous_key\""), 0);
        assert_int_equal(store_count(env.store, "\"key_version\":1"), 1 + 11);
        assert_int_equal(keys_policy_list_json(c, DEFAULT_POLICY, &json, err), 0);
        assert_null(strstr(json, "generations_to_rewrap"));
        free(json);
        keys_free(k);
        keys_free(c);
        /* Cut short once more (version 2: the rekey and one step); the next
         * rekey finishes it first, then makes version 3. */
        keyctl_clear(f->ring);
        assert_int_equal(keyring_add(f->ring, "dkm:master", (uint8_t[32]){ [0 ... 31] = 0x5a }, 32, 0,
                                     &env.master), 0);
        assert_int_equal(keys_new(&env, &c), 0);
        assert_int_equal(keys_load(c, err), 0);
        small_txns_left = 2;
        assert_int_equal(keys_policy_rekey(c, DEFAULT_POLICY, uris, true, &subj, err), 0);
        assert_int_equal(store_count(env.store, "\"key_version\":2"), 1 + 4);
        small_txns_left = ~0u;
        assert_int_equal(keys_policy_rekey(c, DEFAULT_POLICY, uris, true, &subj, err), 0);
        assert_int_equal(store_count(env.store, "\"key_version\":3"), 1 + 11);
        assert_int_equal(store_count(env.store, "\"previous_key\""), 0);
        keys_free(c);
        keyctl_clear(f->ring);
        assert_int_equal(keyring_add(f->ring, "dkm:master", (uint8_t[32]){ [0 ... 31] = 0x5a }, 32, 0,
                                     &env.master), 0);
        assert_int_equal(keys_new(&env, &c), 0);
        assert_int_equal(keys_load(c, err), 0);
        for (int i = 0; i < 11; i++) {
                assert_int_equal(keys_decrypt(c, NULL, 0, ct[i], l[i], &pt, &n, err), 0);
                assert_int_equal(n, 1);
                free(pt);
                free(ct[i]);
        }
        keys_free(c);
        store_close(env.store);
        keys_free(f->keys); /* teardown: a fresh one, its keys went with the keyring */
        assert_int_equal(keys_new(&(struct keys_env){ &f->cfg, f->store, f->ring, env.master }, &f->keys), 0);
        unlink(ka);
        unlink(kb);
        rmdir(dir);
}

/* A node reserving uses of a generation that another node re-wrapped
 * (rekey with a new policy key) meanwhile must not write the old wrapping
 * back: it reads the generation again first. */
static void test_reservation_keeps_rewrap(void **state)
{
        struct fixture *f = *state;
        char err[KEYS_ERR_MAX] = "", dir[] = "/tmp/dkm-test-keys-XXXXXX", ka[64], kb[64], ua[80], ub[80];
        const char *uris[2] = { ua, ub };
        struct keys_env env = { &f->cfg, f->store, f->ring, f->master };
        struct audit_subject subj = { .uid = 1 };
        struct keys *b, *c;
        uint8_t *ct[4], *pt;
        size_t l[4], n;

        f->cfg.max_uses = 32; /* blocks of 2 */
        assert_non_null(mkdtemp(dir));
        allow_key_dir(dir);
        snprintf(ka, sizeof(ka), "%s/a.key", dir);
        snprintf(kb, sizeof(kb), "%s/b.key", dir);
        write_key_file(ka, 0x3c);
        write_key_file(kb, 0x4d);
        snprintf(ua, sizeof(ua), "file:%s", ka);
        snprintf(ub, sizeof(ub), "file:%s", kb);
        assert_int_equal(keys_encrypt(f->keys, NULL, NULL, 0, (const uint8_t *)"0", 1, &ct[0], &l[0], err), 0);
        assert_int_equal(keys_new(&env, &b), 0);
        assert_int_equal(keys_load(b, err), 0);
        assert_int_equal(keys_policy_rekey(b, DEFAULT_POLICY, uris, true, &subj, err), 0);
        assert_int_equal(store_count_sqlite(f->store, "\"previous_key\""), 0);
        /* The first node has not synced; its next block is reserved now. */
        for (int i = 1; i < 4; i++)
                assert_int_equal(keys_encrypt(f->keys, NULL, NULL, 0, (const uint8_t *)"x", 1, &ct[i], &l[i],
                                              err), 0);
        assert_int_equal(store_count_sqlite(f->store, "\"key_version\":1"), 2); /* policy and gen 1 */
        assert_int_equal(keys_new(&env, &c), 0);
        assert_int_equal(keys_load(c, err), 0);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(keys_decrypt(c, NULL, 0, ct[i], l[i], &pt, &n, err), 0);
                free(pt);
                free(ct[i]);
        }
        keys_free(b);
        keys_free(c);
        unlink(ka);
        unlink(kb);
        rmdir(dir);
}

/* Uses counted against uses made when many threads encrypt at once.  Each
 * round, RACE_THREADS threads encrypt once together; the first of them to
 * go for the reservation lock is held there until every thread of the
 * round has taken its use number, so the others queue on the lock with
 * numbers taken before the new block exists: the interleaving that made
 * every queued thread reserve a block of its own (64 clients counted 9.66
 * uses per use made).  Not timed: the hold ends on the count of numbers
 * taken, not on a clock. */
#define RACE_THREADS 32
#define RACE_ROUNDS 64

static struct {
        pthread_mutex_t lock;
        pthread_mutex_t *watched; /* the keys' reservation lock */
        struct generation *g;     /* whose counter is watched */
        uint64_t until;           /* hold until g->uses reaches it */
        bool armed, stuck;
} gate = { .lock = PTHREAD_MUTEX_INITIALIZER };

int __real_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m);
int __wrap_pthread_mutex_lock(pthread_mutex_t *m)
{
        bool armed;
        int r;

        if (m != gate.watched || m == NULL)
                return __real_pthread_mutex_lock(m);
        r = __real_pthread_mutex_lock(m);
        __real_pthread_mutex_lock(&gate.lock);
        armed = gate.armed && !gate.stuck;
        gate.armed = false;
        pthread_mutex_unlock(&gate.lock);
        /* 30 s: only a guard against a hang, never a figure. */
        for (int i = 0; armed && atomic_load(&gate.g->uses) < gate.until; i++) {
                if (i == 30000) {
                        gate.stuck = true;
                        break;
                }
                usleep(1000);
        }
        return r;
}

struct racer {
        struct keys *k;
        pthread_barrier_t *start, *end;
        atomic_int *failed;
};

static void *racer_run(void *arg)
{
        struct racer *r = arg;

        for (int i = 0; i < RACE_ROUNDS; i++) {
                char err[KEYS_ERR_MAX] = "";
                uint8_t *ct;
                size_t l;

                pthread_barrier_wait(r->start);
                if (keys_encrypt(r->k, NULL, NULL, 0, (const uint8_t *)"r", 1, &ct, &l, err) < 0) {
                        fprintf(stderr, "encrypt: %s\n", err);
                        atomic_fetch_add(r->failed, 1);
                } else
                        free(ct);
                pthread_barrier_wait(r->end);
        }
        return NULL;
}

static void race_uses(struct fixture *f, bool standby)
{
        char err[KEYS_ERR_MAX] = "";
        struct keys_env env = { &f->cfg, NULL, f->ring, f->master };
        pthread_barrier_t start, end;
        pthread_t t[RACE_THREADS];
        struct racer racer;
        atomic_int failed = 0;
        uint64_t made = (uint64_t)RACE_THREADS * RACE_ROUNDS, counted = 0, block;
        struct keys *k;

        flaky_down = false;
        f->cfg.max_uses = 16384; /* blocks of 1024: two or three are reserved */
        block = f->cfg.max_uses / 16;
        assert_int_equal(store_open(&flaky_ops, ":memory:", &env.store), 0);
        assert_int_equal(keys_new(&env, &k), 0);
        /* flaky is a shared store (a block ahead); false: as on SQLite. */
        k->standby = standby;
        assert_int_equal(keys_load(k, err), 0);
        pthread_barrier_init(&start, NULL, RACE_THREADS + 1);
        pthread_barrier_init(&end, NULL, RACE_THREADS + 1);
        racer = (struct racer){ k, &start, &end, &failed };
        for (int i = 0; i < RACE_THREADS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, racer_run, &racer), 0);
        gate.stuck = false;
        gate.watched = &k->reserve;
        for (int i = 0; i < RACE_ROUNDS; i++) {
                struct policy *p = find_policy(k, "default");

                /* Between rounds: no thread is in keys.c. */
                pthread_mutex_lock(&gate.lock);
                gate.g = find_gen(p, p->rec.active);
                gate.until = atomic_load(&gate.g->uses) + RACE_THREADS;
                gate.armed = true;
                pthread_mutex_unlock(&gate.lock);
                pthread_barrier_wait(&start);
                pthread_barrier_wait(&end);
        }
        for (int i = 0; i < RACE_THREADS; i++)
                pthread_join(t[i], NULL);
        gate.watched = NULL;
        assert_int_equal(atomic_load(&failed), 0);
        for (uint32_t gen = 1; gen <= 8; gen++) {
                long long r = store_reserved(env.store, gen);

                if (r > 0)
                        counted += (uint64_t)r;
        }
        fprintf(stderr, "%s: %" PRIu64 " uses made, %" PRIu64 " counted (%.3fx)\n",
                standby ? "shared store" : "single node", made, counted, (double)counted / (double)made);
        /* Within 5 %, plus the block being spent (and, on a shared store,
         * the one reserved ahead of it). */
        assert_true(counted * 100 <= made * 105 + (standby ? 2 : 1) * block * 100);
        assert_false(gate.stuck);
        pthread_barrier_destroy(&start);
        pthread_barrier_destroy(&end);
        keys_free(k);
        store_close(env.store);
}

static void test_concurrent_uses_counted_once(void **state)
{
        race_uses(*state, false);
}

static void test_concurrent_uses_counted_once_shared(void **state)
{
        race_uses(*state, true);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_default_policy_created, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rollover_by_use, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rotate_retire, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outcome_on_full_store, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fail_closed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_keeps_state, setup, teardown),
                cmocka_unit_test_setup_teardown(test_context_and_tamper, setup, teardown),
                cmocka_unit_test_setup_teardown(test_two_nodes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_wrong_master_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_degraded_uses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_degraded_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_store_unavailable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_changes_retry, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rekey_in_steps, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reservation_keeps_rewrap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_uses_counted_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_uses_counted_once_shared, setup, teardown),
        };
        return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
