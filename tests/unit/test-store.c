/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for the store, run against the SQLite backend in a temporary
 * directory under /tmp: the contract every backend keeps (store-contract.h),
 * then what is SQLite's own (files, their modes, corruption, concurrent
 * creation). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "shared/util.h"
#include "store/store.h"
#include "store-contract.h"

static char tmpdir[] = "/tmp/dkm-test-store-XXXXXX";
static char case_path[256]; /* the store of the running contract case */
static unsigned case_serial;

static const char *path_of(const char *name)
{
        static char buf[256];

        snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
        return buf;
}

static struct store *open_ok(const char *name)
{
        struct store *s = NULL;

        assert_int_equal(store_open(&store_sqlite_ops, name[0] == ':' ? name : path_of(name), &s), 0);
        assert_non_null(s);
        return s;
}

static int open_err(const char *name)
{
        struct store *s = NULL;
        int r = store_open(&store_sqlite_ops, path_of(name), &s);

        assert_null(s); /* ret_* untouched on failure */
        return r;
}

/* ---- the contract's hooks and fixtures ----------------------------------- */

static const struct store_ops *backend_ops(void)
{
        return &store_sqlite_ops;
}

static void backend_require(void)
{
}

static int backend_open_again(struct store **ret)
{
        return store_open(&store_sqlite_ops, case_path, ret);
}

/* SQLite forgets deletions by itself, keeping store_sqlite_history
 * revisions: setup_short_history opened this store keeping 5, which at
 * revision 12 leaves what a compaction up to 8 leaves. */
static void backend_compact(struct store *s, uint64_t rev)
{
}

/* A new file for each case. */
static int setup_path(void **state)
{
        snprintf(case_path, sizeof(case_path), "%s/case-%u.db", tmpdir, ++case_serial);
        *state = NULL;
        return 0;
}

static int setup_store(void **state)
{
        struct store *s = NULL;
        int r;

        setup_path(state);
        r = store_open(&store_sqlite_ops, case_path, &s);
        *state = s;
        return r;
}

static int setup_short_history(void **state)
{
        uint64_t saved = store_sqlite_history;
        int r;

        store_sqlite_history = 5;
        r = setup_store(state);
        store_sqlite_history = saved;
        return r;
}

static int teardown_store(void **state)
{
        store_close(*state);
        return 0;
}

/* ---- SQLite's own cases ---------------------------------------------------- */

static void test_wrappers(void **state)
{
        struct store *s = open_ok(":memory:");
        struct store_kv kv = { .key = strdup("k"), .value = malloc(3), .value_len = 3,
                               .mod_revision = 1, .create_revision = 1 };

        assert_ptr_equal(store_ops_of(s), &store_sqlite_ops);
        assert_string_equal(store_ops_of(s)->name, "sqlite");
        store_kv_clear(&kv);
        assert_null(kv.key);
        assert_null(kv.value);
        assert_int_equal(kv.value_len, 0);
        store_kv_clear(NULL);
        /* No leases in SQLite (store.h): the wrappers say so. */
        {
                struct store_op op = { STORE_PUT, "k", "v", 1 };
                uint64_t id = 0, lease = 1, left = 0;

                assert_false(store_has_leases(s));
                assert_false(store_has_leases(NULL));
                assert_int_equal(store_lease_grant(s, 10, &id, NULL), -EOPNOTSUPP);
                assert_int_equal(store_lease_keepalive(s, 1, NULL), -EOPNOTSUPP);
                assert_int_equal(store_lease_revoke(s, 1), -EOPNOTSUPP);
                assert_int_equal(store_lease_ttl(s, 1, &left), -EOPNOTSUPP);
                assert_int_equal(store_txn_leased(s, NULL, 0, &op, 1, &lease, NULL), -EOPNOTSUPP);
                assert_int_equal(store_ops_of(s)->get(s, "k", &kv), -ENOENT);
                assert_int_equal(store_lease_grant(s, 0, &id, NULL), -EINVAL);
        }
        store_close(s);
        store_close(NULL);
        assert_null(store_ops_of(NULL));
        assert_int_equal(store_open(NULL, ":memory:", &s), -EINVAL);
        assert_int_equal(store_open(&store_sqlite_ops, NULL, &s), -EINVAL);
}

struct opener {
        const char *path;
        struct store *s;
        int r;
};

static void *opener_main(void *userdata)
{
        struct opener *o = userdata;

        o->r = store_open(&store_sqlite_ops, o->path, &o->s);
        return NULL;
}

/* Two handles on one file behave like two processes: SQLite's file locks
 * and the busy timeout serialise them, and neither loses an update. */
static void test_two_handles_at_once(void **state)
{
        struct opener o[2];
        pthread_t th[2];

        /* Both open a file that does not exist yet, at the same time. */
        for (int i = 0; i < 2; i++) {
                o[i] = (struct opener){ .path = case_path };
                assert_int_equal(pthread_create(&th[i], NULL, opener_main, &o[i]), 0);
        }
        for (int i = 0; i < 2; i++) {
                assert_int_equal(pthread_join(th[i], NULL), 0);
                assert_int_equal(o[i].r, 0);
        }

        contract_two_handles_on(o[0].s, o[1].s);
        store_close(o[0].s);
        store_close(o[1].s);
}

static void write_file(const char *path, const void *data, size_t n)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, n), (ssize_t)n);
        close(fd);
}

static void sql(const char *path, const char *statement)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, statement, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
}

static void make_big_store(const char *name)
{
        struct store *s = open_ok(name);
        char key[32], value[2000];

        memset(value, 'v', sizeof(value) - 1);
        value[sizeof(value) - 1] = 0;
        for (int i = 0; i < 100; i++) {
                snprintf(key, sizeof(key), "key/%03d", i);
                put(s, key, value);
        }
        store_close(s);
}

static void test_corrupt(void **state)
{
        uint8_t junk[8192];
        struct stat st;

        /* Not a database at all. */
        for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (uint8_t)(i * 7 + 3);
        write_file(path_of("junk.db"), junk, sizeof(junk));
        assert_int_equal(open_err("junk.db"), -EBADMSG);
        write_file(path_of("short.db"), "hello", 5);
        assert_int_equal(open_err("short.db"), -EBADMSG);

        /* A database, but someone else's: refused, and left as it was. */
        sql(path_of("foreign.db"), "CREATE TABLE t (x); INSERT INTO t VALUES (1);");
        assert_int_equal(open_err("foreign.db"), -EBADMSG);
        sql(path_of("foreign.db"), "SELECT x FROM t;");
        assert_int_equal(stat(path_of("foreign.db-wal"), &st), -1);

        /* A dkm store from a newer dkm. */
        make_big_store("newer.db");
        sql(path_of("newer.db"), "UPDATE meta SET schema_version = 2;");
        assert_int_equal(open_err("newer.db"), -EPROTO);

        /* Truncated to half. */
        make_big_store("trunc.db");
        assert_int_equal(stat(path_of("trunc.db"), &st), 0);
        assert_true(st.st_size > 100000);
        assert_int_equal(truncate(path_of("trunc.db"), st.st_size / 2), 0);
        assert_int_equal(open_err("trunc.db"), -EBADMSG);

        /* A page in the middle overwritten. */
        make_big_store("flip.db");
        {
                int fd = open(path_of("flip.db"), O_WRONLY | O_CLOEXEC);

                assert_true(fd >= 0);
                assert_int_equal(pwrite(fd, junk, 4096, 4096 * 3), 4096);
                close(fd);
        }
        assert_int_equal(open_err("flip.db"), -EBADMSG);
}

static void test_limits(void **state)
{
        /* SQLite takes larger transactions than etcd's default 128. */
        assert_int_equal(store_ops_of(*state)->max_txn_ops, STORE_SQLITE_TXN_OPS_MAX);
        contract_limits(state);
}

static mode_t mode_of(const char *name)
{
        struct stat st;

        assert_int_equal(stat(path_of(name), &st), 0);
        return st.st_mode & 07777;
}

static void test_file_mode(void **state)
{
        mode_t saved = umask(0);
        struct store *s, *s2;

        s = open_ok("mode.db");
        s2 = open_ok("mode.db"); /* a second connection keeps -wal and -shm in place */
        put(s, "k", "v");
        assert_int_equal(mode_of("mode.db"), 0600);
        assert_int_equal(mode_of("mode.db-wal"), 0600);
        assert_int_equal(mode_of("mode.db-shm"), 0600);
        store_close(s);
        store_close(s2);

        /* A umask that would take the owner's write bit away does not either. */
        umask(0277);
        s = open_ok("mode2.db");
        put(s, "k", "v");
        assert_int_equal(mode_of("mode2.db"), 0600);
        assert_int_equal(mode_of("mode2.db-wal"), 0600);
        store_close(s);
        umask(saved);

        assert_int_equal(open_err("no/such/dir/x.db"), -ENOENT);
}

static void test_memory(void **state)
{
        struct store *s = open_ok(":memory:");

        assert_int_equal(put(s, "m", "1"), 1);
        assert_string_equal(range(s, ""), "m=1@1/1;");
        store_close(s);
}

/* Whether the file holds needle anywhere; 0 for a missing file. */
static bool file_holds(const char *name, const char *needle)
{
        _cleanup_free_ char *buf = malloc(1 << 20);
        FILE *f = fopen(path_of(name), "rb");
        size_t n;

        assert_non_null(buf);
        if (!f)
                return false;
        n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        return memmem(buf, n, needle, strlen(needle)) != NULL;
}

/* A value overwritten and one deleted leave no copy in the database file
 * or its WAL once the store shreds; a second connection (a reader between
 * its transactions) does not stop it. */
static void test_shred(void **state)
{
        static const char *const files[] = { "shred.db", "shred.db-wal", "shred.db-shm" };
        struct store *s = open_ok("shred.db"), *s2 = open_ok("shred.db");
        const struct store_op del = { STORE_DELETE, "b", NULL, 0 };
        bool before = false;
        uint64_t rev;

        put(s, "a", "wrapped-key-AAAAAAAAAAAAAAAAAAAAAAAA");
        put(s, "b", "wrapped-key-BBBBBBBBBBBBBBBBBBBBBBBB");
        for (int i = 0; i < 3; i++)
                put(s, "c", "other");
        put(s, "a", "destroyed");
        assert_int_equal(store_ops_of(s)->txn(s, NULL, 0, &del, 1, &rev), 0);
        for (size_t i = 0; i < ARRAY_SIZE(files); i++)
                before |= file_holds(files[i], "wrapped-key-AAAA") || file_holds(files[i], "wrapped-key-BBBB");
        assert_true(before); /* what the shred has to remove */

        assert_int_equal(store_shred(s, rev), 0);
        for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                assert_false(file_holds(files[i], "wrapped-key-AAAA"));
                assert_false(file_holds(files[i], "wrapped-key-BBBB"));
        }
        assert_string_equal(range(s2, ""), "a=destroyed@6/1;c=other@5/3;");
        assert_int_equal(store_shred(NULL, 1), -EINVAL);
        store_close(s2);
        store_close(s);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
        return remove(path);
}

static int setup(void **state)
{
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
        return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#define CONTRACT(f) cmocka_unit_test_setup_teardown(f, setup_store, teardown_store)

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wrappers),
                CONTRACT(contract_put_get),
                CONTRACT(contract_range),
                CONTRACT(contract_range_pages),
                CONTRACT(contract_revisions),
                CONTRACT(contract_cas),
                CONTRACT(contract_changes),
                CONTRACT(contract_changes_exact),
                cmocka_unit_test_setup_teardown(contract_compaction, setup_short_history, teardown_store),
                CONTRACT(contract_persistence),
                CONTRACT(contract_threads_one_handle),
                CONTRACT(contract_two_handles),
                /* The file is created by the openers themselves. */
                cmocka_unit_test_setup_teardown(test_two_handles_at_once, setup_path, teardown_store),
                cmocka_unit_test_setup_teardown(contract_two_processes, setup_path, teardown_store),
                CONTRACT(test_limits),
                cmocka_unit_test(test_corrupt),
                cmocka_unit_test(test_file_mode),
                cmocka_unit_test(test_memory),
                cmocka_unit_test(test_shred),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
