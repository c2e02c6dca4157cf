/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Node heartbeats in the store (nodes.h). */
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "nodes.h"
#include "records.h"
#include "shared/util.h"

#define NODES_PREFIX RECORDS_NODES

struct nodes {
        const struct dkm_config *cfg;
        struct store *store;
        struct keys *keys;
        struct node_record self;
        char key[sizeof(NODES_PREFIX) + DKM_NODE_NAME_MAX];
        bool fleet; /* the store has leases: heartbeats are written */
        pthread_t thread;
        bool started;
        pthread_mutex_t lock; /* for what follows */
        pthread_cond_t cond;
        bool stopping;
        uint64_t lease;       /* 0: none yet, or it ended */
        int failing;          /* the last beat's or read's error, logged once */
        /* The nodes last read from the store (by the heartbeat thread, or
         * by a status while the store answers): a status while it does not
         * shows these rather than waiting for etcd's timeouts. */
        struct node_record *seen;
        size_t n_seen;
        uint64_t seen_usec;   /* CLOCK_REALTIME of that read; 0: none yet */
};

static int refresh(struct nodes *n);

/* --- the record ---------------------------------------------------------- */

int node_record_encode(const struct node_record *r, char **ret)
{
        json_object *o = json_object_new_object();
        const char *s;
        char *copy;

        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "name", json_object_new_string(r->name));
        json_object_object_add(o, "version", json_object_new_string(r->version));
        json_object_object_add(o, "engine", json_object_new_string(r->engine));
        json_object_object_add(o, "applied_revision", json_object_new_int64((int64_t)r->applied_revision));
        json_object_object_add(o, "started", json_object_new_int64((int64_t)r->started_usec));
        json_object_object_add(o, "heartbeat", json_object_new_int64((int64_t)r->heartbeat_usec));
        json_object_object_add(o, "ttl", json_object_new_int64((int64_t)r->ttl_sec));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        copy = s ? strdup(s) : NULL;
        json_object_put(o);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int node_record_decode(const uint8_t *buf, size_t len, struct node_record *ret)
{
        struct node_record r = { 0 };
        json_object *o;
        int e = 0;

        if (!buf || len > STORE_VALUE_MAX)
                return -EBADMSG;
        o = record_parse_exact(buf, len);
        if (!o)
                return -EBADMSG;
        if (record_get_str(o, "name", r.name, sizeof(r.name)) < 0 ||
            record_get_str(o, "version", r.version, sizeof(r.version)) < 0 ||
            record_get_str(o, "engine", r.engine, sizeof(r.engine)) < 0 ||
            record_get_u64(o, "applied_revision", &r.applied_revision) < 0 ||
            record_get_u64(o, "started", &r.started_usec) < 0 ||
            record_get_u64(o, "heartbeat", &r.heartbeat_usec) < 0 ||
            record_get_u64(o, "ttl", &r.ttl_sec) < 0 || !config_node_name_valid(r.name))
                e = -EBADMSG;
        json_object_put(o);
        if (e < 0)
                return e;
        *ret = r;
        return 0;
}

/* --- the heartbeat --------------------------------------------------------- */

static uint64_t ttl_sec(const struct nodes *n)
{
        return (n->cfg->node_ttl_usec + 999999) / 1000000;
}

/* One beat: keep the lease alive (or take a new one) and rewrite the record
 * under it.  Called by the heartbeat thread only. */
static int beat(struct nodes *n)
{
        _cleanup_free_ char *json = NULL;
        struct node_record rec = n->self;
        uint64_t lease, ttl = 0;
        int r;

        pthread_mutex_lock(&n->lock);
        lease = n->lease;
        pthread_mutex_unlock(&n->lock);
        if (lease) {
                r = store_lease_keepalive(n->store, lease, NULL);
                if (r == -ENOENT) {
                        /* Away for longer than the TTL: the others have
                         * seen this node go; come back under a new lease. */
                        log_notice("node '%s': heartbeat lease ended; registering again", n->self.name);
                        lease = 0;
                } else if (r < 0)
                        return r;
        }
        if (!lease) {
                r = store_lease_grant(n->store, ttl_sec(n), &lease, &ttl);
                if (r < 0)
                        return r;
        }
        pthread_mutex_lock(&n->lock);
        n->lease = lease;
        pthread_mutex_unlock(&n->lock);

        rec.applied_revision = keys_applied_revision(n->keys);
        rec.heartbeat_usec = now_real_usec();
        r = node_record_encode(&rec, &json);
        if (r < 0)
                return r;
        {
                const struct store_op op = { STORE_PUT, n->key, json, strlen(json) };

                r = store_txn_leased(n->store, NULL, 0, &op, 1, &lease, NULL);
        }
        if (r == -ENOENT) {
                /* The lease ended between the keep-alive and the put. */
                pthread_mutex_lock(&n->lock);
                if (n->lease == lease)
                        n->lease = 0;
                pthread_mutex_unlock(&n->lock);
        }
        return r;
}

static void note_beat(struct nodes *n, int r)
{
        int was;

        pthread_mutex_lock(&n->lock);
        was = n->failing;
        n->failing = r < 0 ? r : 0;
        pthread_mutex_unlock(&n->lock);
        if (r < 0 && r != was)
                log_warn("node '%s': heartbeat failed: %s", n->self.name, store_strerror(n->store, r));
        else if (r >= 0 && was)
                log_notice("node '%s': heartbeat written again", n->self.name);
}

static void *heartbeat_thread(void *p)
{
        struct nodes *n = p;
        /* A third of the TTL: two beats may be lost before the others see
         * this node go. */
        uint64_t every = n->cfg->node_ttl_usec / 3;

        for (;;) {
                struct timespec ts;

                {
                        int r = beat(n);

                        if (r >= 0)
                                r = refresh(n);
                        note_beat(n, r);
                }
                pthread_mutex_lock(&n->lock);
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_sec += (time_t)(every / 1000000);
                ts.tv_nsec += (long)(every % 1000000) * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                while (!n->stopping && pthread_cond_timedwait(&n->cond, &n->lock, &ts) == 0)
                        ;
                if (n->stopping) {
                        pthread_mutex_unlock(&n->lock);
                        return NULL;
                }
                pthread_mutex_unlock(&n->lock);
        }
}

/* --- life cycle ------------------------------------------------------------ */

int nodes_new(const struct dkm_config *cfg, struct store *store, struct keys *keys, const char *engine,
              struct nodes **ret, char *err)
{
        struct nodes *n;
        char host[256] = "";

        if (!cfg || !store || !ret)
                return -EINVAL;
        if (!cfg->node_name) {
                /* The host name, up to the first dot when the whole is too long. */
                if (gethostname(host, sizeof(host) - 1) < 0)
                        host[0] = 0;
                if (!config_node_name_valid(host) && strchr(host, '.'))
                        *strchr(host, '.') = 0;
                if (!config_node_name_valid(host)) {
                        /* Only a fleet needs names that tell nodes apart. */
                        if (store_has_leases(store)) {
                                snprintf(err, NODES_ERR_MAX, "the host name '%.64s' is not a valid node "
                                         "name: set [store] node_name= (1-%d of A-Z a-z 0-9 . _ -)",
                                         host, DKM_NODE_NAME_MAX);
                                return -EINVAL;
                        }
                        snprintf(host, sizeof(host), "localhost");
                }
        }
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->cfg = cfg;
        n->store = store;
        n->keys = keys;
        n->fleet = store_has_leases(store);
        /* Both names were checked against DKM_NODE_NAME_MAX above. */
        snprintf(n->self.name, sizeof(n->self.name), "%.*s", DKM_NODE_NAME_MAX,
                 cfg->node_name ? cfg->node_name : host);
        snprintf(n->self.version, sizeof(n->self.version), "%s", DKM_VERSION);
        snprintf(n->self.engine, sizeof(n->self.engine), "%s", engine ? engine : "");
        n->self.started_usec = now_real_usec();
        n->self.ttl_sec = ttl_sec(n);
        snprintf(n->key, sizeof(n->key), NODES_PREFIX "%s", n->self.name);
        pthread_mutex_init(&n->lock, NULL);
        {
                pthread_condattr_t a;

                pthread_condattr_init(&a);
                pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
                pthread_cond_init(&n->cond, &a);
                pthread_condattr_destroy(&a);
        }
        *ret = n;
        return 0;
}

int nodes_start(struct nodes *n, char *err)
{
        struct store_kv kv = { 0 };
        int r;

        if (!n->fleet)
                return 0;
        /* A record under our name that is still there: this node's own
         * after a crash (it expires), or another node with the same name,
         * which the operator must fix. */
        if (store_ops_of(n->store)->get(n->store, n->key, &kv) == 0) {
                struct node_record old;

                if (node_record_decode(kv.value, kv.value_len, &old) == 0)
                        log_warn("node '%s': a record under this name is still in the store (a "
                                 "restart after a crash, or two nodes with one [store] node_name)",
                                 n->self.name);
                store_kv_clear(&kv);
        }
        r = -pthread_create(&n->thread, NULL, heartbeat_thread, n);
        if (r < 0) {
                snprintf(err, NODES_ERR_MAX, "cannot start the heartbeat thread: %s", strerror(-r));
                return r;
        }
        n->started = true;
        log_info("node '%s': heartbeat every %" PRIu64 " ms under a lease of %" PRIu64 " s", n->self.name,
                 n->cfg->node_ttl_usec / 3000, ttl_sec(n));
        return 0;
}

void nodes_stop(struct nodes *n)
{
        uint64_t lease;
        int r;

        if (!n || !n->started)
                return;
        pthread_mutex_lock(&n->lock);
        n->stopping = true;
        pthread_cond_broadcast(&n->cond);
        pthread_mutex_unlock(&n->lock);
        pthread_join(n->thread, NULL);
        n->started = false;
        lease = n->lease;
        n->lease = 0;
        if (!lease)
                return;
        r = store_lease_revoke(n->store, lease);
        if (r < 0 && r != -ENOENT)
                log_warn("node '%s': cannot revoke the heartbeat lease (the record expires in %" PRIu64
                         " s): %s", n->self.name, ttl_sec(n), store_strerror(n->store, r));
        else
                log_info("node '%s': left the fleet", n->self.name);
}

void nodes_free(struct nodes *n)
{
        if (!n)
                return;
        nodes_stop(n);
        pthread_mutex_destroy(&n->lock);
        pthread_cond_destroy(&n->cond);
        free(n->seen);
        free(n);
}

const char *nodes_name(struct nodes *n)
{
        return n ? n->self.name : NULL;
}

/* --- the nodes seen --------------------------------------------------------- */

struct collect {
        struct node_record *v;
        size_t n;
};

static int collect_one(const struct store_kv *kv, void *userdata)
{
        struct collect *c = userdata;
        struct node_record r, *v;

        if (node_record_decode(kv->value, kv->value_len, &r) < 0 ||
            strcmp(r.name, kv->key + strlen(NODES_PREFIX)) != 0)
                return 0; /* not a node record: not ours to show */
        v = reallocarray(c->v, c->n + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        c->v = v;
        v[c->n++] = r;
        return 0;
}

/* Reads nodes/ into the cache; the error, if any, is remembered too. */
static int refresh(struct nodes *n)
{
        struct collect c = { 0 };
        int r;

        r = store_ops_of(n->store)->range(n->store, NODES_PREFIX, collect_one, &c);
        pthread_mutex_lock(&n->lock);
        if (r >= 0) {
                free(n->seen);
                n->seen = c.v;
                n->n_seen = c.n;
                n->seen_usec = now_real_usec();
                c.v = NULL;
        }
        pthread_mutex_unlock(&n->lock);
        free(c.v);
        return r;
}

static json_object *node_json(const struct node_record *r, bool self, uint64_t now)
{
        json_object *o = json_object_new_object();
        uint64_t age = now > r->heartbeat_usec ? (now - r->heartbeat_usec) / 1000000 : 0;

        json_object_object_add(o, "name", json_object_new_string(r->name));
        json_object_object_add(o, "self", json_object_new_boolean(self));
        json_object_object_add(o, "engine", json_object_new_string(r->engine));
        json_object_object_add(o, "version", json_object_new_string(r->version));
        json_object_object_add(o, "applied_revision", json_object_new_int64((int64_t)r->applied_revision));
        json_object_object_add(o, "started", json_object_new_int64((int64_t)(r->started_usec / 1000000)));
        json_object_object_add(o, "heartbeat_age_seconds", json_object_new_int64((int64_t)age));
        return o;
}

static int by_name(const void *a, const void *b)
{
        json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b, *nx, *ny;

        json_object_object_get_ex(x, "name", &nx);
        json_object_object_get_ex(y, "name", &ny);
        return strcmp(json_object_get_string(nx), json_object_get_string(ny));
}

void nodes_status(struct nodes *n, void *into)
{
        json_object *arr;
        uint64_t now = now_real_usec();
        bool self_seen = false;
        int r = 0, failing;

        if (!n)
                return;
        json_object_object_add(into, "node", json_object_new_string(n->self.name));
        pthread_mutex_lock(&n->lock);
        failing = n->failing;
        pthread_mutex_unlock(&n->lock);
        /* Read afresh while the store answers; otherwise what was seen last. */
        if (n->fleet && !failing)
                r = refresh(n);
        arr = json_object_new_array();
        pthread_mutex_lock(&n->lock);
        for (size_t i = 0; i < n->n_seen; i++) {
                bool self = strcmp(n->seen[i].name, n->self.name) == 0;

                self_seen |= self;
                json_object_array_add(arr, node_json(&n->seen[i], self, now));
        }
        if (n->fleet && (failing || r < 0)) {
                json_object_object_add(into, "nodes_error", json_object_new_string(
                        store_strerror(n->store, failing ? failing : r)));
                json_object_object_add(into, "nodes_as_of",
                                       json_object_new_int64((int64_t)(n->seen_usec / 1000000)));
        }
        pthread_mutex_unlock(&n->lock);
        if (!self_seen) {
                /* SQLite, or not registered yet: this node as it is now. */
                struct node_record self = n->self;

                self.applied_revision = keys_applied_revision(n->keys);
                self.heartbeat_usec = now;
                json_object_array_add(arr, node_json(&self, true, now));
        }
        json_object_array_sort(arr, by_name);
        json_object_object_add(into, "nodes", arr);
}
