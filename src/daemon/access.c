/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "access.h"
#include "shared/wire.h"

bool peer_in_group(const struct peer *p, gid_t gid)
{
        if (gid == (gid_t)-1)
                return false;
        if (p->gid == gid)
                return true;
        for (size_t i = 0; i < p->n_groups; i++)
                if (p->groups[i] == gid)
                        return true;
        return false;
}

unsigned access_roles(const struct dkm_config *c, const struct peer *p)
{
        unsigned roles = 0;

        if (peer_in_group(p, CFG(c, users_gid)))
                roles |= ROLE_USER;
        if (peer_in_group(p, CFG(c, operators_gid)))
                roles |= ROLE_OPERATOR;
        if (peer_in_group(p, CFG(c, approvers_gid)))
                roles |= ROLE_APPROVER;
        if (p->uid == 0 || peer_in_group(p, CFG(c, reviewers_gid)))
                roles |= ROLE_REVIEWER;
        return roles;
}

int access_check(unsigned roles, unsigned type, const char **ret_reason)
{
        unsigned need;
        const char *reason;

        switch (type) {
        case WIRE_ENCRYPT:
        case WIRE_DECRYPT:
        case WIRE_REWRAP:
        case WIRE_DATAKEY:
        case WIRE_BATCH:
        case WIRE_ENCRYPT_FD:
        case WIRE_DECRYPT_FD:
                need = ROLE_USER;
                reason = "not in the users group";
                break;
        case WIRE_INSPECT:
                /* Metadata only: the service accounts and their operators. */
                need = ROLE_USER | ROLE_OPERATOR;
                reason = "not in the users or operators group";
                break;
        case WIRE_KEY_LIST:
        case WIRE_KEY_ROTATE:
        case WIRE_KEY_RETIRE:
                need = ROLE_OPERATOR;
                reason = "not in the operators group";
                break;
        case WIRE_KEY_DESTROY:
        case WIRE_ACCESS_REQUEST:
        case WIRE_POLICY_CREATE:
        case WIRE_POLICY_LIST:
        case WIRE_POLICY_SHOW:
        case WIRE_POLICY_ASSIGN:
        case WIRE_POLICY_REKEY:
        case WIRE_POLICY_PURGE:
        case WIRE_BACKUP:
        case WIRE_STORE_VERIFY:
        case WIRE_RECOVERY_RESHARE:
                need = ROLE_OPERATOR;
                reason = "not in the operators group";
                break;
        case WIRE_ACCESS_APPROVE:
        case WIRE_ACCESS_DENY:
                need = ROLE_APPROVER;
                reason = "not in the approvers group";
                break;
        case WIRE_ACCESS_LIST:
        case WIRE_ACCESS_REVOKE:
                need = ROLE_OPERATOR | ROLE_APPROVER;
                reason = "not in the operators or approvers group";
                break;
        case WIRE_STATUS:
                need = ROLE_USER | ROLE_OPERATOR | ROLE_APPROVER | ROLE_REVIEWER;
                reason = "not in any dkm group";
                break;
        default:
                *ret_reason = "unknown request";
                return -EOPNOTSUPP;
        }
        if (roles & need)
                return 0;
        *ret_reason = reason;
        return -EPERM;
}
