/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Generations: rollover, retirement, destruction, listing, upkeep. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <unistd.h>

#include "keys-internal.h"
#include "log.h"
#include "shared/format.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "wrap.h"


/* --- audit of the outcome ------------------------------------------------ */

/* A life-cycle change is audited once the store has answered, so that its
 * record says what the caller is told (res=failed error=ENOSPC on a full
 * disk, not res=success).  fail_closed refuses it beforehand when no record
 * can be written now. */
int keys_audit_ready(struct keys *k, char *err)
{
        if (!CFG(k->cfg, audit_fail_closed) || audit_can_write() == 0)
                return 0;
        keys_seterr(err, "refused: the audit record could not be written ([audit] fail_closed=yes)");
        return -EIO;
}

/* audit_outcome()'s answer a for a change with outcome r: a change that
 * went through but whose record was lost is said loudly. */
void keys_audit_check(int a, int r, const char *op)
{
        if (a < 0 && r >= 0)
                log_err("audit: the record of a completed %s could not be written: %s", op, strerror(-a));
}

/* --- rollover ------------------------------------------------------------ */

/* Called with the write lock held. */
int rotate_locked(struct keys *k, struct policy *p, const struct audit_subject *subj,
                         const char *why, char *err)
{
        _cleanup_free_ char *pjson = NULL, *ojson = NULL, *njson = NULL;
        struct generation *old = find_gen(p, p->rec.active);
        struct policy_record prec = p->rec;
        struct gen_record orec = old->rec, nrec;
        uint32_t n = (uint32_t)p->n_gens + 1;
        char kp[128], ko[160], kn[160];
        uint64_t rev;
        int r;

        key_generation(kn, sizeof(kn), p->rec.id, n);
        if (store_auth_lost(k->env.store, kn)) {
                /* Its ciphertexts are still about: a new key under the same
                 * number would make them fail as forgeries, not as lost. */
                keys_seterr(err, "cannot issue generation %u of policy '%s': this node saw a generation %u "
                            "of it in a newer store, given up with --accept-older-store; a generation "
                            "number never names two keys: restore the store that holds it", n, p->rec.name, n);
                return -EEXIST;
        }
        r = new_wrapped_gen(k, p, n, &nrec, err);
        if (r < 0)
                return r;
        orec.state = GEN_ARCHIVED;
        orec.uses_reserved = atomic_load(&old->uses) > orec.uses_reserved ?
                                     atomic_load(&old->uses) : orec.uses_reserved;
        /* Takes past the limit were refused, not spent. */
        if (orec.uses_reserved > CFG(k->cfg, max_uses))
                orec.uses_reserved = CFG(k->cfg, max_uses);
        prec.active = prec.n_generations = n;
        r = policy_record_encode(&prec, &pjson);
        if (r >= 0)
                r = gen_record_encode(&orec, &ojson);
        if (r >= 0)
                r = gen_record_encode(&nrec, &njson);
        if (r < 0)
                return r;
        key_policy(kp, sizeof(kp), p->rec.id);
        key_generation(ko, sizeof(ko), p->rec.id, old->rec.generation);
        key_generation(kn, sizeof(kn), p->rec.id, n);

        r = keys_audit_ready(k, err);
        if (r < 0)
                return r;
        {
                const struct store_cmp cmps[] = {
                        { kp, p->mod_revision }, { ko, old->mod_revision }, { kn, 0 } };
                const struct store_op ops[] = {
                        { STORE_PUT, kp, pjson, strlen(pjson) },
                        { STORE_PUT, ko, ojson, strlen(ojson) },
                        { STORE_PUT, kn, njson, strlen(njson) },
                };

                r = store_ops_of(k->env.store)->txn(k->env.store, cmps, ARRAY_SIZE(cmps), ops,
                                                    ARRAY_SIZE(ops), &rev);
        }
        /* A lost compare-and-swap is retried: the retry's record tells. */
        if (r != -ESTALE)
                keys_audit_check(audit_outcome(AUDIT_KIND_KEY, "generation-rotate", subj, r,
                                               "policy=%s generation=%u previous=%u reason=%s",
                                               p->rec.name, n, old->rec.generation, why),
                                 r, "generation-rotate");
        if (r < 0) {
                keys_seterr(err, "cannot store generation %u: %s", n,
                       r == -ESTALE ? "the policy changed concurrently, retry" :
                       store_strerror(k->env.store, r));
                return r;
        }
        r = add_gen(p, &nrec, rev);
        if (r < 0)
                return r;
        old->rec = orec;
        old->mod_revision = rev;
        p->rec = prec;
        p->mod_revision = rev;
        p->active_from_store = false;
        log_notice("policy '%s': generation %u active, %u archived (%s)", p->rec.name, n,
                   old->rec.generation, why);
        return 0;
}


/* Nodes of a fleet rotate under compare-and-swap: the one that loses reads
 * the policy again.  When the active generation moved meanwhile, another
 * node's rotation happened concurrently with this one and serves it too, so
 * concurrent rotations make one new generation, not one each.  A request that
 * comes less than ROTATE_COALESCE_USEC after another node activated the
 * active generation counts as concurrent with it as well (the nodes' watches
 * may already have applied it). */
#define ROTATE_COALESCE_USEC 1000000

int keys_rotate(struct keys *k, const char *policy, const struct audit_subject *subj,
                uint32_t *ret_generation, char *err)
{
        const char *name = policy ? policy : DEFAULT_POLICY;
        struct policy *p;
        uint32_t first = 0;
        uint8_t id[16];
        int r = -ESTALE;

        for (int attempt = 0; attempt < 8 && r == -ESTALE; attempt++) {
                if (attempt > 0) {
                        err[0] = 0;
                        policy_refresh(k, id, err);
                        err[0] = 0;
                }
                pthread_rwlock_wrlock(&k->lock);
                p = find_policy(k, name);
                if (!p) {
                        keys_seterr(err, "no such policy '%s'", name);
                        r = -ENOENT;
                } else if ((attempt > 0 && p->rec.active != first) ||
                           (attempt == 0 && p->active_from_store &&
                            now_real_usec() - find_gen(p, p->rec.active)->rec.activated_usec <
                                    ROTATE_COALESCE_USEC)) {
                        log_notice("policy '%s': rotation met generation %u made concurrently "
                                   "by another node", p->rec.name, p->rec.active);
                        *ret_generation = p->rec.active;
                        r = 0;
                } else {
                        first = p->rec.active;
                        memcpy(id, p->id, 16);
                        r = rotate_locked(k, p, subj, "on-demand", err);
                        if (r >= 0)
                                *ret_generation = p->rec.active;
                }
                pthread_rwlock_unlock(&k->lock);
        }
        if (r == -ESTALE)
                audit_outcome(AUDIT_KIND_KEY, "generation-rotate", subj, r, "policy=%s", name);
        return r;
}


/* Runs a change of one policy, reading the policy again from the store and
 * retrying when another node changed it first (-ESTALE). */
static int retry_stale(struct keys *k, const char *policy,
                       int (*fn)(struct keys *k, const char *policy, uint32_t generation,
                                 const struct audit_subject *subj, uint32_t request_id, char *err),
                       uint32_t generation, const struct audit_subject *subj, uint32_t request_id,
                       char *err)
{
        int r = fn(k, policy, generation, subj, request_id, err);

        for (int attempt = 0; attempt < 4 && r == -ESTALE; attempt++) {
                struct policy *p;
                uint8_t id[16];
                bool found;

                pthread_rwlock_rdlock(&k->lock);
                p = find_policy(k, policy ? policy : DEFAULT_POLICY);
                found = p != NULL;
                if (p)
                        memcpy(id, p->id, 16);
                pthread_rwlock_unlock(&k->lock);
                if (!found)
                        break;
                policy_refresh(k, id, err);
                err[0] = 0;
                r = fn(k, policy, generation, subj, request_id, err);
        }
        return r;
}


/* --- administration ----------------------------------------------------- */

/* The generation that a retire or destroy acts on: it must exist and must
 * not be the active one.  With the lock held. */
static int find_inactive_gen(struct keys *k, const char *policy, uint32_t generation,
                             struct policy **ret_p, struct generation **ret_g, char *err)
{
        struct policy *p = find_policy(k, policy ? policy : DEFAULT_POLICY);
        struct generation *g = p ? find_gen(p, generation) : NULL;

        if (!p) {
                keys_seterr(err, "no such policy '%s'", policy);
                return -ENOENT;
        }
        if (!g) {
                keys_seterr(err, "policy '%s' has no generation %u", p->rec.name, generation);
                return -ENOENT;
        }
        if (g->rec.state == GEN_ACTIVE) {
                keys_seterr(err, "generation %u is active: rotate first", generation);
                return -EBUSY;
        }
        *ret_p = p;
        *ret_g = g;
        return 0;
}

/* Stores rec (json, its encoding) as g's record, if g's record is still the
 * one this node has, and takes it in: g's cached key leaves the keyring.
 * what names the change in err ("cannot store the <what>").  With the
 * write lock held. */
static int gen_record_replace(struct keys *k, struct policy *p, struct generation *g,
                              const struct gen_record *rec, const char *json, const char *what, char *err)
{
        char kg[160];
        const struct store_cmp cmp = { kg, g->mod_revision };
        const struct store_op op = { STORE_PUT, kg, json, strlen(json) };
        uint64_t rev;
        int r;

        key_generation(kg, sizeof(kg), p->rec.id, rec->generation);
        r = store_ops_of(k->env.store)->txn(k->env.store, &cmp, 1, &op, 1, &rev);
        if (r < 0) {
                keys_seterr(err, "cannot store the %s: %s", what, store_strerror(k->env.store, r));
                return r;
        }
        gen_drop_cached(g);
        g->rec = *rec;
        g->mod_revision = rev;
        return 0;
}

static int retire_once(struct keys *k, const char *policy, uint32_t generation,
                       const struct audit_subject *subj, uint32_t request_id, char *err)
{
        _cleanup_free_ char *json = NULL;
        struct policy *p;
        struct generation *g;
        struct gen_record rec;
        int r;

        (void)request_id;
        pthread_rwlock_wrlock(&k->lock);
        r = find_inactive_gen(k, policy, generation, &p, &g, err);
        if (r == 0 && (g->rec.state == GEN_RETIRED || g->rec.state == GEN_DESTROYED)) {
                keys_seterr(err, "generation %u is already %s", generation, gen_state_to_string(g->rec.state));
                r = -EALREADY;
        }
        if (r == 0) {
                rec = g->rec;
                rec.state = GEN_RETIRED;
                r = gen_record_encode(&rec, &json);
                if (r >= 0)
                        r = keys_audit_ready(k, err);
                if (r >= 0) {
                        r = gen_record_replace(k, p, g, &rec, json, "retirement", err);
                        if (r != -ESTALE)
                                keys_audit_check(audit_outcome(AUDIT_KIND_KEY, "generation-retire",
                                                               subj, r, "policy=%s generation=%u",
                                                               p->rec.name, generation),
                                                 r, "generation-retire");
                }
                if (r >= 0)
                        log_notice("policy '%s': generation %u retired", p->rec.name, generation);
        }
        pthread_rwlock_unlock(&k->lock);
        return r;
}


/* With the lock held. */
static int destroyable(struct keys *k, const char *policy, uint32_t generation,
                       struct policy **ret_p, struct generation **ret_g, char *err)
{
        struct policy *p;
        struct generation *g;
        int r;

        r = find_inactive_gen(k, policy, generation, &p, &g, err);
        if (r < 0)
                return r;
        if (g->rec.state == GEN_DESTROYED) {
                keys_seterr(err, "generation %u is already destroyed", generation);
                return -EALREADY;
        }
        *ret_p = p;
        *ret_g = g;
        return 0;
}


int keys_check_destroyable(struct keys *k, const char *policy, uint32_t generation, char *err)
{
        struct policy *p;
        struct generation *g;
        int r;

        pthread_rwlock_rdlock(&k->lock);
        r = destroyable(k, policy, generation, &p, &g, err);
        pthread_rwlock_unlock(&k->lock);
        return r;
}


static void shred_note_path(struct keys *k, char *buf, size_t size)
{
        snprintf(buf, size, "%s/shred-pending", k->cfg->state_dir);
}

/* The note itself: an empty file, on disk before the destroy is stored. */
static int shred_note_write(struct keys *k)
{
        char path[4200];
        int fd, dfd, r = 0;

        shred_note_path(k, path, sizeof(path));
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        close(fd);
        dfd = open(k->cfg->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return r < 0 ? r : -errno;
        if (fsync(dfd) < 0 && r == 0)
                r = -errno;
        close(dfd);
        return r;
}

/* With shred_lock held: no destroy under way and nothing left to shred. */
static void shred_note_clear_locked(struct keys *k)
{
        char path[4200];

        if (k->shred_busy > 0 || atomic_load(&k->shred_pending) != 0)
                return;
        shred_note_path(k, path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT)
                log_warn("cannot remove %s: %s", path, strerror(errno));
}

void keys_shred_begin(struct keys *k)
{
        int r;

        pthread_mutex_lock(&k->shred_lock);
        k->shred_busy++;
        r = shred_note_write(k);
        pthread_mutex_unlock(&k->shred_lock);
        if (r < 0)
                log_warn("cannot note the coming shred in %s/shred-pending (%s): should dkmd stop "
                         "before it is done, the next start will not finish it", k->cfg->state_dir,
                         strerror(-r));
}

void keys_shred_abandon(struct keys *k)
{
        pthread_mutex_lock(&k->shred_lock);
        if (k->shred_busy > 0)
                k->shred_busy--;
        shred_note_clear_locked(k);
        pthread_mutex_unlock(&k->shred_lock);
}

void keys_shred(struct keys *k, uint64_t revision, const char *what)
{
        uint64_t cur;
        int r = store_shred(k->env.store, revision);

        audit_outcome(AUDIT_KIND_KEY, "store-shred", NULL, r, "revision=%" PRIu64, revision);
        if (r == 0) {
                log_info("%s: the store has no earlier copy left (history forgotten up to revision %" PRIu64 ")",
                         what, revision);
                keys_shred_abandon(k);
                return;
        }
        cur = atomic_load(&k->shred_pending);
        while (cur < revision && !atomic_compare_exchange_weak(&k->shred_pending, &cur, revision))
                ;
        keys_shred_abandon(k); /* pending now: the note stays */
        log_err("%s: the store may still hold earlier copies of the removed wrapped keys (%s); "
                "retried at each maintenance pass", what, store_strerror(k->env.store, r));
}

void keys_shred_resume(struct keys *k, uint64_t revision)
{
        char path[4200];

        shred_note_path(k, path, sizeof(path));
        if (access(path, F_OK) < 0)
                return;
        log_notice("a destroy or purge was stored before dkmd stopped, but the store may still hold "
                   "earlier copies of what it removed: shredding now");
        pthread_mutex_lock(&k->shred_lock);
        k->shred_busy++;
        pthread_mutex_unlock(&k->shred_lock);
        keys_shred(k, revision, "a shred left undone by a crash");
}

/* A shred that failed before, tried again. */
static void shred_retry(struct keys *k)
{
        uint64_t rev = atomic_load(&k->shred_pending);

        if (rev == 0 || store_shred(k->env.store, rev) < 0)
                return;
        atomic_compare_exchange_strong(&k->shred_pending, &rev, 0);
        pthread_mutex_lock(&k->shred_lock);
        shred_note_clear_locked(k);
        pthread_mutex_unlock(&k->shred_lock);
        audit_outcome(AUDIT_KIND_KEY, "store-shred", NULL, 0, "revision=%" PRIu64, rev);
        log_notice("the store no longer holds earlier copies of destroyed wrapped keys "
                   "(history forgotten up to revision %" PRIu64 ")", rev);
}

static int destroy_once(struct keys *k, const char *policy, uint32_t generation,
                        const struct audit_subject *subj, uint32_t request_id, char *err)
{
        _cleanup_free_ char *json = NULL;
        struct policy *p;
        struct generation *g;
        struct gen_record rec;
        uint64_t rev = 0;
        bool begun = false;
        int r;

        pthread_rwlock_wrlock(&k->lock);
        r = destroyable(k, policy, generation, &p, &g, err);
        if (r < 0)
                goto out;
        rec = g->rec;
        rec.state = GEN_DESTROYED;
        secure_wipe(rec.wrapped_key, sizeof(rec.wrapped_key));
        r = gen_record_encode(&rec, &json);
        if (r < 0)
                goto out;
        r = keys_audit_ready(k, err);
        if (r < 0)
                goto out;
        keys_shred_begin(k);
        begun = true;
        r = gen_record_replace(k, p, g, &rec, json, "destruction", err);
        if (r != -ESTALE)
                keys_audit_check(audit_outcome(AUDIT_KIND_KEY, "generation-destroy", subj, r,
                                               "policy=%s generation=%u request=%u", p->rec.name,
                                               generation, request_id),
                                 r, "generation-destroy");
        if (r < 0)
                goto out;
        rev = g->mod_revision;
        log_notice("policy '%s': generation %u destroyed (request %u)", p->rec.name, generation,
                   request_id);
out:
        pthread_rwlock_unlock(&k->lock);
        if (rev)
                keys_shred(k, rev, "generation destroy");
        else if (begun)
                keys_shred_abandon(k);
        return r;
}


int keys_retire(struct keys *k, const char *policy, uint32_t generation,
                const struct audit_subject *subj, char *err)
{
        int r = retry_stale(k, policy, retire_once, generation, subj, 0, err);

        /* Each try that lost to another node went unaudited: the last one. */
        if (r == -ESTALE)
                audit_outcome(AUDIT_KIND_KEY, "generation-retire", subj, r, "policy=%s generation=%u",
                              policy ? policy : DEFAULT_POLICY, generation);
        return r;
}


int keys_destroy(struct keys *k, const char *policy, uint32_t generation,
                 const struct audit_subject *subj, uint32_t request_id, char *err)
{
        int r = retry_stale(k, policy, destroy_once, generation, subj, request_id, err);

        if (r == -ESTALE)
                audit_outcome(AUDIT_KIND_KEY, "generation-destroy", subj, r,
                              "policy=%s generation=%u request=%u", policy ? policy : DEFAULT_POLICY,
                              generation, request_id);
        return r;
}


static json_object *gen_json(const struct generation *g)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "generation", json_object_new_int64(g->rec.generation));
        json_object_object_add(o, "state", json_object_new_string(gen_state_to_string(g->rec.state)));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)(g->rec.created_usec / 1000000)));
        json_object_object_add(o, "activated", json_object_new_int64((int64_t)(g->rec.activated_usec / 1000000)));
        json_object_object_add(o, "uses", json_object_new_int64((int64_t)atomic_load(&g->uses)));
        json_object_object_add(o, "cached", json_object_new_boolean(atomic_load(&g->serial) > 0));
        return o;
}


int keys_list_json(struct keys *k, const char *policy, char **ret, char *err)
{
        json_object *arr = json_object_new_array();
        int r = 0;

        if (!arr)
                return -ENOMEM;
        pthread_rwlock_rdlock(&k->lock);
        for (size_t i = 0; i < k->n_policies; i++) {
                struct policy *p = k->policies[i];

                if (policy && strcmp(policy, p->rec.name) != 0)
                        continue;
                for (size_t j = 0; j < p->n_gens; j++) {
                        json_object *o = gen_json(p->gens[j]);
                        json_object_object_add(o, "policy", json_object_new_string(p->rec.name));
                        json_object_array_add(arr, o);
                }
        }
        if (policy && !find_policy(k, policy)) {
                keys_seterr(err, "no such policy '%s'", policy);
                r = -ENOENT;
        }
        pthread_rwlock_unlock(&k->lock);
        if (r >= 0) {
                *ret = strdup(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
                if (!*ret)
                        r = -ENOMEM;
        }
        json_object_put(arr);
        return r;
}


void keys_status(struct keys *k, void *into)
{
        json_object *o = into, *arr = json_object_new_array();

        pthread_rwlock_rdlock(&k->lock);
        for (size_t i = 0; i < k->n_policies; i++) {
                struct policy *p = k->policies[i];
                json_object *po = json_object_new_object();

                json_object_object_add(po, "name", json_object_new_string(p->rec.name));
                json_object_object_add(po, "id", json_object_new_string(p->rec.id));
                json_object_object_add(po, "state", json_object_new_string(policy_state_name(p)));
                json_object_object_add(po, "active_generation", json_object_new_int64(p->rec.active));
                json_object_object_add(po, "generations", json_object_new_int64((int64_t)p->n_gens));
                /* A fleet: how long this node can encrypt without the store. */
                if (k->standby && !p->rec.purged)
                        json_object_object_add(po, "reserved_uses_left", json_object_new_int64(
                                (int64_t)reserved_uses_left(find_gen(p, p->rec.active))));
                json_object_array_add(arr, po);
        }
        pthread_rwlock_unlock(&k->lock);
        json_object_object_add(o, "policies", arr);
        pthread_mutex_lock(&k->alert_lock);
        json_object_object_add(o, "alert", k->alert[0] ? json_object_new_string(k->alert) : NULL);
        pthread_mutex_unlock(&k->alert_lock);
}


/* Re-unwraps cached keys whose remaining lifetime fell below a third of the
 * cache lifetime, so that they never expire while dkmd can still reach
 * what wraps them; and rolls over generations that reached their age. */
void keys_maintain(struct keys *k)
{
        uint64_t ttl = cache_ttl_sec(k), left = 0;
        uint8_t *buf;
        char err[KEYS_ERR_MAX] = "";
        bool failed = false;

        if (crypto_keybuf(&buf) < 0)
                return;
        pthread_rwlock_rdlock(&k->lock);
        for (size_t i = 0; i < k->n_policies; i++) {
                struct policy *p = k->policies[i];
                bool policy_reloaded = false;
                uint8_t id[16];

                if (p->rec.purged)
                        continue;
                /* A customer may revoke either key at any time: look. */
                policy_verify(k, p);
                for (size_t j = 0; j < p->n_gens; j++) {
                        struct generation *g = p->gens[j];
                        keyring_serial_t s = atomic_load(&g->serial);

                        if (s <= 0 || g->rec.state == GEN_RETIRED || g->rec.state == GEN_DESTROYED)
                                continue;
                        if (keyring_remaining(s, &left) >= 0 && left != 0 && left > ttl / 3)
                                continue;
                        /* A fresh unwrap, the policy key's too (once a pass). */
                        if (!policy_reloaded) {
                                atomic_store(&p->serial, 0);
                                policy_reloaded = true;
                        }
                        if (gen_key_load(k, p, g, buf, err) < 0) {
                                failed = true;
                                raise_alert(k, "cache refresh failed for policy '%s' generation %u "
                                            "(%" PRIu64 " s left before its cached key expires): %s",
                                            p->rec.name, g->rec.generation, left, err);
                                audit_record(AUDIT_KIND_KEY, "cache-refresh", &k->self, false,
                                             "policy=%s generation=%u seconds_left=%" PRIu64,
                                             p->rec.name, g->rec.generation, left);
                        }
                        secure_wipe(buf, KEYBUF_SIZE);
                }
                if (p->rec.has_previous) {
                        /* A rekey with a new policy key was cut short
                         * (here or on another node): finish it. */
                        memcpy(id, p->id, 16);
                        pthread_rwlock_unlock(&k->lock);
                        if (rekey_finish(k, id, err) < 0)
                                log_warn("re-wrapping generations under a new policy key: %s", err);
                        err[0] = 0;
                        pthread_rwlock_rdlock(&k->lock);
                        continue; /* the list may have changed: the next pass looks again */
                }
                if (now_real_usec() - find_gen(p, p->rec.active)->rec.activated_usec >=
                    CFG(k->cfg, max_age_usec)) {
                        memcpy(id, p->id, 16);
                        pthread_rwlock_unlock(&k->lock);
                        if (rollover_if_due(k, id, err) < 0)
                                log_err("automatic rollover of policy '%s' failed: %s", p->rec.name, err);
                        pthread_rwlock_rdlock(&k->lock);
                }
        }
        pthread_rwlock_unlock(&k->lock);
        shred_retry(k);
        if (!failed)
                clear_alert(k);
}
