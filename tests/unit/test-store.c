/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for the store, run against the SQLite backend in a temporary
 * directory under /tmp. */
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

static char tmpdir[] = "/tmp/dkm-test-store-XXXXXX";

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

static int txn(struct store *s, const struct store_cmp *c, size_t nc, const struct store_op *o,
               size_t no, uint64_t *rev)
{
        return store_ops_of(s)->txn(s, c, nc, o, no, rev);
}

static uint64_t put(struct store *s, const char *key, const char *value)
{
        struct store_op op = { STORE_PUT, key, value, strlen(value) };
        uint64_t rev = 0;

        assert_int_equal(txn(s, NULL, 0, &op, 1, &rev), 0);
        return rev;
}

static uint64_t del(struct store *s, const char *key)
{
        struct store_op op = { .type = STORE_DELETE, .key = key };
        uint64_t rev = 0;

        assert_int_equal(txn(s, NULL, 0, &op, 1, &rev), 0);
        return rev;
}

static uint64_t revision(struct store *s)
{
        uint64_t rev = UINT64_MAX;

        assert_int_equal(store_ops_of(s)->revision(s, &rev), 0);
        return rev;
}

/* Fetches a key; returns its value as a string ("" when absent) and its revisions. */
static const char *get(struct store *s, const char *key, uint64_t *mod, uint64_t *create)
{
        static char buf[256];
        struct store_kv kv = { 0 };
        int r = store_ops_of(s)->get(s, key, &kv);

        if (r == -ENOENT)
                return "";
        assert_int_equal(r, 0);
        assert_string_equal(kv.key, key);
        assert_non_null(kv.value);
        assert_true(kv.value_len < sizeof(buf));
        memcpy(buf, kv.value, kv.value_len);
        buf[kv.value_len] = 0;
        if (mod)
                *mod = kv.mod_revision;
        if (create)
                *create = kv.create_revision;
        store_kv_clear(&kv);
        return buf;
}

/* Collects a walk as "key=value@mod/create;" ("key!@mod;" for a deletion). */
struct walk {
        char buf[4096];
        int stop_after;
        int seen;
};

static int walk_cb(const struct store_kv *kv, void *userdata)
{
        struct walk *w = userdata;
        size_t n = strlen(w->buf);

        if (kv->value)
                snprintf(w->buf + n, sizeof(w->buf) - n, "%s=%.*s@%llu/%llu;", kv->key,
                         (int)kv->value_len, (const char *)kv->value,
                         (unsigned long long)kv->mod_revision,
                         (unsigned long long)kv->create_revision);
        else
                snprintf(w->buf + n, sizeof(w->buf) - n, "%s!@%llu;", kv->key,
                         (unsigned long long)kv->mod_revision);
        w->seen++;
        return w->stop_after && w->seen == w->stop_after ? 42 : 0;
}

static const char *range(struct store *s, const char *prefix)
{
        static struct walk w;

        memset(&w, 0, sizeof(w));
        assert_int_equal(store_ops_of(s)->range(s, prefix, walk_cb, &w), 0);
        return w.buf;
}

static const char *changes(struct store *s, const char *prefix, uint64_t since)
{
        static struct walk w;

        memset(&w, 0, sizeof(w));
        assert_int_equal(store_ops_of(s)->changes(s, prefix, since, walk_cb, &w), 0);
        return w.buf;
}

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

static void test_put_get(void **state)
{
        struct store *s = open_ok("putget.db");
        struct store_kv kv = { 0 };
        uint64_t mod = 0, create = 0;

        assert_int_equal(revision(s), 0);
        assert_int_equal(put(s, "a", "one"), 1);
        assert_string_equal(get(s, "a", &mod, &create), "one");
        assert_int_equal(mod, 1);
        assert_int_equal(create, 1);

        assert_int_equal(put(s, "b", "x"), 2);
        assert_int_equal(put(s, "a", "two"), 3);
        assert_string_equal(get(s, "a", &mod, &create), "two");
        assert_int_equal(mod, 3);
        assert_int_equal(create, 1); /* create revision survives a put */

        assert_int_equal(store_ops_of(s)->get(s, "missing", &kv), -ENOENT);
        assert_null(kv.key);

        /* An empty value is a value, not a deletion. */
        put(s, "empty", "");
        assert_int_equal(store_ops_of(s)->get(s, "empty", &kv), 0);
        assert_non_null(kv.value);
        assert_int_equal(kv.value_len, 0);
        store_kv_clear(&kv);
        {
                struct store_op op = { STORE_PUT, "null", NULL, 0 };

                assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), 0);
                assert_int_equal(store_ops_of(s)->get(s, "null", &kv), 0);
                assert_non_null(kv.value);
                assert_int_equal(kv.value_len, 0);
                store_kv_clear(&kv);
        }

        /* Deleted and re-created: a new create revision. */
        del(s, "a");
        assert_string_equal(get(s, "a", NULL, NULL), "");
        assert_int_equal(put(s, "a", "three"), 7);
        get(s, "a", &mod, &create);
        assert_int_equal(mod, 7);
        assert_int_equal(create, 7);

        /* Binary values come back byte for byte. */
        {
                uint8_t bin[300];
                struct store_op op = { STORE_PUT, "bin", bin, sizeof(bin) };

                for (size_t i = 0; i < sizeof(bin); i++)
                        bin[i] = (uint8_t)i;
                assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), 0);
                assert_int_equal(store_ops_of(s)->get(s, "bin", &kv), 0);
                assert_int_equal(kv.value_len, sizeof(bin));
                assert_memory_equal(kv.value, bin, sizeof(bin));
                store_kv_clear(&kv);
        }
        store_close(s);
}

static void test_range(void **state)
{
        struct store *s = open_ok("range.db");
        const char *keys[] = { "b", "a/y/z", "ab", "a", "a0", "a/", "a/x", "a.", "a/\xc3\xa9",
                               "\xe2\x82\xac" };
        struct walk w = { .stop_after = 2 };

        for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
                put(s, keys[i], "v");

        /* Sorted by key; "a/" must not match "ab", "a0", "a." or "a". */
        assert_string_equal(range(s, "a/"), "a/=v@6/6;a/x=v@7/7;a/y/z=v@2/2;a/\xc3\xa9=v@9/9;");
        assert_string_equal(range(s, "a/y/"), "a/y/z=v@2/2;");
        assert_string_equal(range(s, "a/x"), "a/x=v@7/7;");
        assert_string_equal(range(s, "nothing"), "");
        assert_string_equal(range(s, "\xe2\x82\xac"), "\xe2\x82\xac=v@10/10;");
        assert_int_equal(store_ops_of(s)->range(s, "\xe2", walk_cb, &w), -EINVAL); /* half a character */
        assert_string_equal(range(s, ""),
                            "a=v@4/4;a.=v@8/8;a/=v@6/6;a/x=v@7/7;a/y/z=v@2/2;a/\xc3\xa9=v@9/9;"
                            "a0=v@5/5;ab=v@3/3;b=v@1/1;\xe2\x82\xac=v@10/10;");

        /* The callback stops the walk and its value comes back. */
        assert_int_equal(store_ops_of(s)->range(s, "a", walk_cb, &w), 42);
        assert_int_equal(w.seen, 2);

        assert_int_equal(store_ops_of(s)->range(s, NULL, walk_cb, &w), -EINVAL);
        assert_int_equal(store_ops_of(s)->range(s, "\xff", walk_cb, &w), -EINVAL);
        store_close(s);
}

static void test_revisions(void **state)
{
        struct store *s = open_ok("rev.db");
        struct store_op ops[] = {
                { STORE_PUT, "x", "1", 1 },
                { STORE_PUT, "y", "2", 1 },
                { STORE_DELETE, "z", NULL, 0 },
        };
        struct store_cmp cmp = { "x", 0 };
        uint64_t rev = 0, mod = 0;

        for (uint64_t i = 1; i <= 5; i++) {
                assert_int_equal(put(s, "counter", "c"), i);
                assert_int_equal(revision(s), i);
        }
        /* One txn, one revision, shared by all its writes. */
        assert_int_equal(txn(s, NULL, 0, ops, ARRAY_SIZE(ops), &rev), 0);
        assert_int_equal(rev, 6);
        get(s, "x", &mod, NULL);
        assert_int_equal(mod, 6);
        get(s, "y", &mod, NULL);
        assert_int_equal(mod, 6);

        /* Nothing changed, nothing moves (etcd does the same). */
        assert_int_equal(del(s, "absent"), 6);
        cmp.mod_revision = 6;
        assert_int_equal(txn(s, &cmp, 1, NULL, 0, &rev), 0);
        assert_int_equal(rev, 6);
        assert_int_equal(revision(s), 6);
        assert_int_equal(put(s, "x", "again"), 7);
        store_close(s);
}

static void test_cas(void **state)
{
        struct store *s = open_ok("cas.db");
        uint64_t rev, mod = 0;
        struct store_op ops[] = {
                { STORE_PUT, "p/1", "new", 3 },
                { STORE_PUT, "p/2", "new", 3 },
                { STORE_DELETE, "p/0", NULL, 0 },
        };
        struct store_cmp ok[] = { { "p/0", 1 }, { "p/1", 0 } };
        struct store_cmp stale[] = { { "p/0", 1 }, { "p/1", 0 }, { "p/9", 0 } };

        assert_int_equal(put(s, "p/0", "old"), 1);
        assert_int_equal(put(s, "p/9", "other"), 2);

        /* The last compare fails: nothing of the txn is written. */
        rev = 77;
        assert_int_equal(txn(s, stale, ARRAY_SIZE(stale), ops, ARRAY_SIZE(ops), &rev), -ESTALE);
        assert_int_equal(rev, 77);
        assert_int_equal(revision(s), 2);
        assert_string_equal(get(s, "p/0", NULL, NULL), "old");
        assert_string_equal(get(s, "p/1", NULL, NULL), "");
        assert_string_equal(get(s, "p/2", NULL, NULL), "");
        assert_string_equal(changes(s, "", 2), "");

        /* A wrong mod revision fails too. */
        ok[0].mod_revision = 2;
        assert_int_equal(txn(s, ok, ARRAY_SIZE(ok), ops, ARRAY_SIZE(ops), NULL), -ESTALE);
        ok[0].mod_revision = 1;

        assert_int_equal(txn(s, ok, ARRAY_SIZE(ok), ops, ARRAY_SIZE(ops), &rev), 0);
        assert_int_equal(rev, 3);
        assert_string_equal(get(s, "p/0", NULL, NULL), "");
        assert_string_equal(get(s, "p/1", &mod, NULL), "new");
        assert_int_equal(mod, 3);
        assert_string_equal(get(s, "p/2", NULL, NULL), "new");

        /* "Must not exist": the first creator wins, the second gets -ESTALE. */
        {
                struct store_cmp absent = { "lock", 0 };
                struct store_op take = { STORE_PUT, "lock", "me", 2 };
                struct store_op take2 = { STORE_PUT, "lock", "you", 3 };

                assert_int_equal(txn(s, &absent, 1, &take, 1, NULL), 0);
                assert_int_equal(txn(s, &absent, 1, &take2, 1, NULL), -ESTALE);
                assert_string_equal(get(s, "lock", NULL, NULL), "me");
        }
        store_close(s);
}

static void test_changes(void **state)
{
        struct store *s = open_ok("changes.db");
        uint64_t r0, rdel, rput;

        put(s, "a/1", "x");
        put(s, "a/2", "x");
        put(s, "b/1", "x");
        r0 = revision(s);
        assert_int_equal(r0, 3);
        rdel = del(s, "a/1");
        rput = put(s, "a/2", "y");
        assert_int_equal(rdel, 4);
        assert_int_equal(rput, 5);

        assert_string_equal(changes(s, "a/", r0), "a/1!@4;a/2=y@5/2;");
        assert_string_equal(changes(s, "a/", rdel), "a/2=y@5/2;");
        assert_string_equal(changes(s, "a/", rput), "");
        assert_string_equal(changes(s, "b/", r0), "");
        assert_string_equal(changes(s, "", 0), "b/1=x@3/3;a/1!@4;a/2=y@5/2;");
        assert_string_equal(changes(s, "", 1000), "");

        /* Re-created: reported once, as a put. */
        put(s, "a/1", "z");
        assert_string_equal(changes(s, "a/", r0), "a/2=y@5/2;a/1=z@6/6;");
        /* Deleted twice over: reported once, at the latest deletion. */
        del(s, "a/1");
        assert_string_equal(changes(s, "a/1", r0), "a/1!@7;");
        /* A prefix must not leak into a neighbour. */
        put(s, "a/10", "n");
        put(s, "ab", "n");
        assert_string_equal(changes(s, "a/1", 7), "a/10=n@8/8;");
        store_close(s);
}

/* Like walk_cb, without the create revision. */
static int short_cb(const struct store_kv *kv, void *userdata)
{
        struct walk *w = userdata;
        size_t n = strlen(w->buf);

        snprintf(w->buf + n, sizeof(w->buf) - n, "%s%s@%llu;", kv->key, kv->value ? "=v" : "!",
                 (unsigned long long)kv->mod_revision);
        return 0;
}

/* changes(since) must return exactly the keys whose latest write is after
 * since, in revision order, checked against a model for every since. */
static void test_changes_exact(void **state)
{
        struct store *s = open_ok("exact.db");
        uint64_t last[8] = { 0 }, rev = 0;
        bool deleted[8] = { false };

        for (int i = 0; i < 60; i++) {
                unsigned k = (unsigned)(i * 5 + i / 7) % 8;
                char key[8];

                snprintf(key, sizeof(key), "k%u", k);
                if (i % 4 == 3 && last[k] && !deleted[k]) {
                        rev = del(s, key);
                        deleted[k] = true;
                } else {
                        rev = put(s, key, "v");
                        deleted[k] = false;
                }
                last[k] = rev;
        }
        put(s, "other", "v");
        for (uint64_t since = 0; since <= rev + 1; since++) {
                struct walk w = { 0 };
                char want[512] = "";

                for (uint64_t r = since + 1; r <= rev; r++)
                        for (unsigned k = 0; k < 8; k++)
                                if (last[k] == r) {
                                        size_t n = strlen(want);

                                        snprintf(want + n, sizeof(want) - n, "k%u%s@%llu;", k,
                                                 deleted[k] ? "!" : "=v", (unsigned long long)r);
                                }
                assert_int_equal(store_ops_of(s)->changes(s, "k", since, short_cb, &w), 0);
                assert_string_equal(w.buf, want);
        }
        store_close(s);
}

static void test_compaction(void **state)
{
        uint64_t saved = store_sqlite_history, rdel;
        struct walk w = { 0 };
        struct store *s;

        store_sqlite_history = 5;
        s = open_ok("compact.db");
        store_sqlite_history = saved;

        put(s, "gone", "x");
        rdel = del(s, "gone");
        assert_int_equal(rdel, 2);
        assert_string_equal(changes(s, "", 1), "gone!@2;");
        for (int i = 0; i < 10; i++)
                put(s, "busy", "x");
        assert_int_equal(revision(s), 12);
        /* Deletions older than 5 revisions are forgotten: asking for them is an error. */
        assert_int_equal(store_ops_of(s)->changes(s, "", 1, walk_cb, &w), -ERANGE);
        assert_int_equal(w.seen, 0);
        assert_string_equal(changes(s, "", 7), "busy=x@12/3;");
        store_close(s);

        /* The horizon is stored: a default-history reopen still refuses. */
        s = open_ok("compact.db");
        assert_int_equal(store_ops_of(s)->changes(s, "", 1, walk_cb, &w), -ERANGE);
        store_close(s);
}

static void test_persistence(void **state)
{
        struct store *s = open_ok("persist.db");
        uint64_t mod = 0, create = 0;

        put(s, "k/1", "one");
        put(s, "k/2", "two");
        put(s, "k/1", "uno");
        del(s, "k/2");
        store_close(s);

        s = open_ok("persist.db");
        assert_int_equal(revision(s), 4);
        assert_string_equal(get(s, "k/1", &mod, &create), "uno");
        assert_int_equal(mod, 3);
        assert_int_equal(create, 1);
        assert_string_equal(changes(s, "", 0), "k/1=uno@3/1;k/2!@4;");
        assert_int_equal(put(s, "k/3", "three"), 5);
        store_close(s);
}

#define N_INCREMENTS 200

struct counter_thread {
        struct store *s;
        pthread_barrier_t *start;
        int retries;
        int err;
};

/* Reads the counter, writes counter + 1 under a compare on its revision,
 * retries on -ESTALE: lost updates would show in the final value. */
static void *counter_main(void *userdata)
{
        struct counter_thread *t = userdata;

        pthread_barrier_wait(t->start);
        for (int i = 0; i < N_INCREMENTS && !t->err; i++) {
                for (;;) {
                        struct store_kv kv = { 0 };
                        char buf[32];
                        unsigned long v;
                        int r = store_ops_of(t->s)->get(t->s, "counter", &kv);

                        if (r < 0 && r != -ENOENT) { /* absent: 0, created under a "must not exist" compare */
                                t->err = r;
                                break;
                        }
                        v = 0;
                        if (r == 0) {
                                snprintf(buf, sizeof(buf), "%.*s", (int)kv.value_len, (const char *)kv.value);
                                v = strtoul(buf, NULL, 10);
                        }
                        snprintf(buf, sizeof(buf), "%lu", v + 1);
                        usleep(100); /* let the other thread in between read and write */
                        {
                                struct store_cmp c = { "counter", kv.mod_revision };
                                struct store_op o = { STORE_PUT, "counter", buf, strlen(buf) };

                                r = store_ops_of(t->s)->txn(t->s, &c, 1, &o, 1, NULL);
                        }
                        store_kv_clear(&kv);
                        if (r == 0)
                                break;
                        if (r != -ESTALE) {
                                t->err = r;
                                break;
                        }
                        t->retries++;
                }
        }
        return NULL;
}

static void run_counters(struct store *s1, struct store *s2)
{
        pthread_barrier_t start;
        struct counter_thread t[2] = { { .s = s1, .start = &start }, { .s = s2, .start = &start } };
        pthread_t th[2];
        char want[32];

        assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);

        put(s1, "counter", "0");
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&th[i], NULL, counter_main, &t[i]), 0);
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_join(th[i], NULL), 0);
        pthread_barrier_destroy(&start);
        assert_int_equal(t[0].err, 0);
        assert_int_equal(t[1].err, 0);
        snprintf(want, sizeof(want), "%d", 2 * N_INCREMENTS);
        assert_string_equal(get(s1, "counter", NULL, NULL), want);
        assert_string_equal(get(s2, "counter", NULL, NULL), want);
        assert_int_equal(revision(s1), 1 + 2 * N_INCREMENTS);
        print_message("counter: %d + %d compare failures retried\n", t[0].retries, t[1].retries);
}

static void test_threads_one_handle(void **state)
{
        struct store *s = open_ok("threads.db");

        run_counters(s, s);
        store_close(s);
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
static void test_two_handles(void **state)
{
        char path[256];
        struct opener o[2];
        pthread_t th[2];

        /* Both open a file that does not exist yet, at the same time. */
        snprintf(path, sizeof(path), "%s", path_of("shared.db"));
        for (int i = 0; i < 2; i++) {
                o[i] = (struct opener){ .path = path };
                assert_int_equal(pthread_create(&th[i], NULL, opener_main, &o[i]), 0);
        }
        for (int i = 0; i < 2; i++) {
                assert_int_equal(pthread_join(th[i], NULL), 0);
                assert_int_equal(o[i].r, 0);
        }

        run_counters(o[0].s, o[1].s);

        /* A write through one handle is seen by the other's changes(). */
        put(o[0].s, "watch/me", "hello");
        assert_string_equal(changes(o[1].s, "watch/", 0), "watch/me=hello@402/402;");
        store_close(o[0].s);
        store_close(o[1].s);
}

/* The same with two real processes, each opening the (new) file itself. */
static void test_two_processes(void **state)
{
        char path[256];
        pid_t pid[2];
        struct store *s;

        snprintf(path, sizeof(path), "%s", path_of("procs.db"));
        for (int i = 0; i < 2; i++) {
                pid[i] = fork();
                assert_true(pid[i] >= 0);
                if (pid[i] == 0) {
                        pthread_barrier_t start;
                        struct counter_thread t = { .start = &start };

                        /* No cmocka asserts here: the parent judges by the exit code. */
                        pthread_barrier_init(&start, NULL, 1);
                        if (store_open(&store_sqlite_ops, path, &t.s) < 0)
                                _exit(2);
                        counter_main(&t);
                        store_close(t.s);
                        _exit(t.err ? 1 : 0);
                }
        }
        for (int i = 0; i < 2; i++) {
                int status = 0;

                assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
        }
        s = open_ok("procs.db");
        {
                char want[32];

                snprintf(want, sizeof(want), "%d", 2 * N_INCREMENTS);
                assert_string_equal(get(s, "counter", NULL, NULL), want);
        }
        store_close(s);
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
        struct store *s = open_ok("limits.db");
        char *key = malloc(STORE_KEY_MAX + 2);
        uint8_t *value = calloc(1, STORE_VALUE_MAX + 1);
        struct store_op op = { STORE_PUT, key, value, STORE_VALUE_MAX };
        /* SQLite takes larger transactions than etcd's default 128. */
        struct store_op *many = calloc(STORE_SQLITE_TXN_OPS_MAX + 1, sizeof(*many));
        char (*names)[8] = calloc(STORE_SQLITE_TXN_OPS_MAX + 1, 8);
        struct store_kv kv = { 0 };

        assert_non_null(key);
        assert_non_null(value);
        memset(key, 'k', STORE_KEY_MAX);
        key[STORE_KEY_MAX] = 0;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), 0);
        assert_int_equal(store_ops_of(s)->get(s, key, &kv), 0);
        assert_int_equal(kv.value_len, STORE_VALUE_MAX);
        store_kv_clear(&kv);

        op.value_len = STORE_VALUE_MAX + 1;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -E2BIG);
        op.value_len = 1;
        key[STORE_KEY_MAX] = 'k';
        key[STORE_KEY_MAX + 1] = 0;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -E2BIG);
        assert_int_equal(store_ops_of(s)->get(s, key, &kv), -E2BIG);
        {
                struct store_cmp c = { key, 0 };
                assert_int_equal(txn(s, &c, 1, NULL, 0, NULL), -E2BIG);
        }
        assert_int_equal(revision(s), 1);

        /* Bad keys and bad transactions. */
        op.key = "";
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -EINVAL);
        op.key = "bad\xc3";
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -EINVAL);
        op.key = "\xed\xa0\x80"; /* a UTF-16 surrogate */
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -EINVAL);
        op.key = NULL;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -EINVAL);
        op.key = "ok";
        op.value = NULL;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -EINVAL);
        op.type = 99;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), -EINVAL);
        {
                struct store_op dup[] = { { STORE_PUT, "d", "1", 1 }, { STORE_DELETE, "d", NULL, 0 } };
                assert_int_equal(txn(s, NULL, 0, dup, 2, NULL), -EINVAL);
        }
        for (size_t i = 0; i <= STORE_SQLITE_TXN_OPS_MAX; i++) {
                snprintf(names[i], sizeof(names[i]), "m/%zu", i);
                many[i] = (struct store_op){ STORE_PUT, names[i], "x", 1 };
        }
        assert_int_equal(store_ops_of(s)->max_txn_ops, STORE_SQLITE_TXN_OPS_MAX);
        assert_int_equal(txn(s, NULL, 0, many, STORE_SQLITE_TXN_OPS_MAX + 1, NULL), -E2BIG);
        assert_int_equal(revision(s), 1);
        assert_int_equal(txn(s, NULL, 0, many, STORE_SQLITE_TXN_OPS_MAX, NULL), 0);
        assert_int_equal(revision(s), 2);
        free(many);
        free(names);

        free(key);
        free(value);
        store_close(s);
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

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wrappers),
                cmocka_unit_test(test_put_get),
                cmocka_unit_test(test_range),
                cmocka_unit_test(test_revisions),
                cmocka_unit_test(test_cas),
                cmocka_unit_test(test_changes),
                cmocka_unit_test(test_changes_exact),
                cmocka_unit_test(test_compaction),
                cmocka_unit_test(test_persistence),
                cmocka_unit_test(test_threads_one_handle),
                cmocka_unit_test(test_two_handles),
                cmocka_unit_test(test_two_processes),
                cmocka_unit_test(test_corrupt),
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_file_mode),
                cmocka_unit_test(test_memory),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
