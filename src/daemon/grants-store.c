/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Access requests as the store keeps them: the JSON record, the
 * compare-and-swap writes (with a live grant's marker under its lease), the
 * walks over every request, and the cache of live grants those walks leave
 * behind for when the store is unavailable.
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>

#include "grants-internal.h"
#include "log.h"
#include "records.h"
#include "shared/util.h"

const char *const grant_state_names[] = {
        [REQ_PENDING] = "pending", [REQ_GRANTED] = "granted", [REQ_DENIED] = "denied",
        [REQ_EXPIRED] = "expired", [REQ_REVOKED] = "revoked", [REQ_DONE] = "done",
        [REQ_FAILED] = "failed",
};

const char *const grant_scope_names[] = {
        [SCOPE_DECRYPT] = "decrypt", [SCOPE_INSPECT] = "inspect", [SCOPE_DESTROY] = "destroy",
        [SCOPE_PURGE] = "purge",
        [SCOPE_RESHARE] = "reshare",
};

void grants_seterr(char *err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, GRANT_ERR_MAX, fmt, ap);
        va_end(ap);
}

int grant_lookup_name(const char *const *names, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (names[i] && strcmp(names[i], s) == 0)
                        return (int)i;
        return -1;
}

static void request_store_key(char *buf, size_t size, uint32_t id)
{
        snprintf(buf, size, RECORDS_REQUESTS "%010u", id);
}

static void marker_store_key(char *buf, size_t size, uint32_t id)
{
        snprintf(buf, size, MARKER_PREFIX "%010u", id);
}

/* --- records ------------------------------------------------------------ */

static char *request_encode(const struct request *r)
{
        json_object *o = json_object_new_object(), *a = json_object_new_array();
        char *s;

        json_object_object_add(o, "id", json_object_new_int64(r->id));
        json_object_object_add(o, "requester", json_object_new_int64(r->requester));
        json_object_object_add(o, "reason", json_object_new_string(r->reason));
        json_object_object_add(o, "scope", json_object_new_string(grant_scope_names[r->scope]));
        json_object_object_add(o, "policy", json_object_new_string(r->policy));
        json_object_object_add(o, "generation", json_object_new_int64(r->generation));
        json_object_object_add(o, "duration", json_object_new_int64((int64_t)r->duration_usec));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)r->created_usec));
        json_object_object_add(o, "request_expires", json_object_new_int64((int64_t)r->request_expires_usec));
        for (size_t i = 0; i < r->n_approvers; i++)
                json_object_array_add(a, json_object_new_int64(r->approvers[i]));
        json_object_object_add(o, "approvers", a);
        json_object_object_add(o, "state", json_object_new_string(grant_state_names[r->state]));
        json_object_object_add(o, "granted", json_object_new_int64((int64_t)r->granted_usec));
        json_object_object_add(o, "grant_expires", json_object_new_int64((int64_t)r->grant_expires_usec));
        json_object_object_add(o, "ended", json_object_new_int64((int64_t)r->ended_usec));
        json_object_object_add(o, "ended_by", json_object_new_string(r->ended_by));
        json_object_object_add(o, "end_reason", json_object_new_string(r->end_reason));
        if (r->lease)
                json_object_object_add(o, "lease", json_object_new_int64((int64_t)r->lease));
        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return s;
}

static int request_decode(const struct store_kv *kv, struct request *ret)
{
        json_object *o = record_parse(kv->value, kv->value_len), *a;
        struct request r = { .mod_revision = kv->mod_revision };
        char scope[16], state[16];
        uint64_t v[10];
        int e = 0;

        if (!o)
                return -EBADMSG;
        if (record_get_u64(o, "id", &v[0]) || record_get_u64(o, "requester", &v[1]) ||
            record_get_str(o, "reason", r.reason, sizeof(r.reason)) || record_get_str(o, "scope", scope, sizeof(scope)) ||
            record_get_str(o, "policy", r.policy, sizeof(r.policy)) || record_get_u64(o, "generation", &v[2]) ||
            record_get_u64(o, "duration", &v[3]) || record_get_u64(o, "created", &v[4]) ||
            record_get_u64(o, "request_expires", &v[5]) || record_get_str(o, "state", state, sizeof(state)) ||
            record_get_u64(o, "granted", &v[6]) || record_get_u64(o, "grant_expires", &v[7]) ||
            record_get_u64(o, "ended", &v[8]) || record_get_str(o, "ended_by", r.ended_by, sizeof(r.ended_by)) ||
            record_get_str(o, "end_reason", r.end_reason, sizeof(r.end_reason)) ||
            !json_object_object_get_ex(o, "approvers", &a) || !json_object_is_type(a, json_type_array) ||
            json_object_array_length(a) > MAX_APPROVERS ||
            grant_lookup_name(grant_scope_names, ARRAY_SIZE(grant_scope_names), scope) < 0 ||
            grant_lookup_name(grant_state_names, ARRAY_SIZE(grant_state_names), state) < 0)
                e = -EBADMSG;
        /* Optional: records from before leases, and SQLite's, have none. */
        if (!e && json_object_object_get_ex(o, "lease", NULL) && record_get_u64(o, "lease", &v[9]) < 0)
                e = -EBADMSG;
        if (!e) {
                r.id = (uint32_t)v[0];
                r.requester = (uid_t)v[1];
                r.generation = (uint32_t)v[2];
                r.duration_usec = (uint64_t)v[3];
                r.created_usec = (uint64_t)v[4];
                r.request_expires_usec = (uint64_t)v[5];
                r.granted_usec = (uint64_t)v[6];
                r.grant_expires_usec = (uint64_t)v[7];
                r.ended_usec = (uint64_t)v[8];
                r.lease = json_object_object_get_ex(o, "lease", NULL) ? v[9] : 0;
                r.scope = (enum grant_scope)grant_lookup_name(grant_scope_names, ARRAY_SIZE(grant_scope_names), scope);
                r.state = (enum req_state)grant_lookup_name(grant_state_names, ARRAY_SIZE(grant_state_names), state);
                r.n_approvers = json_object_array_length(a);
                for (size_t i = 0; i < r.n_approvers; i++)
                        r.approvers[i] = (uid_t)json_object_get_int64(json_object_array_get_idx(a, i));
        }
        json_object_put(o);
        if (e)
                return e;
        *ret = r;
        return 0;
}

int request_load(struct grants *g, uint32_t id, struct request *ret, char *err)
{
        struct store_kv kv = { 0 };
        char key[64];
        int r;

        request_store_key(key, sizeof(key), id);
        r = store_ops_of(g->store)->get(g->store, key, &kv);
        if (r == -ENOENT) {
                grants_seterr(err, "no access request %u", id);
                return r;
        }
        if (r < 0) {
                grants_seterr(err, "cannot read access request %u: %s", id, store_strerror(g->store, r));
                return r;
        }
        r = request_decode(&kv, ret);
        store_kv_clear(&kv);
        if (r < 0)
                grants_seterr(err, "access request %u is damaged in the store", id);
        return r;
}

static void cache_note(struct grants *g, const struct request *r);

/* Writes r back if nobody changed it meanwhile (compare-and-swap); with
 * marker_lease, puts the grant's marker under that lease in the same
 * transaction. */
int request_store_leased(struct grants *g, struct request *r, uint64_t marker_lease, char *err)
{
        _cleanup_free_ char *json = request_encode(r);
        char key[64], mkey[64], mval[32];
        uint64_t rev;
        int e;

        if (!json)
                return -ENOMEM;
        request_store_key(key, sizeof(key), r->id);
        if (marker_lease) {
                const struct store_cmp cmp = { key, r->mod_revision };
                const uint64_t leases[2] = { 0, marker_lease };
                struct store_op ops[2] = { { STORE_PUT, key, json, strlen(json) },
                                           { STORE_PUT, mkey, mval, 0 } };

                marker_store_key(mkey, sizeof(mkey), r->id);
                ops[1].value_len = (size_t)snprintf(mval, sizeof(mval), "%u", r->id);
                e = store_txn_leased(g->store, &cmp, 1, ops, 2, leases, &rev);
        } else {
                const struct store_cmp cmp = { key, r->mod_revision };
                const struct store_op op = { STORE_PUT, key, json, strlen(json) };
                e = store_ops_of(g->store)->txn(g->store, &cmp, 1, &op, 1, &rev);
        }
        if (e < 0) {
                if (err)
                        grants_seterr(err, "cannot store access request %u: %s", r->id,
                               e == -ESTALE ? "it changed concurrently, retry" : store_strerror(g->store, e));
                return e;
        }
        r->mod_revision = rev;
        cache_note(g, r);
        return 0;
}

int request_store(struct grants *g, struct request *r, char *err)
{
        return request_store_leased(g, r, 0, err);
}

/* A new lease for r's marker, as long as r has left; 0 on a store without
 * leases. */
int grant_lease_new(struct grants *g, const struct request *r, uint64_t now, uint64_t *ret)
{
        uint64_t ttl = 0;

        *ret = 0;
        if (!store_has_leases(g->store))
                return 0;
        ttl = (r->grant_expires_usec > now ? r->grant_expires_usec - now + 999999 : 1000000) / 1000000;
        return store_lease_grant(g->store, ttl, ret, NULL);
}

/* Revokes a grant's lease, which deletes its marker on every node's view. */
void grant_lease_end(struct grants *g, uint64_t lease)
{
        int e;

        if (!lease)
                return;
        e = store_lease_revoke(g->store, lease);
        if (e < 0 && e != -ENOENT)
                log_warn("cannot revoke grant lease %" PRIu64 " (its marker expires with it): %s", lease,
                         store_strerror(g->store, e));
}


/* --- walking the requests, and the cache ------------------------------------ */

int request_scan_one(const struct store_kv *kv, void *userdata)
{
        struct scan *s = userdata;
        struct request r;
        int e;

        if (request_decode(kv, &r) < 0) {
                log_err("access request record %s is damaged; ignored", kv->key);
                return 0;
        }
        e = s->fn(s->g, &r, s->userdata);
        /* Live grants, and those that ended before their time (for the
         * refusal's words); not the history. */
        if (r.state == REQ_GRANTED ||
            ((r.state == REQ_EXPIRED || r.state == REQ_REVOKED) && r.grant_expires_usec > now_real_usec())) {
                /* Doubling: a request is 2 KiB, and growing by one each
                 * time moved the whole copy for every live grant. */
                if (s->n_copy == s->cap_copy) {
                        size_t cap = s->cap_copy ? 2 * s->cap_copy : 16;
                        struct request *v = reallocarray(s->copy, cap, sizeof(*v));

                        if (v) {
                                s->copy = v;
                                s->cap_copy = cap;
                        } else
                                s->oom = true;
                }
                if (s->n_copy < s->cap_copy)
                        s->copy[s->n_copy++] = r;
        }
        return e;
}

/* What this node wrote goes into the cache at once (the next complete
 * walk replaces it anyway). */
static void cache_note(struct grants *g, const struct request *r)
{
        pthread_mutex_lock(&g->cache_lock);
        if (g->cache_valid) {
                size_t i = 0;

                while (i < g->n_cache && g->cache[i].id != r->id)
                        i++;
                if (i == g->n_cache) {
                        struct request *v = reallocarray(g->cache, g->n_cache + 1, sizeof(*v));

                        if (!v)
                                g->cache_valid = false; /* the next walk fills it */
                        else {
                                g->cache = v;
                                g->n_cache++;
                        }
                }
                if (g->cache_valid)
                        g->cache[i] = *r;
        }
        pthread_mutex_unlock(&g->cache_lock);
}

/* After a walk of every request (e: how it ended), the live grants it saw
 * become the cache. */
void request_scan_finish(struct grants *g, struct scan *s, int e)
{
        if (e == 0 && !s->oom) {
                pthread_mutex_lock(&g->cache_lock);
                free(g->cache);
                g->cache = s->copy;
                g->n_cache = s->n_copy;
                g->cache_valid = true;
                pthread_mutex_unlock(&g->cache_lock);
        } else
                free(s->copy);
        s->copy = NULL;
        s->n_copy = s->cap_copy = 0;
}

/* Every request in the store; a complete walk also refreshes the cache. */
int for_each_request(struct grants *g, int (*fn)(struct grants *, struct request *, void *),
                            void *userdata)
{
        struct scan s = { .g = g, .fn = fn, .userdata = userdata };
        int e = store_ops_of(g->store)->range(g->store, RECORDS_REQUESTS, request_scan_one, &s);

        request_scan_finish(g, &s, e);
        return e;
}
