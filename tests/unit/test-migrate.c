/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Migration (daemon/migrate.h): the source read with every MAC checked,
 * the master key checked against its policies, the marker added in its
 * place, the same store told apart from another; and the source opened
 * read-only (store_sqlite_open_readonly). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/migrate.h"
#include "daemon/records.h"
#include "daemon/wrap.h"
#include "shared/format.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "store/store.h"

static const uint8_t master[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const uint8_t other[32] = { 9 };
static const uint8_t record_key[32] = { 0x42 };
static const uint8_t other_record_key[32] = { 0x43 };

static int setup(void **state)
{
        (void)state;
        crypto_set_engine(&engine_openssl_ops);
        return 0;
}

static struct store *auth_store(const char *where, struct store **ret_backend)
{
        struct store *inner, *s;

        assert_int_equal(store_open(&store_sqlite_ops, where, &inner), 0);
        *ret_backend = inner;
        assert_int_equal(store_auth_open(inner, record_key, NULL, NULL, NULL, &s), 0);
        return s;
}

static void put(struct store *s, const char *k, const char *v)
{
        const struct store_op op = { STORE_PUT, k, v, strlen(v) };

        assert_int_equal(store_ops_of(s)->txn(s, NULL, 0, &op, 1, NULL), 0);
}

/* A service-managed policy whose key is wrapped under mk. */
static void put_policy(struct store *s, const char *id, const char *name, const uint8_t *mk)
{
        struct policy_record p = { 0 };
        uint8_t uuid[16], key[32] = { 7 };
        char k[64], *json = NULL;

        snprintf(p.id, sizeof(p.id), "%s", id);
        snprintf(p.name, sizeof(p.name), "%s", name);
        p.active = 1;
        p.n_generations = 1;
        p.key_version = 1;
        assert_int_equal(uuid_from_string(id, uuid), 0);
        assert_int_equal(key_wrap(mk, WRAP_POLICY_KEY, uuid, 0, key, p.wrapped_key), 0);
        assert_int_equal(policy_record_encode(&p, &json), 0);
        snprintf(k, sizeof(k), "policies/%s", id);
        put(s, k, json);
        free(json);
}

#define ID1 "0b3a1f7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"

static void test_read_and_fill(void **state)
{
        struct store *sb, *s = auth_store(":memory:", &sb), *tb, *t = auth_store(":memory:", &tb);
        struct backup_set set = { 0 };
        char err[MIGRATE_ERR_MAX];
        size_t leased = 1, n = 0;
        unsigned policies = 0;
        struct store_kv kv = { 0 };

        put(s, "format", "{\"format\":1}");
        put_policy(s, ID1, "default", master);
        put(s, "names/default", ID1);
        assert_int_equal(migrate_read(sb, record_key, &set, &leased, err, sizeof(err)), 0);
        assert_int_equal(set.n, 3);
        assert_int_equal(leased, 0);
        assert_string_equal(set.v[0].key, "format");
        assert_string_equal((char *)set.v[0].value, "{\"format\":1}"); /* its MAC taken off */
        assert_int_equal(migrate_check_master(&set, master, &policies, err, sizeof(err)), 0);
        assert_int_equal(policies, 1);

        /* The marker goes in its place, once. */
        assert_int_equal(migrate_ensure_marker(&set, "initialized", 5), 1);
        assert_int_equal(migrate_ensure_marker(&set, "initialized", 6), 0);
        assert_int_equal(set.n, 4);
        assert_string_equal(set.v[1].key, "initialized");

        /* Filled into the target, read back through its authentication. */
        assert_int_equal(backup_fill(t, &set, err, sizeof(err)), 0);
        assert_int_equal(backup_store_count(tb, &n), 0);
        assert_int_equal(n, 4);
        assert_int_equal(store_ops_of(t)->get(t, "names/default", &kv), 0);
        assert_memory_equal(kv.value, ID1, strlen(ID1));
        store_kv_clear(&kv);
        /* A second fill finds the keys there and writes nothing. */
        assert_int_equal(backup_fill(t, &set, err, sizeof(err)), -ESTALE);
        backup_set_free(&set);
        store_close(t);
        store_close(s);
}

static void test_refusals(void **state)
{
        struct store *sb, *s = auth_store(":memory:", &sb), *eb, *e = auth_store(":memory:", &eb);
        struct backup_set set = { 0 };
        char err[MIGRATE_ERR_MAX] = "";
        size_t leased = 0;
        unsigned policies = 0;

        put(s, "format", "{\"format\":1}");
        put_policy(s, ID1, "default", master);

        /* Another installation's record key: refused at the first record. */
        assert_int_equal(migrate_read(sb, other_record_key, &set, &leased, err, sizeof(err)), -EKEYREJECTED);
        assert_non_null(strstr(err, "the master key does not open the source store"));
        assert_non_null(strstr(err, "record format"));
        assert_int_equal(set.n, 0);

        /* The right record key, but a policy key under another master key. */
        assert_int_equal(migrate_read(sb, record_key, &set, &leased, err, sizeof(err)), 0);
        assert_int_equal(migrate_check_master(&set, other, &policies, err, sizeof(err)), -EKEYREJECTED);
        assert_non_null(strstr(err, "policy 'default'"));
        backup_set_free(&set);

        /* A record forged into the source without the key. */
        {
                const struct store_op op = { STORE_PUT, "names/forged", "x", 1 };

                assert_int_equal(store_ops_of(sb)->txn(sb, NULL, 0, &op, 1, NULL), 0);
        }
        assert_int_equal(migrate_read(sb, record_key, &set, &leased, err, sizeof(err)), -EKEYREJECTED);
        assert_non_null(strstr(err, "names/forged"));
        assert_non_null(strstr(err, "carries no MAC"));

        /* A store of a dkmd from before records were authenticated. */
        {
                struct store *pb;
                const struct store_op op = { STORE_PUT, "names/default", ID1, strlen(ID1) };

                assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &pb), 0);
                assert_int_equal(store_ops_of(pb)->txn(pb, NULL, 0, &op, 1, NULL), 0);
                assert_int_equal(migrate_read(pb, record_key, &set, &leased, err, sizeof(err)), -EPROTO);
                assert_non_null(strstr(err, "start this dkmd on it once"));
                store_close(pb);
        }

        /* An empty source: nothing to copy. */
        assert_int_equal(migrate_read(eb, record_key, &set, &leased, err, sizeof(err)), -ENODATA);
        assert_non_null(strstr(err, "holds no record"));
        store_close(e);
        store_close(s);
}

static void test_same_store(void **state)
{
        struct dkm_config a = { 0 }, b = { 0 };
        char dir[] = "/tmp/dkm-test-migrate-XXXXXX", link[64];

        assert_non_null(mkdtemp(dir));
        snprintf(link, sizeof(link), "%s.link", dir);
        assert_int_equal(symlink(dir, link), 0);
        a.store_backend = "sqlite", a.state_dir = dir;
        b.store_backend = "sqlite", b.state_dir = link;
        assert_true(migrate_same_store(&a, &b)); /* through a link */
        b.state_dir = "/tmp";
        assert_false(migrate_same_store(&a, &b));
        b.store_backend = "etcd", b.store_endpoints = "https://a:2379", b.state_dir = dir;
        assert_false(migrate_same_store(&a, &b)); /* SQLite and etcd never are */
        a.store_backend = "etcd", a.store_endpoints = "https://b:2379,https://a:2379";
        assert_true(migrate_same_store(&a, &b)); /* default prefix, one endpoint shared */
        a.store_prefix = "/dkm-new/";
        assert_false(migrate_same_store(&a, &b));
        b.store_prefix = "/dkm-new/";
        b.store_endpoints = "https://c:2379";
        assert_false(migrate_same_store(&a, &b));
        unlink(link);
        rmdir(dir);
}

static void test_sqlite_readonly(void **state)
{
        char dir[] = "/tmp/dkm-test-migrate-XXXXXX", path[128];
        struct store *s, *ro;
        struct stat before, after;
        const struct store_op op = { STORE_PUT, "k", "v", 1 };
        struct store_kv kv = { 0 };

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/dkm.db", dir);
        /* Missing: not created. */
        assert_int_equal(store_sqlite_open_readonly(path, &ro), -ENOENT);
        assert_int_equal(access(path, F_OK), -1);
        /* Empty: not a store, and not made one. */
        close(open(path, O_CREAT | O_WRONLY, 0600));
        assert_int_equal(store_sqlite_open_readonly(path, &ro), -ENODATA);
        assert_int_equal(store_open(&store_sqlite_ops, path, &s), 0);
        assert_int_equal(store_ops_of(s)->txn(s, NULL, 0, &op, 1, NULL), 0);
        assert_int_equal(store_checkpoint(s), 0);
        store_close(s);
        assert_int_equal(stat(path, &before), 0);
        assert_int_equal(store_sqlite_open_readonly(path, &ro), 0);
        assert_int_equal(store_ops_of(ro)->get(ro, "k", &kv), 0);
        store_kv_clear(&kv);
        assert_int_equal(store_ops_of(ro)->txn(ro, NULL, 0, &op, 1, NULL), -EROFS);
        store_close(ro);
        assert_int_equal(stat(path, &after), 0);
        assert_int_equal(before.st_size, after.st_size);
        assert_int_equal(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
        assert_int_equal(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
        snprintf(path, sizeof(path), "rm -rf '%s'", dir);
        assert_int_equal(system(path), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_read_and_fill),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_same_store),
                cmocka_unit_test(test_sqlite_readonly),
        };

        return cmocka_run_group_tests(tests, setup, NULL);
}
