/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Elevated access: reasoned requests by operators, approved by N distinct
 * approvers (never the requester), materialised as a key in a grants keyring
 * whose kernel timeout is the granted duration.  The kernel is the
 * authority: every use reads the grant key, so an expiry, `keyctl revoke`
 * or `keyctl timeout` takes effect on the next request.  Requests and grants
 * are also kept in the store with absolute times, so a restart restores live
 * grants with their remaining time and never revives an ended one.
 */
#pragma once

#include <stdint.h>

#include "keys.h"
#include "shared/audit.h"
#include "shared/config.h"
#include "shared/keyring.h"
#include "store/store.h"

#define GRANT_ERR_MAX 256
#define REASON_MAX 1024
/* config.c refuses an approvals_required above it. */
#define MAX_APPROVERS CONFIG_APPROVALS_MAX

enum grant_scope {
        SCOPE_DECRYPT,
        SCOPE_INSPECT,
        SCOPE_DESTROY, /* a one-shot `key destroy` of one generation */
        SCOPE_PURGE,   /* a one-shot `policy purge` */
        SCOPE_RESHARE, /* a one-shot `recovery reshare`: a new recovery share set */
};

struct grants;

int grants_new(const struct dkm_config *cfg, struct store *store, struct keys *keys,
               struct grants **ret, char *err);
void grants_free(struct grants *g);
keyring_serial_t grants_keyring(struct grants *g);

/* An operator asks.  duration and scope are the caller's text, checked here
 * so that every bad value gets the same message. */
int grants_request(struct grants *g, const struct audit_subject *who, const char *reason,
                   const char *duration, const char *scope, const char *policy,
                   uint32_t generation, uint32_t *ret_id, char *err);
/* An approver approves; *ret_state says "pending (1 of 2)", "granted" or "done"
 * (a reshare of a legacy share set: "done" and a warning). */
int grants_approve(struct grants *g, const struct audit_subject *who, uint32_t id,
                   char *ret_state, size_t state_size, char *err);
int grants_deny(struct grants *g, const struct audit_subject *who, uint32_t id,
                const char *reason, char *err);
int grants_revoke(struct grants *g, const struct audit_subject *who, uint32_t id, char *err);
int grants_list_json(struct grants *g, char **ret, char *err);

/* What a use under a grant needs to say in its audit record. */
struct grant_use {
        uint32_t id;
        char reason[REASON_MAX + 1];
        char approvers[MAX_APPROVERS * 12];
};

/* Checks the kernel's grant key of who's live grant covering scope on policy
 * (NULL: on any policy, for a caller whose policy is not known yet).
 * -EPERM with err "no live grant ...", -EKEYEXPIRED "grant N expired",
 * -EKEYREVOKED "grant N revoked". */
int grants_check(struct grants *g, const struct audit_subject *who, enum grant_scope scope,
                 const char *policy, struct grant_use *ret, char *err);

/* Periodic: expires pending requests, notices grants ended or changed with
 * keyctl, and audits what it finds. */
void grants_maintain(struct grants *g);
