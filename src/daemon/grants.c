/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <keyutils.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "grants.h"
#include "log.h"
#include "records.h"
#include "shared/duration.h"
#include "shared/util.h"

/* The grants keyring and its keys are reachable from a root shell by serial
 * (dkmd may run as its own user), so "other" may view, read and search them,
 * and may set attributes: that is what `keyctl revoke` and `keyctl timeout`
 * need.  Anyone could therefore cut a grant short, never widen it: dkmd
 * compares every grant key with the store and resets (and audits) one whose
 * timeout was extended. */
#define GRANT_RING_PERM (KEY_POS_ALL | KEY_USR_ALL | KEY_OTH_VIEW | KEY_OTH_READ | KEY_OTH_SEARCH)
#define GRANT_KEY_PERM \
        (KEY_POS_ALL | KEY_USR_ALL | KEY_OTH_VIEW | KEY_OTH_READ | KEY_OTH_SEARCH | KEY_OTH_SETATTR)
/* /proc/keys shows remaining time in whole minutes above one minute. */
#define TIMEOUT_SLACK_SEC 61

/* On a store with leases (etcd) a live grant also has a marker,
 * access/grants/<id>, put under a lease whose TTL is the grant's remaining
 * time: etcd deletes it at expiry, and whoever ends the grant first revokes
 * the lease.  The request record (the history: who asked, who approved,
 * how it ended) never has a lease and stays.  A marker that goes while the
 * record still says granted and more than LEASE_SLACK_SEC remain was
 * removed from outside dkm (etcdctl lease revoke): the grant is revoked on
 * every node.  Within the slack it is the expiry, seen from a node whose
 * clock is a little behind etcd's.  Ending a grant is audited only by the
 * node whose write of the ended state succeeds, so an expiry seen by every
 * node is audited once. */
#define LEASE_SLACK_SEC 5
/* The kernel counts a key's timeout from the current whole second: a grant
 * key may time out up to a second before the record's end. */
#define KERNEL_SLACK_USEC (2 * UINT64_C(1000000))

enum req_state {
        REQ_PENDING,
        REQ_GRANTED,
        REQ_DENIED,
        REQ_EXPIRED,
        REQ_REVOKED,
        REQ_DONE, /* a destroy that was carried out */
        REQ_FAILED,
};

static const char *const state_names[] = {
        [REQ_PENDING] = "pending", [REQ_GRANTED] = "granted", [REQ_DENIED] = "denied",
        [REQ_EXPIRED] = "expired", [REQ_REVOKED] = "revoked", [REQ_DONE] = "done",
        [REQ_FAILED] = "failed",
};

static const char *const scope_names[] = {
        [SCOPE_DECRYPT] = "decrypt", [SCOPE_INSPECT] = "inspect", [SCOPE_DESTROY] = "destroy",
        [SCOPE_PURGE] = "purge",
};

struct request {
        uint32_t id;
        uid_t requester;
        char reason[REASON_MAX + 1];
        enum grant_scope scope;
        char policy[65];
        uint32_t generation;
        uint64_t duration_usec;
        uint64_t created_usec, request_expires_usec;
        uid_t approvers[MAX_APPROVERS];
        size_t n_approvers;
        enum req_state state;
        uint64_t granted_usec, grant_expires_usec, ended_usec;
        char ended_by[64];     /* "uid 2903", "keyctl", "expiry" */
        char end_reason[REASON_MAX + 1];
        uint64_t lease;        /* etcd: the lease of the grant's marker; 0: none */
        uint64_t mod_revision;
};

struct grants {
        const struct dkm_config *cfg;
        struct store *store;
        struct keys *keys;
        keyring_serial_t ring;
        pthread_mutex_t lock;
        /* Grants whose key this node created or found in its keyring: for
         * those, a missing key means keyctl unlinked or invalidated it.  A
         * live grant never seen here (approved on another node of a fleet,
         * or before a reboot emptied the keyring) is mirrored instead. */
        pthread_mutex_t seen_lock;
        uint32_t *seen;
        size_t n_seen;
        /* The grants as last read from the store in full: while the store
         * is unavailable (no etcd quorum), uses are checked against these
         * and the kernel's grant keys (cache_lock). */
        pthread_mutex_t cache_lock;
        struct request *cache;
        size_t n_cache;
        bool cache_valid;
};

static void seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(char *err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, GRANT_ERR_MAX, fmt, ap);
        va_end(ap);
}

static int lookup_name(const char *const *names, size_t n, const char *s)
{
        for (size_t i = 0; i < n; i++)
                if (names[i] && strcmp(names[i], s) == 0)
                        return (int)i;
        return -1;
}

static void request_store_key(char *buf, size_t size, uint32_t id)
{
        snprintf(buf, size, "access/requests/%010u", id);
}

#define MARKER_PREFIX "access/grants/"

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
        json_object_object_add(o, "scope", json_object_new_string(scope_names[r->scope]));
        json_object_object_add(o, "policy", json_object_new_string(r->policy));
        json_object_object_add(o, "generation", json_object_new_int64(r->generation));
        json_object_object_add(o, "duration", json_object_new_int64((int64_t)r->duration_usec));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)r->created_usec));
        json_object_object_add(o, "request_expires", json_object_new_int64((int64_t)r->request_expires_usec));
        for (size_t i = 0; i < r->n_approvers; i++)
                json_object_array_add(a, json_object_new_int64(r->approvers[i]));
        json_object_object_add(o, "approvers", a);
        json_object_object_add(o, "state", json_object_new_string(state_names[r->state]));
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
            lookup_name(scope_names, ARRAY_SIZE(scope_names), scope) < 0 ||
            lookup_name(state_names, ARRAY_SIZE(state_names), state) < 0)
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
                r.scope = (enum grant_scope)lookup_name(scope_names, ARRAY_SIZE(scope_names), scope);
                r.state = (enum req_state)lookup_name(state_names, ARRAY_SIZE(state_names), state);
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

static int request_load(struct grants *g, uint32_t id, struct request *ret, char *err)
{
        struct store_kv kv = { 0 };
        char key[64];
        int r;

        request_store_key(key, sizeof(key), id);
        r = store_ops_of(g->store)->get(g->store, key, &kv);
        if (r == -ENOENT) {
                seterr(err, "no access request %u", id);
                return r;
        }
        if (r < 0) {
                seterr(err, "cannot read access request %u: %s", id, store_error_text(g->store, r));
                return r;
        }
        r = request_decode(&kv, ret);
        store_kv_clear(&kv);
        if (r < 0)
                seterr(err, "access request %u is damaged in the store", id);
        return r;
}

static void cache_note(struct grants *g, const struct request *r);

/* Writes r back if nobody changed it meanwhile (compare-and-swap); with
 * marker_lease, puts the grant's marker under that lease in the same
 * transaction. */
static int request_store_leased(struct grants *g, struct request *r, uint64_t marker_lease, char *err)
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
                        seterr(err, "cannot store access request %u: %s", r->id,
                               e == -ESTALE ? "it changed concurrently, retry" : store_error_text(g->store, e));
                return e;
        }
        r->mod_revision = rev;
        cache_note(g, r);
        return 0;
}

static int request_store(struct grants *g, struct request *r, char *err)
{
        return request_store_leased(g, r, 0, err);
}

/* A new lease for r's marker, as long as r has left; 0 on a store without
 * leases. */
static int grant_lease_new(struct grants *g, const struct request *r, uint64_t now, uint64_t *ret)
{
        uint64_t ttl = 0;

        *ret = 0;
        if (!store_has_leases(g->store))
                return 0;
        ttl = (r->grant_expires_usec > now ? r->grant_expires_usec - now + 999999 : 1000000) / 1000000;
        return store_lease_grant(g->store, ttl, ret, NULL);
}

/* Revokes a grant's lease, which deletes its marker on every node's view. */
static void grant_lease_end(struct grants *g, uint64_t lease)
{
        int e;

        if (!lease)
                return;
        e = store_lease_revoke(g->store, lease);
        if (e < 0 && e != -ENOENT)
                log_warn("cannot revoke grant lease %" PRIu64 " (its marker expires with it): %s", lease,
                         store_error_text(g->store, e));
}

/* --- the grant key --------------------------------------------------------- */

static void approvers_text(const struct request *r, char *buf, size_t size)
{
        size_t n = 0;

        buf[0] = 0;
        for (size_t i = 0; i < r->n_approvers && n < size; i++)
                n += (size_t)snprintf(buf + n, size - n, "%s%u", i ? "," : "", (unsigned)r->approvers[i]);
        if (!buf[0])
                snprintf(buf, size, "none");
}

static void grant_desc(char *buf, size_t size, uint32_t id)
{
        snprintf(buf, size, "dkm:grant:%u", id);
}

static void grant_payload(const struct request *r, char *buf, size_t size)
{
        char appr[MAX_APPROVERS * 12];

        approvers_text(r, appr, sizeof(appr));
        snprintf(buf, size, "grant=%u uid=%u scope=%s policy=%s approvers=%s expires=%" PRIu64, r->id,
                 (unsigned)r->requester, scope_names[r->scope], r->policy[0] ? r->policy : "*", appr,
                 r->grant_expires_usec / 1000000);
}

static unsigned remaining_sec(const struct request *r, uint64_t now)
{
        uint64_t left = r->grant_expires_usec > now ? (r->grant_expires_usec - now + 999999) / 1000000 : 0;

        return left > UINT32_MAX ? UINT32_MAX : (unsigned)left;
}

static int grant_key_create(struct grants *g, const struct request *r, uint64_t now)
{
        char desc[48], payload[600];
        keyring_serial_t s;

        grant_desc(desc, sizeof(desc), r->id);
        grant_payload(r, payload, sizeof(payload));
        return keyring_add_perm(g->ring, desc, payload, strlen(payload), remaining_sec(r, now),
                                GRANT_KEY_PERM, &s);
}

/* The kernel's view of a grant: 0 live (with *ret_left seconds), or
 * -EKEYEXPIRED / -EKEYREVOKED / -ENOKEY, or -EBADMSG for a key that does
 * not describe this grant. */
static int grant_key_state(struct grants *g, const struct request *r, uint64_t *ret_left)
{
        char desc[48], payload[600], want[600];
        keyring_serial_t s;
        size_t n;
        int e;

        grant_desc(desc, sizeof(desc), r->id);
        e = keyring_search(g->ring, desc, &s);
        if (e < 0)
                return e;
        e = keyring_read(s, payload, sizeof(payload) - 1, &n);
        if (e < 0)
                return e;
        payload[n] = 0;
        grant_payload(r, want, sizeof(want));
        if (strcmp(payload, want) != 0)
                return -EBADMSG;
        e = keyring_remaining(s, ret_left);
        return e;
}

static void grant_key_drop(struct grants *g, uint32_t id)
{
        char desc[48];
        keyring_serial_t s;

        grant_desc(desc, sizeof(desc), id);
        if (keyring_search(g->ring, desc, &s) >= 0)
                keyring_invalidate(s);
}

static bool seen_has(struct grants *g, uint32_t id)
{
        bool found = false;

        pthread_mutex_lock(&g->seen_lock);
        for (size_t i = 0; i < g->n_seen && !found; i++)
                found = g->seen[i] == id;
        pthread_mutex_unlock(&g->seen_lock);
        return found;
}

static void seen_set(struct grants *g, uint32_t id, bool on)
{
        pthread_mutex_lock(&g->seen_lock);
        for (size_t i = 0; i < g->n_seen; i++)
                if (g->seen[i] == id) {
                        if (!on)
                                g->seen[i] = g->seen[--g->n_seen];
                        pthread_mutex_unlock(&g->seen_lock);
                        return;
                }
        if (on) {
                uint32_t *v = reallocarray(g->seen, g->n_seen + 1, sizeof(*v));
                if (v) {
                        g->seen = v;
                        v[g->n_seen++] = id;
                }
        }
        pthread_mutex_unlock(&g->seen_lock);
}

/* The grant key of a live grant in this node's keyring, created with the
 * remaining time when this node never had it. */
static int grant_key_mirror(struct grants *g, const struct request *r, uint64_t now)
{
        int e = grant_key_create(g, r, now);

        if (e >= 0) {
                seen_set(g, r->id, true);
                log_info("grant %u mirrored with %u s left", r->id, remaining_sec(r, now));
        }
        return e;
}

/* --- requests ------------------------------------------------------------ */

static int next_id(struct grants *g, uint32_t *ret)
{
        const char *key = "access/next-id";

        for (int attempt = 0; attempt < 16; attempt++) {
                struct store_kv kv = { 0 };
                uint64_t next = 1;
                char buf[24];
                int r;

                r = store_ops_of(g->store)->get(g->store, key, &kv);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r == 0) {
                        char text[24] = "";
                        memcpy(text, kv.value, kv.value_len < 23 ? kv.value_len : 23);
                        next = strtoull(text, NULL, 10);
                }
                snprintf(buf, sizeof(buf), "%" PRIu64, next + 1);
                {
                        const struct store_cmp cmp = { key, r == 0 ? kv.mod_revision : 0 };
                        const struct store_op op = { STORE_PUT, key, buf, strlen(buf) };
                        store_kv_clear(&kv);
                        r = store_ops_of(g->store)->txn(g->store, &cmp, 1, &op, 1, NULL);
                }
                if (r == 0) {
                        if (next == 0 || next > UINT32_MAX)
                                return -EOVERFLOW;
                        *ret = (uint32_t)next;
                        return 0;
                }
                if (r != -ESTALE)
                        return r;
        }
        return -EAGAIN;
}

static bool reason_valid(const char *s)
{
        bool visible = false;

        for (; *s; s++) {
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
                if (*s != ' ')
                        visible = true;
        }
        return visible;
}

int grants_request(struct grants *g, const struct audit_subject *who, const char *reason,
                   const char *duration, const char *scope, const char *policy,
                   uint32_t generation, uint32_t *ret_id, char *err)
{
        struct request r = { .requester = who->uid, .generation = generation };
        _cleanup_free_ char *areason = NULL;
        uint64_t now = now_real_usec();
        int sc, e;

        if (!reason || !reason_valid(reason)) {
                seterr(err, "a reason is required (printable text, not only spaces)");
                return -EINVAL;
        }
        if (strlen(reason) > REASON_MAX) {
                seterr(err, "reason too long (at most %d bytes)", REASON_MAX);
                return -EINVAL;
        }
        sc = lookup_name(scope_names, ARRAY_SIZE(scope_names), scope ? scope : "decrypt");
        if (sc < 0) {
                seterr(err, "unknown scope '%s' (decrypt or inspect)", scope);
                return -EINVAL;
        }
        r.scope = (enum grant_scope)sc;
        if (r.scope == SCOPE_DESTROY) {
                if (!policy || !generation) {
                        seterr(err, "a destroy request names a policy and a generation");
                        return -EINVAL;
                }
                e = keys_check_destroyable(g->keys, policy, generation, err);
                if (e < 0)
                        return e;
        } else if (r.scope == SCOPE_PURGE) {
                if (!policy) {
                        seterr(err, "a purge request names a policy");
                        return -EINVAL;
                }
                e = keys_check_purgeable(g->keys, policy, err);
                if (e < 0)
                        return e;
        } else {
                if (!duration) {
                        seterr(err, "a duration is required (e.g. 30m, at most the configured max_duration)");
                        return -EINVAL;
                }
                e = duration_parse(duration, CFG(g->cfg, max_duration_usec), &r.duration_usec);
                if (e < 0 || r.duration_usec == 0) {
                        char max[32];
                        seterr(err, "bad duration '%s': %s", duration,
                               e == -ERANGE ? "longer than max_duration" :
                               "expected a positive duration such as 30m or 1h30m");
                        if (e == -ERANGE) {
                                duration_format(CFG(g->cfg, max_duration_usec), max, sizeof(max));
                                seterr(err, "bad duration '%s': longer than max_duration (%s)", duration, max);
                        }
                        return -EINVAL;
                }
                if (policy && !keys_policy_exists(g->keys, policy)) {
                        seterr(err, "no such policy '%s'", policy);
                        return -ENOENT;
                }
        }
        snprintf(r.reason, sizeof(r.reason), "%s", reason);
        snprintf(r.policy, sizeof(r.policy), "%s", policy ? policy : "");
        r.created_usec = now;
        r.request_expires_usec = now + CFG(g->cfg, request_ttl_usec);
        r.state = REQ_PENDING;

        areason = audit_value(reason);
        if (!areason)
                return -ENOMEM;
        pthread_mutex_lock(&g->lock);
        e = next_id(g, &r.id);
        if (e < 0) {
                seterr(err, "cannot allocate a request id: %s", store_error_text(g->store, e));
                goto out;
        }
        if (audit_record(AUDIT_KIND_ACCESS, "access-request", who, true,
                         "request=%u scope=%s policy=%s generation=%u duration=%" PRIu64 " reason=%s",
                         r.id, scope_names[r.scope], r.policy[0] ? r.policy : "*", r.generation,
                         r.duration_usec / 1000000, areason) < 0 && CFG(g->cfg, audit_fail_closed)) {
                seterr(err, "refused: the audit record could not be written");
                e = -EIO;
                goto out;
        }
        e = request_store(g, &r, err);
        if (e >= 0) {
                *ret_id = r.id;
                log_notice("access request %u by uid %u: %s", r.id, (unsigned)who->uid, scope_names[r.scope]);
        }
out:
        pthread_mutex_unlock(&g->lock);
        return e;
}

/* An ended request's state, in words for errors. */
static const char *ended_text(const struct request *r)
{
        return state_names[r->state];
}

static int carry_out(struct grants *g, const struct audit_subject *who, struct request *r,
                     uint64_t now, char *err)
{
        char appr[MAX_APPROVERS * 12];
        int e;

        approvers_text(r, appr, sizeof(appr));
        if (r->scope == SCOPE_DESTROY || r->scope == SCOPE_PURGE) {
                e = r->scope == SCOPE_DESTROY ?
                            keys_destroy(g->keys, r->policy, r->generation, who, r->id, err) :
                            keys_purge(g->keys, r->policy, who, r->id, err);
                r->state = e < 0 ? REQ_FAILED : REQ_DONE;
                r->ended_usec = now;
                snprintf(r->ended_by, sizeof(r->ended_by), "uid %u", (unsigned)who->uid);
                if (e < 0)
                        snprintf(r->end_reason, sizeof(r->end_reason), "%s", err);
                return e;
        }
        r->state = REQ_GRANTED;
        r->granted_usec = now;
        r->grant_expires_usec = now + r->duration_usec;
        if (audit_record(AUDIT_KIND_ACCESS, "grant-create", who, true,
                         "request=%u holder=%u scope=%s policy=%s seconds=%" PRIu64 " approvers=%s",
                         r->id, (unsigned)r->requester, scope_names[r->scope],
                         r->policy[0] ? r->policy : "*", r->duration_usec / 1000000, appr) < 0 &&
            CFG(g->cfg, audit_fail_closed)) {
                seterr(err, "refused: the audit record could not be written");
                return -EIO;
        }
        e = grant_key_create(g, r, now);
        if (e < 0) {
                seterr(err, "cannot create the grant key: %s", strerror(-e));
                return e;
        }
        seen_set(g, r->id, true);
        log_notice("grant %u for uid %u live for %" PRIu64 " s (approvers %s)", r->id,
                   (unsigned)r->requester, r->duration_usec / 1000000, appr);
        return 0;
}

int grants_approve(struct grants *g, const struct audit_subject *who, uint32_t id,
                   char *ret_state, size_t state_size, char *err)
{
        struct request r;
        uint64_t now = now_real_usec();
        int e;

        pthread_mutex_lock(&g->lock);
        e = request_load(g, id, &r, err);
        if (e < 0)
                goto out;
        if (r.state == REQ_PENDING && now >= r.request_expires_usec) {
                seterr(err, "access request %u expired before it was approved", id);
                e = -ETIME;
                goto out;
        }
        if (r.state != REQ_PENDING) {
                seterr(err, "access request %u is %s, not pending", id, ended_text(&r));
                e = -EALREADY;
                goto out;
        }
        if (who->uid == r.requester) {
                audit_record(AUDIT_KIND_ACCESS, "access-approve", who, false,
                             "request=%u error=self-approval", id);
                seterr(err, "nobody approves their own request");
                e = -EPERM;
                goto out;
        }
        for (size_t i = 0; i < r.n_approvers; i++)
                if (r.approvers[i] == who->uid) {
                        seterr(err, "uid %u already approved request %u (%zu of %u)", (unsigned)who->uid,
                               id, r.n_approvers, CFG(g->cfg, approvals_required));
                        e = -EALREADY;
                        goto out;
                }
        if (r.n_approvers >= MAX_APPROVERS) {
                e = -E2BIG;
                goto out;
        }
        r.approvers[r.n_approvers++] = who->uid;
        if (audit_record(AUDIT_KIND_ACCESS, "access-approve", who, true, "request=%u approval=%zu of=%u",
                         id, r.n_approvers, CFG(g->cfg, approvals_required)) < 0 &&
            CFG(g->cfg, audit_fail_closed)) {
                seterr(err, "refused: the audit record could not be written");
                e = -EIO;
                goto out;
        }
        if (r.n_approvers >= CFG(g->cfg, approvals_required)) {
                e = carry_out(g, who, &r, now, err);
                if (e < 0 && r.scope != SCOPE_DESTROY && r.scope != SCOPE_PURGE)
                        goto out;
        }
        /* A failed destroy is recorded as failed and reported. */
        {
                char serr[GRANT_ERR_MAX] = "";
                uint64_t lease = 0;
                int s = 0;

                if (r.state == REQ_GRANTED) {
                        s = grant_lease_new(g, &r, now, &lease);
                        if (s < 0)
                                seterr(serr, "cannot store access request %u: %s", id,
                                       store_error_text(g->store, s));
                        r.lease = lease;
                }
                if (s >= 0)
                        s = request_store_leased(g, &r, lease, serr);
                if (s < 0) {
                        grant_lease_end(g, lease);
                        if (r.state == REQ_GRANTED)
                                grant_key_drop(g, r.id);
                        memcpy(err, serr, GRANT_ERR_MAX);
                        e = s;
                        goto out;
                }
        }
        if (e < 0)
                goto out;
        if (r.state == REQ_PENDING)
                snprintf(ret_state, state_size, "pending (%zu of %u approvals)", r.n_approvers,
                         CFG(g->cfg, approvals_required));
        else
                snprintf(ret_state, state_size, "%s", state_names[r.state]);
out:
        pthread_mutex_unlock(&g->lock);
        return e;
}

int grants_deny(struct grants *g, const struct audit_subject *who, uint32_t id,
                const char *reason, char *err)
{
        _cleanup_free_ char *areason = NULL;
        struct request r;
        int e;

        if (reason && (strlen(reason) > REASON_MAX || (reason[0] && !reason_valid(reason)))) {
                seterr(err, "bad reason: printable text of at most %d bytes", REASON_MAX);
                return -EINVAL;
        }
        areason = audit_value(reason && reason[0] ? reason : "none");
        if (!areason)
                return -ENOMEM;
        pthread_mutex_lock(&g->lock);
        e = request_load(g, id, &r, err);
        if (e < 0)
                goto out;
        if (r.state != REQ_PENDING || now_real_usec() >= r.request_expires_usec) {
                seterr(err, "access request %u is %s, not pending", id,
                       r.state == REQ_PENDING ? "expired" : ended_text(&r));
                e = -EALREADY;
                goto out;
        }
        if (audit_record(AUDIT_KIND_ACCESS, "access-deny", who, true, "request=%u reason=%s", id,
                         areason) < 0 && CFG(g->cfg, audit_fail_closed)) {
                seterr(err, "refused: the audit record could not be written");
                e = -EIO;
                goto out;
        }
        r.state = REQ_DENIED;
        r.ended_usec = now_real_usec();
        snprintf(r.ended_by, sizeof(r.ended_by), "uid %u", (unsigned)who->uid);
        snprintf(r.end_reason, sizeof(r.end_reason), "%s", reason ? reason : "");
        e = request_store(g, &r, err);
out:
        pthread_mutex_unlock(&g->lock);
        return e;
}

int grants_revoke(struct grants *g, const struct audit_subject *who, uint32_t id, char *err)
{
        struct request r;
        int e;

        pthread_mutex_lock(&g->lock);
        e = request_load(g, id, &r, err);
        if (e < 0)
                goto out;
        if (r.state != REQ_GRANTED && r.state != REQ_PENDING) {
                seterr(err, "access request %u is %s already", id, ended_text(&r));
                e = -EALREADY;
                goto out;
        }
        if (audit_record(AUDIT_KIND_ACCESS, "grant-revoke", who, true, "request=%u source=dkmctl", id) < 0 &&
            CFG(g->cfg, audit_fail_closed)) {
                seterr(err, "refused: the audit record could not be written");
                e = -EIO;
                goto out;
        }
        grant_key_drop(g, id);
        seen_set(g, id, false);
        r.state = REQ_REVOKED;
        r.ended_usec = now_real_usec();
        snprintf(r.ended_by, sizeof(r.ended_by), "uid %u", (unsigned)who->uid);
        e = request_store(g, &r, err);
        if (e >= 0)
                grant_lease_end(g, r.lease);
out:
        pthread_mutex_unlock(&g->lock);
        return e;
}

/* --- use -------------------------------------------------------------------- */

struct scan {
        struct grants *g;
        int (*fn)(struct grants *g, struct request *r, void *userdata);
        void *userdata;
        struct request *copy; /* what a check may need without the store */
        size_t n_copy;
        bool oom;
};

static int scan_one(const struct store_kv *kv, void *userdata)
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
                struct request *v = reallocarray(s->copy, s->n_copy + 1, sizeof(*v));

                if (v) {
                        s->copy = v;
                        v[s->n_copy++] = r;
                } else
                        s->oom = true;
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
static void scan_finish(struct grants *g, struct scan *s, int e)
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
        s->n_copy = 0;
}

/* Every request in the store; a complete walk also refreshes the cache. */
static int for_each_request(struct grants *g, int (*fn)(struct grants *, struct request *, void *),
                            void *userdata)
{
        struct scan s = { .g = g, .fn = fn, .userdata = userdata };
        int e = store_ops_of(g->store)->range(g->store, "access/requests/", scan_one, &s);

        scan_finish(g, &s, e);
        return e;
}

struct check_ctx {
        const struct audit_subject *who;
        enum grant_scope scope;
        const char *policy;
        struct grant_use *use;
        int result;
        char *err;
        bool found;
        bool degraded; /* from the cache: the store is unavailable */
};

static bool covers(const struct request *r, enum grant_scope scope, const char *policy)
{
        if (r->scope == SCOPE_DESTROY || r->scope == SCOPE_PURGE)
                return false;
        if (scope == SCOPE_DECRYPT && r->scope != SCOPE_DECRYPT)
                return false;
        return !r->policy[0] || strcmp(r->policy, policy) == 0;
}

static int check_one(struct grants *g, struct request *r, void *userdata)
{
        struct check_ctx *c = userdata;
        uint64_t left;
        int e;

        if (r->requester != c->who->uid || !covers(r, c->scope, c->policy))
                return 0;
        if (r->state != REQ_GRANTED) {
                /* Remember why the newest matching grant ended. */
                if (r->state == REQ_EXPIRED || r->state == REQ_REVOKED) {
                        c->result = r->state == REQ_EXPIRED ? -EKEYEXPIRED : -EKEYREVOKED;
                        seterr(c->err, "grant %u %s", r->id, state_names[r->state]);
                }
                return 0;
        }
        e = grant_key_state(g, r, &left);
        /* Without the store only grant keys already here count: the cache
         * may miss a revocation made elsewhere since. */
        if (e == -ENOKEY && !c->degraded && now_real_usec() < r->grant_expires_usec &&
            !seen_has(g, r->id) && grant_key_mirror(g, r, now_real_usec()) >= 0)
                e = grant_key_state(g, r, &left);
        if (e == 0)
                seen_set(g, r->id, true);
        if (e == 0 && now_real_usec() < r->grant_expires_usec) {
                c->use->id = r->id;
                snprintf(c->use->reason, sizeof(c->use->reason), "%s", r->reason);
                approvers_text(r, c->use->approvers, sizeof(c->use->approvers));
                c->result = 0;
                return 1; /* stop: found a live one */
        }
        if (e == -ENOKEY && c->degraded && !seen_has(g, r->id) &&
            now_real_usec() < r->grant_expires_usec) {
                c->result = -EPERM;
                seterr(c->err, "grant %u is not on this node yet and the store is unavailable", r->id);
        } else if (e == -EKEYREVOKED || e == -EBADMSG ||
            (e == -ENOKEY && now_real_usec() < r->grant_expires_usec)) {
                c->result = -EKEYREVOKED;
                seterr(c->err, "grant %u revoked", r->id);
        } else {
                c->result = -EKEYEXPIRED;
                seterr(c->err, "grant %u expired", r->id);
        }
        return 0;
}

/* Reads every request (the walk refreshes the cache); the first live
 * grant found serves. */
static int check_all(struct grants *g, struct request *r, void *userdata)
{
        struct check_ctx *c = userdata;

        if (!c->found && check_one(g, r, c) == 1)
                c->found = true;
        return 0;
}

/* The store is unavailable: the grants as last read, and the kernel's keys,
 * decide.  false when nothing was ever read. */
static bool check_cached(struct grants *g, struct check_ctx *c)
{
        bool ok;

        c->degraded = true;
        pthread_mutex_lock(&g->cache_lock);
        ok = g->cache_valid;
        for (size_t i = 0; ok && i < g->n_cache; i++) {
                struct request r = g->cache[i];

                check_all(g, &r, c);
        }
        pthread_mutex_unlock(&g->cache_lock);
        return ok;
}

int grants_check(struct grants *g, const struct audit_subject *who, enum grant_scope scope,
                 const char *policy, struct grant_use *ret, char *err)
{
        struct check_ctx c = { who, scope, policy, ret, -EPERM, err, false, false };
        int e;

        seterr(err, "not in the users group and no live grant for policy '%s'", policy);
        e = for_each_request(g, check_all, &c);
        if (e < 0 && (!store_unavailable(g->store, e) || !check_cached(g, &c))) {
                seterr(err, "cannot read grants: %s", store_error_text(g->store, e));
                return e;
        }
        if (c.degraded && c.result == 0)
                log_info("grant %u checked without the store (%s): its key is live here", ret->id,
                         store_error_text(g->store, e));
        return c.result;
}

/* --- list ----------------------------------------------------------------- */

static int list_one(struct grants *g, struct request *r, void *userdata)
{
        json_object *arr = userdata, *o = json_object_new_object(), *a = json_object_new_array();
        uint64_t now = now_real_usec();
        const char *state = state_names[r->state];

        if (r->state == REQ_PENDING && now >= r->request_expires_usec)
                state = "expired";
        if (r->state == REQ_GRANTED) {
                uint64_t left;
                int e = grant_key_state(g, r, &left);
                if (e == -EKEYREVOKED || e == -EBADMSG)
                        state = "revoked";
                else if (e < 0 || now >= r->grant_expires_usec)
                        state = "expired";
                else
                        state = "live";
        }
        json_object_object_add(o, "id", json_object_new_int64(r->id));
        json_object_object_add(o, "state", json_object_new_string(state));
        json_object_object_add(o, "requester", json_object_new_int64(r->requester));
        json_object_object_add(o, "reason", json_object_new_string(r->reason));
        json_object_object_add(o, "scope", json_object_new_string(scope_names[r->scope]));
        json_object_object_add(o, "policy", json_object_new_string(r->policy[0] ? r->policy : "*"));
        if (r->scope == SCOPE_DESTROY)
                json_object_object_add(o, "generation", json_object_new_int64(r->generation));
        if (r->scope == SCOPE_DESTROY || r->scope == SCOPE_PURGE)
                json_object_object_add(o, "duration_seconds", NULL);
        json_object_object_add(o, "duration_seconds", json_object_new_int64((int64_t)(r->duration_usec / 1000000)));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)(r->created_usec / 1000000)));
        for (size_t i = 0; i < r->n_approvers; i++)
                json_object_array_add(a, json_object_new_int64(r->approvers[i]));
        json_object_object_add(o, "approvers", a);
        json_object_object_add(o, "approvals_required", json_object_new_int64(CFG(g->cfg, approvals_required)));
        if (r->granted_usec)
                json_object_object_add(o, "granted", json_object_new_int64((int64_t)(r->granted_usec / 1000000)));
        if (strcmp(state, "live") == 0)
                json_object_object_add(o, "remaining_seconds",
                                       json_object_new_int64(remaining_sec(r, now)));
        if (r->ended_by[0])
                json_object_object_add(o, "ended_by", json_object_new_string(r->ended_by));
        if (r->end_reason[0])
                json_object_object_add(o, "end_reason", json_object_new_string(r->end_reason));
        json_object_array_add(arr, o);
        return 0;
}

int grants_list_json(struct grants *g, char **ret, char *err)
{
        json_object *arr = json_object_new_array();
        int e;

        e = for_each_request(g, list_one, arr);
        if (e < 0)
                seterr(err, "cannot read access requests: %s", strerror(-e));
        else {
                *ret = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
                if (!*ret)
                        e = -ENOMEM;
        }
        json_object_put(arr);
        return e;
}

/* --- keeping the store in step with the kernel ------------------------------ */

static void end_grant(struct grants *g, struct request *r, enum req_state state, const char *by,
                      const char *op)
{
        int e;

        r->state = state;
        r->ended_usec = now_real_usec();
        snprintf(r->ended_by, sizeof(r->ended_by), "%s", by);
        /* Every node may notice the same end (an expiry above all): the one
         * whose write goes through audits it, so it is audited once. */
        e = request_store(g, r, NULL);
        if (e >= 0) {
                audit_record(AUDIT_KIND_ACCESS, op, NULL, true, "request=%u holder=%u source=%s", r->id,
                             (unsigned)r->requester, by);
                log_notice("grant %u %s (%s)", r->id, state_names[state], by);
                grant_lease_end(g, r->lease);
        } else if (e == -ESTALE)
                log_info("grant %u ended (recorded by another node)", r->id);
        else
                log_err("cannot record the end of grant %u: %s", r->id, store_error_text(g->store, e));
        grant_key_drop(g, r->id);
        seen_set(g, r->id, false);
}

struct reconcile {
        bool startup;
        bool markers_read;  /* the store has leases and markers were read */
        uint32_t *markers;  /* ids of the live grants' markers */
        size_t n_markers;
        struct scan scan;
};

static bool marker_present(const struct reconcile *c, uint32_t id)
{
        for (size_t i = 0; i < c->n_markers; i++)
                if (c->markers[i] == id)
                        return true;
        return false;
}

/* startup: a missing grant key is restored (the keyring may be new after a
 * reboot); later, a missing key means someone unlinked or invalidated it. */
static int reconcile_one(struct grants *g, struct request *r, void *userdata)
{
        const struct reconcile *c = userdata;
        bool startup = c->startup;
        uint64_t now = now_real_usec(), left, want;
        int e;

        if (r->state == REQ_PENDING && now >= r->request_expires_usec) {
                r->state = REQ_EXPIRED;
                r->ended_usec = now;
                snprintf(r->ended_by, sizeof(r->ended_by), "request_ttl");
                /* Audited by the node whose write goes through: once. */
                if (request_store(g, r, NULL) >= 0)
                        audit_record(AUDIT_KIND_ACCESS, "access-request-expire", NULL, true, "request=%u",
                                     r->id);
                return 0;
        }
        if (r->state != REQ_GRANTED) {
                /* Ended, maybe by another node: its key goes from this
                 * node's keyring too, at once. */
                if (startup || seen_has(g, r->id)) {
                        if (!startup)
                                log_notice("grant %u %s (recorded in the store): key dropped", r->id,
                                           state_names[r->state]);
                        grant_key_drop(g, r->id);
                        seen_set(g, r->id, false);
                }
                return 0;
        }
        if (now >= r->grant_expires_usec) {
                end_grant(g, r, REQ_EXPIRED, "expiry", "grant-expire");
                return 0;
        }
        if (r->lease && c->markers_read && !marker_present(c, r->id)) {
                /* Its lease ended: at expiry, or revoked outside dkm. */
                if (now + LEASE_SLACK_SEC * UINT64_C(1000000) >= r->grant_expires_usec)
                        end_grant(g, r, REQ_EXPIRED, "expiry", "grant-expire");
                else
                        end_grant(g, r, REQ_REVOKED, "etcd", "grant-revoke");
                return 0;
        }
        want = remaining_sec(r, now);
        e = grant_key_state(g, r, &left);
        if (e == -ENOKEY && (startup || !seen_has(g, r->id))) {
                if (grant_key_mirror(g, r, now) >= 0 && startup)
                        log_info("grant %u restored with %" PRIu64 " s left", r->id, want);
                return 0;
        }
        if (e >= 0 || e == -EKEYREVOKED || e == -EKEYEXPIRED || e == -EBADMSG)
                seen_set(g, r->id, true);
        if (e == -EKEYREVOKED || e == -ENOKEY || e == -EBADMSG) {
                end_grant(g, r, REQ_REVOKED, "keyctl", "grant-revoke");
                return 0;
        }
        if (e == -EKEYEXPIRED) {
                /* The kernel expired it before the store said: keyctl
                 * timeout, unless it is the end itself (the kernel counts a
                 * timeout from the current whole second, so a key may go up
                 * to a second early). */
                if (now + KERNEL_SLACK_USEC >= r->grant_expires_usec)
                        end_grant(g, r, REQ_EXPIRED, "expiry", "grant-expire");
                else
                        end_grant(g, r, REQ_EXPIRED, "keyctl", "grant-expire");
                return 0;
        }
        if (e < 0)
                return 0;
        if (left + TIMEOUT_SLACK_SEC < want) {
                /* Shortened with keyctl timeout: the kernel's word stands. */
                r->grant_expires_usec = now + left * 1000000;
                audit_record(AUDIT_KIND_ACCESS, "grant-shorten", NULL, true,
                             "request=%u holder=%u seconds=%" PRIu64 " source=keyctl", r->id,
                             (unsigned)r->requester, left);
                log_notice("grant %u shortened to %" PRIu64 " s with keyctl", r->id, left);
                /* The payload names the expiry: rewrite it to match; the
                 * marker moves to a lease that ends as soon. */
                {
                        uint64_t old = r->lease, lease = 0;

                        if (old && grant_lease_new(g, r, now, &lease) >= 0)
                                r->lease = lease;
                        if (request_store_leased(g, r, r->lease != old ? lease : 0, NULL) >= 0) {
                                grant_key_create(g, r, now);
                                if (r->lease != old)
                                        grant_lease_end(g, old);
                        } else if (r->lease != old)
                                grant_lease_end(g, lease);
                }
        } else if (left > want + TIMEOUT_SLACK_SEC || left == 0) {
                /* Extended (or made permanent): never wider than approved. */
                char desc[48];
                keyring_serial_t s;

                grant_desc(desc, sizeof(desc), r->id);
                if (keyring_search(g->ring, desc, &s) >= 0)
                        keyring_set_timeout(s, (unsigned)want);
                audit_record(AUDIT_KIND_ACCESS, "grant-tamper", NULL, false,
                             "request=%u holder=%u seconds=%" PRIu64 " source=keyctl", r->id,
                             (unsigned)r->requester, left);
                log_warn("grant %u was extended outside dkm; reset to %" PRIu64 " s", r->id, want);
        }
        return 0;
}

/* "access/" in key order: the markers (access/grants/) come before the
 * requests (access/requests/), and all are read at one revision, so a
 * grant approved or ended meanwhile is seen with its marker or without. */
static int reconcile_access(const struct store_kv *kv, void *userdata)
{
        struct reconcile *c = userdata;
        size_t n = strlen(MARKER_PREFIX);

        if (strncmp(kv->key, MARKER_PREFIX, n) == 0) {
                const char *digits = kv->key + n;
                uint64_t id = 0;
                uint32_t *v;

                /* Only keys this file writes: ten digits. */
                if (strlen(digits) != 10 || strspn(digits, "0123456789") != 10)
                        return 0;
                for (size_t i = 0; i < 10; i++)
                        id = id * 10 + (uint64_t)(digits[i] - '0');
                if (id > UINT32_MAX)
                        return 0;
                v = reallocarray(c->markers, c->n_markers + 1, sizeof(*v));
                if (!v)
                        return -ENOMEM;
                c->markers = v;
                v[c->n_markers++] = (uint32_t)id;
                return 0;
        }
        if (strncmp(kv->key, "access/requests/", strlen("access/requests/")) != 0)
                return 0;
        return scan_one(kv, &c->scan);
}

static void reconcile_all(struct grants *g, bool startup)
{
        struct reconcile c = { .startup = startup, .markers_read = store_has_leases(g->store) };

        c.scan = (struct scan){ .g = g, .fn = reconcile_one, .userdata = &c };
        if (c.markers_read)
                scan_finish(g, &c.scan, store_ops_of(g->store)->range(g->store, "access/",
                                                                      reconcile_access, &c));
        else
                for_each_request(g, reconcile_one, &c);
        free(c.markers);
}

void grants_maintain(struct grants *g)
{
        pthread_mutex_lock(&g->lock);
        reconcile_all(g, false);
        pthread_mutex_unlock(&g->lock);
}

keyring_serial_t grants_keyring(struct grants *g)
{
        return g->ring;
}

int grants_new(const struct dkm_config *cfg, struct store *store, struct keys *keys,
               struct grants **ret, char *err)
{
        struct grants *g = calloc(1, sizeof(*g));
        char name[4200];
        int e;

        if (!g)
                return -ENOMEM;
        g->cfg = cfg;
        g->store = store;
        g->keys = keys;
        pthread_mutex_init(&g->lock, NULL);
        pthread_mutex_init(&g->seen_lock, NULL);
        pthread_mutex_init(&g->cache_lock, NULL);
        /* One grants keyring per instance, in the user keyring of dkmd's uid:
         * it outlives a restart of dkmd, so the kernel's timers keep running. */
        if (strcmp(cfg->state_dir, DKM_DEFAULT_STATE_DIR) == 0)
                snprintf(name, sizeof(name), "dkm:grants");
        else
                snprintf(name, sizeof(name), "dkm:grants:%s", cfg->state_dir);
        e = keyring_open_at(KEY_SPEC_USER_KEYRING, name, GRANT_RING_PERM, &g->ring);
        if (e < 0) {
                seterr(err, "cannot open the grants keyring: %s", strerror(-e));
                free(g);
                return e;
        }
        reconcile_all(g, true);
        *ret = g;
        return 0;
}

void grants_free(struct grants *g)
{
        if (!g)
                return;
        pthread_mutex_destroy(&g->lock);
        pthread_mutex_destroy(&g->seen_lock);
        pthread_mutex_destroy(&g->cache_lock);
        free(g->cache);
        free(g->seen);
        free(g);
}
