/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The store: a key-value map with a global revision, shaped after etcd v3 so
 * a distributed backend can take SQLite's place.  Every write is a
 * transaction of compares (on a key's mod revision) and operations; it
 * applies all or nothing.  Values are opaque bytes (wrapped material and
 * metadata only, never a plaintext key).  Everything returns 0 or -errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* Limits every backend enforces (etcd's defaults bound the last one).  Keys
 * are non-empty UTF-8 strings, compared bytewise; a longer key or value, or a
 * transaction with more compares or more operations, gives -E2BIG. */
#define STORE_KEY_MAX 1024u
#define STORE_VALUE_MAX (1024u * 1024u)
#define STORE_TXN_OPS_MAX 128u /* etcd's default --max-txn-ops */
#define STORE_SQLITE_TXN_OPS_MAX 16384u

struct store_kv {
        char *key;
        uint8_t *value;
        size_t value_len;
        uint64_t mod_revision;    /* revision of the last write of this key */
        uint64_t create_revision; /* revision at which it was created */
        uint64_t lease;           /* the lease it is attached to; 0: none */
};

void store_kv_clear(struct store_kv *kv);

enum store_op_type {
        STORE_PUT,
        STORE_DELETE,
};

struct store_op {
        enum store_op_type type;
        const char *key;
        const void *value; /* PUT only */
        size_t value_len;
};

/* A compare passes when the key's mod revision equals mod_revision; 0 means
 * "the key must not exist". */
struct store_cmp {
        const char *key;
        uint64_t mod_revision;
};

struct store_ops {
        const char *name;
        size_t max_txn_ops; /* compares or operations in one transaction */
        int (*open)(const char *location, struct store **ret);
        void (*close)(struct store *s);
        /* -ENOENT when absent. */
        int (*get)(struct store *s, const char *key, struct store_kv *ret);
        /* Every key starting with prefix, sorted by key; the callback may stop
         * the walk by returning non-zero (that value is returned). */
        int (*range)(struct store *s, const char *prefix,
                     int (*cb)(const struct store_kv *kv, void *userdata), void *userdata);
        /* -ESTALE when a compare fails (nothing is written); on success
         * *ret_revision (if non-NULL) is the new store revision.  As in etcd,
         * the revision moves by exactly one when the transaction changed
         * something and not at all otherwise; a key may appear in at most one
         * operation of a transaction (-EINVAL). */
        int (*txn)(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                   const struct store_op *ops, size_t n_ops, uint64_t *ret_revision);
        /* Current store revision. */
        int (*revision)(struct store *s, uint64_t *ret);
        /* Keys under prefix changed after revision since (deleted keys are
         * reported with value NULL); for watching.  Each key is reported once,
         * in its latest state, ordered by mod_revision (a deletion carries the
         * revision that deleted it).  -ERANGE when the history after since has
         * been compacted away: resynchronise with revision() and range(). */
        int (*changes)(struct store *s, const char *prefix, uint64_t since,
                       int (*cb)(const struct store_kv *kv, void *userdata), void *userdata);
        /* A held watch, for a node that follows the others; NULL where the
         * backend has none (SQLite: one node, nobody to follow).  Hands the
         * changes under prefix after revision since to cb as they commit,
         * the history first: one call per revision, with the keys it wrote
         * (deletions with value NULL).  cb returns 0 for more; any other
         * value ends follow with that value.  follow ends with 0 once stop_fd
         * becomes readable; -ERANGE when the history after since has been
         * compacted away (resynchronise as for changes()); and with the
         * transport's error when the stream breaks or stays silent too long:
         * the caller catches up from the last revision it applied and
         * follows again.  cb runs on the caller's thread while the stream is
         * held; it may use the store's other operations. */
        int (*follow)(struct store *s, const char *prefix, uint64_t since, int stop_fd,
                      int (*cb)(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata),
                      void *userdata);

        /* Leases, as etcd has them; optional: NULL in a backend without
         * them (SQLite: one node, whose own clock ends what it wrote).  A
         * lease lives ttl seconds unless kept alive; when it expires or is
         * revoked, every key put under it (txn_leased) is deleted, all in
         * one revision that changes() reports like any deletion.  IDs are
         * 1..INT64_MAX.  The TTL granted may be longer than asked (etcd's
         * minimum is a few seconds), and etcd restarts every lease's TTL
         * when it elects a new leader: a lease ends no earlier than asked,
         * maybe later. */
        int (*lease_grant)(struct store *s, uint64_t ttl_sec, uint64_t *ret_id, uint64_t *ret_ttl);
        /* Renews it for its whole TTL (*ret_ttl, if non-NULL); -ENOENT when
         * it has ended. */
        int (*lease_keepalive)(struct store *s, uint64_t id, uint64_t *ret_ttl);
        /* Ends it now, deleting its keys; -ENOENT when it had ended. */
        int (*lease_revoke)(struct store *s, uint64_t id);
        /* Seconds it has left; -ENOENT when it has ended. */
        int (*lease_ttl)(struct store *s, uint64_t id, uint64_t *ret_left);
        /* txn() whose puts may be attached to leases: leases[i] for ops[i]
         * (0: none; a delete's must be 0).  A lease that has ended gives
         * -ENOENT and nothing is written.  (A separate array rather than a
         * field of store_op keeps every store_op initialiser as it is.) */
        int (*txn_leased)(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                          const struct store_op *ops, size_t n_ops, const uint64_t *leases,
                          uint64_t *ret_revision);

        /* Crypto-shredding: removes from the files and the history that the
         * backend keeps every earlier copy of the values overwritten or
         * deleted at or before revision, so that a destroyed wrapped key
         * cannot be read back from the store.  SQLite (which zeroes freed
         * cells and pages with secure_delete) checkpoints its WAL into the
         * database file and truncates it.  etcd compacts its history up to
         * revision (physically) and then defragments each member it can
         * reach, which rewrites the member's bbolt file without its free
         * pages: the history of the whole keyspace up to revision goes, for
         * every user of the cluster, and watches that start before it get
         * -ERANGE.  0 when done; -EBUSY when another connection held SQLite's
         * WAL; etcd: the compaction's error, else the most telling error of a
         * member that could not be defragmented (the others were).  Required:
         * a backend that keeps history must be able to forget it. */
        int (*shred)(struct store *s, uint64_t revision);

        /* Optional (NULL: nothing to do): makes the backend's main file hold
         * every committed write, for a clean stop, so that whoever copies
         * that file alone has copied the store.  SQLite checkpoints its WAL
         * into dkm.db and truncates it (-EBUSY when another connection held
         * it). */
        int (*checkpoint)(struct store *s);

        /* Optional: the backend's own words for an error r it gave, where
         * they say more than strerror() (etcd: no quorum); NULL from the
         * function, or no function, for the common text. */
        const char *(*strerror)(struct store *s, int r);
        /* Optional: whether r says the store is out of reach for now (etcd:
         * no quorum, the connection lost) rather than that it refused.
         * Absent for a backend that cannot be out of reach (SQLite: a local
         * file); the daemon then needs no block of uses reserved ahead. */
        bool (*unavailable)(struct store *s, int r);
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_etcd_ops; /* location syntax: store/store-etcd.h */
/* Why the SQLite file at path did not open (-EBADMSG): one sentence in buf,
 * e.g. "not a database file" or "damaged: <what SQLite's check found>".
 * Opens it read-only; never changes it. */
void store_sqlite_describe(const char *path, char *buf, size_t size);
/* Opens an existing SQLite store for reading only (a migration's source):
 * never creates the file, switches its journal or writes to it; a txn()
 * gives -EROFS.  -ENOENT when the file is missing, -ENODATA when it is
 * empty, -EBADMSG when it holds something else or is damaged, -EPROTO for
 * a newer schema. */
int store_sqlite_open_readonly(const char *path, struct store **ret);
/* How many revisions of deletions the SQLite backend remembers for changes();
 * read when a store is opened (tests lower it). */
extern uint64_t store_sqlite_history;

/* Convenience wrappers over the ops table. */
int store_open(const struct store_ops *ops, const char *location, struct store **ret);
void store_close(struct store *s);
const struct store_ops *store_ops_of(struct store *s);
/* Whether the backend has leases; the lease wrappers give -EOPNOTSUPP when not. */
bool store_has_leases(struct store *s);
int store_lease_grant(struct store *s, uint64_t ttl_sec, uint64_t *ret_id, uint64_t *ret_ttl);
int store_lease_keepalive(struct store *s, uint64_t id, uint64_t *ret_ttl);
int store_lease_revoke(struct store *s, uint64_t id);
int store_lease_ttl(struct store *s, uint64_t id, uint64_t *ret_left);
int store_txn_leased(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                     const struct store_op *ops, size_t n_ops, const uint64_t *leases,
                     uint64_t *ret_revision);
int store_shred(struct store *s, uint64_t revision);
/* 0 also where the backend has nothing to do. */
int store_checkpoint(struct store *s);
/* Words for an error of s, for messages: the backend's (its strerror in
 * the table), else "the record changed concurrently, retry" for -ESTALE,
 * else strerror(-r).  s may be NULL (no backend yet). */
const char *store_strerror(struct store *s, int r);
/* Whether r from s means "out of reach for now" (the table's unavailable);
 * false for a NULL store and for a backend that is never out of reach. */
bool store_unavailable(struct store *s, int r);

/* For backends: keys are 1-STORE_KEY_MAX bytes of UTF-8 (empty only with
 * allow_empty): -E2BIG when longer, -EINVAL otherwise. */
bool store_utf8_valid(const unsigned char *p, size_t n);
int store_check_key(const char *k, bool allow_empty, size_t *ret_len);
/* A transaction's shape before any backend runs it: at most max_ops compares
 * and operations, valid keys, values within STORE_VALUE_MAX, no key twice. */
int store_check_txn(const struct store_cmp *cmps, size_t n_cmps, const struct store_op *ops,
                    size_t n_ops, size_t max_ops);

/* A transaction being built, in place of parallel arrays of operations,
 * keys and values: it owns copies of the keys and the values it is given
 * (put_owned() takes a malloc'd value over).  Start from a zeroed struct;
 * store_txn_free() releases everything, also after a failed call. */
struct store_txn {
        struct store_op *ops;
        struct store_cmp *cmps;
        size_t n_ops, n_cmps, cap_ops, cap_cmps;
};

/* 0, or -ENOMEM (value is then freed all the same). */
int store_txn_put_owned(struct store_txn *t, const char *key, char *value, size_t value_len);
int store_txn_delete(struct store_txn *t, const char *key);
/* The transaction applies only if key's mod revision is mod_revision
 * (0: the key must not exist). */
int store_txn_compare(struct store_txn *t, const char *key, uint64_t mod_revision);
/* Runs it on s, as s's txn() does. */
int store_txn_commit(struct store *s, const struct store_txn *t, uint64_t *ret_revision);
void store_txn_free(struct store_txn *t);

/* Key-values collected to be handed to a callback later, once the backend
 * has let go of its locks and replies (so that callbacks may call into the
 * store); the daemon collects range() results in one too. */
struct store_kv_list {
        struct store_kv *v;
        size_t n, cap;
};

void store_kv_list_free(struct store_kv_list *l);
/* A zeroed slot at l->v[l->n], or NULL; l->n is the caller's to raise. */
struct store_kv *store_kv_list_add(struct store_kv_list *l);
/* Hands each key-value to cb in order; cb's first non-zero answer ends the
 * walk and is returned. */
int store_kv_list_walk(const struct store_kv_list *l, int (*cb)(const struct store_kv *kv, void *userdata),
                       void *userdata);

/* Every backend's struct store starts with this. */
struct store_base {
        const struct store_ops *ops;
};
