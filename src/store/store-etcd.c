/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The etcd v3 store backend.  store.h's model is etcd's, so the operations
 * map one to one:
 *
 *   get       Range(key)
 *   range     Range(prefix, prefix with its last byte + 1), pages of
 *             RANGE_PAGE keys, all read at the revision of the first page
 *   txn       one Txn: compare ModRevision(key) == rev, or CreateRevision(key)
 *             == 0 for "must not exist"; success = the puts and deletes;
 *             succeeded == false gives -ESTALE; header.revision is the new
 *             revision (unchanged when nothing changed, as store.h says)
 *   revision  the header revision of a count-only Range
 *   changes   a Watch from since + 1 (see etcd_changes() below); etcd hands
 *             a watch its history from a loop that runs every 100 ms, so a
 *             call takes about that long
 *   follow    one Watch from since + 1 with progress_notify, held open
 *             (etcd_watch_held() in etcd-watch.c): each WatchResponse is cut
 *             into its revisions for the callback; a compacted start is
 *             -ERANGE, a broken or silent stream the transport's error
 *   shred     Compact(revision, physical) and Defragment on each endpoint
 *   lease_*   LeaseGrant, LeaseKeepAlive (one request on the stream: the
 *             gateway answers {"result": ...} and closes it), LeaseRevoke,
 *             LeaseTimeToLive; a put's lease is PutRequest.lease
 *
 * Every dkm key K is stored as <prefix>K, the prefix coming from the
 * location string (store-etcd.h); keys outside the prefix are never read
 * or written.  Limits (STORE_KEY_MAX etc.) are checked here, before etcd's
 * own (--max-request-bytes, default 1.5 MiB; --max-txn-ops, default 128).
 *
 * A write that ends in -ETIMEDOUT or -ECONNRESET may or may not have been
 * applied (etcd may commit it after we stopped waiting).  The caller must
 * re-read the keys and compare their mod revisions (or values) before
 * retrying; for a compare-and-swap, a retry that gets -ESTALE may mean that
 * the first attempt succeeded.  -EHOSTUNREACH and -EAGAIN from a write mean
 * it was not applied.
 *
 * The transport is etcd-http.c and etcd-watch.c; replies are read into
 * store.h's terms by etcd-reply.c.
 *
 * Thread-safe: the transport (etcd-http.c) serialises only its handle pool.
 * Callbacks run after all replies are read, so they may call into the store.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shared/util.h"
#include "store/etcd-http.h"
#include "store/etcd-reply.h"
#include "store/store-etcd.h"
#include "store/store.h"

#define RANGE_PAGE 64
#define RANGE_RETRIES 3
/* changes(): how long a watch may stay silent after it was created before
 * we take it that there is nothing more to catch up with (etcd hands a new
 * watcher its history from a loop that runs every 100 ms), and how long it
 * may take in all. */
#define CHANGES_QUIET_MS 500
#define CHANGES_LIMIT_MS 5000
#define CHANGES_RETRIES 2

struct store {
        struct store_base base;
        struct etcd_client *c;
        char *root; /* the location's prefix */
        size_t root_len;
};


/* root + key, and with upper set, the end of the range of every key that
 * starts with it: its last byte raised by one (never 0xFF in UTF-8). */
static int full_key(struct store *s, const char *key, size_t n, bool upper, char **ret, size_t *ret_len)
{
        size_t len = s->root_len + n;
        char *k = malloc(len + 1);

        if (!k)
                return -ENOMEM;
        memcpy(k, s->root, s->root_len);
        memcpy(k + s->root_len, key, n);
        k[len] = 0;
        if (upper)
                k[len - 1] = (char)((unsigned char)k[len - 1] + 1);
        *ret = k;
        *ret_len = len;
        return 0;
}

static int add_key(struct store *s, struct json_object *o, const char *field, const char *key, bool upper)
{
        char *k = NULL;
        size_t n;
        int r;

        r = full_key(s, key, strlen(key), upper, &k, &n);
        if (r == 0)
                r = etcd_json_add_bytes(o, field, k, n);
        free(k);
        return r;
}

/* ---- operations -------------------------------------------------------- */

static int etcd_get(struct store *s, const char *key, struct store_kv *ret)
{
        struct json_object *req = NULL, *reply = NULL;
        struct store_kv_list l = { 0 };
        size_t n;
        int r;

        if (!s || !ret)
                return -EINVAL;
        r = store_check_key(key, false, &n);
        if (r < 0)
                return r;
        req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        r = add_key(s, req, "key", key, false);
        if (r == 0)
                r = etcd_call(s->c, "kv/range", req, ETCD_IDEMPOTENT, &reply);
        if (r == 0)
                r = etcd_reply_kvs(s->root, s->root_len, reply, &l, NULL);
        if (r == 0 && l.n == 0)
                r = -ENOENT;
        if (r == 0 && (l.n != 1 || strcmp(l.v[0].key, key) != 0))
                r = -EBADMSG;
        if (r == 0) {
                *ret = l.v[0];
                l.n = 0;
        }
        store_kv_list_free(&l);
        json_object_put(reply);
        json_object_put(req);
        return r;
}

/* Reads every key under prefix into l, page by page at one revision. */
static int range_read(struct store *s, const char *prefix, size_t n, struct store_kv_list *l)
{
        char *start = NULL, *end = NULL;
        size_t start_len, end_len;
        uint64_t rev = 0;
        int r;

        r = full_key(s, prefix, n, false, &start, &start_len);
        if (r == 0)
                r = full_key(s, prefix, n, true, &end, &end_len);
        while (r == 0) {
                struct json_object *req = json_object_new_object(), *reply = NULL;
                bool has_more = false;

                r = req ? 0 : -ENOMEM;
                if (r == 0)
                        r = etcd_json_add_bytes(req, "key", start, start_len);
                if (r == 0)
                        r = etcd_json_add_bytes(req, "range_end", end, end_len);
                if (r == 0)
                        r = etcd_json_add_u64(req, "limit", RANGE_PAGE);
                if (r == 0 && rev)
                        r = etcd_json_add_u64(req, "revision", rev);
                if (r == 0)
                        r = etcd_call(s->c, "kv/range", req, ETCD_IDEMPOTENT, &reply);
                if (r == 0 && !rev)
                        r = etcd_json_header_revision(reply, &rev);
                if (r == 0)
                        r = etcd_reply_kvs(s->root, s->root_len, reply, l, &has_more);
                json_object_put(reply);
                json_object_put(req);
                if (r < 0 || !has_more)
                        break;
                if (l->n == 0) {
                        r = -EBADMSG; /* "more", and nothing in this page */
                        break;
                }
                /* The next page starts just after the last key read. */
                free(start);
                r = full_key(s, l->v[l->n - 1].key, strlen(l->v[l->n - 1].key) + 1, false, &start,
                             &start_len);
                if (r == 0)
                        start[start_len - 1] = 0;
        }
        free(start);
        free(end);
        return r;
}

static int etcd_range(struct store *s, const char *prefix,
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
        /* A compaction between two pages loses the revision they share:
         * start over at a new one. */
        for (int i = 0; i < RANGE_RETRIES; i++) {
                store_kv_list_free(&l);
                r = range_read(s, prefix, n, &l);
                if (r != -ERANGE)
                        break;
        }
        if (r == 0)
                r = store_kv_list_walk(&l, cb, userdata);
        store_kv_list_free(&l);
        return r;
}


static int txn_request(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                       const struct store_op *ops, size_t n_ops, const uint64_t *leases,
                       struct json_object *req)
{
        struct json_object *compare = json_object_new_array(), *success = json_object_new_array();
        int r = etcd_json_add_object(req, "compare", compare);
        int r2 = etcd_json_add_object(req, "success", success); /* both owned by req now */

        if (r < 0 || r2 < 0)
                return -ENOMEM;
        for (size_t i = 0; i < n_cmps && r == 0; i++) {
                struct json_object *c = json_object_new_object();
                bool absent = cmps[i].mod_revision == 0;

                r = etcd_json_add_to_array(compare, c);
                if (r == 0)
                        r = add_key(s, c, "key", cmps[i].key, false);
                if (r == 0)
                        r = etcd_json_add_object(c, "target",
                                                 json_object_new_string(absent ? "CREATE" : "MOD"));
                if (r == 0)
                        r = etcd_json_add_object(c, "result", json_object_new_string("EQUAL"));
                if (r == 0)
                        r = etcd_json_add_u64(c, absent ? "create_revision" : "mod_revision",
                                              cmps[i].mod_revision);
        }
        for (size_t i = 0; i < n_ops && r == 0; i++) {
                struct json_object *op = json_object_new_object(), *body = json_object_new_object();
                bool put = ops[i].type == STORE_PUT;

                r = etcd_json_add_to_array(success, op);
                if (r == 0)
                        r = etcd_json_add_object(op, put ? "request_put" : "request_delete_range", body);
                else
                        json_object_put(body);
                if (r == 0)
                        r = add_key(s, body, "key", ops[i].key, false);
                if (r == 0 && put)
                        r = etcd_json_add_bytes(body, "value", ops[i].value ? ops[i].value : "",
                                                ops[i].value_len);
                if (r == 0 && put && leases && leases[i])
                        r = etcd_json_add_u64(body, "lease", leases[i]);
        }
        return r;
}

static int etcd_txn_leased(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                           const struct store_op *ops, size_t n_ops, const uint64_t *leases,
                           uint64_t *ret_revision)
{
        struct json_object *req, *reply = NULL;
        uint64_t rev = 0;
        int r;

        if (!s)
                return -EINVAL;
        r = store_check_txn(cmps, n_cmps, ops, n_ops, STORE_TXN_OPS_MAX);
        if (r < 0)
                return r;
        req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        for (size_t i = 0; leases && i < n_ops; i++)
                if (leases[i] > INT64_MAX || (leases[i] && ops[i].type != STORE_PUT)) {
                        json_object_put(req);
                        return -EINVAL;
                }
        r = txn_request(s, cmps, n_cmps, ops, n_ops, leases, req);
        if (r == 0)
                r = etcd_call(s->c, "kv/txn", req, 0, &reply);
        if (r == 0)
                r = etcd_reply_txn(reply, &rev);
        json_object_put(reply);
        json_object_put(req);
        if (r == 0 && ret_revision)
                *ret_revision = rev;
        return r;
}

static int etcd_txn(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                    const struct store_op *ops, size_t n_ops, uint64_t *ret_revision)
{
        return etcd_txn_leased(s, cmps, n_cmps, ops, n_ops, NULL, ret_revision);
}

static int etcd_revision(struct store *s, uint64_t *ret)
{
        struct json_object *req, *reply = NULL;
        uint64_t rev = 0;
        int r;

        if (!s || !ret)
                return -EINVAL;
        req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        r = etcd_json_add_bytes(req, "key", s->root, s->root_len);
        if (r == 0)
                r = etcd_json_add_bool(req, "count_only");
        if (r == 0)
                r = etcd_call(s->c, "kv/range", req, ETCD_IDEMPOTENT, &reply);
        if (r == 0)
                r = etcd_json_header_revision(reply, &rev);
        json_object_put(reply);
        json_object_put(req);
        if (r == 0)
                *ret = rev;
        return r;
}

/* ---- changes ----------------------------------------------------------- */

/* A WatchCreateRequest for every key under prefix after revision since;
 * with progress, etcd also reports its revision while nothing changes. */
static int watch_request(struct store *s, const char *prefix, uint64_t since, bool progress,
                         struct json_object **ret)
{
        struct json_object *req = json_object_new_object(), *create = json_object_new_object();
        int r;

        if (!req || !create) {
                json_object_put(req);
                json_object_put(create);
                return -ENOMEM;
        }
        r = etcd_json_add_object(req, "create_request", create);
        if (r == 0)
                r = add_key(s, create, "key", prefix, false);
        if (r == 0)
                r = add_key(s, create, "range_end", prefix, true);
        if (r == 0)
                r = etcd_json_add_u64(create, "start_revision", since + 1);
        if (r == 0 && progress)
                r = etcd_json_add_bool(create, "progress_notify");
        if (r < 0) {
                json_object_put(req);
                return r;
        }
        *ret = req;
        return 0;
}


struct watch_collect {
        struct store *s;
        const char *prefix; /* without the root */
        size_t prefix_len;
        uint64_t until;     /* stop at an event of this revision or later */
        struct store_kv_list events;
};

static int on_watch_result(struct json_object *result, void *userdata)
{
        struct watch_collect *w = userdata;
        uint64_t last = 0;
        int r;

        r = etcd_reply_events(w->s->root, w->s->root_len, result, w->prefix, w->prefix_len, &w->events,
                              &last);
        if (r < 0)
                return r;
        return last >= w->until ? 1 : 0;
}

static int cmp_key_rev(const void *a, const void *b)
{
        const struct store_kv *x = a, *y = b;
        int c = strcmp(x->key, y->key);

        if (c != 0)
                return c;
        return x->mod_revision < y->mod_revision ? -1 : x->mod_revision > y->mod_revision;
}

static int cmp_rev_key(const void *a, const void *b)
{
        const struct store_kv *x = a, *y = b;

        if (x->mod_revision != y->mod_revision)
                return x->mod_revision < y->mod_revision ? -1 : 1;
        return strcmp(x->key, y->key);
}

/* Keeps the latest event of each key, in revision order (then key order, for
 * the keys of one transaction), as the SQLite backend reports them. */
static void fold_events(struct store_kv_list *l)
{
        size_t out = 0;

        if (l->n == 0)
                return;
        qsort(l->v, l->n, sizeof(*l->v), cmp_key_rev);
        for (size_t i = 0; i < l->n; i++) {
                if (i + 1 < l->n && strcmp(l->v[i].key, l->v[i + 1].key) == 0) {
                        store_kv_clear(&l->v[i]);
                        continue;
                }
                l->v[out++] = l->v[i];
        }
        l->n = out;
        qsort(l->v, l->n, sizeof(*l->v), cmp_rev_key);
}

/* A range read cannot show deletions, so changes() replays etcd's history:
 * a watch on the whole root from since + 1, read until it delivers an event
 * at or past the revision the store had when we started (R).  The watch
 * covers the root, not only the prefix asked for, so that in a cluster that
 * only dkm writes to the event at R always comes and ends the read at once.
 * When someone else wrote last (no event at R for us), etcd gives no sign
 * that a watcher has caught up (etcd 3.4's progress requests answer at once,
 * caught up or not): we stop once the stream has been quiet for
 * CHANGES_QUIET_MS, several rounds of etcd's catch-up loop.  Should a loaded
 * etcd take longer, the call reports fewer changes, never wrong ones: events
 * come in revision order, so what was read is the history up to some
 * revision, and a caller that moves since to the highest mod_revision it was
 * handed gets the rest next time.  A compacted history makes etcd cancel the
 * watch with compact_revision: -ERANGE. */
static int etcd_changes(struct store *s, const char *prefix, uint64_t since,
                        int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        struct watch_collect w = { .s = s, .prefix = prefix };
        struct json_object *req = NULL;
        uint64_t rev;
        size_t n;
        int r;

        if (!s || !cb)
                return -EINVAL;
        r = store_check_key(prefix, true, &n);
        if (r < 0)
                return r;
        w.prefix_len = n;
        r = etcd_revision(s, &rev);
        if (r < 0)
                return r;
        if (since >= rev)
                return 0;
        w.until = rev;

        r = watch_request(s, "", since, false, &req);
        /* A member that fails mid-stream: a read, so start over elsewhere. */
        for (int i = 0; r == 0 && i < CHANGES_RETRIES; i++) {
                store_kv_list_free(&w.events);
                r = etcd_watch(s->c, req, on_watch_result, &w, CHANGES_QUIET_MS, CHANGES_LIMIT_MS, NULL);
                if (r != -ECONNRESET && r != -EAGAIN)
                        break;
                if (i + 1 < CHANGES_RETRIES)
                        r = 0;
        }
        json_object_put(req);
        if (r == 0) {
                fold_events(&w.events);
                r = store_kv_list_walk(&w.events, cb, userdata);
        }
        store_kv_list_free(&w.events);
        return r;
}

/* ---- follow ------------------------------------------------------------ */

unsigned store_etcd_follow_idle_ms = 10000;

struct follow_state {
        struct store *s;
        const char *prefix;
        size_t prefix_len;
        int (*cb)(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata);
        void *userdata;
        int result; /* cb's positive answer, returned as it is */
};

/* One WatchResponse: history comes in batches of several revisions, live
 * changes one transaction at a time; cb gets one revision per call. */
static int on_follow_result(struct json_object *result, void *userdata)
{
        struct follow_state *f = userdata;
        struct store_kv_list l = { 0 };
        uint64_t last = 0;
        int r;

        r = etcd_reply_events(f->s->root, f->s->root_len, result, f->prefix, f->prefix_len, &l, &last);
        for (size_t i = 0, j; r == 0 && i < l.n; i = j) {
                for (j = i + 1; j < l.n && l.v[j].mod_revision == l.v[i].mod_revision;)
                        j++;
                r = f->cb(l.v + i, j - i, l.v[i].mod_revision, f->userdata);
        }
        store_kv_list_free(&l);
        if (r > 0) {
                f->result = r;
                return 1;
        }
        return r;
}

static int etcd_follow(struct store *s, const char *prefix, uint64_t since, int stop_fd,
                       int (*cb)(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata),
                       void *userdata)
{
        struct follow_state f = { .s = s, .prefix = prefix, .cb = cb, .userdata = userdata };
        struct json_object *req = NULL;
        int r;

        if (!s || !cb || since >= INT64_MAX)
                return -EINVAL;
        r = store_check_key(prefix, true, &f.prefix_len);
        if (r < 0)
                return r;
        r = watch_request(s, prefix, since, true, &req);
        if (r == 0)
                r = etcd_watch_held(s->c, req, on_follow_result, &f, store_etcd_follow_idle_ms, stop_fd);
        json_object_put(req);
        return f.result ? f.result : r;
}

int store_etcd_compact(struct store *s, uint64_t revision)
{
        struct json_object *req, *reply = NULL;
        int r;

        if (!s || store_ops_of(s) != &store_etcd_ops || revision == 0 || revision > INT64_MAX)
                return -EINVAL;
        req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        r = etcd_json_add_u64(req, "revision", revision);
        if (r == 0)
                r = etcd_json_add_bool(req, "physical");
        if (r == 0)
                r = etcd_call(s->c, "kv/compaction", req, 0, &reply);
        json_object_put(reply);
        json_object_put(req);
        return r;
}

/* Compaction (physical: etcd answers once its bbolt file no longer has
 * the old revisions) frees their pages but leaves their bytes in the file;
 * a defragmentation of each member rewrites it without them.  Up to
 * revision the history of the whole cluster goes, not only dkm's prefix:
 * etcd has no other way.  A revision compacted already (-ERANGE) is fine. */
static int etcd_shred(struct store *s, uint64_t revision)
{
        struct json_object *req;
        size_t done = 0;
        int r;

        r = store_etcd_compact(s, revision);
        if (r < 0 && r != -ERANGE)
                return r;
        req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        r = etcd_call_each(s->c, "maintenance/defragment", req, &done);
        json_object_put(req);
        return r;
}

/* ---- leases ------------------------------------------------------------ */

static int lease_call(struct store *s, const char *method, uint64_t id, uint64_t ttl, unsigned flags,
                      struct json_object **ret)
{
        struct json_object *req = json_object_new_object();
        int r;

        if (!req)
                return -ENOMEM;
        r = id ? etcd_json_add_u64(req, "ID", id) : 0;
        if (r == 0 && ttl)
                r = etcd_json_add_u64(req, "TTL", ttl);
        if (r == 0)
                r = etcd_call(s->c, method, req, flags, ret);
        json_object_put(req);
        return r;
}

static int etcd_lease_grant(struct store *s, uint64_t ttl_sec, uint64_t *ret_id, uint64_t *ret_ttl)
{
        struct json_object *reply = NULL;
        uint64_t id = 0, ttl = 0;
        int r;

        if (!s || !ret_id || ttl_sec == 0 || ttl_sec > INT64_MAX)
                return -EINVAL;
        /* A write: a retry after a lost reply would make a second lease,
         * which no key uses and which expires on its own. */
        r = lease_call(s, "lease/grant", 0, ttl_sec, 0, &reply);
        if (r == 0)
                r = etcd_reply_lease_grant(reply, &id, &ttl);
        json_object_put(reply);
        if (r < 0)
                return r;
        *ret_id = id;
        if (ret_ttl)
                *ret_ttl = ttl;
        return 0;
}

static int etcd_lease_keepalive(struct store *s, uint64_t id, uint64_t *ret_ttl)
{
        struct json_object *reply = NULL;
        uint64_t ttl = 0;
        int r;

        if (!s || id == 0 || id > INT64_MAX)
                return -EINVAL;
        /* Renewing twice does no harm: safe to ask another member. */
        r = lease_call(s, "lease/keepalive", id, 0, ETCD_IDEMPOTENT, &reply);
        if (r == 0)
                r = etcd_reply_lease_keepalive(reply, id, &ttl);
        json_object_put(reply);
        if (r == 0 && ret_ttl)
                *ret_ttl = ttl;
        return r;
}

static int etcd_lease_revoke(struct store *s, uint64_t id)
{
        struct json_object *reply = NULL;
        int r;

        if (!s || id == 0 || id > INT64_MAX)
                return -EINVAL;
        /* A second revoke finds nothing (-ENOENT): the caller's wish holds. */
        r = lease_call(s, "lease/revoke", id, 0, ETCD_IDEMPOTENT, &reply);
        json_object_put(reply);
        return r;
}

static int etcd_lease_ttl(struct store *s, uint64_t id, uint64_t *ret_left)
{
        struct json_object *reply = NULL;
        uint64_t left = 0;
        int r;

        if (!s || !ret_left || id == 0 || id > INT64_MAX)
                return -EINVAL;
        r = lease_call(s, "lease/timetolive", id, 0, ETCD_IDEMPOTENT, &reply);
        if (r == 0)
                r = etcd_reply_lease_ttl(reply, &left);
        json_object_put(reply);
        if (r == 0)
                *ret_left = left;
        return r;
}

static void etcd_close(struct store *s)
{
        if (!s)
                return;
        etcd_client_free(s->c);
        free(s->root);
        free(s);
}

/* Opens the store that loc names; takes loc's contents. */
static int open_location(struct etcd_location *loc_, struct store **ret)
{
        struct etcd_location loc = *loc_;
        struct store *s;
        uint64_t rev;
        int r;

        *loc_ = (struct etcd_location){ 0 };
        s = calloc(1, sizeof(*s));
        if (!s) {
                etcd_location_free(&loc);
                return -ENOMEM;
        }
        s->base.ops = &store_etcd_ops;
        s->root = loc.prefix;
        s->root_len = strlen(loc.prefix);
        loc.prefix = NULL;
        r = etcd_client_new(&loc, &s->c);
        etcd_location_free(&loc);
        /* Ask once, so that a wrong endpoint, certificate or password shows
         * at startup rather than at the first rollover. */
        if (r == 0)
                r = etcd_revision(s, &rev);
        /* Unreachable because this host forbids the connection: say so (at
         * run time such a failure stays "unavailable", like any other). */
        if (r == -EHOSTUNREACH && etcd_client_connect_refused(s->c))
                r = -etcd_client_connect_refused(s->c);
        if (r < 0) {
                etcd_close(s);
                return r;
        }
        *ret = s;
        return 0;
}

static int etcd_open(const char *location, struct store **ret)
{
        struct etcd_location loc = { 0 };
        int r;

        if (!location || !ret)
                return -EINVAL;
        r = store_etcd_parse_location(location, &loc);
        return r < 0 ? r : open_location(&loc, ret);
}

int store_etcd_open(const struct store_etcd_settings *in, struct store **ret)
{
        struct etcd_location loc = { 0 };
        int r;

        if (!in || !ret)
                return -EINVAL;
        r = store_etcd_location_from_settings(in, &loc);
        return r < 0 ? r : open_location(&loc, ret);
}

/* The errors etcd-errors.c makes of a lost quorum or connection. */
static bool etcd_unavailable(struct store *s, int r)
{
        return r == -EAGAIN || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ECONNREFUSED ||
               r == -ECONNRESET || r == -ENOTCONN;
}

static const char *etcd_strerror(struct store *s, int r)
{
        /* A timed-out write may still be applied by the cluster later. */
        if (r == -ETIMEDOUT)
                return "store unavailable: no etcd quorum (timed out: the change may still take "
                       "effect when quorum returns)";
        if (etcd_unavailable(s, r))
                return "store unavailable: no etcd quorum";
        return NULL;
}

const struct store_ops store_etcd_ops = {
        .name = "etcd",
        .max_txn_ops = STORE_TXN_OPS_MAX,
        .open = etcd_open,
        .close = etcd_close,
        .get = etcd_get,
        .range = etcd_range,
        .txn = etcd_txn,
        .revision = etcd_revision,
        .changes = etcd_changes,
        .follow = etcd_follow,
        .lease_grant = etcd_lease_grant,
        .lease_keepalive = etcd_lease_keepalive,
        .lease_revoke = etcd_lease_revoke,
        .lease_ttl = etcd_lease_ttl,
        .txn_leased = etcd_txn_leased,
        .shred = etcd_shred,
        .strerror = etcd_strerror,
        .unavailable = etcd_unavailable,
};
