/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Data-encryption policies.  A customer-managed policy's key is wrapped by
 * two customer keys and by a service-held availability key (itself wrapped
 * by the master key).  Unwrapping asks the customer keys, hedged; when both
 * fail the errors decide: unreachable -> the availability key serves (audited,
 * "degraded"); revoked -> it does not, and the data becomes unreadable once
 * the cached keys expire.
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "keys-internal.h"
#include "log.h"
#include "shared/format.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "wrap.h"

/* How long one unwrap may wait for the customer keys in all. */
#define CUSTOMER_TIMEOUT_USEC (5 * 1000000ULL)

static const char *const health_names[] = {
        [POLICY_HEALTHY] = "healthy",
        [POLICY_DEGRADED] = "degraded (customer keys unreachable)",
        [POLICY_REVOKED] = "revoked",
};

const char *policy_state_name(struct policy *p)
{
        return p->rec.purged ? "purged" : health_names[p->health];
}

int policy_open_ckeys(struct policy *p, char *err)
{
        char why[256];

        for (unsigned i = 0; i < p->rec.n_customer_keys; i++) {
                int r = ckey_open(p->rec.customer_uri[i], &p->ckeys[i], why, sizeof(why));
                if (r < 0) {
                        keys_seterr(err, "policy '%s': customer key %u: %s", p->rec.name, i + 1, why);
                        return r;
                }
        }
        return 0;
}

static void set_health(struct keys *k, struct policy *p, enum policy_health h, const char *why)
{
        enum policy_health old;

        pthread_mutex_lock(&p->status_lock);
        old = p->health;
        p->health = h;
        if (why)
                snprintf(p->last_error, sizeof(p->last_error), "%s", why);
        pthread_mutex_unlock(&p->status_lock);
        if (old != h) {
                log_notice("policy '%s' is now %s%s%s", p->rec.name, health_names[h], why ? ": " : "",
                           why ? why : "");
                audit_record(AUDIT_KIND_KEY, "policy-state", NULL, h == POLICY_HEALTHY,
                             "policy=%s state=%s", p->rec.name,
                             h == POLICY_HEALTHY ? "healthy" : h == POLICY_DEGRADED ? "degraded" : "revoked");
        }
}

/* The availability key: only for unreachable customer keys, or for the
 * re-wrap of generations that the service finishes on its own after a rekey
 * (policy-rewrap.c), which hands no key to anyone. */
static int unwrap_with_availability(struct keys *k, struct policy *p, uint8_t key[ENGINE_KEY_SIZE],
                                    const char *why, char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(2 * ENGINE_KEY_SIZE);
        int r;

        if (!buf)
                return -ENOMEM;
        if (audit_record(AUDIT_KIND_KEY, "availability-key-use", NULL, true, "policy=%s reason=%s",
                         p->rec.name, why) < 0 && CFG(k->cfg, audit_fail_closed)) {
                keys_seterr(err, "policy '%s': customer keys unreachable and the availability key's "
                            "use could not be audited", p->rec.name);
                return -EIO;
        }
        r = read_cached(k->env.master, buf);
        if (r >= 0)
                r = key_unwrap(buf, WRAP_AVAILABILITY_KEY, p->id, 0, p->rec.availability_key,
                               buf + ENGINE_KEY_SIZE);
        if (r >= 0)
                r = key_unwrap(buf + ENGINE_KEY_SIZE, WRAP_POLICY_KEY_AVAILABILITY, p->id, 0,
                               p->rec.availability_wrap, key);
        if (r < 0) {
                keys_seterr(err, "policy '%s': the availability key does not unwrap (%s)", p->rec.name,
                            strerror(-r));
                return r;
        }
        pthread_mutex_lock(&p->status_lock);
        p->availability_uses++;
        p->availability_last_usec = now_real_usec();
        pthread_mutex_unlock(&p->status_lock);
        log_warn("policy '%s': served by the availability key (%s)", p->rec.name, why);
        return 0;
}

/* Asks each customer key on its own (no hedge): the health of the policy.
 * REVOKED when either key was revoked, DEGRADED when neither answers. */
static enum policy_health verify_both(struct policy *p, char *why, size_t why_size)
{
        _cleanup_secret_ uint8_t *tmp = secret_alloc(CKEY_KEY_SIZE);
        int ok = 0, revoked = 0;
        char msg[160];

        if (!tmp)
                return p->health;
        for (int i = 0; i < 2; i++) {
                int r = ckey_unwrap(p->ckeys[i], p->rec.customer_blob[i], p->rec.customer_blob_len[i],
                                    p->rec.id, CUSTOMER_TIMEOUT_USEC, tmp, msg, sizeof(msg));
                secure_wipe(tmp, CKEY_KEY_SIZE);
                if (r >= 0)
                        ok++;
                else if (ckey_classify(r) == CKEY_REVOKED) {
                        revoked++;
                        snprintf(why, why_size, "customer key %d: %s", i + 1, msg);
                } else if (!revoked)
                        snprintf(why, why_size, "customer key %d: %s", i + 1, msg);
        }
        return revoked ? POLICY_REVOKED : ok ? POLICY_HEALTHY : POLICY_DEGRADED;
}

void policy_verify(struct keys *k, struct policy *p)
{
        enum policy_health h;
        char why[256] = "";

        if (p->rec.purged || !p->rec.n_customer_keys)
                return;
        h = verify_both(p, why, sizeof(why));
        set_health(k, p, h, h == POLICY_HEALTHY ? NULL : why);
        if (h == POLICY_REVOKED) {
                /* Nothing new gets unwrapped; what the kernel still caches
                 * serves until it expires. */
                keyring_serial_t s = atomic_exchange(&p->serial, 0);
                if (s > 0)
                        keyring_invalidate(s);
        }
}

int policy_key_customer(struct keys *k, struct policy *p, uint8_t key[ENGINE_KEY_SIZE],
                        bool service_initiated, char *err)
{
        struct ckey_hedge_result res;
        enum ckey_failure f;
        bool saw_revoked = false;
        char why[256] = "";
        int r;

        if (p->rec.purged) {
                keys_seterr(err, "policy '%s' was purged", p->rec.name);
                return -EKEYREVOKED;
        }
        r = ckey_unwrap_hedged(p->ckeys[0], p->rec.customer_blob[0], p->rec.customer_blob_len[0],
                               p->ckeys[1], p->rec.customer_blob[1], p->rec.customer_blob_len[1],
                               p->rec.id, CFG(k->cfg, hedge_delay_usec), CUSTOMER_TIMEOUT_USEC, key, &res,
                               why, sizeof(why));
        pthread_mutex_lock(&p->status_lock);
        p->last = res;
        p->last_unwrap_usec = now_real_usec();
        pthread_mutex_unlock(&p->status_lock);
        for (int i = 0; i < 2; i++)
                if (res.asked[i] && res.err[i] && ckey_classify(res.err[i]) == CKEY_REVOKED)
                        saw_revoked = true;
        /* Either key revoked means the customer withdrew consent, even when
         * the other one still answers: look at both before serving. */
        if (!service_initiated && (saw_revoked || p->health == POLICY_REVOKED)) {
                enum policy_health h = verify_both(p, why, sizeof(why));

                set_health(k, p, h, h == POLICY_HEALTHY ? NULL : why);
                if (h == POLICY_REVOKED) {
                        secure_wipe(key, ENGINE_KEY_SIZE);
                        keys_seterr(err, "policy '%s' revoked: %s", p->rec.name, why);
                        return -EKEYREVOKED;
                }
        }
        if (r >= 0) {
                /* Service-initiated work skipped the look at both keys: what
                 * it got says nothing about a revocation. */
                if (p->health != POLICY_HEALTHY && !service_initiated)
                        set_health(k, p, POLICY_HEALTHY, NULL);
                return 0;
        }
        f = ckey_classify(r);
        if (f == CKEY_REVOKED && !service_initiated) {
                set_health(k, p, POLICY_REVOKED, why);
                keys_seterr(err, "policy '%s' revoked: %s", p->rec.name, why);
                return -EKEYREVOKED;
        }
        if (f == CKEY_BAD_INPUT) {
                keys_seterr(err, "policy '%s': customer keys cannot be used: %s", p->rec.name, why);
                return r;
        }
        r = unwrap_with_availability(k, p, key, f == CKEY_REVOKED ? "service-initiated-rewrap" : "unreachable",
                                     err);
        if (r >= 0 && f == CKEY_UNAVAILABLE)
                set_health(k, p, POLICY_DEGRADED, why);
        return r;
}

/* --- creation ------------------------------------------------------------- */

static int wrap_gen_with(const uint8_t pkey[ENGINE_KEY_SIZE], struct policy *p, uint32_t n,
                         struct gen_record *ret)
{
        _cleanup_secret_ uint8_t *gkey = secret_alloc(ENGINE_KEY_SIZE);
        struct gen_record g = { .generation = n, .state = GEN_ACTIVE, .key_version = p->rec.key_version };
        int r;

        if (!gkey)
                return -ENOMEM;
        r = engine_random(gkey, ENGINE_KEY_SIZE);
        if (r >= 0)
                r = key_wrap(pkey, WRAP_GENERATION_KEY, p->id, n, gkey, g.wrapped_key);
        if (r < 0)
                return r;
        g.created_usec = g.activated_usec = now_real_usec();
        *ret = g;
        return 0;
}

/* Wraps pkey for a customer-managed policy: under both customer keys (both
 * must answer), and under a new availability key kept under the master key. */
static int wrap_for_customers(struct keys *k, struct policy_record *rec, const uint8_t id[16],
                              struct ckey *ck[2], const uint8_t pkey[ENGINE_KEY_SIZE], char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(2 * ENGINE_KEY_SIZE);
        char why[256];
        int r;

        if (!buf)
                return -ENOMEM;
        for (int i = 0; i < 2; i++) {
                size_t n = CUSTOMER_BLOB_MAX;

                r = ckey_wrap(ck[i], pkey, rec->id, CUSTOMER_TIMEOUT_USEC, rec->customer_blob[i], &n,
                              why, sizeof(why));
                if (r < 0) {
                        keys_seterr(err, "customer key %d cannot wrap: %s", i + 1, why);
                        return r;
                }
                rec->customer_blob_len[i] = n;
        }
        rec->n_customer_keys = 2;
        r = read_cached(k->env.master, buf);
        if (r >= 0)
                r = engine_random(buf + ENGINE_KEY_SIZE, ENGINE_KEY_SIZE);
        if (r >= 0)
                r = key_wrap(buf, WRAP_AVAILABILITY_KEY, id, 0, buf + ENGINE_KEY_SIZE, rec->availability_key);
        if (r >= 0)
                r = key_wrap(buf + ENGINE_KEY_SIZE, WRAP_POLICY_KEY_AVAILABILITY, id, 0, pkey,
                             rec->availability_wrap);
        if (r < 0)
                keys_seterr(err, "cannot create the availability key: %s", strerror(-r));
        return r;
}

/* Checks a pair of customer key URIs and opens them into ck. */
static int open_pair(const char *const uris[2], struct ckey *ck[2], char *err)
{
        char why[256];

        if (!uris[0] || !uris[1]) {
                keys_seterr(err, "give exactly two customer keys (or none for a service-managed policy)");
                return -EINVAL;
        }
        if (strcmp(uris[0], uris[1]) == 0) {
                keys_seterr(err, "the two customer keys must differ (the same key was given twice)");
                return -EINVAL;
        }
        for (int i = 0; i < 2; i++) {
                /* PINs do not go into the store, which holds wrapped material only. */
                if (strstr(uris[i], "pin-value=")) {
                        keys_seterr(err, "customer key %d: use pin-source=file:PATH; a PIN in the URI "
                                    "would be stored", i + 1);
                        return -EINVAL;
                }
                if (strlen(uris[i]) >= CUSTOMER_URI_MAX) {
                        keys_seterr(err, "customer key %d: URI too long", i + 1);
                        return -EINVAL;
                }
                if (ckey_open(uris[i], &ck[i], why, sizeof(why)) < 0) {
                        keys_seterr(err, "customer key %d: %s", i + 1, why);
                        if (i) {
                                ckey_free(ck[0]);
                                ck[0] = NULL; /* the caller frees what is left */
                        }
                        return -EINVAL;
                }
                /* Refused before any module is loaded or file read. */
                if (ckey_check(ck[i], why, sizeof(why)) < 0) {
                        keys_seterr(err, "customer key %d: %s", i + 1, why);
                        for (int j = 0; j <= i; j++) {
                                ckey_free(ck[j]);
                                ck[j] = NULL;
                        }
                        return -EPERM;
                }
        }
        return 0;
}

int create_policy(struct keys *k, const char *name, const char *const uris[2],
                  const struct audit_subject *subj, char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(KEYBUF_SIZE);
        _cleanup_free_ char *pjson = NULL, *gjson = NULL;
        struct policy *p = NULL;
        struct gen_record g;
        char kp[128], kg[160], kn[128];
        uint64_t rev;
        int r;

        if (!buf)
                return -ENOMEM;
        if (!policy_name_valid(name)) {
                keys_seterr(err, "bad policy name '%s': 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -", name);
                return -EINVAL;
        }
        if (find_policy(k, name)) {
                keys_seterr(err, "policy '%s' already exists", name);
                return -EEXIST;
        }
        if (k->n_policies >= CFG(k->cfg, max_policies)) {
                keys_seterr(err, "at most %u policies ([policy] max_policies)", CFG(k->cfg, max_policies));
                return -ENOSPC;
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->status_lock, NULL);
        if (uris) {
                r = open_pair(uris, p->ckeys, err);
                if (r == -EPERM)
                        audit_record(AUDIT_KIND_KEY, "policy-create", subj, false,
                                     "policy=%s reason=customer-key-not-allowed", name);
                if (r < 0)
                        goto fail;
        }
        r = engine_random(p->id, 16);
        if (r < 0)
                goto fail;
        p->id[6] = (p->id[6] & 0x0f) | 0x40; /* UUID version 4 */
        p->id[8] = (p->id[8] & 0x3f) | 0x80;
        uuid_to_string(p->id, p->rec.id);
        snprintf(p->rec.name, sizeof(p->rec.name), "%s", name);
        p->rec.created_usec = now_real_usec();
        p->rec.active = p->rec.n_generations = 1;

        /* buf: the policy key, then the master key. */
        r = engine_random(buf, ENGINE_KEY_SIZE);
        if (r < 0)
                goto fail;
        if (uris) {
                for (int i = 0; i < 2; i++)
                        snprintf(p->rec.customer_uri[i], CUSTOMER_URI_MAX, "%s", uris[i]);
                r = wrap_for_customers(k, &p->rec, p->id, p->ckeys, buf, err);
                if (r < 0)
                        goto fail;
        } else {
                r = read_cached(k->env.master, buf + ENGINE_KEY_SIZE);
                if (r >= 0)
                        r = key_wrap(buf + ENGINE_KEY_SIZE, WRAP_POLICY_KEY, p->id, 0, buf,
                                     p->rec.wrapped_key);
                if (r < 0) {
                        keys_seterr(err, "cannot create the key of policy '%s': %s", name, strerror(-r));
                        goto fail;
                }
        }
        r = wrap_gen_with(buf, p, 1, &g);
        if (r < 0)
                goto fail;
        r = policy_record_encode(&p->rec, &pjson);
        if (r >= 0)
                r = gen_record_encode(&g, &gjson);
        if (r < 0)
                goto fail;
        key_policy(kp, sizeof(kp), p->rec.id);
        key_generation(kg, sizeof(kg), p->rec.id, 1);
        key_name(kn, sizeof(kn), name);
        {
                const struct store_cmp cmps[] = { { kn, 0 }, { kp, 0 } };
                const struct store_op ops[] = {
                        { STORE_PUT, kn, p->rec.id, strlen(p->rec.id) },
                        { STORE_PUT, kp, pjson, strlen(pjson) },
                        { STORE_PUT, kg, gjson, strlen(gjson) },
                };

                r = keys_audit_ready(k, err);
                if (r < 0)
                        goto fail;
                r = store_ops_of(k->env.store)->txn(k->env.store, cmps, ARRAY_SIZE(cmps), ops,
                                                    ARRAY_SIZE(ops), &rev);
                keys_audit_check(audit_outcome(AUDIT_KIND_KEY, "policy-create", subj,
                                               r == -ESTALE ? -EEXIST : r,
                                               "policy=%s policy_id=%s generation=1 customer_keys=%u",
                                               name, p->rec.id, p->rec.n_customer_keys),
                                 r, "policy-create");
        }
        if (r < 0) {
                /* The name's key exists: another node created the policy
                 * first (its watch brings it here). */
                keys_seterr(err, "cannot store policy '%s': %s", name,
                            r == -ESTALE ? "it already exists (created on another node)" :
                                           store_strerror(k->env.store, r));
                if (r == -ESTALE)
                        r = -EEXIST;
                goto fail;
        }
        p->mod_revision = rev;
        r = add_gen(p, &g, rev);
        if (r < 0)
                goto fail;
        {
                struct policy **ps = realloc(k->policies, (k->n_policies + 1) * sizeof(*ps));
                if (!ps) {
                        r = -ENOMEM;
                        goto fail;
                }
                k->policies = ps;
                k->policies[k->n_policies++] = p;
        }
        log_info("created policy '%s' (%s) with generation 1, %s", name, p->rec.id,
                 uris ? "customer-managed" : "service-managed");
        return 0;
fail:
        if (p)
                policy_free(p);
        return r;
}

int keys_policy_create(struct keys *k, const char *name, const char *const uris[2],
                       const struct audit_subject *subj, char *err)
{
        int r;

        pthread_rwlock_wrlock(&k->lock);
        r = create_policy(k, name, uris, subj, err);
        pthread_rwlock_unlock(&k->lock);
        return r;
}

/* --- changes that meet another node's (-ESTALE) ----------------------------- */

/* Changes of a policy are compare-and-swap on its records: when another
 * node changed one first, the change reads the policy again and is tried
 * once more, up to STALE_RETRIES times; it is made whole or not at all. */
#define STALE_RETRIES 8

/* Reads policy name again from the store (sync.c merges it). */
static int refresh_named(struct keys *k, const char *name, char *err)
{
        struct policy *p;
        uint8_t id[16];

        pthread_rwlock_rdlock(&k->lock);
        p = find_policy(k, name);
        if (p)
                memcpy(id, p->id, 16);
        pthread_rwlock_unlock(&k->lock);
        return p ? policy_refresh(k, id, err) : -ENOENT;
}

/* Reads one assignment again from the store into memory. */
static int refresh_assignment(struct keys *k, const char *key, bool by_gid, uint32_t id, char *err)
{
        struct store_kv kv = { 0 };
        int r = store_ops_of(k->env.store)->get(k->env.store, key, &kv);

        if (r < 0 && r != -ENOENT) {
                keys_seterr(err, "cannot read the assignment: %s", store_strerror(k->env.store, r));
                return r;
        }
        pthread_rwlock_wrlock(&k->lock);
        for (size_t i = 0; i < k->n_assignments; i++)
                if (k->assignments[i].by_gid == by_gid && k->assignments[i].id == id) {
                        k->assignments[i] = k->assignments[--k->n_assignments];
                        break;
                }
        if (r == 0)
                r = load_assignment(k, &kv);
        pthread_rwlock_unlock(&k->lock);
        store_kv_clear(&kv);
        return r == -ENOENT ? 0 : r;
}

/* --- assignment ----------------------------------------------------------- */

int load_assignment(struct keys *k, const struct store_kv *kv)
{
        struct assignment a = { .mod_revision = kv->mod_revision }, *as;
        unsigned long id;
        char *end;

        if (RECORDS_UNDER(kv->key, RECORDS_ASSIGN_UID))
                a.by_gid = false;
        else if (RECORDS_UNDER(kv->key, RECORDS_ASSIGN_GID))
                a.by_gid = true;
        else
                return 0;
        id = strtoul(kv->key + (a.by_gid ? RECORDS_LEN(RECORDS_ASSIGN_GID) : RECORDS_LEN(RECORDS_ASSIGN_UID)),
                     &end, 10);
        if (*end || kv->value_len == 0 || kv->value_len >= sizeof(a.policy) || id > UINT32_MAX)
                return -EBADMSG;
        a.id = (uint32_t)id;
        memcpy(a.policy, kv->value, kv->value_len);
        as = realloc(k->assignments, (k->n_assignments + 1) * sizeof(*as));
        if (!as)
                return -ENOMEM;
        k->assignments = as;
        as[k->n_assignments++] = a;
        return 0;
}

static int assign_once(struct keys *k, const char *policy, bool by_gid, uint32_t id,
                       const struct audit_subject *subj, char *err)
{
        struct assignment *a = NULL;
        char key[64];
        uint64_t rev;
        int r;

        pthread_rwlock_wrlock(&k->lock);
        if (!find_policy(k, policy)) {
                keys_seterr(err, "no such policy '%s'", policy);
                r = -ENOENT;
                goto out;
        }
        for (size_t i = 0; i < k->n_assignments; i++)
                if (k->assignments[i].by_gid == by_gid && k->assignments[i].id == id)
                        a = &k->assignments[i];
        snprintf(key, sizeof(key), "%s%u", by_gid ? RECORDS_ASSIGN_GID : RECORDS_ASSIGN_UID, id);
        r = keys_audit_ready(k, err);
        if (r < 0)
                goto out;
        {
                const struct store_cmp cmp = { key, a ? a->mod_revision : 0 };
                const struct store_op op = { STORE_PUT, key, policy, strlen(policy) };
                r = store_ops_of(k->env.store)->txn(k->env.store, &cmp, 1, &op, 1, &rev);
        }
        if (r != -ESTALE) /* retried by the caller */
                keys_audit_check(audit_outcome(AUDIT_KIND_CONFIG, "policy-assign", subj, r, "policy=%s %s=%u",
                                               policy, by_gid ? "group" : "user", id),
                                 r, "policy-assign");
        if (r < 0) {
                keys_seterr(err, "cannot store the assignment: %s", store_strerror(k->env.store, r));
                goto out;
        }
        if (!a) {
                struct assignment *as = realloc(k->assignments, (k->n_assignments + 1) * sizeof(*as));
                if (!as) {
                        r = -ENOMEM;
                        goto out;
                }
                k->assignments = as;
                a = &as[k->n_assignments++];
        }
        *a = (struct assignment){ .by_gid = by_gid, .id = id, .mod_revision = rev };
        snprintf(a->policy, sizeof(a->policy), "%s", policy);
out:
        pthread_rwlock_unlock(&k->lock);
        return r;
}

/* Another node assigned the same user or group meanwhile: the later
 * assignment wins, as it would one after the other. */
int keys_policy_assign(struct keys *k, const char *policy, bool by_gid, uint32_t id,
                       const struct audit_subject *subj, char *err)
{
        char key[64];
        int r = assign_once(k, policy, by_gid, id, subj, err);

        snprintf(key, sizeof(key), "%s%u", by_gid ? RECORDS_ASSIGN_GID : RECORDS_ASSIGN_UID, id);
        for (int attempt = 0; attempt < STALE_RETRIES && r == -ESTALE; attempt++) {
                if (refresh_assignment(k, key, by_gid, id, err) < 0)
                        return -ESTALE;
                err[0] = 0;
                r = assign_once(k, policy, by_gid, id, subj, err);
        }
        if (r == -ESTALE) {
                keys_seterr(err, "the assignment keeps changing on other nodes: not done, retry");
                audit_outcome(AUDIT_KIND_CONFIG, "policy-assign", subj, r, "policy=%s %s=%u", policy,
                              by_gid ? "group" : "user", id);
        }
        return r;
}

bool keys_policy_for(struct keys *k, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                     char ret[65])
{
        const char *found = NULL;

        pthread_rwlock_rdlock(&k->lock);
        /* A user's own assignment wins over any of their groups'. */
        for (size_t i = 0; i < k->n_assignments && !found; i++)
                if (!k->assignments[i].by_gid && k->assignments[i].id == uid)
                        found = k->assignments[i].policy;
        for (size_t i = 0; i < k->n_assignments && !found; i++) {
                const struct assignment *a = &k->assignments[i];

                if (!a->by_gid)
                        continue;
                if (a->id == gid)
                        found = a->policy;
                for (size_t j = 0; j < n_groups && !found; j++)
                        if (groups[j] == a->id)
                                found = a->policy;
        }
        if (found)
                snprintf(ret, 65, "%s", found);
        pthread_rwlock_unlock(&k->lock);
        return found != NULL;
}

/* --- rekey ------------------------------------------------------------------ */

static int rekey_once(struct keys *k, const char *policy, const char *const uris[2],
                      bool new_policy_key, const struct audit_subject *subj, char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(3 * ENGINE_KEY_SIZE);
        struct policy_record *rec = NULL;
        struct store_txn txn = { 0 };
        struct ckey *ck[2] = { NULL, NULL };
        struct policy *p;
        char key[160], *json;
        uint64_t rev, t0 = now_mono_usec();
        int r;

        if (!buf)
                return -ENOMEM;
        pthread_rwlock_wrlock(&k->lock);
        p = find_policy(k, policy);
        if (!p) {
                keys_seterr(err, "no such policy '%s'", policy);
                r = -ENOENT;
                goto out;
        }
        if (p->rec.purged) {
                keys_seterr(err, "policy '%s' was purged", policy);
                audit_record(AUDIT_KIND_KEY, "policy-rekey", subj, false, "policy=%s reason=purged", policy);
                r = -EKEYREVOKED;
                goto out;
        }
        if (p->rec.has_previous) {
                keys_seterr(err, "policy '%s': its generations are still being re-wrapped after the "
                            "last rekey; retry", policy);
                r = -EAGAIN;
                goto out;
        }
        r = open_pair(uris, ck, err);
        if (r == -EPERM)
                audit_record(AUDIT_KIND_KEY, "policy-rekey", subj, false,
                             "policy=%s reason=customer-key-not-allowed", policy);
        if (r < 0)
                goto out;
        /* The same pair again changes nothing, unless the policy key is new. */
        if (p->rec.n_customer_keys == 2 && !new_policy_key &&
            ((!strcmp(uris[0], p->rec.customer_uri[0]) && !strcmp(uris[1], p->rec.customer_uri[1])) ||
             (!strcmp(uris[0], p->rec.customer_uri[1]) && !strcmp(uris[1], p->rec.customer_uri[0])))) {
                keys_seterr(err, "policy '%s' already uses these customer keys", policy);
                r = -EALREADY;
                goto out;
        }
        /* The current policy key, as a request would get it: the
         * availability key stands in for customer keys that do not answer,
         * never for one the customer revoked.  A rekey hands the policy to
         * new keys, so allowing it then would let one operator undo the
         * customer's revocation (README, "Customer keys"). */
        if (p->rec.n_customer_keys)
                r = policy_key_customer(k, p, buf, false, err);
        else
                r = policy_key(k, p, buf, err);
        if (r == -EKEYREVOKED) {
                keys_seterr(err, "policy '%s' is revoked by its customer: a rekey cannot make it "
                            "readable again; the customer must first restore the key it revoked",
                            policy);
                audit_record(AUDIT_KIND_KEY, "policy-rekey", subj, false, "policy=%s reason=revoked",
                             policy);
        }
        if (r < 0)
                goto out;
        rec = calloc(1, sizeof(*rec));
        if (!rec) {
                r = -ENOMEM;
                goto out;
        }
        *rec = p->rec;
        for (int i = 0; i < 2; i++)
                snprintf(rec->customer_uri[i], CUSTOMER_URI_MAX, "%s", uris[i]);
        /* buf + 32: the policy key from now on. */
        if (new_policy_key)
                r = engine_random(buf + ENGINE_KEY_SIZE, ENGINE_KEY_SIZE);
        else
                memcpy(buf + ENGINE_KEY_SIZE, buf, ENGINE_KEY_SIZE);
        if (r >= 0)
                r = wrap_for_customers(k, rec, p->id, ck, buf + ENGINE_KEY_SIZE, err);
        if (r < 0)
                goto out;

        if (new_policy_key) {
                /* The generations stay wrapped under the key before, which
                 * stays too, wrapped under the new one, until rekey_finish()
                 * has re-wrapped them all in as many transactions as the
                 * store needs: a crash in between leaves every generation
                 * readable, and any node finishes the work. */
                rec->key_version = p->rec.key_version + 1;
                rec->has_previous = true;
                rec->previous_version = p->rec.key_version;
                r = key_wrap(buf + ENGINE_KEY_SIZE, WRAP_PREVIOUS_POLICY_KEY, p->id, rec->previous_version,
                             buf, rec->previous_key);
                if (r < 0) {
                        keys_seterr(err, "cannot wrap the previous policy key: %s", strerror(-r));
                        goto out;
                }
        }
        r = policy_record_encode(rec, &json);
        if (r < 0)
                goto out;
        key_policy(key, sizeof(key), p->rec.id);
        r = store_txn_put_owned(&txn, key, json, strlen(json));
        if (r >= 0)
                r = store_txn_compare(&txn, key, p->mod_revision);
        if (r >= 0)
                r = keys_audit_ready(k, err);
        if (r < 0)
                goto out;
        r = store_txn_commit(k->env.store, &txn, &rev);
        if (r != -ESTALE) /* retried by keys_policy_rekey() */
                keys_audit_check(audit_outcome(AUDIT_KIND_KEY, "policy-rekey", subj, r,
                                               "policy=%s new_policy_key=%s generations=%zu", policy,
                                               new_policy_key ? "yes" : "no", p->n_gens),
                                 r, "policy-rekey");
        if (r < 0) {
                keys_seterr(err, "cannot store the rekey: %s", store_strerror(k->env.store, r));
                goto out;
        }
        /* Commit in memory: the old customer keys stop working at once. */
        for (int i = 0; i < 2; i++) {
                ckey_free(p->ckeys[i]);
                p->ckeys[i] = ck[i];
                ck[i] = NULL;
        }
        p->rec = *rec;
        p->mod_revision = rev;
        {
                keyring_serial_t s = atomic_exchange(&p->serial, 0);
                if (s > 0)
                        keyring_invalidate(s);
        }
        set_health(k, p, POLICY_HEALTHY, NULL);
        log_notice("policy '%s' rekeyed to new customer keys%s in %" PRIu64 " ms (%zu generations)",
                   policy, new_policy_key ? " with a new policy key" : "", (now_mono_usec() - t0) / 1000,
                   p->n_gens);
out:
        pthread_rwlock_unlock(&k->lock);
        for (int i = 0; i < 2; i++)
                ckey_free(ck[i]);
        store_txn_free(&txn);
        if (rec)
                secure_wipe(rec, sizeof(*rec));
        free(rec);
        return r;
}

int keys_policy_rekey(struct keys *k, const char *policy, const char *const uris[2],
                      bool new_policy_key, const struct audit_subject *subj, char *err)
{
        struct policy *p;
        uint8_t pid[16];
        bool pending;
        int r;

        /* A rekey cut short before is finished first. */
        pthread_rwlock_rdlock(&k->lock);
        p = find_policy(k, policy);
        pending = p && p->rec.has_previous;
        if (pending)
                memcpy(pid, p->id, 16);
        pthread_rwlock_unlock(&k->lock);
        if (pending && rekey_finish(k, pid, err) < 0)
                return -EAGAIN;
        err[0] = 0;
        r = rekey_once(k, policy, uris, new_policy_key, subj, err);

        for (int attempt = 0; attempt < STALE_RETRIES && r == -ESTALE; attempt++) {
                if (refresh_named(k, policy, err) < 0)
                        return -ESTALE;
                err[0] = 0;
                r = rekey_once(k, policy, uris, new_policy_key, subj, err);
        }
        if (r == -ESTALE) {
                keys_seterr(err, "policy '%s' keeps changing on other nodes: rekey not done, retry", policy);
                audit_outcome(AUDIT_KIND_KEY, "policy-rekey", subj, r, "policy=%s", policy);
        }
        if (r >= 0 && new_policy_key) {
                /* The rekey stands; re-wrapping what is left resumes from
                 * the maintenance pass of any node if this is cut short. */
                uint8_t id[16];
                bool found;
                char why[KEYS_ERR_MAX] = "";

                pthread_rwlock_rdlock(&k->lock);
                found = find_policy(k, policy) != NULL;
                if (found)
                        memcpy(id, find_policy(k, policy)->id, 16);
                pthread_rwlock_unlock(&k->lock);
                if (found && rekey_finish(k, id, why) < 0)
                        log_warn("policy '%s': re-wrapping the generations under the new policy key "
                                 "continues later: %s", policy, why);
        }
        return r;
}

/* --- purge ------------------------------------------------------------------ */

int keys_check_purgeable(struct keys *k, const char *policy, char *err)
{
        struct policy *p;
        int r = 0;

        pthread_rwlock_rdlock(&k->lock);
        p = find_policy(k, policy);
        if (!p) {
                keys_seterr(err, "no such policy '%s'", policy);
                r = -ENOENT;
        } else if (p->rec.purged) {
                keys_seterr(err, "policy '%s' is already purged", policy);
                r = -EALREADY;
        }
        pthread_rwlock_unlock(&k->lock);
        return r;
}

static int purge_once(struct keys *k, const char *policy, const struct audit_subject *subj,
                      uint32_t request_id, char *err)
{
        struct store_txn head = { 0 }, gens = { 0 }; /* the policy record; the generations */
        struct policy_record *rec = NULL;
        struct policy *p;
        char key[160], *json;
        uint64_t rev, shred_rev = 0;
        bool begun = false;
        int r;

        pthread_rwlock_wrlock(&k->lock);
        r = -ENOENT;
        p = find_policy(k, policy);
        if (!p || p->rec.purged) {
                keys_seterr(err, p ? "policy '%s' is already purged" : "no such policy '%s'", policy);
                r = p ? -EALREADY : -ENOENT;
                p = NULL;
                goto out;
        }
        rec = calloc(1, sizeof(*rec));
        if (!rec) {
                r = -ENOMEM;
                goto out;
        }
        /* Every generation's wrapped key, the customer copies and the
         * availability key go: nothing left in the store unwraps. */
        for (size_t i = 0; i < p->n_gens; i++) {
                struct gen_record g = p->gens[i]->rec;

                g.state = GEN_DESTROYED;
                secure_wipe(g.wrapped_key, sizeof(g.wrapped_key));
                r = gen_record_encode(&g, &json);
                if (r < 0)
                        goto out;
                key_generation(key, sizeof(key), p->rec.id, g.generation);
                r = store_txn_put_owned(&gens, key, json, strlen(json));
                if (r < 0)
                        goto out;
        }
        *rec = (struct policy_record){ .created_usec = p->rec.created_usec, .active = p->rec.active,
                                       .n_generations = p->rec.n_generations, .purged = true };
        memcpy(rec->id, p->rec.id, sizeof(rec->id));
        memcpy(rec->name, p->rec.name, sizeof(rec->name));
        r = policy_record_encode(rec, &json);
        if (r < 0)
                goto out;
        key_policy(key, sizeof(key), p->rec.id);
        r = store_txn_put_owned(&head, key, json, strlen(json));
        if (r >= 0)
                r = store_txn_compare(&head, key, p->mod_revision);
        if (r >= 0)
                r = keys_audit_ready(k, err);
        if (r < 0)
                goto out;
        keys_shred_begin(k);
        begun = true;
        /* First the policy record: without its wrapped copies and the
         * availability key nothing can unwrap the generations any more, so
         * this one transaction is the shredding.  The generations' wrapped
         * keys follow in as many transactions as the store needs. */
        r = store_txn_commit(k->env.store, &head, &rev);
        if (r != -ESTALE) /* retried by keys_purge() */
                keys_audit_check(audit_outcome(AUDIT_KIND_KEY, "policy-purge", subj, r,
                                               "policy=%s policy_id=%s request=%u", policy, p->rec.id,
                                               request_id),
                                 r, "policy-purge");
        if (r < 0) {
                keys_seterr(err, "cannot store the purge: %s", store_strerror(k->env.store, r));
                goto out;
        }
        for (size_t i = 0, chunk = store_ops_of(k->env.store)->max_txn_ops; i < gens.n_ops; i += chunk) {
                size_t n = gens.n_ops - i < chunk ? gens.n_ops - i : chunk;
                uint64_t grev;
                int e = store_ops_of(k->env.store)->txn(k->env.store, NULL, 0, &gens.ops[i], n, &grev);

                if (e < 0) {
                        log_err("policy '%s' is purged, but erasing its generations' wrapped keys "
                                "failed: %s", policy, strerror(-e));
                        break;
                }
                shred_rev = grev;
        }
        if (shred_rev < rev)
                shred_rev = rev;
        for (size_t i = 0; i < p->n_gens; i++) {
                struct generation *g = p->gens[i];

                gen_drop_cached(g);
                g->rec.state = GEN_DESTROYED;
                secure_wipe(g->rec.wrapped_key, sizeof(g->rec.wrapped_key));
                g->mod_revision = rev;
        }
        {
                keyring_serial_t s = atomic_exchange(&p->serial, 0);
                if (s > 0)
                        keyring_invalidate(s);
        }
        secure_wipe(&p->rec, sizeof(p->rec));
        p->rec = *rec;
        p->mod_revision = rev;
        log_notice("policy '%s' purged (request %u): its data can no longer be decrypted", policy,
                   request_id);
out:
        pthread_rwlock_unlock(&k->lock);
        if (shred_rev)
                keys_shred(k, shred_rev, "policy purge");
        else if (begun)
                keys_shred_abandon(k);
        store_txn_free(&head);
        store_txn_free(&gens);
        free(rec);
        return r;
}

/* A rotation elsewhere changes the policy record: purge what is there now. */
int keys_purge(struct keys *k, const char *policy, const struct audit_subject *subj,
               uint32_t request_id, char *err)
{
        int r = purge_once(k, policy, subj, request_id, err);

        for (int attempt = 0; attempt < STALE_RETRIES && r == -ESTALE; attempt++) {
                if (refresh_named(k, policy, err) < 0)
                        return -ESTALE;
                err[0] = 0;
                r = purge_once(k, policy, subj, request_id, err);
        }
        if (r == -ESTALE) {
                keys_seterr(err, "policy '%s' keeps changing on other nodes: purge not done, retry", policy);
                audit_outcome(AUDIT_KIND_KEY, "policy-purge", subj, r, "policy=%s request=%u", policy,
                              request_id);
        }
        return r;
}

/* --- listing -------------------------------------------------------------- */

static json_object *policy_json(struct keys *k, struct policy *p, bool detail)
{
        json_object *o = json_object_new_object();
        uint64_t left;

        json_object_object_add(o, "name", json_object_new_string(p->rec.name));
        json_object_object_add(o, "id", json_object_new_string(p->rec.id));
        json_object_object_add(o, "state", json_object_new_string(policy_state_name(p)));
        json_object_object_add(o, "managed_by", json_object_new_string(
                                       p->rec.n_customer_keys ? "customer" : p->rec.purged ? "none" : "service"));
        json_object_object_add(o, "active_generation", json_object_new_int64(p->rec.active));
        json_object_object_add(o, "generations", json_object_new_int64((int64_t)p->n_gens));
        if (!detail)
                return o;
        json_object_object_add(o, "policy_key_version", json_object_new_int64(p->rec.key_version));
        if (p->rec.has_previous) {
                /* A rekey with a new policy key is re-wrapping the generations. */
                size_t to_rewrap = 0;

                for (size_t i = 0; i < p->n_gens; i++)
                        to_rewrap += p->gens[i]->rec.state != GEN_DESTROYED &&
                                p->gens[i]->rec.key_version != p->rec.key_version;
                json_object_object_add(o, "generations_to_rewrap", json_object_new_int64((int64_t)to_rewrap));
        }
        pthread_mutex_lock(&p->status_lock);
        if (p->rec.n_customer_keys) {
                json_object *arr = json_object_new_array();

                for (int i = 0; i < 2; i++) {
                        json_object *c = json_object_new_object();

                        json_object_object_add(c, "uri", json_object_new_string(ckey_uri_redacted(p->ckeys[i])));
                        if (p->last_unwrap_usec && p->last.asked[i]) {
                                json_object_object_add(c, "answered", json_object_new_boolean(p->last.winner == i));
                                json_object_object_add(c, "result", json_object_new_string(
                                        p->last.err[i] ? ckey_failure_name(ckey_classify(p->last.err[i])) : "ok"));
                                json_object_object_add(c, "latency_ms",
                                                       json_object_new_double((double)p->last.latency_usec[i] / 1000.0));
                        }
                        json_object_array_add(arr, c);
                }
                json_object_object_add(o, "customer_keys", arr);
                json_object_object_add(o, "availability_key_used",
                                       json_object_new_boolean(p->availability_uses > 0));
                json_object_object_add(o, "availability_key_uses", json_object_new_int64((int64_t)p->availability_uses));
                if (p->last_error[0] && p->health != POLICY_HEALTHY)
                        json_object_object_add(o, "last_error", json_object_new_string(p->last_error));
        }
        pthread_mutex_unlock(&p->status_lock);
        if (atomic_load(&p->serial) > 0 && keyring_remaining(atomic_load(&p->serial), &left) >= 0)
                json_object_object_add(o, "cache_expires_in_seconds", json_object_new_int64((int64_t)left));
        {
                json_object *gens = json_object_new_array();

                for (size_t i = 0; i < p->n_gens; i++) {
                        json_object *g = json_object_new_object();
                        json_object_object_add(g, "generation", json_object_new_int64(p->gens[i]->rec.generation));
                        json_object_object_add(g, "state", json_object_new_string(gen_state_to_string(p->gens[i]->rec.state)));
                        json_object_array_add(gens, g);
                }
                json_object_object_add(o, "generation_list", gens);
        }
        {
                json_object *as = json_object_new_array();

                for (size_t i = 0; i < k->n_assignments; i++) {
                        char t[32];
                        if (strcmp(k->assignments[i].policy, p->rec.name) != 0)
                                continue;
                        snprintf(t, sizeof(t), "%s:%u", k->assignments[i].by_gid ? "gid" : "uid",
                                 k->assignments[i].id);
                        json_object_array_add(as, json_object_new_string(t));
                }
                json_object_object_add(o, "assigned_to", as);
        }
        return o;
}

int keys_policy_list_json(struct keys *k, const char *policy, char **ret, char *err)
{
        json_object *out = NULL;
        int r = 0;

        pthread_rwlock_rdlock(&k->lock);
        if (policy) {
                struct policy *p = find_policy(k, policy);
                if (!p) {
                        keys_seterr(err, "no such policy '%s'", policy);
                        r = -ENOENT;
                } else
                        out = policy_json(k, p, true);
        } else {
                out = json_object_new_array();
                for (size_t i = 0; i < k->n_policies; i++)
                        json_object_array_add(out, policy_json(k, k->policies[i], false));
        }
        pthread_rwlock_unlock(&k->lock);
        if (r >= 0) {
                *ret = strdup(json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
                if (!*ret)
                        r = -ENOMEM;
        }
        json_object_put(out);
        return r;
}
