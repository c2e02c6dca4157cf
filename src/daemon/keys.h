/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The key manager: policies and their key generations.  The store holds the
 * wrapped keys; the unwrapped ones live in dkmd's keyring with a timeout (the
 * cache lifetime) and are copied into locked memory only for the duration
 * of one operation.  Thread-safe.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shared/audit.h"
#include "shared/config.h"
#include "shared/keyring.h"
#include "store/store.h"

#define KEYS_ERR_MAX 256
#define DEFAULT_POLICY "default"

struct keys;

struct keys_env {
        const struct dkm_config *cfg;
        struct store *store;
        keyring_serial_t ring;   /* dkmd's keyring */
        keyring_serial_t master; /* the master key, in that keyring */
};

int keys_new(const struct keys_env *env, struct keys **ret);
/* Kernel custody (before keys_load): generation keys become logon keys, and
 * the v1 data path keys AF_ALG transforms from their serials, one per
 * generation, kept; otherwise each operation reads its key into locked
 * memory.  dkmd decides once at start (main.c, step_custody). */
void keys_set_kernel_custody(struct keys *k, bool on);
void keys_free(struct keys *k);

/* Loads every policy from the store and makes sure the default policy exists;
 * unwraps the active generations into the keyring (which proves the master
 * key matches the store). */
int keys_load(struct keys *k, char *err);

/* ctx is the canonical context encoding (format_context_encode).  Results
 * are malloc'd; plaintext should be wiped before free.  On error err holds
 * one line that says why. */
int keys_encrypt(struct keys *k, const char *policy, const uint8_t *ctx, size_t ctx_len,
                 const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len, char *err);
int keys_decrypt(struct keys *k, const uint8_t *ctx, size_t ctx_len, const uint8_t *in,
                 size_t len, uint8_t **ret, size_t *ret_len, char *err);
int keys_rewrap(struct keys *k, const uint8_t *ctx, size_t ctx_len, const uint8_t *in,
                size_t len, uint8_t **ret, size_t *ret_len, char *err);
/* Streams (format v2) between two descriptors; the key is copied out of the
 * keyring into locked memory for the stream's duration, and no lock is held
 * while data flows.  *ret_bytes: plaintext bytes. */
int keys_stream_encrypt(struct keys *k, const char *policy, const uint8_t *ctx, size_t ctx_len,
                        uint32_t segment_size, int in_fd, int out_fd, uint64_t *ret_bytes, char *err);
/* Decides, once the input's header has named its policy and generation,
 * whether the caller may decrypt it (a grant check): 0 lets the stream go on;
 * a negative errno, with err filled, refuses before any output is written.
 * While a stream (format v2) flows, the gate is asked again at least every
 * KEYS_STREAM_RECHECK_MS, also while the input is slow to come: a negative
 * errno then stops the output and fails the stream with err as it says. */
typedef int (*keys_stream_gate)(void *userdata, const char *policy, uint32_t generation, char *err);
/* Half a second: a grant that ends mid-stream stops it within a second,
 * whatever the input's pace.  Not a setting. */
#define KEYS_STREAM_RECHECK_MS 500
/* gate NULL: the caller may decrypt anything (a member of the users group). */
int keys_stream_decrypt(struct keys *k, const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                        keys_stream_gate gate, void *userdata, uint64_t *ret_bytes, char *err);
int keys_inspect_json(struct keys *k, const uint8_t *in, size_t len, char **ret, char *err);

int keys_rotate(struct keys *k, const char *policy, const struct audit_subject *subj,
                uint32_t *ret_generation, char *err);
int keys_retire(struct keys *k, const char *policy, uint32_t generation,
                const struct audit_subject *subj, char *err);
/* Crypto-shreds an archived or retired generation (after approval): its
 * wrapped key is erased from the store and its cached key invalidated. */
int keys_check_destroyable(struct keys *k, const char *policy, uint32_t generation, char *err);
int keys_destroy(struct keys *k, const char *policy, uint32_t generation,
                 const struct audit_subject *subj, uint32_t request_id, char *err);
bool keys_policy_exists(struct keys *k, const char *policy);
/* The master key's serial in dkmd's keyring (a reshare wraps it anew). */
keyring_serial_t keys_master_key(const struct keys *k);
/* The name of the policy a ciphertext names (for access under a grant). */
int keys_policy_of(struct keys *k, const uint8_t *in, size_t len, char name[65], char *err);

/* Policies (policies.c).  uris: two customer key URIs, or NULL for a
 * service-managed policy. */
int keys_policy_create(struct keys *k, const char *name, const char *const uris[2],
                       const struct audit_subject *subj, char *err);
int keys_policy_list_json(struct keys *k, const char *policy, char **ret, char *err);
int keys_policy_assign(struct keys *k, const char *policy, bool by_gid, uint32_t id,
                       const struct audit_subject *subj, char *err);
/* The policy assigned to a caller (by uid, else by one of its groups). */
bool keys_policy_for(struct keys *k, uid_t uid, gid_t gid, const gid_t *groups, size_t n_groups,
                     char ret[65]);
int keys_policy_rekey(struct keys *k, const char *policy, const char *const uris[2],
                      bool new_policy_key, const struct audit_subject *subj, char *err);
int keys_check_purgeable(struct keys *k, const char *policy, char *err);
int keys_purge(struct keys *k, const char *policy, const struct audit_subject *subj,
               uint32_t request_id, char *err);

int keys_list_json(struct keys *k, const char *policy, char **ret, char *err);
/* dkmctl store verify (keys-verify.c): unwraps every generation of every
 * policy as the store holds it and wipes it at once; *ret (JSON) names
 * each failure, *ret_failed counts them. */
int keys_verify_json(struct keys *k, char **ret, uint32_t *ret_failed, char *err);

/* Adds "policies" and "alerts" to a json-c object (struct json_object *). */
void keys_status(struct keys *k, void *json_object);

/* Periodic work: rollover by age, refresh of cached keys ahead of expiry. */
void keys_maintain(struct keys *k);

/* A fleet (sync.c): applies what other nodes wrote to the store since the
 * last call (new policies and generations, rollovers, retirements,
 * destructions, rekeys, purges, assignments) and drops cached keys that
 * changed.  *ret_access_changed: access requests changed too.  A compacted
 * history reloads everything.  0, or the store's error (recorded for
 * status: reads go on from memory while the store is away). */
int keys_sync(struct keys *k, bool *ret_access_changed);
/* Holds the store's watch (store_ops.follow) from the applied revision and
 * applies each revision it delivers at once, as keys_sync() would;
 * on_access (if set) runs after one that changed access requests.  0 when
 * stop_fd became readable; -EOPNOTSUPP when the store cannot be followed;
 * otherwise the stream broke (recorded for status; -ERANGE: compacted):
 * catch up with keys_sync() and follow again. */
int keys_follow(struct keys *k, int stop_fd, void (*on_access)(void *userdata), void *userdata);
/* Adds "store_state" (backend, applied revision, watch health) to a json-c
 * object; watching: whether a watch thread follows the store. */
void keys_sync_status(struct keys *k, bool watching, void *json_object);
/* The store revision this node has applied. */
uint64_t keys_applied_revision(struct keys *k);
