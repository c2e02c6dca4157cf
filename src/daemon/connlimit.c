/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-uid connection limits; see connlimit.h. */
#include <errno.h>
#include <stdio.h>

#include "connlimit.h"

int connlimit_take(struct connlimit *cl, uid_t uid, bool member, unsigned member_share, char *why,
                   size_t why_size)
{
        unsigned share = member ? member_share : CONNLIMIT_NONMEMBER_PER_UID;
        struct connlimit_uid *e = NULL, *free_e = NULL;
        int r = 0;

        pthread_mutex_lock(&cl->lock);
        for (size_t i = 0; i < CONNLIMIT_MAX && !e; i++) {
                if (cl->per_uid[i].n && cl->per_uid[i].uid == uid)
                        e = &cl->per_uid[i];
                else if (!cl->per_uid[i].n && !free_e)
                        free_e = &cl->per_uid[i];
        }
        if (cl->total >= CONNLIMIT_MAX || (!e && !free_e)) {
                snprintf(why, why_size, "dkmd serves %d connections at most, and all are in use",
                         CONNLIMIT_MAX);
                r = -EUSERS;
        } else if (!member && cl->nonmembers >= CONNLIMIT_NONMEMBERS) {
                snprintf(why, why_size, "uid %u is in no dkm group, and such peers hold %d connections "
                         "at most (the rest are kept for members)", (unsigned)uid, CONNLIMIT_NONMEMBERS);
                r = -EUSERS;
        } else if (e && e->n >= share) {
                if (member)
                        snprintf(why, why_size, "uid %u has %u connections open, the most [daemon] "
                                 "max_connections_per_uid allows", (unsigned)uid, e->n);
                else
                        snprintf(why, why_size, "uid %u has %u connections open, the most a uid in no "
                                 "dkm group may hold", (unsigned)uid, e->n);
                r = -EUSERS;
        } else {
                if (!e) {
                        e = free_e;
                        e->uid = uid;
                }
                e->n++;
                cl->total++;
                if (!member)
                        cl->nonmembers++;
        }
        pthread_mutex_unlock(&cl->lock);
        return r;
}

void connlimit_give_back(struct connlimit *cl, uid_t uid, bool member)
{
        pthread_mutex_lock(&cl->lock);
        for (size_t i = 0; i < CONNLIMIT_MAX; i++)
                if (cl->per_uid[i].n && cl->per_uid[i].uid == uid) {
                        cl->per_uid[i].n--;
                        cl->total--;
                        if (!member)
                                cl->nonmembers--;
                        break;
                }
        pthread_mutex_unlock(&cl->lock);
}
