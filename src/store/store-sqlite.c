/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The SQLite store backend: one database file (WAL, synchronous=FULL,
 * secure_delete) that holds the key-value map with its revisions.
 *
 * Schema (version 1; PRAGMA application_id = STORE_SQLITE_APP_ID marks the
 * file as a dkm store):
 *
 *   meta (id = 1, schema_version, revision, compacted)   one row
 *   kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, mod_revision, create_revision)
 *       index on mod_revision
 *   tombstones (key TEXT PRIMARY KEY, revision)           deleted keys
 *       index on revision
 *
 * The revision model is etcd v3's, so that an etcd backend can take this
 * one's place without its callers noticing:
 *   - meta.revision is one counter for the whole store; a transaction that
 *     changes something moves it by exactly one, and every key it writes
 *     gets that value as mod_revision (etcd's header.revision and
 *     kv.mod_revision).  A transaction that changes nothing (compares only,
 *     or deleting absent keys) leaves it alone, as etcd does.
 *   - create_revision is the revision of the write that created the key and
 *     survives later puts; a deleted and re-created key gets a new one.
 *   - a compare names a key's mod_revision, 0 meaning "absent": etcd's
 *     Compare(ModRevision(key), "=", rev), with 0 for a missing key.
 *   - changes() answers what an etcd watch started at since + 1 would have
 *     delivered, folded to the latest state of each key.  Writes are found
 *     through kv.mod_revision; deletions through tombstones, which keep the
 *     key and the revision that deleted it but never the value, so that a
 *     purged wrapped key leaves no copy behind (secure_delete zeroes the
 *     freed pages too).  Tombstones older than store_sqlite_history
 *     revisions are dropped and meta.compacted remembers up to where, like
 *     etcd's compaction: asking for changes before it gives -ERANGE.
 *
 * Every txn is one SQLite transaction (BEGIN IMMEDIATE, so that two
 * connections never deadlock upgrading a read lock); other processes are
 * waited for by the busy timeout.  One mutex per handle serialises the
 * threads that share it: a transaction is several statements on one
 * connection.  Callbacks run after the mutex is released, on a copy of the
 * rows, so they may call back into the store.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shared/util.h"
#include "store/store.h"

#define STORE_SQLITE_APP_ID 1684761939 /* 0x646b6d53, "dkmS" */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define SCHEMA_VERSION 1
#define BUSY_TIMEOUT_MS 5000

uint64_t store_sqlite_history = 1000000;

enum {
        ST_BEGIN,
        ST_BEGIN_READ,
        ST_COMMIT,
        ST_ROLLBACK,
        ST_GET,
        ST_MODREV,
        ST_RANGE,
        ST_PUT,
        ST_DEL,
        ST_TOMB_PUT,
        ST_TOMB_DEL,
        ST_TOMB_PRUNE,
        ST_META_GET,
        ST_META_SET,
        ST_CHANGES,
        _ST_MAX,
};

static const char *const statement_sql[_ST_MAX] = {
        [ST_BEGIN] = "BEGIN IMMEDIATE",
        [ST_BEGIN_READ] = "BEGIN",
        [ST_COMMIT] = "COMMIT",
        [ST_ROLLBACK] = "ROLLBACK",
        [ST_GET] = "SELECT key, value, mod_revision, create_revision FROM kv WHERE key = ?1",
        [ST_MODREV] = "SELECT mod_revision FROM kv WHERE key = ?1",
        [ST_RANGE] = "SELECT key, value, mod_revision, create_revision FROM kv"
                     " WHERE key >= ?1 AND key < ?2 ORDER BY key",
        [ST_PUT] = "INSERT INTO kv (key, value, mod_revision, create_revision) VALUES (?1, ?2, ?3, ?3)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                   " mod_revision = excluded.mod_revision",
        [ST_DEL] = "DELETE FROM kv WHERE key = ?1",
        [ST_TOMB_PUT] = "INSERT OR REPLACE INTO tombstones (key, revision) VALUES (?1, ?2)",
        [ST_TOMB_DEL] = "DELETE FROM tombstones WHERE key = ?1",
        [ST_TOMB_PRUNE] = "DELETE FROM tombstones WHERE revision <= ?1",
        [ST_META_GET] = "SELECT revision, compacted FROM meta WHERE id = 1",
        [ST_META_SET] = "UPDATE meta SET revision = ?1, compacted = max(compacted, ?2) WHERE id = 1",
        [ST_CHANGES] = "SELECT key, value, mod_revision, create_revision FROM kv"
                       " WHERE key >= ?1 AND key < ?2 AND mod_revision > ?3"
                       " UNION ALL"
                       " SELECT key, NULL, revision, 0 FROM tombstones"
                       " WHERE key >= ?1 AND key < ?2 AND revision > ?3"
                       " ORDER BY 3, 1",
};

static const char schema_sql[] =
        "CREATE TABLE meta ("
        " id INTEGER PRIMARY KEY CHECK (id = 1),"
        " schema_version INTEGER NOT NULL,"
        " revision INTEGER NOT NULL,"
        " compacted INTEGER NOT NULL);"
        "CREATE TABLE kv ("
        " key TEXT PRIMARY KEY NOT NULL,"
        " value BLOB NOT NULL,"
        " mod_revision INTEGER NOT NULL,"
        " create_revision INTEGER NOT NULL);"
        "CREATE INDEX kv_mod_revision ON kv (mod_revision);"
        "CREATE TABLE tombstones ("
        " key TEXT PRIMARY KEY NOT NULL,"
        " revision INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX tombstones_revision ON tombstones (revision);"
        "INSERT INTO meta (id, schema_version, revision, compacted) VALUES (1, 1, 0, 0);"
        "PRAGMA application_id = " STRINGIFY(STORE_SQLITE_APP_ID) ";";

struct store {
        struct store_base base;
        pthread_mutex_t lock;
        sqlite3 *db;
        sqlite3_stmt *st[_ST_MAX];
        uint64_t history;
};

/* The one place where SQLite's result codes become -errno. */
static int sqlite_errno(sqlite3 *db, int rc)
{
        switch (rc & 0xff) {
        case SQLITE_OK:
        case SQLITE_ROW:
        case SQLITE_DONE:
                return 0;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                /* A damaged file, or one that is no database at all:
                 * "bad message" is errno's word for bytes that do not parse. */
                return -EBADMSG;
        case SQLITE_CANTOPEN:
                return db && sqlite3_system_errno(db) == ENOENT ? -ENOENT : -EACCES;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_IOERR:
                return rc == SQLITE_IOERR_NOMEM ? -ENOMEM : -EIO;
        default:
                return -EIO;
        }
}



/* UTF-8 never uses bytes above 0xF4, so the keys under a prefix are exactly
 * those in [prefix, prefix with its last byte raised by one), and "\xF5" is
 * above every key. */
static void prefix_upper(const char *prefix, size_t n, char upper[static STORE_KEY_MAX + 1],
                         size_t *ret_len)
{
        if (n == 0) {
                upper[0] = (char)0xf5;
                *ret_len = 1;
                return;
        }
        memcpy(upper, prefix, n);
        upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1);
        *ret_len = n;
}

static void stmt_reset(sqlite3_stmt *st)
{
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
}

static int bind_text(struct store *s, sqlite3_stmt *st, int i, const char *t, size_t n)
{
        return sqlite_errno(s->db, sqlite3_bind_text(st, i, t, (int)n, SQLITE_STATIC));
}

static int bind_u64(struct store *s, sqlite3_stmt *st, int i, uint64_t v)
{
        return sqlite_errno(s->db, sqlite3_bind_int64(st, i, (sqlite3_int64)(v > INT64_MAX ? INT64_MAX : v)));
}

/* Runs a statement that returns no rows, and resets it. */
static int step_done(struct store *s, sqlite3_stmt *st)
{
        int rc = sqlite3_step(st);
        int r = rc == SQLITE_DONE ? 0 : rc == SQLITE_ROW ? -EIO : sqlite_errno(s->db, rc);

        stmt_reset(st);
        return r;
}

/* step_done() for a statement whose parameters were just bound, r being
 * what binding them gave: after a failed bind it is reset, not run. */
static int step_bound(struct store *s, sqlite3_stmt *st, int r)
{
        if (r < 0) {
                stmt_reset(st);
                return r;
        }
        return step_done(s, st);
}

static void rollback(struct store *s)
{
        if (!sqlite3_get_autocommit(s->db))
                (void)step_done(s, s->st[ST_ROLLBACK]);
}

/* Copies a (key, value, mod_revision, create_revision) row; a NULL value
 * (a tombstone) stays NULL, an empty one gets a non-NULL pointer. */
static int kv_from_row(sqlite3_stmt *st, struct store_kv *ret)
{
        struct store_kv kv = { 0 };
        const unsigned char *k = sqlite3_column_text(st, 0);
        int klen = sqlite3_column_bytes(st, 0);

        if (!k)
                return -ENOMEM;
        kv.key = strndup((const char *)k, (size_t)klen);
        if (!kv.key)
                return -ENOMEM;
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
                const void *v = sqlite3_column_blob(st, 1);
                int vlen = sqlite3_column_bytes(st, 1);

                kv.value = malloc(vlen > 0 ? (size_t)vlen : 1);
                if (!kv.value || (vlen > 0 && !v)) {
                        store_kv_clear(&kv);
                        return -ENOMEM;
                }
                if (vlen > 0)
                        memcpy(kv.value, v, (size_t)vlen);
                kv.value_len = (size_t)vlen;
        }
        kv.mod_revision = (uint64_t)sqlite3_column_int64(st, 2);
        kv.create_revision = (uint64_t)sqlite3_column_int64(st, 3);
        *ret = kv;
        return 0;
}

/* Steps a prepared query to its end, collecting its rows. */
static int kv_list_fill(struct store *s, sqlite3_stmt *st, struct store_kv_list *l)
{
        int rc, r;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct store_kv *kv = store_kv_list_add(l);

                if (!kv)
                        return -ENOMEM;
                r = kv_from_row(st, kv);
                if (r < 0)
                        return r;
                l->n++;
        }
        return rc == SQLITE_DONE ? 0 : sqlite_errno(s->db, rc);
}

static int meta_get(struct store *s, uint64_t *ret_revision, uint64_t *ret_compacted)
{
        sqlite3_stmt *st = s->st[ST_META_GET];
        int rc = sqlite3_step(st), r = 0;

        if (rc == SQLITE_ROW) {
                *ret_revision = (uint64_t)sqlite3_column_int64(st, 0);
                *ret_compacted = (uint64_t)sqlite3_column_int64(st, 1);
        } else
                r = rc == SQLITE_DONE ? -EBADMSG : sqlite_errno(s->db, rc);
        stmt_reset(st);
        return r;
}

static int mod_revision_of(struct store *s, const char *key, uint64_t *ret)
{
        sqlite3_stmt *st = s->st[ST_MODREV];
        int rc, r;

        r = bind_text(s, st, 1, key, strlen(key));
        if (r == 0) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        *ret = (uint64_t)sqlite3_column_int64(st, 0);
                else if (rc == SQLITE_DONE)
                        *ret = 0;
                else
                        r = sqlite_errno(s->db, rc);
        }
        stmt_reset(st);
        return r;
}

static int exec_put(struct store *s, const struct store_op *op, uint64_t rev)
{
        sqlite3_stmt *st = s->st[ST_PUT];
        size_t n = strlen(op->key);
        int r;

        r = bind_text(s, st, 1, op->key, n);
        if (r == 0)
                /* A non-NULL pointer: an empty value is a value, not NULL. */
                r = sqlite_errno(s->db, sqlite3_bind_blob(st, 2, op->value ? op->value : "",
                                                          (int)op->value_len, SQLITE_STATIC));
        if (r == 0)
                r = bind_u64(s, st, 3, rev);
        r = step_bound(s, st, r);
        if (r < 0)
                return r;

        st = s->st[ST_TOMB_DEL];
        return step_bound(s, st, bind_text(s, st, 1, op->key, n));
}

/* Deletes a key; *ret_changed says whether it existed. */
static int exec_delete(struct store *s, const struct store_op *op, uint64_t rev, bool *ret_changed)
{
        sqlite3_stmt *st = s->st[ST_DEL];
        size_t n = strlen(op->key);
        int r;

        r = step_bound(s, st, bind_text(s, st, 1, op->key, n));
        if (r < 0)
                return r;
        *ret_changed = sqlite3_changes(s->db) > 0;
        if (!*ret_changed)
                return 0;

        st = s->st[ST_TOMB_PUT];
        r = bind_text(s, st, 1, op->key, n);
        if (r == 0)
                r = bind_u64(s, st, 2, rev);
        return step_bound(s, st, r);
}


static int sqlite_txn(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                      const struct store_op *ops, size_t n_ops, uint64_t *ret_revision)
{
        uint64_t rev, compacted, cur = 0;
        size_t changed = 0;
        int r;

        if (!s)
                return -EINVAL;
        r = store_check_txn(cmps, n_cmps, ops, n_ops, STORE_SQLITE_TXN_OPS_MAX);
        if (r < 0)
                return r;

        pthread_mutex_lock(&s->lock);
        r = step_done(s, s->st[ST_BEGIN]);
        if (r < 0)
                goto unlock;

        for (size_t i = 0; i < n_cmps; i++) {
                r = mod_revision_of(s, cmps[i].key, &cur);
                if (r < 0)
                        goto fail;
                if (cur != cmps[i].mod_revision) {
                        r = -ESTALE;
                        goto fail;
                }
        }

        r = meta_get(s, &rev, &compacted);
        if (r < 0)
                goto fail;
        if (n_ops > 0 && rev >= INT64_MAX) {
                r = -EOVERFLOW;
                goto fail;
        }

        for (size_t i = 0; i < n_ops; i++) {
                bool ch = true;

                if (ops[i].type == STORE_PUT)
                        r = exec_put(s, &ops[i], rev + 1);
                else
                        r = exec_delete(s, &ops[i], rev + 1, &ch);
                if (r < 0)
                        goto fail;
                changed += ch;
        }

        if (changed > 0) {
                uint64_t horizon = rev + 1 > s->history ? rev + 1 - s->history : 0;
                sqlite3_stmt *st = s->st[ST_META_SET];

                rev++;
                r = bind_u64(s, st, 1, rev);
                if (r == 0)
                        r = bind_u64(s, st, 2, horizon);
                r = step_bound(s, st, r);
                if (r < 0)
                        goto fail;
                if (horizon > compacted) {
                        st = s->st[ST_TOMB_PRUNE];
                        r = step_bound(s, st, bind_u64(s, st, 1, horizon));
                        if (r < 0)
                                goto fail;
                }
        }

        r = step_done(s, s->st[ST_COMMIT]);
        if (r < 0)
                goto fail;
        pthread_mutex_unlock(&s->lock);
        if (ret_revision)
                *ret_revision = rev;
        return 0;

fail:
        rollback(s);
unlock:
        pthread_mutex_unlock(&s->lock);
        return r;
}

static int sqlite_get(struct store *s, const char *key, struct store_kv *ret)
{
        sqlite3_stmt *st;
        struct store_kv kv;
        size_t n;
        int r, rc;

        if (!s || !ret)
                return -EINVAL;
        r = store_check_key(key, false, &n);
        if (r < 0)
                return r;

        pthread_mutex_lock(&s->lock);
        st = s->st[ST_GET];
        r = bind_text(s, st, 1, key, n);
        if (r == 0) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW)
                        r = kv_from_row(st, &kv);
                else
                        r = rc == SQLITE_DONE ? -ENOENT : sqlite_errno(s->db, rc);
        }
        stmt_reset(st);
        pthread_mutex_unlock(&s->lock);
        if (r == 0)
                *ret = kv;
        return r;
}

/* Runs ST_RANGE or ST_CHANGES (whose ?3 is since) over the keys under
 * prefix, collecting the rows into l; with the lock held. */
static int prefix_rows(struct store *s, int which, const char *prefix, size_t n, uint64_t since,
                       struct store_kv_list *l)
{
        sqlite3_stmt *st = s->st[which];
        char upper[STORE_KEY_MAX + 1]; /* bound SQLITE_STATIC: lives until the reset */
        size_t un;
        int r;

        prefix_upper(prefix, n, upper, &un);
        r = bind_text(s, st, 1, prefix, n);
        if (r == 0)
                r = bind_text(s, st, 2, upper, un);
        if (r == 0 && which == ST_CHANGES)
                r = bind_u64(s, st, 3, since);
        if (r == 0)
                r = kv_list_fill(s, st, l);
        stmt_reset(st);
        return r;
}

static int sqlite_range(struct store *s, const char *prefix,
                        int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        struct store_kv_list l = { 0 };
        size_t n;
        int r;

        if (!s || !cb)
                return -EINVAL;
        r = store_check_key(prefix, true, &n);
        if (r < 0)
                return r;

        pthread_mutex_lock(&s->lock);
        r = prefix_rows(s, ST_RANGE, prefix, n, 0, &l);
        pthread_mutex_unlock(&s->lock);

        if (r == 0)
                r = store_kv_list_walk(&l, cb, userdata);
        store_kv_list_free(&l);
        return r;
}

static int sqlite_changes(struct store *s, const char *prefix, uint64_t since,
                          int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        struct store_kv_list l = { 0 };
        uint64_t rev, compacted;
        size_t n;
        int r;

        if (!s || !cb)
                return -EINVAL;
        r = store_check_key(prefix, true, &n);
        if (r < 0)
                return r;

        pthread_mutex_lock(&s->lock);
        /* One read transaction, so the horizon and the rows agree. */
        r = step_done(s, s->st[ST_BEGIN_READ]);
        if (r < 0)
                goto unlock;
        r = meta_get(s, &rev, &compacted);
        if (r == 0 && since < compacted)
                r = -ERANGE;
        if (r == 0)
                r = prefix_rows(s, ST_CHANGES, prefix, n, since, &l);
        if (r == 0)
                r = step_done(s, s->st[ST_COMMIT]);
        rollback(s);
unlock:
        pthread_mutex_unlock(&s->lock);

        if (r == 0)
                r = store_kv_list_walk(&l, cb, userdata);
        store_kv_list_free(&l);
        return r;
}

static int sqlite_revision(struct store *s, uint64_t *ret)
{
        uint64_t rev, compacted;
        int r;

        if (!s || !ret)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        r = meta_get(s, &rev, &compacted);
        pthread_mutex_unlock(&s->lock);
        if (r == 0)
                *ret = rev;
        return r;
}

/* Secure_delete zeroes what a transaction frees, but only in the page
 * images it writes: the WAL still holds the images from before, with the
 * deleted value in them, until a checkpoint overwrites the database file's
 * pages and TRUNCATE cuts the WAL to nothing.  revision does not matter:
 * the WAL's whole history goes.  The -shm file holds only the WAL's index
 * (page numbers), and no rollback journal exists in WAL mode. */
static int sqlite_shred(struct store *s, uint64_t revision)
{
        int rc, r;

        (void)revision;
        if (!s)
                return -EINVAL;
        pthread_mutex_lock(&s->lock);
        /* Waits (busy timeout) for another connection's readers to finish. */
        rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
        r = sqlite_errno(s->db, rc);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* A checkpoint is what shredding does: every page into dkm.db, the WAL cut
 * to nothing. */
static int sqlite_checkpoint(struct store *s)
{
        return sqlite_shred(s, 0);
}

/* Runs a one-row, one-column query on a constant statement. */
static int query_int(struct store *s, const char *sql, int64_t *ret)
{
        sqlite3_stmt *st = NULL;
        int rc, r;

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                r = 0;
        } else
                r = rc == SQLITE_DONE ? -EBADMSG : sqlite_errno(s->db, rc);
        sqlite3_finalize(st);
        return r;
}

static int query_text_is(struct store *s, const char *sql, const char *want)
{
        sqlite3_stmt *st = NULL;
        const unsigned char *t;
        int rc, r;

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                t = sqlite3_column_text(st, 0);
                r = t && strcmp((const char *)t, want) == 0 ? 1 : 0;
        } else
                r = rc == SQLITE_DONE ? 0 : sqlite_errno(s->db, rc);
        sqlite3_finalize(st);
        return r;
}

/* 1 when the file holds a dkm store, 0 when it is empty, -EBADMSG when it
 * holds something else.  Call inside a transaction: the two reads must see
 * the same file, not one from before another opener created the schema. */
static int identify(struct store *s)
{
        int64_t app, objects;
        int r;

        r = query_int(s, "PRAGMA application_id", &app);
        if (r < 0)
                return r;
        r = query_int(s, "SELECT count(*) FROM sqlite_master", &objects);
        if (r < 0)
                return r;
        if (app == STORE_SQLITE_APP_ID)
                return 1;
        return app == 0 && objects == 0 ? 0 : -EBADMSG;
}

/* Checks that the file is empty or ours, then switches it to WAL (which
 * would rewrite a foreign file, hence the look first).  Switching a new file
 * needs an exclusive lock, and SQLite answers SQLITE_BUSY at once, without
 * the busy handler, when another opener of the same new file holds a read
 * lock: retry until the busy timeout. */
static int enter_wal(struct store *s, bool memory)
{
        uint64_t deadline = now_mono_usec() + BUSY_TIMEOUT_MS * UINT64_C(1000);
        int r, rc;

        for (;;) {
                rc = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL);
                r = sqlite_errno(s->db, rc);
                if (r == 0) {
                        r = identify(s);
                        rc = sqlite3_exec(s->db, r >= 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
                        if (r >= 0)
                                r = sqlite_errno(s->db, rc);
                }
                if (r == 0)
                        r = query_text_is(s, "PRAGMA journal_mode = WAL", memory ? "memory" : "wal");
                if (r != -EBUSY || now_mono_usec() >= deadline)
                        break;
                usleep(2000);
        }
        if (r < 0)
                return r;
        return r == 0 ? -EOPNOTSUPP : 0; /* -EOPNOTSUPP: the file system cannot hold a WAL */
}

/* Creates the schema in an empty file, or checks the version of an existing
 * one; inside BEGIN IMMEDIATE, so that two processes opening a new file do
 * not both create it.  *ret_created says which. */
static int schema_setup(struct store *s, bool *ret_created)
{
        int64_t version;
        int r, rc;

        rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);
        r = identify(s);
        if (r == 0) {
                rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL);
                r = sqlite_errno(s->db, rc);
                *ret_created = true;
        } else if (r > 0) {
                r = query_int(s, "SELECT schema_version FROM meta WHERE id = 1", &version);
                if (r == -EIO) /* no meta table: marked as ours, but not built by us */
                        r = -EBADMSG;
                else if (r == 0 && version > SCHEMA_VERSION)
                        r = -EPROTO;
                else if (r == 0 && version < 1)
                        r = -EBADMSG;
                /* Migrations from older versions go here. */
                *ret_created = false;
        }
        if (r == 0) {
                rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
                r = sqlite_errno(s->db, rc);
        }
        if (r < 0 && !sqlite3_get_autocommit(s->db))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

/* Read-only: the file must already hold a dkm store, of a schema this
 * version reads; nothing is created, switched or written. */
static int readonly_check(struct store *s)
{
        int64_t version;
        int r, rc;

        rc = sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);
        r = identify(s);
        if (r == 0)
                r = -ENODATA; /* an empty file: no store at all */
        else if (r > 0) {
                r = query_int(s, "SELECT schema_version FROM meta WHERE id = 1", &version);
                if (r == -EIO)
                        r = -EBADMSG;
                else if (r == 0 && version > SCHEMA_VERSION)
                        r = -EPROTO;
                else if (r == 0 && version < 1)
                        r = -EBADMSG;
        }
        sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        return r;
}

static int setup(struct store *s, bool memory, bool readonly)
{
        bool created = false;
        int r, rc;

        sqlite3_extended_result_codes(s->db, 1);
        /* Closing never checkpoints: a dkmd that refuses a damaged or older
         * store leaves dkm.db and its WAL exactly as they were.  A clean
         * stop checkpoints on purpose (sqlite_checkpoint). */
        rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);
        rc = sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);
        /* FULL: the store holds wrapped key material, so a committed
         * transaction must survive a power cut.  secure_delete: deleted
         * wrapped keys must not linger in free pages. */
        rc = sqlite3_exec(s->db,
                          "PRAGMA synchronous = FULL;"
                          "PRAGMA secure_delete = ON;"
                          "PRAGMA cell_size_check = ON;"
                          "PRAGMA trusted_schema = OFF;",
                          NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_errno(s->db, rc);

        if (readonly)
                r = readonly_check(s);
        else {
                r = enter_wal(s, memory);
                if (r >= 0)
                        r = schema_setup(s, &created);
        }
        if (r < 0)
                return r;
        if (!created) {
                /* The store is small; reading it all once catches a damaged
                 * file at startup rather than in the middle of a rollover. */
                r = query_text_is(s, "PRAGMA quick_check(1)", "ok");
                if (r < 0)
                        return r;
                if (r == 0)
                        return -EBADMSG;
        }

        for (size_t i = 0; i < _ST_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                        &s->st[i], NULL);
                if (rc != SQLITE_OK) {
                        r = sqlite_errno(s->db, rc);
                        /* A missing table or column: not our schema. */
                        return r == -EIO ? -EBADMSG : r;
                }
        }
        return 0;
}

/* SQLite would create the file with 0644 minus the umask; create it first
 * with 0600 whatever the umask.  SQLite gives the -wal and -shm files the
 * mode of the database file. */
static int create_file(const char *path)
{
        int fd, r = 0;

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return errno == EEXIST ? 0 : negative_errno();
        if (fchmod(fd, 0600) < 0) {
                r = negative_errno();
                (void)unlink(path);
        }
        close(fd);
        return r;
}

static void sqlite_close(struct store *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < _ST_MAX; i++)
                sqlite3_finalize(s->st[i]);
        sqlite3_close(s->db);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

static int open_mode(const char *location, bool readonly, struct store **ret)
{
        bool memory;
        struct store *s;
        int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_FULLMUTEX;
        int r, rc;

        if (!location || !*location || !ret)
                return -EINVAL;
        memory = strcmp(location, ":memory:") == 0;
        if (memory && readonly)
                return -EINVAL;
#ifdef SQLITE_OPEN_EXRESCODE
        flags |= SQLITE_OPEN_EXRESCODE;
#endif
        if (memory)
                flags |= SQLITE_OPEN_CREATE;
        else if (!readonly) {
                r = create_file(location);
                if (r < 0)
                        return r;
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->base.ops = &store_sqlite_ops;
        s->history = store_sqlite_history ? store_sqlite_history : 1;
        r = -pthread_mutex_init(&s->lock, NULL);
        if (r < 0) {
                free(s);
                return r;
        }

        /* Not SQLITE_OPEN_URI: the location is a plain path, never parsed. */
        rc = sqlite3_open_v2(location, &s->db, flags, NULL);
        r = rc == SQLITE_OK ? setup(s, memory, readonly) : sqlite_errno(s->db, rc);
        if (r < 0) {
                sqlite_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

static int sqlite_open(const char *location, struct store **ret)
{
        return open_mode(location, false, ret);
}

int store_sqlite_open_readonly(const char *path, struct store **ret)
{
        return open_mode(path, true, ret);
}

void store_sqlite_describe(const char *path, char *buf, size_t size)
{
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int rc;
        size_t n;

        assert(path && buf && size > 0);
        snprintf(buf, size, "the file is damaged or is not a dkm store");
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
        if (rc != SQLITE_OK) {
                snprintf(buf, size, "it cannot be read as a database: %s", sqlite3_errstr(rc));
                sqlite3_close(db);
                return;
        }
        rc = sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                snprintf(buf, size, "it is not a readable SQLite database (%s)", sqlite3_errmsg(db));
                goto out;
        }
        if (sqlite3_column_int64(st, 0) != STORE_SQLITE_APP_ID) {
                snprintf(buf, size, "it is a SQLite database of another program (application_id %lld, "
                         "not dkm's)", (long long)sqlite3_column_int64(st, 0));
                goto out;
        }
        sqlite3_finalize(st);
        st = NULL;
        /* What the integrity check finds, up to three problems. */
        rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &st, NULL);
        if (rc != SQLITE_OK) {
                snprintf(buf, size, "it is damaged: %s", sqlite3_errmsg(db));
                goto out;
        }
        n = (size_t)snprintf(buf, size, "it is damaged:");
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < size) {
                const char *t = (const char *)sqlite3_column_text(st, 0);

                if (t && strcmp(t, "ok") == 0) {
                        snprintf(buf, size, "its pages are sound, but its tables are not the ones dkm "
                                 "made (altered, or from an unknown version)");
                        goto out;
                }
                /* One line for the journal: SQLite's report has several,
                 * after a "*** in database main ***" header. */
                if (t && strncmp(t, "*** in database ", 16) == 0 && (t = strchr(t, '\n')))
                        t++;
                if (n + 2 < size)
                        buf[n++] = ' ';
                for (; t && *t && n + 3 < size; t++)
                        if (*t != '\n')
                                buf[n++] = *t;
                        else if (t[1]) {
                                buf[n++] = ';';
                                buf[n++] = ' ';
                        }
                buf[n] = 0;
        }
        if (rc != SQLITE_DONE && n < size)
                snprintf(buf + n, size - n, " %s", sqlite3_errmsg(db));
out:
        sqlite3_finalize(st);
        sqlite3_close(db);
}

const struct store_ops store_sqlite_ops = {
        .name = "sqlite",
        .max_txn_ops = STORE_SQLITE_TXN_OPS_MAX,
        .open = sqlite_open,
        .close = sqlite_close,
        .get = sqlite_get,
        .range = sqlite_range,
        .txn = sqlite_txn,
        .revision = sqlite_revision,
        .changes = sqlite_changes,
        .shred = sqlite_shred,
        .checkpoint = sqlite_checkpoint,
};
