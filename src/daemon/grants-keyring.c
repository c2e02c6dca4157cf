/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel side of grants: a live grant is a key in the grants keyring
 * whose timeout is the grant's remaining time, and the store is kept in step
 * with what the kernel (and keyctl, and an etcd lease) did to it: expiries,
 * revocations, shortened or extended timeouts, grants mirrored from other
 * nodes.  The grants keyring itself is opened here (grants_new).
 */
#include <inttypes.h>
#include <keyutils.h>
#include <stdio.h>

#include "grants-internal.h"
#include "log.h"
#include "shared/audit.h"
#include "shared/util.h"

/* The grants keyring and its keys belong to dkmd's uid and are given to
 * the reviewers group ([groups] reviewers): its members may view, read and
 * search them, and set a grant key's attributes, which is what keyctl show,
 * print, search, timeout and revoke need.  Nobody else gets anything, so a
 * local user can neither read who holds a grant nor end one; root has no
 * power over another uid's keys, and gets these through the group too.  A
 * reviewer may only cut a grant short: dkmd compares every grant key with
 * the store and resets (and audits) one whose timeout was extended. */
#define GRANT_RING_PERM (KEY_POS_ALL | KEY_USR_ALL | KEY_GRP_VIEW | KEY_GRP_READ | KEY_GRP_SEARCH)
#define GRANT_KEY_PERM \
        (KEY_POS_ALL | KEY_USR_ALL | KEY_GRP_VIEW | KEY_GRP_READ | KEY_GRP_SEARCH | KEY_GRP_SETATTR)
/* What dkmd reads back of a timeout it set: the kernel counts from the
 * current whole second, and the store's remaining time rounds up.  The
 * coarser units of /proc/keys are not slack but a range (keyring.h). */
#define TIMEOUT_SLACK_SEC 2

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

/* --- the grant key --------------------------------------------------------- */

void grant_approvers_text(const struct request *r, char *buf, size_t size)
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

        grant_approvers_text(r, appr, sizeof(appr));
        snprintf(buf, size, "grant=%u uid=%u scope=%s policy=%s approvers=%s expires=%" PRIu64, r->id,
                 (unsigned)r->requester, grant_scope_names[r->scope], r->policy[0] ? r->policy : "*", appr,
                 r->grant_expires_usec / 1000000);
}

unsigned grant_remaining_sec(const struct request *r, uint64_t now)
{
        uint64_t left = r->grant_expires_usec > now ? (r->grant_expires_usec - now + 999999) / 1000000 : 0;

        return left > UINT32_MAX ? UINT32_MAX : (unsigned)left;
}

/* Gives a grant key or the keyring to the reviewers: the group first and
 * the group's rights after, so that no other group holds them meanwhile.
 * Without a reviewers group nobody but dkmd gets anything. */
static int grant_give(const struct grants *g, keyring_serial_t k, uint32_t perm)
{
        int e = 0;

        if (g->group == (gid_t)-1)
                return keyring_set_perm(k, perm & ~(uint32_t)KEY_GRP_ALL);
        e = keyring_set_group(k, g->group);
        if (e >= 0)
                e = keyring_set_perm(k, perm);
        return e;
}

int grant_key_create(struct grants *g, const struct request *r, uint64_t now)
{
        char desc[48], payload[600];
        keyring_serial_t s;
        int e;

        grant_desc(desc, sizeof(desc), r->id);
        grant_payload(r, payload, sizeof(payload));
        e = keyring_add_perm(g->ring, desc, payload, strlen(payload), grant_remaining_sec(r, now),
                             GRANT_KEY_PERM & ~(uint32_t)KEY_GRP_ALL, &s);
        if (e >= 0) {
                e = grant_give(g, s, GRANT_KEY_PERM);
                if (e < 0)
                        keyring_invalidate(s);
        }
        return e;
}

/* The grant key rewritten for a new end: payload and timeout, in place.
 * Never through add_key(), which makes a new key when the old one was
 * revoked meanwhile and so would undo a keyctl revoke that came between
 * dkmd's look at the key and this write. */
static int grant_key_rewrite(struct grants *g, const struct request *r, uint64_t now)
{
        char desc[48], payload[600];
        keyring_serial_t s;
        int e;

        grant_desc(desc, sizeof(desc), r->id);
        grant_payload(r, payload, sizeof(payload));
        e = keyring_search(g->ring, desc, &s);
        if (e >= 0)
                e = keyring_update(s, payload, strlen(payload));
        /* An update leaves the key without a timeout until this. */
        if (e >= 0)
                e = keyring_set_timeout(s, grant_remaining_sec(r, now));
        return e;
}

/* The kernel's view of a grant: 0 live (with *ret_min to *ret_max seconds
 * left, as /proc/keys tells them), or -EKEYEXPIRED / -EKEYREVOKED / -ENOKEY,
 * or -EBADMSG for a key that does not describe this grant.  snap: /proc/keys
 * as read once for a pass over many grants (NULL: read it now); a key made
 * after it is read from /proc/keys itself. */
int grant_key_state(struct grants *g, const struct request *r, const struct keyring_proc_snapshot *snap,
                    uint64_t *ret_min, uint64_t *ret_max, keyring_serial_t *ret_serial)
{
        char desc[48], payload[600], want[600];
        keyring_serial_t s;
        size_t n;
        int e;

        grant_desc(desc, sizeof(desc), r->id);
        e = keyring_search(g->ring, desc, &s);
        if (e < 0)
                return e;
        if (ret_serial)
                *ret_serial = s;
        e = keyring_read(s, payload, sizeof(payload) - 1, &n);
        if (e < 0)
                return e;
        payload[n] = 0;
        grant_payload(r, want, sizeof(want));
        if (strcmp(payload, want) != 0)
                return -EBADMSG;
        if (snap) {
                e = keyring_proc_snapshot_range(snap, s, ret_min, ret_max);
                if (e != -ENOKEY)
                        return e;
        }
        return keyring_remaining_range(s, ret_min, ret_max);
}

void grant_key_drop(struct grants *g, uint32_t id)
{
        char desc[48];
        keyring_serial_t s;

        grant_desc(desc, sizeof(desc), id);
        if (keyring_search(g->ring, desc, &s) >= 0)
                keyring_invalidate(s);
}

/* The seen ids are kept sorted: a start-up with 10,000 live grants asks
 * for each of them, and a linear list made that 10^8 comparisons.  The
 * index of id, or where it would go. */
static size_t seen_find(const struct grants *g, uint32_t id)
{
        size_t lo = 0, hi = g->n_seen;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (g->seen[mid] < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

bool grant_seen_has(struct grants *g, uint32_t id)
{
        bool found;
        size_t i;

        pthread_mutex_lock(&g->seen_lock);
        i = seen_find(g, id);
        found = i < g->n_seen && g->seen[i] == id;
        pthread_mutex_unlock(&g->seen_lock);
        return found;
}

void grant_seen_set(struct grants *g, uint32_t id, bool on)
{
        size_t i;

        pthread_mutex_lock(&g->seen_lock);
        i = seen_find(g, id);
        if (i < g->n_seen && g->seen[i] == id) {
                if (!on) {
                        memmove(&g->seen[i], &g->seen[i + 1], (g->n_seen - i - 1) * sizeof(*g->seen));
                        g->n_seen--;
                }
        } else if (on) {
                if (g->n_seen == g->cap_seen) {
                        size_t cap = g->cap_seen ? 2 * g->cap_seen : 64;
                        uint32_t *v = reallocarray(g->seen, cap, sizeof(*v));

                        if (!v) {
                                /* Left unseen, as when the list could
                                 * not grow before. */
                                pthread_mutex_unlock(&g->seen_lock);
                                return;
                        }
                        g->seen = v;
                        g->cap_seen = cap;
                }
                memmove(&g->seen[i + 1], &g->seen[i], (g->n_seen - i) * sizeof(*g->seen));
                g->seen[i] = id;
                g->n_seen++;
        }
        pthread_mutex_unlock(&g->seen_lock);
}

/* The grant key of a live grant in this node's keyring, created with the
 * remaining time when this node never had it. */
int grant_key_mirror(struct grants *g, const struct request *r, uint64_t now)
{
        int e = grant_key_create(g, r, now);

        if (e >= 0) {
                grant_seen_set(g, r->id, true);
                log_info("grant %u mirrored with %u s left", r->id, grant_remaining_sec(r, now));
        }
        return e;
}

/* --- keeping the store in step with the kernel ------------------------------ */

/* A reviewer may give a grant key to another group of theirs (keyctl chgrp:
 * setattr allows it), and root may change its rights: either would hand
 * the grant to people who should not have it.  Put back, and audited. */
static void grant_key_regive(struct grants *g, const struct request *r, keyring_serial_t s,
                             const struct keyring_proc_snapshot *snap)
{
        uint32_t want = g->group == (gid_t)-1 ? GRANT_KEY_PERM & ~(uint32_t)KEY_GRP_ALL : GRANT_KEY_PERM;
        const struct keyring_proc_entry *pe = keyring_proc_snapshot_find(snap, s);
        unsigned uid, gid, perm;
        char d[256];

        /* From the pass's /proc/keys when it lists the key: a keyctl less
         * per grant, for a start-up with thousands. */
        if (pe)
                uid = pe->uid, gid = pe->gid, perm = pe->perm;
        else if (keyring_describe(s, d, sizeof(d)) < 0 ||
                 /* "type;uid;gid;perm;description" */
                 sscanf(d, "%*[^;];%u;%u;%x;", &uid, &gid, &perm) != 3)
                return;
        if ((g->group == (gid_t)-1 || gid == (unsigned)g->group) && perm == want)
                return;
        if (grant_give(g, s, GRANT_KEY_PERM) < 0)
                keyring_invalidate(s); /* the next pass restores it */
        audit_record(AUDIT_KIND_ACCESS, "grant-tamper", NULL, false,
                     "request=%u holder=%u key_group=%u key_perm=%08x source=keyctl audit_rule="
                     AUDIT_KEYCTL_RULE, r->id, (unsigned)r->requester, gid, perm);
        log_warn("grant %u was given to group %u with rights %08x outside dkm; given back to the "
                 "reviewers; who: ausearch -k " AUDIT_KEYCTL_RULE, r->id, gid, perm);
}

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
                bool keyctl = strcmp(by, "keyctl") == 0;

                /* Who ran keyctl is in the kernel's own record (key=). */
                audit_record(AUDIT_KIND_ACCESS, op, NULL, true, "request=%u holder=%u source=%s%s", r->id,
                             (unsigned)r->requester, by, keyctl ? " audit_rule=" AUDIT_KEYCTL_RULE : "");
                log_notice("grant %u %s (%s)%s", r->id, grant_state_names[state], by,
                           keyctl ? "; who: ausearch -k " AUDIT_KEYCTL_RULE : "");
                grant_lease_end(g, r->lease);
        } else if (e == -ESTALE)
                log_info("grant %u ended (recorded by another node)", r->id);
        else
                log_err("cannot record the end of grant %u: %s", r->id, store_strerror(g->store, e));
        grant_key_drop(g, r->id);
        grant_seen_set(g, r->id, false);
}

struct reconcile {
        bool startup;
        bool have_snap;     /* /proc/keys was read for this pass */
        struct keyring_proc_snapshot snap;
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
        uint64_t now = now_real_usec(), at, left, left_max, want;
        keyring_serial_t serial = 0;
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
                if (startup || grant_seen_has(g, r->id)) {
                        if (!startup)
                                log_notice("grant %u %s (recorded in the store): key dropped", r->id,
                                           grant_state_names[r->state]);
                        grant_key_drop(g, r->id);
                        grant_seen_set(g, r->id, false);
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
        /* The kernel's figures are from the snapshot: so is what we compare
         * them with (a pass over thousands of grants takes a while). */
        at = c->have_snap ? c->snap.usec : now;
        want = grant_remaining_sec(r, at);
        e = grant_key_state(g, r, c->have_snap ? &c->snap : NULL, &left, &left_max, &serial);
        if (e == -ENOKEY && (startup || !grant_seen_has(g, r->id))) {
                if (grant_key_mirror(g, r, now) >= 0 && startup)
                        log_info("grant %u restored with %" PRIu64 " s left", r->id, want);
                return 0;
        }
        if (e >= 0 || e == -EKEYREVOKED || e == -EKEYEXPIRED || e == -EBADMSG)
                grant_seen_set(g, r->id, true);
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
        grant_key_regive(g, r, serial, c->have_snap ? &c->snap : NULL);
        if (left != 0 && left_max + TIMEOUT_SLACK_SEC < want) {
                /* Shortened with keyctl timeout: even the most the kernel's
                 * "2h" may mean is less than approved.  The kernel's word
                 * stands, read as the least it may mean; the key is then set
                 * to exactly that, so that the store and the kernel agree
                 * to the second from here on. */
                r->grant_expires_usec = at + left * 1000000;
                audit_record(AUDIT_KIND_ACCESS, "grant-shorten", NULL, true,
                             "request=%u holder=%u seconds=%" PRIu64 " source=keyctl audit_rule="
                             AUDIT_KEYCTL_RULE, r->id, (unsigned)r->requester, left);
                log_notice("grant %u shortened to %" PRIu64 " s with keyctl; who: ausearch -k "
                           AUDIT_KEYCTL_RULE, r->id, left);
                /* The payload names the expiry: rewrite it to match; the
                 * marker moves to a lease that ends as soon. */
                {
                        uint64_t old = r->lease, lease = 0;

                        if (old && grant_lease_new(g, r, now, &lease) >= 0)
                                r->lease = lease;
                        if (request_store_leased(g, r, r->lease != old ? lease : 0, NULL) >= 0) {
                                grant_key_rewrite(g, r, now);
                                if (r->lease != old)
                                        grant_lease_end(g, old);
                        } else if (r->lease != old)
                                grant_lease_end(g, lease);
                }
        } else if (left > want + TIMEOUT_SLACK_SEC || left == 0) {
                /* Even the least the kernel's figure may mean is more. */
                /* Extended (or made permanent): never wider than approved. */
                char desc[48];
                keyring_serial_t s;

                grant_desc(desc, sizeof(desc), r->id);
                if (keyring_search(g->ring, desc, &s) >= 0)
                        keyring_set_timeout(s, (unsigned)want);
                audit_record(AUDIT_KIND_ACCESS, "grant-tamper", NULL, false,
                             "request=%u holder=%u seconds=%" PRIu64 " source=keyctl audit_rule="
                             AUDIT_KEYCTL_RULE, r->id, (unsigned)r->requester, left);
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
        if (!RECORDS_UNDER(kv->key, RECORDS_REQUESTS))
                return 0;
        return request_scan_one(kv, &c->scan);
}

static void reconcile_all(struct grants *g, bool startup)
{
        struct reconcile c = { .startup = startup, .markers_read = store_has_leases(g->store) };

        c.scan = (struct scan){ .g = g, .fn = reconcile_one, .userdata = &c };
        /* Once per pass (unreadable: each grant reads it, as before). */
        c.have_snap = keyring_proc_snapshot_read(&c.snap) >= 0;
        if (c.markers_read)
                request_scan_finish(g, &c.scan, store_ops_of(g->store)->range(g->store, RECORDS_ACCESS,
                                                                      reconcile_access, &c));
        else
                for_each_request(g, reconcile_one, &c);
        free(c.markers);
        keyring_proc_snapshot_free(&c.snap);
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

/* Grant keys from before (an earlier dkmd, another reviewers group) get
 * today's group and rights; one that cannot is dropped, and restored from
 * the store by the first reconciliation. */
static void grants_tighten(struct grants *g)
{
        _cleanup_free_ keyring_serial_t *v = NULL;
        size_t n = 0;
        char d[256];

        uint32_t want = g->group == (gid_t)-1 ? GRANT_KEY_PERM & ~(uint32_t)KEY_GRP_ALL : GRANT_KEY_PERM;

        if (keyring_list(g->ring, &v, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                const char *desc;
                unsigned uid, gid, perm;

                if (keyring_describe(v[i], d, sizeof(d)) < 0 || strncmp(d, "user;", 5) != 0)
                        continue;
                /* "type;uid;gid;perm;description" */
                desc = strrchr(d, ';');
                if (!desc || strncmp(desc + 1, "dkm:grant:", 10) != 0)
                        continue;
                /* Only those that differ: each keyctl on a grant key is
                 * audited (the dkm-keyctl rule), and with thousands of
                 * grants the records held start-up back for seconds. */
                if (sscanf(d, "%*[^;];%u;%u;%x;", &uid, &gid, &perm) == 3 &&
                    (g->group == (gid_t)-1 || gid == (unsigned)g->group) && perm == want)
                        continue;
                if (grant_give(g, v[i], GRANT_KEY_PERM) < 0)
                        keyring_invalidate(v[i]);
        }
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
        g->group = CFG(cfg, reviewers_gid);
        pthread_mutex_init(&g->lock, NULL);
        pthread_mutex_init(&g->seen_lock, NULL);
        pthread_mutex_init(&g->cache_lock, NULL);
        /* One grants keyring per instance, in the user keyring of dkmd's uid:
         * it outlives a restart of dkmd, so the kernel's timers keep running. */
        if (strcmp(cfg->state_dir, DKM_DEFAULT_STATE_DIR) == 0)
                snprintf(name, sizeof(name), "dkm:grants");
        else
                snprintf(name, sizeof(name), "dkm:grants:%s", cfg->state_dir);
        e = keyring_open_at(KEY_SPEC_USER_KEYRING, name, GRANT_RING_PERM & ~(uint32_t)KEY_GRP_ALL, &g->ring);
        if (e < 0) {
                /* The kernel makes a uid's user keyring once, with the
                 * label of the first process that reaches it: a PAM session
                 * (runuser, su: pam_keyinit) of dkm's uid before dkmd ever
                 * ran leaves one that dkmd_t may not search. */
                grants_seterr(err, "cannot open the grants keyring: %s%s", strerror(-e),
                              e == -ENOKEY || e == -EACCES ?
                              "; if SELinux is enforcing, dkm's user keyring may have been made by a "
                              "login of user dkm (runuser, su) before dkmd first ran: run dkm's "
                              "commands with setpriv, and reboot once" : "");
                goto fail;
        }
        e = grant_give(g, g->ring, GRANT_RING_PERM);
        if (e < 0) {
                grants_seterr(err, "cannot give the grants keyring to the reviewers group (gid %u, "
                              "[groups] reviewers): %s%s", (unsigned)g->group, strerror(-e),
                              e == -EACCES ? "; dkmd must be a member of that group "
                                             "(dkmd.service: SupplementaryGroups=)" : "");
                goto fail;
        }
        if (g->group == (gid_t)-1)
                log_warn("[groups] reviewers: no such group; only dkmd can see and cut grants with keyctl");
        grants_tighten(g);
        /* The kernel names who changes a key with keyctl; dkmd only sees
         * that it changed. */
        e = audit_keyctl_watch(AUDIT_KEYCTL_RULE);
        if (e < 0)
                log_warn("keyctl changes to grants will not name who made them: cannot add the audit "
                         "rule (key %s): %s", AUDIT_KEYCTL_RULE,
                         e == -EPERM ? "dkmd lacks CAP_AUDIT_CONTROL" : strerror(-e));
        reconcile_all(g, true);
        *ret = g;
        return 0;
fail:
        pthread_mutex_destroy(&g->lock);
        pthread_mutex_destroy(&g->seen_lock);
        pthread_mutex_destroy(&g->cache_lock);
        free(g);
        return e;
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
