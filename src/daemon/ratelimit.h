/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Per-uid budgets for what a peer can make dkmd write: journal lines about
 * its requests, audit records of its refusals.  Each uid gets at most
 * RATELIMIT_BURST in each RATELIMIT_INTERVAL_USEC; the rest are counted, and
 * once the interval has ended the count is reported (with the last subject
 * that was left out), so the trail says how much it does not show.  The
 * numbers are fixed: a budget that could be configured away would let one
 * uid flood the journal again.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/audit.h"

#define RATELIMIT_BURST 10
#define RATELIMIT_INTERVAL_USEC (5 * UINT64_C(1000000))
/* uids followed at once; when more are active, the one whose interval began
 * first is reported and forgotten. */
#define RATELIMIT_UIDS 64

struct ratelimit_slot {
        bool used;
        uid_t uid;
        uint64_t start;        /* monotonic usec: this interval began */
        unsigned n;            /* written in it */
        unsigned suppressed;   /* left out since the last report */
        struct audit_subject last; /* the last one left out (pid 0: none given) */
};

struct ratelimit {
        pthread_mutex_t lock;
        struct ratelimit_slot slots[RATELIMIT_UIDS];
};

#define RATELIMIT_INIT { .lock = PTHREAD_MUTEX_INITIALIZER }

/* Told how many were left out for uid; last is the last subject left out,
 * or one with only the uid when none was given.  Called without the lock. */
typedef void (*ratelimit_report_fn)(uid_t uid, unsigned suppressed, const struct audit_subject *last,
                                    void *userdata);

/* true: write it.  false: counted as left out (subj, which may be NULL, is
 * kept for the report).  An interval that ended with some left out is
 * reported first, so the count comes before the next line. */
bool ratelimit_allow(struct ratelimit *rl, uid_t uid, uint64_t now, const struct audit_subject *subj,
                     ratelimit_report_fn report, void *userdata);

/* Reports every uid whose interval has ended with some left out, and
 * forgets the uids whose interval has ended.  Call it about once a second. */
void ratelimit_flush(struct ratelimit *rl, uint64_t now, ratelimit_report_fn report, void *userdata);
