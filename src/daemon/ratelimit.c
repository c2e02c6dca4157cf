/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-uid budgets for journal lines and refusal records; see ratelimit.h. */
#include <string.h>

#include "ratelimit.h"

/* A report taken out of the table, made after the lock is dropped: it
 * writes to the journal or the audit trail, which may be slow. */
struct pending {
        uid_t uid;
        unsigned suppressed;
        struct audit_subject last;
};

static void take(struct ratelimit_slot *s, struct pending *p)
{
        p->uid = s->uid;
        p->suppressed = s->suppressed;
        p->last = s->last;
        s->suppressed = 0;
}

static struct ratelimit_slot *slot_of(struct ratelimit *rl, uid_t uid, uint64_t now,
                                      struct pending *evicted)
{
        struct ratelimit_slot *free_slot = NULL, *oldest = NULL;

        for (size_t i = 0; i < RATELIMIT_UIDS; i++) {
                struct ratelimit_slot *s = &rl->slots[i];

                if (s->used && s->uid == uid)
                        return s;
                if (!s->used && !free_slot)
                        free_slot = s;
                if (s->used && (!oldest || s->start < oldest->start))
                        oldest = s;
        }
        if (!free_slot) {
                free_slot = oldest;
                if (oldest->suppressed)
                        take(oldest, evicted);
        }
        *free_slot = (struct ratelimit_slot){ .used = true, .uid = uid, .start = now };
        free_slot->last.uid = uid;
        return free_slot;
}

bool ratelimit_allow(struct ratelimit *rl, uid_t uid, uint64_t now, const struct audit_subject *subj,
                     ratelimit_report_fn report, void *userdata)
{
        struct pending p[2] = { 0 };
        struct ratelimit_slot *s;
        bool ok;

        pthread_mutex_lock(&rl->lock);
        s = slot_of(rl, uid, now, &p[0]);
        if (now - s->start >= RATELIMIT_INTERVAL_USEC) {
                if (s->suppressed)
                        take(s, &p[1]);
                s->start = now;
                s->n = 0;
        }
        ok = s->n < RATELIMIT_BURST;
        if (ok)
                s->n++;
        else {
                s->suppressed++;
                if (subj)
                        s->last = *subj;
        }
        pthread_mutex_unlock(&rl->lock);
        for (size_t i = 0; i < 2; i++)
                if (p[i].suppressed)
                        report(p[i].uid, p[i].suppressed, &p[i].last, userdata);
        return ok;
}

void ratelimit_flush(struct ratelimit *rl, uint64_t now, ratelimit_report_fn report, void *userdata)
{
        struct pending p[RATELIMIT_UIDS];
        size_t n = 0;

        pthread_mutex_lock(&rl->lock);
        for (size_t i = 0; i < RATELIMIT_UIDS; i++) {
                struct ratelimit_slot *s = &rl->slots[i];

                if (!s->used || now - s->start < RATELIMIT_INTERVAL_USEC)
                        continue;
                if (s->suppressed)
                        take(s, &p[n++]);
                s->used = false;
        }
        pthread_mutex_unlock(&rl->lock);
        for (size_t i = 0; i < n; i++)
                report(p[i].uid, p[i].suppressed, &p[i].last, userdata);
}
