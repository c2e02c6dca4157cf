/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one-shot of a reshare request (`dkmctl recovery reshare`): on its
 * last approval a new recovery share set replaces the store's, its shares
 * encrypted to the custodians (recovery.h).  Approved like every request,
 * by the same rules (grants.c); this file only carries it out and audits
 * it, as CRYPTO_KEY_USER like the other recovery operations.
 */
#include <stdio.h>

#include "grants-internal.h"
#include "log.h"
#include "recovery.h"
#include "shared/secret.h"
#include "shared/util.h"

#define RESHARE_ERR_MAX 1024

static void hexid(const uint8_t *b, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", b[i]);
}

int grant_reshare_check(struct grants *g, char *err)
{
        const char *dir = g->cfg->recovery_custodians;
        struct recovery_custodians *c = NULL;
        char why[RESHARE_ERR_MAX];
        int r;

        /* Without custodians every share would reach the operator who
         * carries them out of the out_dir: one person with all of them. */
        if (!dir) {
                grants_seterr(err, "recovery reshare needs [recovery] custodians= (a directory of one "
                              "certificate per custodian): plain shares would all reach one operator");
                return -EINVAL;
        }
        r = recovery_custodians_load(dir, CFG(g->cfg, recovery_shares), &c, why, sizeof(why));
        recovery_custodians_free(c);
        if (r < 0) {
                grants_seterr(err, "%s", why);
                return r;
        }
        /* A set to replace: asked now, so that approvers are not asked
         * for what would fail. */
        {
                struct store_kv kv = { 0 };

                r = store_ops_of(g->store)->get(g->store, RECOVERY_RECORD_KEY, &kv);
                store_kv_clear(&kv);
        }
        if (r == -ENOENT) {
                grants_seterr(err, "this installation has no recovery share set to replace (dkmd --init "
                              "--recovery-dir makes the first)");
                return r;
        }
        if (r < 0) {
                grants_seterr(err, "cannot read the store's recovery record: %s", store_strerror(g->store, r));
                return r;
        }
        return 0;
}

int grant_reshare_run(struct grants *g, const struct audit_subject *who, const struct request *req, char *note,
                      size_t note_size, char *err)
{
        _cleanup_secret_ uint8_t *master = secret_alloc(ENGINE_KEY_SIZE);
        _cleanup_free_ char *root = NULL, *awhy = NULL;
        struct recovery_custodians *c = NULL;
        struct recovery_record old, neu;
        char why[RESHARE_ERR_MAX] = "", id[2 * RECOVERY_INSTALL_ID_SIZE + 1] = "?",
             oset[2 * RECOVERY_SET_ID_SIZE + 1] = "?", nset[2 * RECOVERY_SET_ID_SIZE + 1] = "?";
        char appr[MAX_APPROVERS * 12];
        size_t n = 0;
        bool legacy = false;
        int r, a;

        if (!master)
                return -ENOMEM;
        grant_approvers_text(req, appr, sizeof(appr));
        if (g->cfg->recovery_out_dir)
                root = strdup(g->cfg->recovery_out_dir);
        else if (asprintf(&root, "%s/recovery-out", g->cfg->state_dir) < 0)
                root = NULL;
        if (!root)
                return -ENOMEM;
        if (!g->cfg->recovery_custodians) {
                snprintf(why, sizeof(why), "no [recovery] custodians= configured: plain shares would all "
                         "reach one operator");
                r = -EINVAL;
        } else
                r = recovery_custodians_load(g->cfg->recovery_custodians, CFG(g->cfg, recovery_shares), &c,
                                             why, sizeof(why));
        if (r >= 0) {
                r = keyring_read(keys_master_key(g->keys), master, ENGINE_KEY_SIZE, &n);
                if (r >= 0 && n != ENGINE_KEY_SIZE)
                        r = -EBADMSG;
                if (r < 0)
                        snprintf(why, sizeof(why), "cannot read the master key from the keyring: %s",
                                 strerror(-r));
        }
        if (r >= 0)
                r = recovery_reshare(g->store, master, CFG(g->cfg, recovery_shares),
                                     CFG(g->cfg, recovery_threshold), c, root, CFG(g->cfg, operators_gid), &old,
                                     &neu, why, sizeof(why));
        recovery_custodians_free(c);
        if (r < 0) {
                awhy = audit_value(why);
                a = audit_record(AUDIT_KIND_KEY, "recovery-reshare", who, false,
                                 "request=%u approvers=%s error=%s reason=%s", req->id, appr,
                                 audit_errno_name(r), awhy ? awhy : "?");
                if (a < 0)
                        log_err("audit: the record of a failed reshare could not be written: %s", strerror(-a));
                log_err("recovery reshare (request %u) failed: %s", req->id, why);
                grants_seterr(err, "recovery reshare failed: %s", why);
                return r;
        }
        hexid(neu.install_id, sizeof(neu.install_id), id);
        hexid(old.set_id, sizeof(old.set_id), oset);
        hexid(neu.set_id, sizeof(neu.set_id), nset);
        legacy = old.version == RECOVERY_RECORD_LEGACY;
        a = audit_record(AUDIT_KIND_KEY, "recovery-reshare", who, true,
                         "request=%u installation=%s old_set=%s new_set=%s threshold=%u share_count=%u "
                         "approvers=%s old_shares_valid=%s",
                         req->id, id, oset, nset, neu.threshold, neu.shares, appr,
                         legacy ? "until-master-key-rotation" : "no");
        /* (No field name may end in "res", as "shares" does: ausearch
         * would read it as the result.) */
        if (a < 0)
                log_err("audit: the record of a completed reshare could not be written: %s", strerror(-a));
        log_notice("recovery reshare (request %u): installation %s, share set %s replaced by %s (%u of %u), "
                   "shares encrypted to the custodians in %s/%s", req->id, id, oset, nset, neu.threshold,
                   neu.shares, root, nset);
        if (legacy) {
                log_warn("recovery reshare (request %u): the old set %s was of an older dkm and split the "
                         "master key itself: its shares still rebuild the master key until the master key "
                         "is rotated", req->id, oset);
                snprintf(note, note_size, "WARNING: the old share set %s split the master key itself (made by "
                         "an older dkm): its shares still rebuild the master key until the master key is "
                         "rotated", oset);
        }
        return 0;
}
