/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The behaviour every store backend owes src/store/store.h, as cmocka cases
 * shared by test-store.c (SQLite) and test-store-etcd.c (etcd): both include
 * this file, register the contract_* cases with their own setup and
 * teardown, and keep their backend's own cases to themselves.
 *
 * A case gets the store to test in *state: a fresh, empty one, opened by the
 * suite's setup and closed by its teardown (a case that reopens puts its new
 * handle back in *state).  Revisions are checked relative to `base`, the
 * store's revision when the case began (SQLite: 0; etcd: the cluster's), so
 * the expected strings are the same for every backend.
 *
 * The including file defines these hooks:
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/util.h"
#include "store/store.h"

/* The backend under test. */
static const struct store_ops *backend_ops(void);
/* skip()s, saying why, where the backend cannot run here. */
static void backend_require(void);
/* Another handle on the store the case's setup made; no cmocka asserts (a
 * forked child calls it too). */
static int backend_open_again(struct store **ret);
/* Forgets the history up to revision rev (relative), as a compaction does. */
static void backend_compact(struct store *s, uint64_t rev);

/* Revisions are reported relative to it. */
static uint64_t base;
/* Per thread or process, in the counter cases. */
static int n_increments = 200;

static struct store *open_again(void)
{
        struct store *s = NULL;

        assert_int_equal(backend_open_again(&s), 0);
        assert_non_null(s);
        return s;
}

/* txn() whose compares name relative revisions too (0 stays "absent"). */
static int txn(struct store *s, const struct store_cmp *c, size_t nc, const struct store_op *o, size_t no,
               uint64_t *rev)
{
        struct store_cmp cc[STORE_TXN_OPS_MAX + 1];
        int r;

        assert_true(nc <= ARRAY_SIZE(cc));
        for (size_t i = 0; i < nc; i++) {
                cc[i] = c[i];
                if (cc[i].mod_revision)
                        cc[i].mod_revision += base;
        }
        r = store_ops_of(s)->txn(s, nc ? cc : NULL, nc, o, no, rev);
        if (r == 0 && rev)
                *rev -= base;
        return r;
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
        return rev - base;
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
                *mod = kv.mod_revision - base;
        if (create)
                *create = kv.create_revision - base;
        store_kv_clear(&kv);
        return buf;
}

/* Collects a walk as "key=value@mod/create;" ("key!@mod;" for a deletion). */
struct walk {
        char buf[8192];
        int stop_after;
        int seen;
};

static int walk_cb(const struct store_kv *kv, void *userdata)
{
        struct walk *w = userdata;
        size_t n = strlen(w->buf);

        if (kv->value)
                snprintf(w->buf + n, sizeof(w->buf) - n, "%s=%.*s@%llu/%llu;", kv->key, (int)kv->value_len,
                         (const char *)kv->value, (unsigned long long)(kv->mod_revision - base),
                         (unsigned long long)(kv->create_revision - base));
        else
                snprintf(w->buf + n, sizeof(w->buf) - n, "%s!@%llu;", kv->key,
                         (unsigned long long)(kv->mod_revision - base));
        w->seen++;
        return w->stop_after && w->seen == w->stop_after ? 42 : 0;
}

/* Like walk_cb, without the create revision. */
static int short_cb(const struct store_kv *kv, void *userdata)
{
        struct walk *w = userdata;
        size_t n = strlen(w->buf);

        snprintf(w->buf + n, sizeof(w->buf) - n, "%s%s@%llu;", kv->key, kv->value ? "=v" : "!",
                 (unsigned long long)(kv->mod_revision - base));
        return 0;
}

static const char *range(struct store *s, const char *prefix)
{
        static struct walk w;

        memset(&w, 0, sizeof(w));
        assert_int_equal(store_ops_of(s)->range(s, prefix, walk_cb, &w), 0);
        return w.buf;
}

static int changes_raw(struct store *s, const char *prefix, uint64_t since,
                       int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        return store_ops_of(s)->changes(s, prefix, since + base, cb, userdata);
}

static const char *changes(struct store *s, const char *prefix, uint64_t since)
{
        static struct walk w;

        memset(&w, 0, sizeof(w));
        assert_int_equal(changes_raw(s, prefix, since, walk_cb, &w), 0);
        return w.buf;
}

/* ---- the cases ----------------------------------------------------------- */

static void contract_put_get(void **state)
{
        struct store *s = *state;
        struct store_kv kv = { 0 };
        uint64_t mod = 0, create = 0;

        backend_require();
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
}

static void contract_range(void **state)
{
        struct store *s = *state;
        const char *keys[] = { "b", "a/y/z", "ab", "a", "a0", "a/", "a/x", "a.", "a/\xc3\xa9",
                               "\xe2\x82\xac" };
        struct walk w = { .stop_after = 2 };

        backend_require();
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
}

/* More keys than one page of etcd's Range. */
static void contract_range_pages(void **state)
{
        struct store *s = *state;
        struct store_op ops[100];
        char names[100][16];
        struct walk w = { 0 };

        backend_require();
        for (int part = 0; part < 2; part++) {
                for (int i = 0; i < 100; i++) {
                        snprintf(names[i], sizeof(names[i]), "p/%03d", part * 100 + i);
                        ops[i] = (struct store_op){ STORE_PUT, names[i], "v", 1 };
                }
                assert_int_equal(txn(s, NULL, 0, ops, 100, NULL), 0);
        }
        assert_int_equal(store_ops_of(s)->range(s, "p/", walk_cb, &w), 0);
        assert_int_equal(w.seen, 200);
        assert_true(strncmp(w.buf, "p/000=v@1/1;p/001=v@1/1;", 24) == 0);
        assert_non_null(strstr(w.buf, "p/199=v@2/2;"));
        assert_int_equal(strlen(w.buf), 200 * 12);
}

static void contract_revisions(void **state)
{
        struct store *s = *state;
        struct store_op ops[] = {
                { STORE_PUT, "x", "1", 1 },
                { STORE_PUT, "y", "2", 1 },
                { STORE_DELETE, "z", NULL, 0 },
        };
        struct store_cmp cmp = { "x", 0 };
        uint64_t rev = 0, mod = 0;

        backend_require();
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
}

static void contract_cas(void **state)
{
        struct store *s = *state;
        uint64_t rev, mod = 0;
        struct store_op ops[] = {
                { STORE_PUT, "p/1", "new", 3 },
                { STORE_PUT, "p/2", "new", 3 },
                { STORE_DELETE, "p/0", NULL, 0 },
        };
        struct store_cmp ok[] = { { "p/0", 1 }, { "p/1", 0 } };
        struct store_cmp stale[] = { { "p/0", 1 }, { "p/1", 0 }, { "p/9", 0 } };

        backend_require();
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
}

static void contract_changes(void **state)
{
        struct store *s = *state;
        uint64_t r0, rdel, rput;

        backend_require();
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
}

/* changes(since) must return exactly the keys whose latest write is after
 * since, in revision order, checked against a model for every since. */
static void contract_changes_exact(void **state)
{
        struct store *s = *state;
        uint64_t last[8] = { 0 }, rev = 0, start;
        bool deleted[8] = { false };

        backend_require();
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
        start = now_mono_usec();
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
                assert_int_equal(changes_raw(s, "k", since, short_cb, &w), 0);
                assert_string_equal(w.buf, want);
        }
        print_message("%llu changes() calls in %.2fs\n", (unsigned long long)rev + 2,
                      (double)(now_mono_usec() - start) / 1e6);
}

/* History compacted up to revision 8 of 12 (SQLite: a store that keeps 5
 * revisions of deletions forgets them as it goes). */
static void contract_compaction(void **state)
{
        struct store *s = *state;
        struct walk w = { 0 };
        uint64_t rdel;

        backend_require();
        put(s, "gone", "x");
        rdel = del(s, "gone");
        assert_int_equal(rdel, 2);
        assert_string_equal(changes(s, "", 1), "gone!@2;");
        for (int i = 0; i < 10; i++)
                put(s, "busy", "x");
        assert_int_equal(revision(s), 12);
        backend_compact(s, 8);
        /* Asking for forgotten history is an error, and nothing is handed over. */
        assert_int_equal(changes_raw(s, "", 1, walk_cb, &w), -ERANGE);
        assert_int_equal(w.seen, 0);
        assert_string_equal(changes(s, "", 7), "busy=x@12/3;");
        store_close(s);

        /* The horizon is kept: another handle still refuses. */
        *state = s = open_again();
        assert_int_equal(changes_raw(s, "", 1, walk_cb, &w), -ERANGE);
        /* Current state is untouched by compaction. */
        assert_string_equal(range(s, ""), "busy=x@12/3;");
}

static void contract_persistence(void **state)
{
        struct store *s = *state;
        uint64_t mod = 0, create = 0;

        backend_require();
        put(s, "k/1", "one");
        put(s, "k/2", "two");
        put(s, "k/1", "uno");
        del(s, "k/2");
        store_close(s);

        *state = s = open_again();
        assert_int_equal(revision(s), 4);
        assert_string_equal(get(s, "k/1", &mod, &create), "uno");
        assert_int_equal(mod, 3);
        assert_int_equal(create, 1);
        assert_string_equal(changes(s, "", 0), "k/1=uno@3/1;k/2!@4;");
        assert_int_equal(put(s, "k/3", "three"), 5);
}

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
        for (int i = 0; i < n_increments && !t->err; i++) {
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
        snprintf(want, sizeof(want), "%d", 2 * n_increments);
        assert_string_equal(get(s1, "counter", NULL, NULL), want);
        assert_string_equal(get(s2, "counter", NULL, NULL), want);
        assert_int_equal(revision(s1), 1 + 2 * n_increments);
        print_message("counter: %d + %d compare failures retried\n", t[0].retries, t[1].retries);
}

static void contract_threads_one_handle(void **state)
{
        backend_require();
        run_counters(*state, *state);
}

/* Two handles on one store, however they were opened: neither loses an
 * update, and a write through one is seen by the other's changes(). */
static void contract_two_handles_on(struct store *s1, struct store *s2)
{
        char want[64];

        run_counters(s1, s2);
        put(s1, "watch/me", "hello");
        snprintf(want, sizeof(want), "watch/me=hello@%d/%d;", 2 * n_increments + 2, 2 * n_increments + 2);
        assert_string_equal(changes(s2, "watch/", 0), want);
}

static void contract_two_handles(void **state)
{
        struct store *s2;

        backend_require();
        s2 = open_again();
        contract_two_handles_on(*state, s2);
        store_close(s2);
}

/* The same with two real processes, each opening the store itself.  *state
 * may be NULL: a backend whose store comes into being when first opened
 * (SQLite) leaves that to the children. */
static void contract_two_processes(void **state)
{
        struct store *s;
        pid_t pid[2];
        char want[32];

        backend_require();
        for (int i = 0; i < 2; i++) {
                pid[i] = fork();
                assert_true(pid[i] >= 0);
                if (pid[i] == 0) {
                        pthread_barrier_t start;
                        struct counter_thread t = { .start = &start };

                        /* No cmocka asserts here: the parent judges by the exit code. */
                        pthread_barrier_init(&start, NULL, 1);
                        if (store_open(backend_ops(), NULL, &t.s) != -EINVAL)
                                _exit(3);
                        if (backend_open_again(&t.s) < 0)
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
        s = open_again();
        snprintf(want, sizeof(want), "%d", 2 * n_increments);
        assert_string_equal(get(s, "counter", NULL, NULL), want);
        store_close(s);
}

/* Sizes and shapes: the limits of store.h, the backend's own transaction
 * size (max_txn_ops), bad keys and bad transactions. */
static void contract_limits(void **state)
{
        struct store *s = *state;
        struct store_kv kv = { 0 };
        struct store_op op, *many;
        char (*names)[16];
        uint8_t *value;
        char *key;
        size_t max;

        backend_require(); /* before anything is allocated: skip() does not come back */
        max = store_ops_of(s)->max_txn_ops;
        key = malloc(STORE_KEY_MAX + 2);
        value = calloc(1, STORE_VALUE_MAX + 1);
        op = (struct store_op){ STORE_PUT, key, value, STORE_VALUE_MAX };
        many = calloc(max + 1, sizeof(*many));
        names = calloc(max + 1, sizeof(*names));
        assert_non_null(key);
        assert_non_null(value);
        assert_non_null(many);
        assert_non_null(names);
        for (size_t i = 0; i < STORE_VALUE_MAX; i++)
                value[i] = (uint8_t)(i * 31 + 7);
        memset(key, 'k', STORE_KEY_MAX);
        key[STORE_KEY_MAX] = 0;
        assert_int_equal(txn(s, NULL, 0, &op, 1, NULL), 0);
        assert_int_equal(store_ops_of(s)->get(s, key, &kv), 0);
        assert_int_equal(kv.value_len, STORE_VALUE_MAX);
        assert_memory_equal(kv.value, value, STORE_VALUE_MAX);
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
        for (size_t i = 0; i <= max; i++) {
                snprintf(names[i], sizeof(names[i]), "m/%u", (unsigned)i);
                many[i] = (struct store_op){ STORE_PUT, names[i], "x", 1 };
        }
        assert_int_equal(txn(s, NULL, 0, many, max + 1, NULL), -E2BIG);
        assert_int_equal(revision(s), 1);
        assert_int_equal(txn(s, NULL, 0, many, max, NULL), 0);
        assert_int_equal(revision(s), 2);

        free(many);
        free(names);
        free(key);
        free(value);
}
