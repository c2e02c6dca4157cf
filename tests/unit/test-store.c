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
#include "store/store-auth.h"
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
        /* Closing leaves the WAL as it is: the tests below damage dkm.db. */
        assert_int_equal(store_checkpoint(s), 0);
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

/* What the daemon says of a file that does not open. */
static void test_describe(void **state)
{
        char why[512];

        store_sqlite_describe(path_of("junk.db"), why, sizeof(why));
        assert_non_null(strstr(why, "not a readable SQLite database"));
        store_sqlite_describe(path_of("foreign.db"), why, sizeof(why));
        assert_non_null(strstr(why, "of another program"));
        store_sqlite_describe(path_of("flip.db"), why, sizeof(why));
        assert_non_null(strstr(why, "damaged"));
        assert_null(strstr(why, " ok"));
        assert_null(strchr(why, '\n')); /* one line for the journal */
}

/* A clean stop leaves everything in dkm.db, nothing in the WAL. */
static void test_checkpoint(void **state)
{
        struct store *s = open_ok("ckpt.db");
        struct stat st;

        for (int i = 0; i < 20; i++)
                put(s, "k", "a value that lands in the WAL first");
        assert_int_equal(stat(path_of("ckpt.db-wal"), &st), 0);
        assert_true(st.st_size > 0);
        assert_int_equal(store_checkpoint(s), 0);
        assert_int_equal(stat(path_of("ckpt.db-wal"), &st), 0);
        assert_int_equal(st.st_size, 0);
        store_close(s);
        /* dkm.db alone holds it. */
        unlink(path_of("ckpt.db-wal"));
        unlink(path_of("ckpt.db-shm"));
        s = open_ok("ckpt.db");
        assert_string_equal(get(s, "k", NULL, NULL), "a value that lands in the WAL first");
        store_close(s);
        assert_int_equal(store_checkpoint(NULL), -EINVAL);
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

/* ---- authenticated records (store-auth.h) --------------------------------- */

static const uint8_t auth_key[STORE_AUTH_KEY_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };

static void test_auth_envelope(void **state)
{
        static const char *const values[] = { "{\"a\":1}", "{}", "7", "", "{\"x\":\"}\"}" };
        uint8_t other[STORE_AUTH_KEY_SIZE] = { 9 };

        for (size_t i = 0; i < ARRAY_SIZE(values); i++) {
                size_t n = strlen(values[i]), sl, ol;
                uint8_t *sealed, *out;
                uint64_t seq;

                assert_int_equal(store_auth_seal(auth_key, "k/1", (const uint8_t *)values[i], n, 41, &sealed,
                                                 &sl), 0);
                assert_non_null(memmem(sealed, sl, "\"dkm_auth\":\"1.41.", 17));
                assert_int_equal(store_auth_unseal(auth_key, "k/1", sealed, sl, &out, &ol, &seq), 0);
                assert_int_equal(ol, n);
                assert_memory_equal(out, values[i], n);
                assert_int_equal(seq, 41);
                free(out);
                /* Another name, another key, any byte changed: refused. */
                assert_int_equal(store_auth_unseal(auth_key, "k/2", sealed, sl, &out, &ol, &seq), -EKEYREJECTED);
                assert_int_equal(store_auth_unseal(other, "k/1", sealed, sl, &out, &ol, &seq), -EKEYREJECTED);
                for (size_t j = 0; j < sl; j++) {
                        int r;

                        sealed[j] ^= 0x01;
                        r = store_auth_unseal(auth_key, "k/1", sealed, sl, &out, &ol, &seq);
                        assert_true(r == -EKEYREJECTED || r == -EBADMSG || r == -ENODATA);
                        sealed[j] ^= 0x01;
                }
                /* Cut short. */
                assert_true(store_auth_unseal(auth_key, "k/1", sealed, sl - 1, &out, &ol, &seq) < 0);
                free(sealed);
        }
        {
                uint8_t *out;
                size_t ol;
                uint64_t seq;

                assert_int_equal(store_auth_unseal(auth_key, "k", (const uint8_t *)"{\"a\":1}", 7, &out, &ol, &seq),
                                 -ENODATA);
        }
}

struct refusals {
        int n;
        char why[200];
};

static void on_refused(const char *key, uint64_t mod_revision, const char *why, void *userdata)
{
        struct refusals *r = userdata;

        r->n++;
        snprintf(r->why, sizeof(r->why), "%s", why);
}

static struct store *auth_open_ok(const char *db, struct refusals *ref)
{
        struct store *s = open_ok(db), *a = NULL;

        assert_int_equal(store_auth_open(s, auth_key, path_of("seen"), on_refused, ref, &a), 0);
        assert_ptr_equal(store_backend_ops(a), &store_sqlite_ops);
        /* Callers size their transactions by it: the backend's limit. */
        assert_int_equal(store_ops_of(a)->max_txn_ops, store_sqlite_ops.max_txn_ops);
        return a;
}

/* The builder owns its keys and values: the caller's buffers may change
 * or go before the commit. */
static void test_txn_builder(void **state)
{
        struct store *s = open_ok("builder.db");
        struct store_txn t = { 0 };
        struct store_kv kv = { 0 };
        uint64_t rev = 0, rev2 = 0;
        char key[16];

        for (int i = 0; i < 20; i++) { /* past the first growth */
                snprintf(key, sizeof(key), "b/%02d", i);
                assert_int_equal(store_txn_put_owned(&t, key, strdup("v"), 1), 0);
                assert_int_equal(store_txn_compare(&t, key, 0), 0);
        }
        memset(key, 'x', sizeof(key) - 1);
        assert_int_equal(t.n_ops, 20);
        assert_int_equal(t.n_cmps, 20);
        assert_int_equal(store_txn_commit(s, &t, &rev), 0);
        assert_int_equal(store_ops_of(s)->get(s, "b/19", &kv), 0);
        assert_int_equal(kv.value_len, 1);
        assert_memory_equal(kv.value, "v", 1);
        store_kv_clear(&kv);
        /* The same compares again: the keys exist now. */
        assert_int_equal(store_txn_commit(s, &t, NULL), -ESTALE);
        store_txn_free(&t);
        assert_null(t.ops);

        assert_int_equal(store_txn_delete(&t, "b/00"), 0);
        assert_int_equal(store_txn_compare(&t, "b/00", rev), 0);
        assert_int_equal(store_txn_commit(s, &t, &rev2), 0);
        assert_int_equal(rev2, rev + 1);
        assert_int_equal(store_ops_of(s)->get(s, "b/00", &kv), -ENOENT);
        store_txn_free(&t);

        assert_int_equal(store_txn_put_owned(&t, NULL, strdup("v"), 1), -EINVAL);
        assert_int_equal(store_txn_put_owned(&t, "k", NULL, 0), -EINVAL);
        assert_int_equal(store_txn_compare(NULL, "k", 0), -EINVAL);
        assert_int_equal(store_txn_commit(NULL, &t, NULL), -EINVAL);
        store_txn_free(&t);
        store_txn_free(NULL);
        store_close(s);
}

/* Each backend words and classifies its own errors through its table;
 * the authenticating wrapper answers as the backend under it. */
static void test_strerror_unavailable(void **state)
{
        struct refusals ref = { 0 };
        struct store *s = open_ok("words.db"), *a = auth_open_ok("words-auth.db", &ref);

        assert_string_equal(store_strerror(NULL, -ESTALE), "the record changed concurrently, retry");
        assert_string_equal(store_strerror(NULL, -EIO), strerror(EIO));
        assert_false(store_unavailable(NULL, -EAGAIN));

        /* SQLite: a local file, never out of reach. */
        assert_null(store_sqlite_ops.unavailable);
        assert_string_equal(store_strerror(s, -EAGAIN), strerror(EAGAIN));
        assert_string_equal(store_strerror(a, -ESTALE), "the record changed concurrently, retry");
        assert_false(store_unavailable(s, -EAGAIN));
        assert_false(store_unavailable(a, -ETIMEDOUT));

        /* etcd: no quorum, or the connection lost. */
        assert_string_equal(store_etcd_ops.strerror(NULL, -EAGAIN), "store unavailable: no etcd quorum");
        assert_string_equal(store_etcd_ops.strerror(NULL, -ECONNRESET), "store unavailable: no etcd quorum");
        assert_non_null(strstr(store_etcd_ops.strerror(NULL, -ETIMEDOUT), "may still take effect"));
        assert_null(store_etcd_ops.strerror(NULL, -ESTALE));
        assert_null(store_etcd_ops.strerror(NULL, -EACCES));
        assert_true(store_etcd_ops.unavailable(NULL, -ENOTCONN));
        assert_true(store_etcd_ops.unavailable(NULL, -ETIMEDOUT));
        assert_false(store_etcd_ops.unavailable(NULL, -ESTALE));
        assert_false(store_etcd_ops.unavailable(NULL, -ENOSPC));

        store_close(a);
        store_close(s);
}

static void test_auth_forgery_and_replay(void **state)
{
        struct refusals ref = { 0 };
        struct store *a = auth_open_ok("auth.db", &ref), *raw = open_ok("auth.db");
        struct store_kv kv = { 0 };
        char err[512];
        size_t n = 9;
        char old[512];

        assert_int_equal(store_auth_migrate(a, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 0); /* a new store: nothing to take over */
        put(a, "gen", "{\"state\":\"archived\"}");
        assert_string_equal(get(a, "gen", NULL, NULL), "{\"state\":\"archived\"}");
        snprintf(old, sizeof(old), "%s", get(raw, "gen", NULL, NULL));
        assert_non_null(strstr(old, "dkm_auth"));
        put(a, "gen", "{\"state\":\"retired\"}");
        assert_string_equal(get(a, "gen", NULL, NULL), "{\"state\":\"retired\"}");

        /* Replayed: the earlier value, MAC and all. */
        put(raw, "gen", old);
        assert_int_equal(store_ops_of(a)->get(a, "gen", &kv), -EBADMSG);
        assert_int_equal(ref.n, 1);
        assert_non_null(strstr(ref.why, "replayed"));
        /* Told once per revision; left out of a range. */
        assert_int_equal(store_ops_of(a)->get(a, "gen", &kv), -EBADMSG);
        assert_int_equal(ref.n, 1);
        assert_string_equal(range(a, "gen"), "");

        /* Forged: no MAC, or one edited. */
        put(raw, "grant", "{\"state\":\"granted\"}");
        assert_int_equal(store_ops_of(a)->get(a, "grant", &kv), -EBADMSG);
        assert_non_null(strstr(ref.why, "not authenticated"));
        {
                char *p = strstr(old, "archived");

                memcpy(p, "retirex", 7);
                put(raw, "gen2", old);
        }
        assert_int_equal(store_ops_of(a)->get(a, "gen2", &kv), -EBADMSG);
        assert_non_null(strstr(ref.why, "does not match"));

        /* The replay stays refused after a restart: the sequence seen is kept. */
        store_close(a);
        memset(&ref, 0, sizeof(ref));
        a = auth_open_ok("auth.db", &ref);
        assert_int_equal(store_auth_migrate(a, &n, err, sizeof(err)), 0);
        assert_int_equal(store_ops_of(a)->get(a, "gen", &kv), -EBADMSG);
        assert_non_null(strstr(ref.why, "replayed"));

        /* Deleting the format record does not get the forgeries blessed. */
        del(raw, STORE_AUTH_FORMAT_KEY);
        store_close(a);
        a = auth_open_ok("auth.db", &ref);
        assert_int_equal(store_auth_migrate(a, &n, err, sizeof(err)), -EKEYREJECTED);
        assert_non_null(strstr(err, "missing"));
        store_close(a);
        store_close(raw);
}

static void test_auth_migration(void **state)
{
        struct refusals ref = { 0 };
        struct store *raw = open_ok("old.db"), *a;
        char err[512];
        size_t n = 0;

        put(raw, "policies/p", "{\"id\":\"p\"}");
        put(raw, "names/x", "p");
        unlink(path_of("seen"));
        a = auth_open_ok("old.db", &ref);
        assert_int_equal(store_auth_migrate(a, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 2);
        assert_string_equal(get(a, "names/x", NULL, NULL), "p");
        assert_string_equal(get(a, "policies/p", NULL, NULL), "{\"id\":\"p\"}");
        assert_non_null(strstr(get(raw, "names/x", NULL, NULL), "\n\"dkm_auth\":\"1."));
        assert_int_equal(ref.n, 0);
        /* From now on an unauthenticated record is refused. */
        put(raw, "names/y", "q");
        assert_string_equal(range(a, "names/"), "names/x=p@3/2;");
        assert_int_equal(ref.n, 1);
        store_close(a);
        store_close(raw);
}

/* A store older than one served is refused at open, and once accepted its
 * records stand while the keys it lost stay known as lost. */
static void test_auth_rollback(void **state)
{
        struct refusals ref = { 0 };
        struct store *a;
        char err[1024], cmd[600];
        uint64_t rev = 0, high = 0;
        size_t n = 0;

        unlink(path_of("seen"));
        a = auth_open_ok("roll.db", &ref);
        assert_int_equal(store_auth_migrate(a, &n, err, sizeof(err)), 0);
        put(a, "policies/p", "{\"gen\":1}");
        assert_int_equal(store_checkpoint(a), 0);
        store_close(a);
        /* A copy of dkm.db at revision 2. */
        snprintf(cmd, sizeof(cmd), "cp %s/roll.db %s/roll-old.db", tmpdir, tmpdir);
        assert_int_equal(system(cmd), 0);
        a = auth_open_ok("roll.db", &ref);
        put(a, "policies/p", "{\"gen\":2}");
        put(a, "policies/p/gens/2", "{}");
        store_close(a);

        /* Served from the copy: refused, naming both revisions, and the
         * refusal changes nothing. */
        for (int i = 0; i < 2; i++) {
                a = auth_open_ok("roll-old.db", &ref);
                assert_int_equal(store_auth_check_revision(a, false, &rev, &high, err, sizeof(err)), -ESTALE);
                assert_non_null(strstr(err, "revision 2, older than revision 4"));
                assert_non_null(strstr(err, "--accept-older-store"));
                store_close(a);
        }
        /* Accepted: its records stand; the key it lacks is known as lost. */
        a = auth_open_ok("roll-old.db", &ref);
        assert_int_equal(store_auth_check_revision(a, true, &rev, &high, err, sizeof(err)), 0);
        assert_int_equal(rev, 2);
        assert_int_equal(high, 4);
        assert_string_equal(get(a, "policies/p", NULL, NULL), "{\"gen\":1}");
        assert_int_equal(ref.n, 0);
        assert_true(store_auth_lost(a, "policies/p/gens/2"));
        assert_false(store_auth_lost(a, "policies/p"));
        assert_false(store_auth_lost(a, "policies/q"));
        store_close(a);
        /* The next start is not refused, and the lost key is remembered. */
        a = auth_open_ok("roll-old.db", &ref);
        assert_int_equal(store_auth_check_revision(a, false, &rev, &high, err, sizeof(err)), 0);
        assert_true(store_auth_lost(a, "policies/p/gens/2"));
        store_close(a);
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
                cmocka_unit_test(test_auth_envelope),
                cmocka_unit_test(test_auth_forgery_and_replay),
                cmocka_unit_test(test_strerror_unavailable),
                cmocka_unit_test(test_txn_builder),
                cmocka_unit_test(test_auth_migration),
                cmocka_unit_test(test_describe),
                cmocka_unit_test(test_checkpoint),
                cmocka_unit_test(test_auth_rollback),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
