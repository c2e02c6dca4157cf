/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Whether a use is covered by a live grant: every check reads the kernel's
 * grant key, so an expiry or a keyctl revoke counts at once; while the
 * store is unavailable, the grants as last read (and only grant keys
 * already on this node) decide.
 */
#include <stdio.h>

#include "grants-internal.h"
#include "log.h"
#include "shared/util.h"

/* --- use -------------------------------------------------------------------- */

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
        if (r->scope == SCOPE_DESTROY || r->scope == SCOPE_PURGE || r->scope == SCOPE_RESHARE)
                return false;
        if (scope == SCOPE_DECRYPT && r->scope != SCOPE_DECRYPT)
                return false;
        return !policy || !r->policy[0] || strcmp(r->policy, policy) == 0;
}

static int check_one(struct grants *g, struct request *r, void *userdata)
{
        struct check_ctx *c = userdata;
        uint64_t left, left_max;
        int e;

        if (r->requester != c->who->uid || !covers(r, c->scope, c->policy))
                return 0;
        if (r->state != REQ_GRANTED) {
                /* Remember why the newest matching grant ended. */
                if (r->state == REQ_EXPIRED || r->state == REQ_REVOKED) {
                        c->result = r->state == REQ_EXPIRED ? -EKEYEXPIRED : -EKEYREVOKED;
                        grants_seterr(c->err, "grant %u %s", r->id, grant_state_names[r->state]);
                }
                return 0;
        }
        e = grant_key_state(g, r, NULL, &left, &left_max, NULL);
        /* Without the store only grant keys already here count: the cache
         * may miss a revocation made elsewhere since. */
        if (e == -ENOKEY && !c->degraded && now_real_usec() < r->grant_expires_usec &&
            !grant_seen_has(g, r->id) && grant_key_mirror(g, r, now_real_usec()) >= 0)
                e = grant_key_state(g, r, NULL, &left, &left_max, NULL);
        if (e == 0)
                grant_seen_set(g, r->id, true);
        if (e == 0 && now_real_usec() < r->grant_expires_usec) {
                c->use->id = r->id;
                snprintf(c->use->reason, sizeof(c->use->reason), "%s", r->reason);
                grant_approvers_text(r, c->use->approvers, sizeof(c->use->approvers));
                c->result = 0;
                return 1; /* stop: found a live one */
        }
        if (e == -ENOKEY && c->degraded && !grant_seen_has(g, r->id) &&
            now_real_usec() < r->grant_expires_usec) {
                c->result = -EPERM;
                grants_seterr(c->err, "grant %u is not on this node yet and the store is unavailable", r->id);
        } else if (e == -EKEYREVOKED || e == -EBADMSG ||
            (e == -ENOKEY && now_real_usec() < r->grant_expires_usec)) {
                c->result = -EKEYREVOKED;
                grants_seterr(c->err, "grant %u revoked", r->id);
        } else {
                c->result = -EKEYEXPIRED;
                grants_seterr(c->err, "grant %u expired", r->id);
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

        if (policy)
                grants_seterr(err, "not in the users group and no live grant for policy '%s'", policy);
        else
                grants_seterr(err, "not in the users group and no live grant");
        e = for_each_request(g, check_all, &c);
        if (e < 0 && (!store_unavailable(g->store, e) || !check_cached(g, &c))) {
                grants_seterr(err, "cannot read grants: %s", store_strerror(g->store, e));
                return e;
        }
        if (c.degraded && c.result == 0)
                log_info("grant %u checked without the store (%s): its key is live here", ret->id,
                         store_strerror(g->store, e));
        return c.result;
}
