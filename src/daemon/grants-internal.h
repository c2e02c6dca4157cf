/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What grants.c, grants-store.c, grants-keyring.c and grants-use.c share:
 * the requests as the store keeps them, the grants' state, and the few
 * functions each piece offers the others.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "grants.h"
#include "records.h"

enum req_state {
        REQ_PENDING,
        REQ_GRANTED,
        REQ_DENIED,
        REQ_EXPIRED,
        REQ_REVOKED,
        REQ_DONE, /* a destroy that was carried out */
        REQ_FAILED,
};

/* The words of the records and of the listing (grants-store.c). */
extern const char *const grant_state_names[REQ_FAILED + 1];
extern const char *const grant_scope_names[SCOPE_RESHARE + 1];

struct request {
        uint32_t id;
        uid_t requester;
        char reason[REASON_MAX + 1];
        enum grant_scope scope;
        char policy[65];
        uint32_t generation;
        uint64_t duration_usec;
        uint64_t created_usec, request_expires_usec;
        uid_t approvers[MAX_APPROVERS];
        size_t n_approvers;
        enum req_state state;
        uint64_t granted_usec, grant_expires_usec, ended_usec;
        char ended_by[64];     /* "uid 2903", "keyctl", "expiry" */
        char end_reason[REASON_MAX + 1];
        uint64_t lease;        /* etcd: the lease of the grant's marker; 0: none */
        uint64_t mod_revision;
};

struct grants {
        const struct dkm_config *cfg;
        struct store *store;
        struct keys *keys;
        keyring_serial_t ring;
        gid_t group; /* [groups] reviewers at start, (gid_t)-1: none */
        pthread_mutex_t lock;
        /* Grants whose key this node created or found in its keyring: for
         * those, a missing key means keyctl unlinked or invalidated it.  A
         * live grant never seen here (approved on another node of a fleet,
         * or before a reboot emptied the keyring) is mirrored instead. */
        pthread_mutex_t seen_lock;
        uint32_t *seen; /* sorted */
        size_t n_seen, cap_seen;
        /* The grants as last read from the store in full: while the store
         * is unavailable (no etcd quorum), uses are checked against these
         * and the kernel's grant keys (cache_lock). */
        pthread_mutex_t cache_lock;
        struct request *cache;
        size_t n_cache;
        bool cache_valid;
};

#define MARKER_PREFIX RECORDS_GRANTS

/* A walk over every request (grants-store.c). */
struct scan {
        struct grants *g;
        int (*fn)(struct grants *g, struct request *r, void *userdata);
        void *userdata;
        struct request *copy; /* what a check may need without the store */
        size_t n_copy, cap_copy;
        bool oom;
};

void grants_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int grant_lookup_name(const char *const *names, size_t n, const char *s);

/* grants-store.c: the request records. */
int request_load(struct grants *g, uint32_t id, struct request *ret, char *err);
int request_store_leased(struct grants *g, struct request *r, uint64_t marker_lease, char *err);
int request_store(struct grants *g, struct request *r, char *err);
int grant_lease_new(struct grants *g, const struct request *r, uint64_t now, uint64_t *ret);
void grant_lease_end(struct grants *g, uint64_t lease);
/* Walking every request; a complete walk refreshes the cache. */
int request_scan_one(const struct store_kv *kv, void *userdata);
void request_scan_finish(struct grants *g, struct scan *s, int e);
int for_each_request(struct grants *g, int (*fn)(struct grants *, struct request *, void *),
                     void *userdata);

/* grants-keyring.c: the grant key in this node's grants keyring. */
void grant_approvers_text(const struct request *r, char *buf, size_t size);
unsigned grant_remaining_sec(const struct request *r, uint64_t now);
int grant_key_create(struct grants *g, const struct request *r, uint64_t now);
/* ret_serial (may be NULL): the key's serial, when there is one. */
int grant_key_state(struct grants *g, const struct request *r, const struct keyring_proc_snapshot *snap,
                    uint64_t *ret_min, uint64_t *ret_max, keyring_serial_t *ret_serial);
void grant_key_drop(struct grants *g, uint32_t id);
bool grant_seen_has(struct grants *g, uint32_t id);
void grant_seen_set(struct grants *g, uint32_t id, bool on);
int grant_key_mirror(struct grants *g, const struct request *r, uint64_t now);

/* grants-reshare.c: the one-shot of a reshare request. */
/* Refuses a reshare request that could not be carried out: no
 * [recovery] custodians=, or custodians that do not load. */
int grant_reshare_check(struct grants *g, char *err);
/* Makes the new share set and audits it; note gets the warning for a
 * legacy old set (its shares still rebuild the master key), else stays. */
int grant_reshare_run(struct grants *g, const struct audit_subject *who, const struct request *req, char *note,
                      size_t note_size, char *err);
