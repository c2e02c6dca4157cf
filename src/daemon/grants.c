/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Elevated access, the operators' side: requests, approvals, denials and
 * revocations, and the listing.  The request records and the cache are in
 * grants-store.c, the grant keys and the reconciliation with the kernel in
 * grants-keyring.c, the checks of a use in grants-use.c
 * (grants-internal.h is what they share).
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "grants-internal.h"
#include "log.h"
#include "shared/duration.h"
#include "shared/util.h"

/* --- audit of the outcome ------------------------------------------------ */

/* Each change is audited once the store has answered, so that its record
 * says what the caller is told: a full disk is res=failed error=ENOSPC, not
 * res=success for a request the store kept pending.  fail_closed refuses the
 * change beforehand when no record can be written now. */
static int audit_ready(struct grants *g, char *err)
{
        if (!CFG(g->cfg, audit_fail_closed) || audit_can_write() == 0)
                return 0;
        grants_seterr(err, "refused: the audit record could not be written ([audit] fail_closed=yes)");
        return -EIO;
}

/* a: what audit_outcome() gave for a change whose outcome was e. */
static void audit_check(int a, int e, const char *op)
{
        if (a < 0 && e >= 0)
                log_err("audit: the record of a completed %s could not be written: %s", op, strerror(-a));
}

/* --- requests ------------------------------------------------------------ */

/* Carried out on the last approval, not a grant for a time. */
static bool one_shot(enum grant_scope scope)
{
        return scope == SCOPE_DESTROY || scope == SCOPE_PURGE || scope == SCOPE_RESHARE;
}

static int next_id(struct grants *g, uint32_t *ret)
{
        const char *key = RECORDS_NEXT_REQUEST_ID;

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
                grants_seterr(err, "a reason is required (printable text, not only spaces)");
                return -EINVAL;
        }
        if (strlen(reason) > REASON_MAX) {
                grants_seterr(err, "reason too long (at most %d bytes)", REASON_MAX);
                return -EINVAL;
        }
        sc = grant_lookup_name(grant_scope_names, ARRAY_SIZE(grant_scope_names), scope ? scope : "decrypt");
        if (sc < 0) {
                grants_seterr(err, "unknown scope '%s' (decrypt or inspect)", scope);
                return -EINVAL;
        }
        r.scope = (enum grant_scope)sc;
        if (r.scope == SCOPE_DESTROY) {
                if (!policy || !generation) {
                        grants_seterr(err, "a destroy request names a policy and a generation");
                        return -EINVAL;
                }
                e = keys_check_destroyable(g->keys, policy, generation, err);
                if (e < 0)
                        return e;
        } else if (r.scope == SCOPE_RESHARE) {
                e = grant_reshare_check(g, err);
                if (e < 0) {
                        _cleanup_free_ char *why = audit_value(err);

                        if (audit_record(AUDIT_KIND_KEY, "recovery-reshare-request", who, false,
                                         "error=%s reason=%s", audit_errno_name(e), why ? why : "?") < 0)
                                log_err("audit: the record of a refused reshare request could not be written");
                        return e;
                }
        } else if (r.scope == SCOPE_PURGE) {
                if (!policy) {
                        grants_seterr(err, "a purge request names a policy");
                        return -EINVAL;
                }
                e = keys_check_purgeable(g->keys, policy, err);
                if (e < 0)
                        return e;
        } else {
                if (!duration) {
                        grants_seterr(err, "a duration is required (e.g. 30m, at most the configured max_duration)");
                        return -EINVAL;
                }
                e = duration_parse(duration, CFG(g->cfg, max_duration_usec), &r.duration_usec);
                if (e < 0 || r.duration_usec == 0) {
                        char max[32];
                        grants_seterr(err, "bad duration '%s': %s", duration,
                               e == -ERANGE ? "longer than max_duration" :
                               "expected a positive duration such as 30m or 1h30m");
                        if (e == -ERANGE) {
                                duration_format(CFG(g->cfg, max_duration_usec), max, sizeof(max));
                                grants_seterr(err, "bad duration '%s': longer than max_duration (%s)", duration, max);
                        }
                        return -EINVAL;
                }
                if (policy && !keys_policy_exists(g->keys, policy)) {
                        grants_seterr(err, "no such policy '%s'", policy);
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
        e = audit_ready(g, err);
        if (e < 0)
                goto out;
        e = next_id(g, &r.id);
        if (e < 0)
                grants_seterr(err, "cannot allocate a request id: %s", store_strerror(g->store, e));
        else
                e = request_store(g, &r, err);
        audit_check(audit_outcome(AUDIT_KIND_ACCESS, "access-request", who, e,
                                  "request=%u scope=%s policy=%s generation=%u duration=%" PRIu64 " reason=%s",
                                  r.id, grant_scope_names[r.scope], r.policy[0] ? r.policy : "*", r.generation,
                                  r.duration_usec / 1000000, areason),
                    e, "access-request");
        if (r.scope == SCOPE_RESHARE)
                audit_check(audit_outcome(AUDIT_KIND_KEY, "recovery-reshare-request", who, e,
                                          "request=%u approvals_required=%u reason=%s", r.id,
                                          CFG(g->cfg, approvals_required), areason),
                            e, "recovery-reshare-request");
        if (e >= 0) {
                *ret_id = r.id;
                log_notice("access request %u by uid %u: %s", r.id, (unsigned)who->uid, grant_scope_names[r.scope]);
        }
out:
        pthread_mutex_unlock(&g->lock);
        return e;
}

/* An ended request's state, in words for errors. */
static const char *ended_text(const struct request *r)
{
        return grant_state_names[r->state];
}

static int carry_out(struct grants *g, const struct audit_subject *who, struct request *r,
                     uint64_t now, char *note, size_t note_size, char *err)
{
        int e;

        if (one_shot(r->scope)) {
                e = r->scope == SCOPE_DESTROY ?
                            keys_destroy(g->keys, r->policy, r->generation, who, r->id, err) :
                    r->scope == SCOPE_PURGE ? keys_purge(g->keys, r->policy, who, r->id, err) :
                                              grant_reshare_run(g, who, r, note, note_size, err);
                /* Already destroyed (purged): by this very request when dkmd
                 * was killed after carrying it out and before storing that
                 * (two transactions), or by another one.  What it asks for
                 * holds: done, not failed. */
                if (e == -EALREADY) {
                        log_notice("access request %u: %s; the request is done", r->id, err);
                        err[0] = 0;
                        e = 0;
                }
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
        /* The key before the record: the store never says granted for a
         * grant this node could not materialise.  It is dropped again if
         * the record cannot be stored. */
        e = grant_key_create(g, r, now);
        if (e < 0) {
                grants_seterr(err, "cannot create the grant key: %s", strerror(-e));
                return e;
        }
        return 0;
}

/* The record of a grant whose request is stored (e: how that went). */
static int audit_grant_create(const struct audit_subject *who, const struct request *r, int e)
{
        char appr[MAX_APPROVERS * 12];

        grant_approvers_text(r, appr, sizeof(appr));
        return audit_outcome(AUDIT_KIND_ACCESS, "grant-create", who, e,
                             "request=%u holder=%u scope=%s policy=%s seconds=%" PRIu64 " approvers=%s",
                             r->id, (unsigned)r->requester, grant_scope_names[r->scope],
                             r->policy[0] ? r->policy : "*", r->duration_usec / 1000000, appr);
}

int grants_approve(struct grants *g, const struct audit_subject *who, uint32_t id,
                   char *ret_state, size_t state_size, char *err)
{
        struct request r;
        uint64_t now = now_real_usec();
        char note[512] = "";
        int e;

        pthread_mutex_lock(&g->lock);
        e = request_load(g, id, &r, err);
        if (e < 0)
                goto out;
        if (r.state == REQ_PENDING && now >= r.request_expires_usec) {
                grants_seterr(err, "access request %u expired before it was approved", id);
                e = -ETIME;
                goto out;
        }
        if (r.state != REQ_PENDING) {
                grants_seterr(err, "access request %u is %s, not pending", id, ended_text(&r));
                e = -EALREADY;
                goto out;
        }
        if (who->uid == r.requester) {
                audit_record(AUDIT_KIND_ACCESS, "access-approve", who, false,
                             "request=%u error=self-approval", id);
                if (r.scope == SCOPE_RESHARE)
                        audit_record(AUDIT_KIND_KEY, "recovery-reshare-approve", who, false,
                                     "request=%u error=self-approval", id);
                grants_seterr(err, "nobody approves their own request");
                e = -EPERM;
                goto out;
        }
        for (size_t i = 0; i < r.n_approvers; i++)
                if (r.approvers[i] == who->uid) {
                        grants_seterr(err, "uid %u already approved request %u (%zu of %u)", (unsigned)who->uid,
                               id, r.n_approvers, CFG(g->cfg, approvals_required));
                        e = -EALREADY;
                        goto out;
                }
        if (r.n_approvers >= MAX_APPROVERS) {
                e = -E2BIG;
                goto out;
        }
        e = audit_ready(g, err);
        if (e < 0)
                goto out;
        r.approvers[r.n_approvers++] = who->uid;
        if (r.n_approvers >= CFG(g->cfg, approvals_required)) {
                /* A destroy or purge is audited by the key manager, a
                 * reshare by grants-reshare.c; its failure ends the request
                 * as failed, which is stored. */
                e = carry_out(g, who, &r, now, note, sizeof(note), err);
                if (e < 0 && !one_shot(r.scope))
                        goto audit;
        }
        {
                char serr[GRANT_ERR_MAX] = "";
                uint64_t lease = 0;
                int s = 0;

                if (r.state == REQ_GRANTED) {
                        s = grant_lease_new(g, &r, now, &lease);
                        if (s < 0)
                                grants_seterr(serr, "cannot store access request %u: %s", id,
                                       store_strerror(g->store, s));
                        r.lease = lease;
                }
                if (s >= 0)
                        s = request_store_leased(g, &r, lease, serr);
                if (r.state == REQ_GRANTED)
                        audit_check(audit_grant_create(who, &r, s), s, "grant-create");
                if (s < 0) {
                        /* Nothing half-done: no grant key, no marker; the
                         * request stays as the store has it. */
                        grant_lease_end(g, lease);
                        if (r.state == REQ_GRANTED)
                                grant_key_drop(g, r.id);
                        memcpy(err, serr, GRANT_ERR_MAX);
                        e = s;
                        goto audit;
                }
        }
        if (r.state == REQ_GRANTED) {
                char appr[MAX_APPROVERS * 12];

                grant_approvers_text(&r, appr, sizeof(appr));
                grant_seen_set(g, r.id, true);
                log_notice("grant %u for uid %u live for %" PRIu64 " s (approvers %s)", r.id,
                           (unsigned)r.requester, r.duration_usec / 1000000, appr);
        }
        if (e >= 0) {
                if (r.state == REQ_PENDING)
                        snprintf(ret_state, state_size, "pending (%zu of %u approvals)", r.n_approvers,
                                 CFG(g->cfg, approvals_required));
                else
                        snprintf(ret_state, state_size, "%s%s%s", grant_state_names[r.state], note[0] ? "; " : "",
                                 note);
        }
audit:
        /* What the approver is told: a destroy that failed, failed. */
        audit_check(audit_outcome(AUDIT_KIND_ACCESS, "access-approve", who, e, "request=%u approval=%zu of=%u",
                                  id, r.n_approvers, CFG(g->cfg, approvals_required)),
                    e, "access-approve");
        if (r.scope == SCOPE_RESHARE)
                audit_check(audit_outcome(AUDIT_KIND_KEY, "recovery-reshare-approve", who, e,
                                          "request=%u approval=%zu of=%u", id, r.n_approvers,
                                          CFG(g->cfg, approvals_required)),
                            e, "recovery-reshare-approve");
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
                grants_seterr(err, "bad reason: printable text of at most %d bytes", REASON_MAX);
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
                grants_seterr(err, "access request %u is %s, not pending", id,
                       r.state == REQ_PENDING ? "expired" : ended_text(&r));
                e = -EALREADY;
                goto out;
        }
        e = audit_ready(g, err);
        if (e < 0)
                goto out;
        r.state = REQ_DENIED;
        r.ended_usec = now_real_usec();
        snprintf(r.ended_by, sizeof(r.ended_by), "uid %u", (unsigned)who->uid);
        snprintf(r.end_reason, sizeof(r.end_reason), "%s", reason ? reason : "");
        e = request_store(g, &r, err);
        audit_check(audit_outcome(AUDIT_KIND_ACCESS, "access-deny", who, e, "request=%u reason=%s", id, areason),
                    e, "access-deny");
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
                grants_seterr(err, "access request %u is %s already", id, ended_text(&r));
                e = -EALREADY;
                goto out;
        }
        e = audit_ready(g, err);
        if (e < 0)
                goto out;
        /* The record first: a revocation the store did not take would
         * come back (every node mirrors what the store says is live), so
         * when it fails the grant stays whole and the caller is told. */
        r.state = REQ_REVOKED;
        r.ended_usec = now_real_usec();
        snprintf(r.ended_by, sizeof(r.ended_by), "uid %u", (unsigned)who->uid);
        e = request_store(g, &r, err);
        if (e >= 0) {
                grant_key_drop(g, id);
                grant_seen_set(g, id, false);
                grant_lease_end(g, r.lease);
        }
        audit_check(audit_outcome(AUDIT_KIND_ACCESS, "grant-revoke", who, e, "request=%u source=dkmctl", id),
                    e, "grant-revoke");
out:
        pthread_mutex_unlock(&g->lock);
        return e;
}


/* --- list ----------------------------------------------------------------- */

struct list {
        json_object *arr;
        bool have_snap;
        struct keyring_proc_snapshot snap; /* /proc/keys, once for the list */
};

static int list_one(struct grants *g, struct request *r, void *userdata)
{
        struct list *l = userdata;
        json_object *arr = l->arr, *o = json_object_new_object(), *a = json_object_new_array();
        uint64_t now = now_real_usec();
        const char *state = grant_state_names[r->state];

        if (r->state == REQ_PENDING && now >= r->request_expires_usec)
                state = "expired";
        if (r->state == REQ_GRANTED) {
                uint64_t left, left_max;
                int e = grant_key_state(g, r, l->have_snap ? &l->snap : NULL, &left, &left_max, NULL);
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
        json_object_object_add(o, "scope", json_object_new_string(grant_scope_names[r->scope]));
        json_object_object_add(o, "policy", json_object_new_string(r->policy[0] ? r->policy : "*"));
        if (r->scope == SCOPE_DESTROY)
                json_object_object_add(o, "generation", json_object_new_int64(r->generation));
        if (one_shot(r->scope))
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
                                       json_object_new_int64(grant_remaining_sec(r, now)));
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
        struct list l = { .arr = arr };
        int e;

        l.have_snap = keyring_proc_snapshot_read(&l.snap) >= 0;
        e = for_each_request(g, list_one, &l);
        keyring_proc_snapshot_free(&l.snap);
        if (e < 0)
                grants_seterr(err, "cannot read access requests: %s", strerror(-e));
        else {
                *ret = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
                if (!*ret)
                        e = -ENOMEM;
        }
        json_object_put(arr);
        return e;
}
