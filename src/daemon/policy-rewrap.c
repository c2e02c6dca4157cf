/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * After a rekey with a new policy key (policies.c), the generations are
 * re-wrapped under it in as many transactions as the store carries; until
 * then the policy record keeps the previous policy key, wrapped under the
 * new one, and each generation names the version of the key that wraps it
 * (gen_wrapping_key() in keys.c), so every generation unwraps at every
 * step.  Any node finishes the work: the one that rekeyed, or later the
 * maintenance pass of any node.
 */
#include <inttypes.h>
#include <stdio.h>

#include "keys-internal.h"
#include "log.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "wrap.h"

/* Compare-and-swap losses to other nodes tolerated before giving up (the
 * next maintenance pass goes on). */
#define REWRAP_STALE_MAX 32

/* One step (write lock held): re-wraps up to one transaction's worth of
 * the generations still under the previous policy key, each guarded by its
 * revision; when none is left, drops the previous key from the policy
 * record.  0: a step was made; 1: done; or an error (-ESTALE: another node
 * changed one of them, read the policy again). */
static int finish_step_locked(struct keys *k, struct policy *p, char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(3 * ENGINE_KEY_SIZE);
        size_t max = store_ops_of(k->env.store)->max_txn_ops, n = 0;
        struct store_txn txn = { 0 };
        struct generation **to_rewrap = NULL;
        struct gen_record *recs = NULL;
        uint64_t rev;
        int r;

        if (!buf)
                return -ENOMEM;
        /* buf: the current policy key, then the previous one. */
        r = read_cached(atomic_load(&p->serial), buf);
        if (r < 0)
                r = p->rec.n_customer_keys ? policy_key_customer(k, p, buf, true, err) :
                                             policy_key(k, p, buf, err);
        if (r < 0)
                return r;
        r = key_unwrap(buf, WRAP_PREVIOUS_POLICY_KEY, p->id, p->rec.previous_version, p->rec.previous_key,
                       buf + ENGINE_KEY_SIZE);
        if (r < 0) {
                keys_seterr(err, "policy '%s': the previous policy key does not unwrap (%s)", p->rec.name,
                            strerror(-r));
                return r;
        }
        to_rewrap = calloc(max, sizeof(*to_rewrap));
        recs = calloc(max, sizeof(*recs));
        if (!to_rewrap || !recs) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < p->n_gens && n < max; i++) {
                struct generation *g = p->gens[i];
                char key[160], *json;

                if (g->rec.state == GEN_DESTROYED || g->rec.key_version == p->rec.key_version)
                        continue;
                if (g->rec.key_version != p->rec.previous_version) {
                        keys_seterr(err, "policy '%s' generation %u: wrapped under policy key version %u, "
                                    "which the policy no longer has", p->rec.name, g->rec.generation,
                                    g->rec.key_version);
                        r = -EBADMSG;
                        goto out;
                }
                recs[n] = g->rec;
                recs[n].key_version = p->rec.key_version;
                r = key_unwrap(buf + ENGINE_KEY_SIZE, WRAP_GENERATION_KEY, p->id, g->rec.generation,
                               g->rec.wrapped_key, buf + 2 * ENGINE_KEY_SIZE);
                if (r >= 0)
                        r = key_wrap(buf, WRAP_GENERATION_KEY, p->id, g->rec.generation,
                                     buf + 2 * ENGINE_KEY_SIZE, recs[n].wrapped_key);
                secure_wipe(buf + 2 * ENGINE_KEY_SIZE, ENGINE_KEY_SIZE);
                if (r >= 0)
                        r = gen_record_encode(&recs[n], &json);
                key_generation(key, sizeof(key), p->rec.id, g->rec.generation);
                if (r >= 0)
                        r = store_txn_put_owned(&txn, key, json, strlen(json));
                if (r >= 0)
                        r = store_txn_compare(&txn, key, g->mod_revision);
                if (r < 0) {
                        keys_seterr(err, "cannot re-wrap generation %u: %s", g->rec.generation, strerror(-r));
                        goto out;
                }
                to_rewrap[n++] = g;
        }
        if (n == 0) {
                /* Every generation is under the new key: the old one goes. */
                struct policy_record *rec = calloc(1, sizeof(*rec));
                char key[160], *json;

                if (!rec) {
                        r = -ENOMEM;
                        goto out;
                }
                *rec = p->rec;
                rec->has_previous = false;
                rec->previous_version = 0;
                secure_wipe(rec->previous_key, sizeof(rec->previous_key));
                r = policy_record_encode(rec, &json);
                key_policy(key, sizeof(key), p->rec.id);
                if (r >= 0)
                        r = store_txn_put_owned(&txn, key, json, strlen(json));
                if (r >= 0)
                        r = store_txn_compare(&txn, key, p->mod_revision);
                if (r >= 0)
                        r = store_txn_commit(k->env.store, &txn, &rev);
                if (r >= 0) {
                        secure_wipe(&p->rec, sizeof(p->rec));
                        p->rec = *rec;
                        p->mod_revision = rev;
                        r = 1;
                }
                secure_wipe(rec, sizeof(*rec));
                free(rec);
                goto out;
        }
        r = store_txn_commit(k->env.store, &txn, &rev);
        if (r >= 0)
                for (size_t i = 0; i < n; i++) {
                        to_rewrap[i]->rec = recs[i];
                        to_rewrap[i]->mod_revision = rev;
                }
out:
        if (r < 0 && r != -ESTALE && !err[0])
                keys_seterr(err, "cannot store re-wrapped generations: %s",
                            store_strerror(k->env.store, r));
        else if (r < 0 && !err[0])
                keys_seterr(err, "%s", store_strerror(k->env.store, r));
        store_txn_free(&txn);
        free(to_rewrap);
        if (recs)
                secure_wipe(recs, max * sizeof(*recs));
        free(recs);
        return r;
}

int rekey_finish(struct keys *k, const uint8_t id[16], char *err)
{
        uint64_t t0 = now_mono_usec();
        unsigned steps = 0, stale = 0;

        for (;;) {
                struct policy *p;
                char name[65];
                int r;

                if (steps > 0 || stale > 0) {
                        /* The generations as the store has them now. */
                        policy_refresh(k, id, err);
                        err[0] = 0;
                }
                pthread_rwlock_wrlock(&k->lock);
                p = find_policy_id(k, id);
                if (!p || p->rec.purged || !p->rec.has_previous) {
                        pthread_rwlock_unlock(&k->lock);
                        return 0;
                }
                snprintf(name, sizeof(name), "%s", p->rec.name);
                r = finish_step_locked(k, p, err);
                pthread_rwlock_unlock(&k->lock);
                if (r == 1) {
                        log_notice("policy '%s': every generation re-wrapped under the new policy key "
                                   "(%u transactions, %" PRIu64 " ms)", name, steps + 1,
                                   (now_mono_usec() - t0) / 1000);
                        return 0;
                }
                if (r == -ESTALE && ++stale <= REWRAP_STALE_MAX)
                        continue;
                if (r < 0)
                        return r;
                steps++;
        }
}
