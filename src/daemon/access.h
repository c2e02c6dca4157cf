/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may do what.  Decided from the peer's credentials only (SO_PEERCRED,
 * SO_PEERGROUPS): uid 0 has no implicit right, since root administers dkm
 * but is not a member of the security group; it reads the non-secret part
 * of status, as a reviewer does, to find the grants keyring.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "shared/audit.h"
#include "shared/config.h"

#define PEER_MAX_GROUPS 64

struct peer {
        pid_t pid;
        uid_t uid;
        gid_t gid;
        gid_t groups[PEER_MAX_GROUPS];
        size_t n_groups;
        /* Taken once when the peer connected (server.c), so that records
         * name the process that connected even after it exits or its pid is
         * reused, and routine requests read nothing from /proc. */
        struct audit_subject subj;
};

enum role {
        ROLE_USER = 1 << 0,     /* encrypt, decrypt, rewrap */
        ROLE_OPERATOR = 1 << 1, /* key administration */
        ROLE_APPROVER = 1 << 2,
        /* [groups] reviewers, and root: the non-secret part of status (the
         * grants keyring, for keyctl), nothing else. */
        ROLE_REVIEWER = 1 << 3,
};

/* Bitmask of roles the peer holds under config c. */
unsigned access_roles(const struct dkm_config *c, const struct peer *p);

bool peer_in_group(const struct peer *p, gid_t gid);

/* 0 if a request of wire type `type` is allowed for a peer with `roles`;
 * otherwise -EPERM and *ret_reason says which group is missing. */
int access_check(unsigned roles, unsigned type, const char **ret_reason);
