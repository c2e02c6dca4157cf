/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fleet of dkmd nodes on one store: each node keeps policies and
 * generations in memory (keys_load) and follows what the others write.
 * keys_follow() holds the store's watch (store_ops.follow) open from the
 * last revision applied; for each revision it delivers, the node re-reads
 * each policy it touched (one range read: a policy and its generations at
 * one revision), merges that into memory under the write lock, and moves
 * the applied revision on.  keys_sync() does the same for everything after
 * the applied revision at once: it catches up before a watch is (re)opened.
 * A merge only ever moves a record forward (by its mod revision), so two
 * merges of the same policy may run in any order, and a change seen twice
 * does no harm.  When the history was compacted (-ERANGE) every policy is
 * merged afresh.
 *
 * The same merge serves a node whose compare-and-swap failed (-ESTALE):
 * policy_refresh() brings that one policy up to date before it retries.
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "keys-internal.h"
#include "log.h"
#include "shared/audit.h"
#include "shared/format.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "store/store-etcd.h"

/* The policy records hold wrapped keys: wipe the copies before they go. */
static void kv_list_free(struct store_kv_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].value)
                        secure_wipe(l->v[i].value, l->v[i].value_len);
        store_kv_list_free(l);
}

static int kv_list_copy(const struct store_kv *kv, void *userdata)
{
        struct store_kv_list *l = userdata;
        struct store_kv c = { .value_len = kv->value_len, .mod_revision = kv->mod_revision,
                              .create_revision = kv->create_revision };
        struct store_kv *slot = store_kv_list_add(l);

        if (!slot)
                return -ENOMEM;
        c.key = strdup(kv->key);
        if (kv->value) {
                c.value = malloc(kv->value_len ? kv->value_len : 1);
                if (c.value)
                        memcpy(c.value, kv->value, kv->value_len);
        }
        if (!c.key || (kv->value && !c.value)) {
                store_kv_clear(&c);
                return -ENOMEM;
        }
        *slot = c;
        l->n++;
        return 0;
}

static bool key_material_differs(const struct policy_record *a, const struct policy_record *b)
{
        return a->purged != b->purged || a->n_customer_keys != b->n_customer_keys ||
               memcmp(a->wrapped_key, b->wrapped_key, sizeof(a->wrapped_key)) != 0 ||
               memcmp(a->availability_key, b->availability_key, sizeof(a->availability_key)) != 0 ||
               memcmp(a->availability_wrap, b->availability_wrap, sizeof(a->availability_wrap)) != 0 ||
               memcmp(a->customer_uri, b->customer_uri, sizeof(a->customer_uri)) != 0 ||
               memcmp(a->customer_blob, b->customer_blob, sizeof(a->customer_blob)) != 0;
}

static void drop_cached(_Atomic keyring_serial_t *serial)
{
        keyring_serial_t s = atomic_exchange(serial, 0);

        if (s > 0)
                keyring_invalidate(s);
}

/* A generation record newer than ours; with the write lock held. */
static void merge_gen(struct policy *p, struct generation *g, const struct gen_record *rec,
                      uint64_t mod_revision)
{
        if (mod_revision <= g->mod_revision)
                return;
        if (rec->state < g->rec.state) {
                /* active -> archived -> retired -> destroyed, never back: a
                 * record that says otherwise is not applied (and, passed
                 * over at this revision, told once). */
                log_err("policy '%s': generation %u is %s here; the store's record (revision %" PRIu64
                        ") says %s: refused, generations never go back", p->rec.name, rec->generation,
                        gen_state_to_string(g->rec.state), mod_revision, gen_state_to_string(rec->state));
                audit_record(AUDIT_KIND_KEY, "store-record-refused", NULL, false,
                             "policy=%s generation=%u revision=%" PRIu64 " reason=state-goes-back", p->rec.id,
                             rec->generation, mod_revision);
                g->mod_revision = mod_revision;
                return;
        }
        if (rec->state != g->rec.state || memcmp(rec->wrapped_key, g->rec.wrapped_key,
                                                 sizeof(rec->wrapped_key)) != 0) {
                /* Retired, destroyed or re-wrapped elsewhere: the cached key
                 * must not serve any more (a re-wrapped one is loaded again). */
                if (rec->state == GEN_RETIRED || rec->state == GEN_DESTROYED ||
                    memcmp(rec->wrapped_key, g->rec.wrapped_key, sizeof(rec->wrapped_key)) != 0)
                        gen_drop_cached(g);
                if (rec->state != g->rec.state)
                        log_info("policy '%s': generation %u is %s (from the store)", p->rec.name,
                                 rec->generation, gen_state_to_string(rec->state));
        }
        g->rec = *rec;
        g->mod_revision = mod_revision;
}

/* Merges one policy read from the store (its record and all its generations,
 * in key order, at one revision) into memory; with the write lock held. */
static int merge_policy(struct keys *k, const struct store_kv *pkv, const struct store_kv *gkvs,
                        size_t n_gkvs, char *err)
{
        struct policy_record *rec = calloc(1, sizeof(*rec));
        struct policy *p, *fresh = NULL;
        uint8_t id[16];
        int r;

        if (!rec)
                return -ENOMEM;
        r = policy_record_decode(pkv->value, pkv->value_len, rec);
        if (r >= 0)
                r = uuid_from_string(rec->id, id);
        if (r < 0) {
                keys_seterr(err, "store record %s is damaged", pkv->key);
                r = -EBADMSG;
                goto out;
        }
        p = find_policy_id(k, id);
        if (!p) {
                /* Created by another node. */
                if (k->n_policies >= CFG(k->cfg, max_policies)) {
                        keys_seterr(err, "policy '%s' from the store exceeds [policy] max_policies", rec->name);
                        r = -ENOSPC;
                        goto out;
                }
                fresh = p = calloc(1, sizeof(*p));
                if (!p) {
                        r = -ENOMEM;
                        goto out;
                }
                pthread_mutex_init(&p->status_lock, NULL);
                p->rec = *rec;
                memcpy(p->id, id, 16);
                p->mod_revision = pkv->mod_revision;
                r = policy_open_ckeys(p, err);
                if (r < 0)
                        goto out;
        } else if (pkv->mod_revision > p->mod_revision) {
                bool material = key_material_differs(&p->rec, rec);
                bool uris = p->rec.n_customer_keys != rec->n_customer_keys ||
                            memcmp(p->rec.customer_uri, rec->customer_uri, sizeof(rec->customer_uri)) != 0;

                if (p->rec.purged && !rec->purged) {
                        /* Crypto-shredded stays shredded, whatever a record says. */
                        log_err("policy '%s' is purged here; the store's record (revision %" PRIu64
                                ") has keys again: refused", p->rec.name, pkv->mod_revision);
                        audit_record(AUDIT_KIND_KEY, "store-record-refused", NULL, false,
                                     "policy=%s revision=%" PRIu64 " reason=purged-policy-revived",
                                     p->rec.id, pkv->mod_revision);
                        p->mod_revision = pkv->mod_revision;
                        r = 0;
                        goto out;
                }

                if (uris) {
                        /* Rekeyed to other customer keys: open those first. */
                        struct policy tmp = { .rec = *rec };

                        r = policy_open_ckeys(&tmp, err);
                        if (r < 0) {
                                for (int i = 0; i < 2; i++)
                                        ckey_free(tmp.ckeys[i]);
                                secure_wipe(&tmp.rec, sizeof(tmp.rec));
                                goto out;
                        }
                        for (int i = 0; i < 2; i++) {
                                ckey_free(p->ckeys[i]);
                                p->ckeys[i] = tmp.ckeys[i];
                        }
                        secure_wipe(&tmp.rec, sizeof(tmp.rec));
                }
                if (material)
                        drop_cached(&p->serial);
                if (rec->active != p->rec.active)
                        p->active_from_store = true;
                if (rec->active != p->rec.active)
                        log_notice("policy '%s': generation %u active (from the store)", rec->name,
                                   rec->active);
                if (rec->purged && !p->rec.purged)
                        log_notice("policy '%s' purged (from the store)", rec->name);
                secure_wipe(&p->rec, sizeof(p->rec));
                p->rec = *rec;
                p->mod_revision = pkv->mod_revision;
        }
        for (size_t i = 0; i < n_gkvs; i++) {
                struct gen_record g;
                struct generation *have;

                if (gen_record_decode(gkvs[i].value, gkvs[i].value_len, &g) < 0) {
                        keys_seterr(err, "store record %s is damaged", gkvs[i].key);
                        r = -EBADMSG;
                        goto out;
                }
                have = find_gen(p, g.generation);
                if (have)
                        merge_gen(p, have, &g, gkvs[i].mod_revision);
                else if (g.generation == p->n_gens + 1)
                        r = add_gen(p, &g, gkvs[i].mod_revision);
                else
                        r = -EBADMSG;
                secure_wipe(&g, sizeof(g));
                if (r < 0) {
                        keys_seterr(err, "store record %s does not follow generation %zu", gkvs[i].key,
                                    p->n_gens);
                        goto out;
                }
        }
        if (p->n_gens < p->rec.n_generations || !find_gen(p, p->rec.active)) {
                keys_seterr(err, "policy '%s' has %zu generations in the store, expected %u", p->rec.name,
                            p->n_gens, p->rec.n_generations);
                r = -EBADMSG;
                goto out;
        }
        if (fresh) {
                struct policy **ps = realloc(k->policies, (k->n_policies + 1) * sizeof(*ps));

                if (!ps) {
                        r = -ENOMEM;
                        goto out;
                }
                k->policies = ps;
                ps[k->n_policies++] = fresh;
                fresh = NULL;
                log_notice("policy '%s' (%s) added (from the store)", p->rec.name, p->rec.id);
        }
        r = 0;
out:
        if (fresh)
                policy_free(fresh);
        secure_wipe(rec, sizeof(*rec));
        free(rec);
        return r;
}

/* Merges every policy in l (a range of "policies/..."); with the write lock
 * held.  A policy that does not merge is logged and skipped. */
static int merge_list(struct keys *k, const struct store_kv_list *l, char *err)
{
        int result = 0;

        for (size_t i = 0; i < l->n;) {
                const char *rest = l->v[i].key + RECORDS_LEN(RECORDS_POLICIES);
                size_t j = i + 1;

                if (strchr(rest, '/')) {
                        i++; /* generations without their policy: not ours to judge */
                        continue;
                }
                while (j < l->n && strncmp(l->v[j].key, l->v[i].key, strlen(l->v[i].key)) == 0 &&
                       l->v[j].key[strlen(l->v[i].key)] == '/')
                        j++;
                {
                        int r = merge_policy(k, &l->v[i], l->v + i + 1, j - i - 1, err);
                        if (r < 0) {
                                log_err("cannot apply %s from the store: %s", l->v[i].key, err);
                                result = r;
                        }
                }
                i = j;
        }
        return result;
}

/* A copy of every key under prefix, read without the lock (the store may
 * be slow).  On failure err says "cannot read <what>: " and why. */
static int read_range(struct keys *k, const char *prefix, const char *what, struct store_kv_list *ret,
                      char *err)
{
        struct store_kv_list l = { 0 };
        int r;

        r = store_ops_of(k->env.store)->range(k->env.store, prefix, kv_list_copy, &l);
        if (r < 0) {
                keys_seterr(err, "cannot read %s: %s", what, store_strerror(k->env.store, r));
                kv_list_free(&l);
                return r;
        }
        *ret = l;
        return 0;
}

/* Reads the policies under prefix and merges them under the write lock. */
static int load_policies(struct keys *k, const char *prefix, const char *what, char *err)
{
        struct store_kv_list l = { 0 };
        int r;

        r = read_range(k, prefix, what, &l, err);
        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&k->lock);
        r = merge_list(k, &l, err);
        pthread_rwlock_unlock(&k->lock);
        kv_list_free(&l);
        return r;
}

int policy_refresh(struct keys *k, const uint8_t id[16], char *err)
{
        char key[64], ids[37], what[80];

        uuid_to_string(id, ids);
        key_policy(key, sizeof(key), ids);
        snprintf(what, sizeof(what), "policy %s from the store", ids);
        return load_policies(k, key, what, err);
}

static int reload_assignments(struct keys *k, char *err)
{
        struct store_kv_list l = { 0 };
        struct assignment *old;
        size_t n_old;
        int r;

        r = read_range(k, RECORDS_ASSIGN, "policy assignments", &l, err);
        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&k->lock);
        old = k->assignments;
        n_old = k->n_assignments;
        k->assignments = NULL;
        k->n_assignments = 0;
        for (size_t i = 0; i < l.n && r >= 0; i++)
                r = load_assignment(k, &l.v[i]);
        if (r < 0) {
                free(k->assignments);
                k->assignments = old;
                k->n_assignments = n_old;
                keys_seterr(err, "policy assignments in the store are damaged");
        } else
                free(old);
        pthread_rwlock_unlock(&k->lock);
        kv_list_free(&l);
        return r;
}

/* Everything again, after the history we needed was compacted away. */
static int sync_all(struct keys *k, char *err)
{
        int r;

        r = load_policies(k, RECORDS_POLICIES, "the store", err);
        if (r >= 0)
                r = reload_assignments(k, err);
        return r;
}

struct changed {
        char (*ids)[37];
        size_t n_ids;
        bool assign, access;
        uint64_t max_rev;
        int r;
};

static int on_change(const struct store_kv *kv, void *userdata)
{
        struct changed *c = userdata;

        if (kv->mod_revision > c->max_rev)
                c->max_rev = kv->mod_revision;
        if (RECORDS_UNDER(kv->key, RECORDS_POLICIES) && strlen(kv->key) >= RECORDS_LEN(RECORDS_POLICIES) + 36) {
                const char *id = kv->key + RECORDS_LEN(RECORDS_POLICIES);

                for (size_t i = 0; i < c->n_ids; i++)
                        if (strncmp(c->ids[i], id, 36) == 0)
                                return 0;
                {
                        char (*ids)[37] = reallocarray(c->ids, c->n_ids + 1, sizeof(*ids));
                        if (!ids)
                                return -ENOMEM;
                        c->ids = ids;
                        memcpy(ids[c->n_ids], id, 36);
                        ids[c->n_ids++][36] = 0;
                }
        } else if (RECORDS_UNDER(kv->key, RECORDS_ASSIGN))
                c->assign = true;
        else if (RECORDS_UNDER(kv->key, RECORDS_REQUESTS) || RECORDS_UNDER(kv->key, RECORDS_GRANTS))
                c->access = true;
        return 0;
}

static void note_health(struct keys *k, int r, const char *why)
{
        pthread_mutex_lock(&k->sync.lock);
        if (r < 0 && !k->sync.error) {
                k->sync.since_usec = now_real_usec();
                log_err("store: %s", why);
        } else if (r >= 0 && k->sync.error)
                log_notice("store: reachable again, following changes from revision %" PRIu64,
                           atomic_load(&k->sync.applied));
        k->sync.error = r < 0 ? r : 0;
        if (r < 0)
                snprintf(k->sync.why, sizeof(k->sync.why), "%s", why);
        k->sync.last_usec = now_real_usec();
        pthread_mutex_unlock(&k->sync.lock);
}

/* Re-reads what the changes in c touched; with k->sync.run held. */
static int apply_changed(struct keys *k, const struct changed *c, char *err)
{
        int r = 0;

        for (size_t i = 0; i < c->n_ids && r >= 0; i++) {
                uint8_t id[16];

                if (uuid_from_string(c->ids[i], id) < 0)
                        continue;
                r = policy_refresh(k, id, err);
                if (r == -EBADMSG || r == -ENOSPC || r == -ENOENT)
                        r = 0; /* logged; a damaged record must not stall the others */
        }
        if (r >= 0 && c->assign)
                r = reload_assignments(k, err);
        return r;
}

int keys_sync(struct keys *k, bool *ret_access_changed)
{
        struct changed c = { 0 };
        char err[KEYS_ERR_MAX] = "";
        uint64_t rev, since;
        int r;

        pthread_mutex_lock(&k->sync.run);
        since = atomic_load(&k->sync.applied);
        r = store_ops_of(k->env.store)->revision(k->env.store, &rev);
        if (r < 0) {
                note_health(k, r, store_strerror(k->env.store, r));
                goto out;
        }
        if (rev <= since) {
                note_health(k, 0, NULL);
                goto out;
        }
        r = store_ops_of(k->env.store)->changes(k->env.store, "", since, on_change, &c);
        if (r == -ERANGE) {
                log_warn("store history after revision %" PRIu64 " was compacted: reloading every policy",
                         since);
                r = sync_all(k, err);
                if (r >= 0) {
                        atomic_store(&k->sync.applied, rev);
                        c.access = true;
                        k->sync.reloads++;
                }
                note_health(k, r, err);
                goto out;
        }
        if (r < 0) {
                note_health(k, r, store_strerror(k->env.store, r));
                goto out;
        }
        r = apply_changed(k, &c, err);
        if (r >= 0 && c.max_rev > since)
                atomic_store(&k->sync.applied, c.max_rev);
        note_health(k, r, err);
out:
        pthread_mutex_unlock(&k->sync.run);
        free(c.ids);
        if (ret_access_changed)
                *ret_access_changed = c.access;
        return r;
}

struct follow_ctx {
        struct keys *k;
        void (*on_access)(void *userdata);
        void *userdata;
};

/* One revision from the held watch: applied before the next is read. */
static int on_follow(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata)
{
        struct follow_ctx *f = userdata;
        struct keys *k = f->k;
        struct changed c = { 0 };
        char err[KEYS_ERR_MAX] = "";
        int r = 0;

        for (size_t i = 0; i < n && r >= 0; i++)
                r = on_change(&kvs[i], &c);
        pthread_mutex_lock(&k->sync.run);
        if (r >= 0)
                r = apply_changed(k, &c, err);
        if (r >= 0 && revision > atomic_load(&k->sync.applied))
                atomic_store(&k->sync.applied, revision);
        pthread_mutex_unlock(&k->sync.run);
        free(c.ids);
        if (r < 0) {
                /* The stream ends; the caller catches up and follows again. */
                note_health(k, r, err[0] ? err : store_strerror(k->env.store, r));
                return r;
        }
        note_health(k, 0, NULL);
        pthread_mutex_lock(&k->sync.lock);
        k->sync.last_event_usec = now_real_usec();
        pthread_mutex_unlock(&k->sync.lock);
        if (c.access && f->on_access)
                f->on_access(f->userdata);
        return 0;
}

static _Atomic bool quiet_told;

/* Why a watch ended, for status and the log. */
static void watch_end_text(int r, uint64_t applied, char *buf, size_t size)
{
        switch (r) {
        case -ETIMEDOUT:
                snprintf(buf, size, "no event or progress notification for %u s",
                         store_etcd_follow_idle_ms / 1000);
                break;
        case -ERANGE:
                snprintf(buf, size, "history after revision %" PRIu64 " compacted", applied);
                break;
        case -EAGAIN:
                snprintf(buf, size, "the etcd member has no leader");
                break;
        case -ECONNRESET:
                snprintf(buf, size, "the etcd member closed the stream");
                break;
        case -EHOSTUNREACH:
                snprintf(buf, size, "no etcd member reachable");
                break;
        default:
                snprintf(buf, size, "%s", strerror(-r));
        }
}

int keys_follow(struct keys *k, int stop_fd, void (*on_access)(void *userdata), void *userdata)
{
        char why[KEYS_ERR_MAX];
        const struct store_ops *ops = store_ops_of(k->env.store);
        struct follow_ctx f = { k, on_access, userdata };
        uint64_t since = atomic_load(&k->sync.applied);
        int r;

        if (!ops->follow)
                return -EOPNOTSUPP;
        pthread_mutex_lock(&k->sync.lock);
        k->sync.watch = SYNC_WATCH_STREAMING;
        k->sync.watch_from = since;
        pthread_mutex_unlock(&k->sync.lock);
        log_debug("store: following changes after revision %" PRIu64, since);

        r = ops->follow(k->env.store, "", since, stop_fd, on_follow, &f);

        if (r < 0)
                watch_end_text(r, atomic_load(&k->sync.applied), why, sizeof(why));
        pthread_mutex_lock(&k->sync.lock);
        k->sync.watch = SYNC_WATCH_BROKEN;
        if (r < 0) {
                k->sync.restarts++;
                snprintf(k->sync.watch_why, sizeof(k->sync.watch_why), "%s", why);
        }
        pthread_mutex_unlock(&k->sync.lock);
        /* Quiet is no failure when etcd sends no progress notifications:
         * say so once, not every few seconds. */
        if (r == -ETIMEDOUT && !atomic_exchange(&quiet_told, true))
                log_notice("store: watch: %s; re-opening it (and so on while etcd is quiet: set "
                           "etcd's progress notification interval below %u s)", why,
                           store_etcd_follow_idle_ms / 1000);
        else if (r == -ETIMEDOUT)
                log_debug("store: watch: %s; re-opening it", why);
        else if (r < 0)
                log_warn("store: watch ended at revision %" PRIu64 ": %s; catching up and re-opening it",
                         atomic_load(&k->sync.applied), why);
        return r;
}

void keys_sync_status(struct keys *k, bool watching, void *into)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "backend", json_object_new_string(store_backend_ops(k->env.store)->name));
        json_object_object_add(o, "applied_revision",
                               json_object_new_int64((int64_t)atomic_load(&k->sync.applied)));
        pthread_mutex_lock(&k->sync.lock);
        json_object_object_add(o, "watch", json_object_new_string(
                !watching ? "off" : k->sync.error || k->sync.watch == SYNC_WATCH_BROKEN ? "failing" :
                k->sync.watch == SYNC_WATCH_STREAMING ? "streaming" : "starting"));
        if (watching) {
                json_object_object_add(o, "watch_from_revision",
                                       json_object_new_int64((int64_t)k->sync.watch_from));
                json_object_object_add(o, "watch_last_event",
                                       json_object_new_int64((int64_t)(k->sync.last_event_usec / 1000000)));
                json_object_object_add(o, "watch_restarts", json_object_new_int64((int64_t)k->sync.restarts));
                if (k->sync.watch == SYNC_WATCH_BROKEN)
                        json_object_object_add(o, "watch_error", json_object_new_string(k->sync.watch_why));
        }
        json_object_object_add(o, "available", json_object_new_boolean(!k->sync.error));
        if (k->sync.error) {
                json_object_object_add(o, "error", json_object_new_string(k->sync.why));
                json_object_object_add(o, "unavailable_since",
                                       json_object_new_int64((int64_t)(k->sync.since_usec / 1000000)));
                json_object_object_add(o, "mode", json_object_new_string(
                        "degraded: encrypt and decrypt from cached keys, changes refused"));
        }
        json_object_object_add(o, "full_reloads", json_object_new_int64((int64_t)k->sync.reloads));
        pthread_mutex_unlock(&k->sync.lock);
        json_object_object_add(into, "store_state", o);
}

uint64_t keys_applied_revision(struct keys *k)
{
        return k ? atomic_load(&k->sync.applied) : 0;
}
