/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What keys.c, keys-admin.c and policies.c share: the key manager's state. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "keys.h"
#include "ckey/ckey.h"
#include "records.h"
#include "shared/format.h"

/* Use counts are reserved in the store ahead of use, so a crash can only
 * over-count. */
#define USE_BLOCK_MAX 4096u

enum policy_health {
        POLICY_HEALTHY,
        POLICY_DEGRADED, /* customer keys unreachable: served by the availability key */
        POLICY_REVOKED,  /* a customer key was revoked: the availability key is not used */
};

struct generation {
        struct gen_record rec;
        uint64_t mod_revision;
        _Atomic uint64_t uses;
        /* The block of uses this node reserved in the store: uses own_start
         * + 1 .. own_end are ours to spend.  Other nodes reserve the blocks
         * in between, so the counter jumps over them (it may over-count,
         * never under-count). */
        _Atomic uint64_t own_start, own_end;
        /* On a shared store, the next block is reserved while this one is
         * spent: uses sb_start + 1 .. sb_end (k->reserve held to change;
         * sb_end == sb_start: none).  It carries a node through an outage
         * of the store (keys.c, reserve_block). */
        _Atomic uint64_t sb_start, sb_end;
        _Atomic keyring_serial_t serial; /* cached key in the keyring, 0 = none */
        /* Kernel custody: the transform keyed from serial tfm_serial, kept
         * for every operation under g until that serial changes or dies. */
        pthread_mutex_t tfm_lock;
        struct engine_serial *tfm;
        keyring_serial_t tfm_serial;
};

struct policy {
        struct policy_record rec;
        uint8_t id[16];
        uint64_t mod_revision;
        struct generation **gens; /* gens[n - 1] is generation n */
        size_t n_gens;
        _Atomic keyring_serial_t serial; /* cached policy key */
        bool active_from_store; /* another node activated the active generation */
        /* Customer-managed policies: the keys, and how they fared. */
        struct ckey *ckeys[2];
        pthread_mutex_t status_lock;
        enum policy_health health;
        struct ckey_hedge_result last;  /* the last unwrap through the customer keys */
        uint64_t last_unwrap_usec;
        uint64_t availability_uses, availability_last_usec;
        char last_error[256];
};

struct keys {
        struct keys_env env;
        const struct dkm_config *cfg;
        struct audit_subject self;
        pthread_rwlock_t lock;    /* policies and generation metadata */
        pthread_mutex_t reserve;  /* use-count reservations */
        bool standby;             /* shared store: reserve a block ahead */
        bool kernel_custody;      /* keys_set_kernel_custody() */
        struct policy **policies;
        size_t n_policies;
        pthread_mutex_t alert_lock;
        char alert[256];          /* the last refresh failure, shown in status */
        uint64_t alert_usec;
        /* Default policy of callers: by uid, else by group. */
        struct assignment {
                bool by_gid;
                uint32_t id;
                char policy[65];
                uint64_t mod_revision;
        } *assignments;
        size_t n_assignments;
        /* Following the store's changes (sync.c). */
        struct {
                pthread_mutex_t run;       /* one keys_sync() at a time */
                pthread_mutex_t lock;      /* the fields below */
                _Atomic uint64_t applied;  /* store revision applied in memory */
                int error;                 /* the last failure, 0 = reachable */
                char why[KEYS_ERR_MAX];
                uint64_t since_usec, last_usec, reloads;
                /* The held watch (keys_follow). */
                enum { SYNC_WATCH_STARTING, SYNC_WATCH_STREAMING, SYNC_WATCH_BROKEN } watch;
                uint64_t watch_from;      /* the revision it streams after */
                uint64_t last_event_usec; /* wall clock of the last change it applied */
                uint64_t restarts;        /* streams that ended in an error */
                char watch_why[KEYS_ERR_MAX]; /* why the last one did */
        } sync;
        /* The revision up to which the store still has to forget earlier
         * copies of destroyed wrapped keys (keys_shred()); 0: none. */
        _Atomic uint64_t shred_pending;
        /* <state_dir>/shred-pending exists from before a destroy or purge
         * is stored until its shred is done, so that a start after a crash
         * in between finishes it (keys_shred_begin(), keys_shred_resume()). */
        pthread_mutex_t shred_lock;
        unsigned shred_busy; /* destroys and purges between begin and shred */
};

/* With k->lock held (read or write, as the caller needs). */
struct policy *find_policy(struct keys *k, const char *name);
struct policy *find_policy_id(struct keys *k, const uint8_t id[16]);
struct generation *find_gen(struct policy *p, uint32_t n);
int add_gen(struct policy *p, const struct gen_record *rec, uint64_t mod_revision);
void policy_free(struct policy *p);
int lookup(struct keys *k, const uint8_t *in, size_t len, struct format_header *h,
           struct policy **ret_p, struct generation **ret_g, char *err);

/* Before a destroy or purge is stored: the shred it needs is noted in the
 * state directory (fsync'd), and keys_shred() clears the note once the
 * store has forgotten.  Failing to note it is logged, not fatal: the
 * destroy itself matters more. */
void keys_shred_begin(struct keys *k);
/* A destroy or purge that stored nothing: its note is no longer needed. */
void keys_shred_abandon(struct keys *k);
/* At start, after loading: a shred a crash left undone is done now. */
void keys_shred_resume(struct keys *k, uint64_t revision);

void keys_seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void raise_alert(struct keys *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void clear_alert(struct keys *k);

/* Life-cycle changes are audited once the store has answered
 * (audit_outcome()): keys_audit_ready() refuses beforehand when
 * fail_closed and no record can be written now; keys_audit_check() logs a
 * completed change whose record was lost (a: what audit_outcome() gave,
 * r: the change's outcome). */
int keys_audit_ready(struct keys *k, char *err);
void keys_audit_check(int a, int r, const char *op);

/* After a destroy or a purge stored at revision: the store forgets the
 * earlier copies of what it removed (store.h's shred()), audited as
 * store-shred.  When it cannot, each maintenance pass tries again.  what
 * names the change in the log.  Without the lock: etcd's defragmentation
 * may take a while. */
void keys_shred(struct keys *k, uint64_t revision, const char *what);

/* Keys in the keyring. */
int read_cached(keyring_serial_t s, uint8_t key[ENGINE_KEY_SIZE]);
unsigned cache_ttl_sec(const struct keys *k);
int policy_key(struct keys *k, struct policy *p, uint8_t key[ENGINE_KEY_SIZE], char *err);
/* The key that wraps g's key: the policy key, or while a rekey re-wraps
 * the generations, for those not done yet, the previous one. */
int gen_wrapping_key(struct keys *k, struct policy *p, const struct generation *g,
                     uint8_t key[ENGINE_KEY_SIZE], char *err);
/* policy-rewrap.c: re-wraps the generations still under the previous policy
 * key after a rekey with a new one, in as many transactions as the store
 * needs, then drops the previous key; resumes one that was cut short.
 * Without the lock. */
int rekey_finish(struct keys *k, const uint8_t id[16], char *err);
int gen_key_load(struct keys *k, struct policy *p, struct generation *g, uint8_t *buf, char *err);
int gen_key(struct keys *k, struct policy *p, struct generation *g, uint8_t *buf, char *err);
/* Forgets g's cached key: invalidates it and closes the transform keyed
 * from it (so that a destroyed key leaves no copy in the kernel either). */
void gen_drop_cached(struct generation *g);
int new_wrapped_gen(struct keys *k, struct policy *p, uint32_t n, struct gen_record *ret, char *err);

/* Spends weight uses of g (read lock held); 1 when g is spent or too old:
 * roll over first. */
int take_use(struct keys *k, struct policy *p, struct generation *g, uint64_t weight, char *err);
/* Calls use() with the active generation g of the policy with id policy_id
 * (NULL: named policy), under the read lock, once take_use() has spent one
 * use of g.  When g is spent (take_use() or use() answers 1), rolls the
 * policy over and tries again, up to 3 times.  use()'s answer otherwise. */
int with_active_gen(struct keys *k, const uint8_t *policy_id, const char *policy,
                    int (*use)(struct keys *k, struct policy *p, struct generation *g, void *userdata,
                               char *err),
                    void *userdata, char *err);
/* Uses of g this node may spend without the store (read lock held). */
uint64_t reserved_uses_left(struct generation *g);

/* With the write lock held. */
int rotate_locked(struct keys *k, struct policy *p, const struct audit_subject *subj,
                  const char *why, char *err);
int create_policy(struct keys *k, const char *name, const char *const uris[2],
                  const struct audit_subject *subj, char *err);
/* policies.c: the policy key of a customer-managed or purged policy.
 * service_initiated: only for the re-wrap of generations (policy-rewrap.c):
 * it may use the availability key even when a customer key was revoked, and
 * then never marks the policy healthy.  Everything else passes false. */
int policy_key_customer(struct keys *k, struct policy *p, uint8_t key[ENGINE_KEY_SIZE],
                        bool service_initiated, char *err);
int policy_open_ckeys(struct policy *p, char *err);
const char *policy_state_name(struct policy *p);
/* Asks both customer keys of p and updates its health (maintenance). */
void policy_verify(struct keys *k, struct policy *p);
int load_assignment(struct keys *k, const struct store_kv *kv);
int rollover_if_due(struct keys *k, const uint8_t policy_id[16], char *err);
/* sync.c: brings one policy up to date from the store (without the lock;
 * takes the write lock to merge). */
int policy_refresh(struct keys *k, const uint8_t id[16], char *err);
