/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may hold how many connections to dkmd.  Anyone on the host may
 * connect (the socket is 0666), and a peer in no dkm group can only be
 * refused: such peers together hold at most CONNLIMIT_NONMEMBERS, each uid at
 * most CONNLIMIT_NONMEMBER_PER_UID, so that the rest is a reserve that only
 * members use; a member uid holds at most the share it is given ([daemon]
 * max_connections_per_uid), so that one service cannot crowd out another.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CONNLIMIT_MAX 512
#define CONNLIMIT_NONMEMBERS (CONNLIMIT_MAX / 8)
#define CONNLIMIT_NONMEMBER_PER_UID 4

struct connlimit {
        pthread_mutex_t lock;
        unsigned total, nonmembers;
        struct connlimit_uid {
                uid_t uid;
                unsigned n; /* 0: a free entry */
        } per_uid[CONNLIMIT_MAX];
};

#define CONNLIMIT_INIT { .lock = PTHREAD_MUTEX_INITIALIZER }

/* Takes a connection for uid (member: in some dkm group, with member_share
 * connections at most).  -EUSERS with why saying which limit, and which
 * setting where one sets it. */
int connlimit_take(struct connlimit *cl, uid_t uid, bool member, unsigned member_share, char *why,
                   size_t why_size);
/* Gives back one that connlimit_take gave. */
void connlimit_give_back(struct connlimit *cl, uid_t uid, bool member);
