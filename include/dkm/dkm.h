/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdkm: the client library of the dkm key manager.
 *
 * Every function returns 0 on success or a negative errno on failure; output
 * parameters are written only on success.  A dkm_client may be shared between
 * threads (requests are serialised on its connection).  The library never
 * prints: install a log callback to see what it would say.
 */
#ifndef DKM_DKM_H
#define DKM_DKM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dkm_client dkm_client;

/* A caller context: key=value pairs bound to a ciphertext as associated
 * data; decryption must present the same pairs (in any order). */
typedef struct dkm_context_pair {
        const char *key;
        const char *value;
} dkm_context_pair;

typedef void (*dkm_log_fn)(int priority, const char *message, void *userdata);
void dkm_set_log_callback(dkm_log_fn fn, void *userdata);

/* Connects to dkmd.  socket_path NULL means $DKM_SOCKET, else
 * /run/dkm/dkmd.sock. */
int dkm_connect(const char *socket_path, dkm_client **ret);
void dkm_disconnect(dkm_client *c);

/* The daemon's last error message for this client (a refusal's reason), or
 * a description of the local error; valid until the next call on c. */
const char *dkm_last_error(dkm_client *c);

/* Encrypts under the caller's policy (policy NULL: the default).  *ret is
 * malloc'd; free it with free(). */
int dkm_encrypt(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n_ctx,
                const void *plaintext, size_t len, uint8_t **ret, size_t *ret_len);

/* Decrypts; *ret is malloc'd and should be released with dkm_free_secret(),
 * which wipes it. */
int dkm_decrypt(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx,
                const void *ciphertext, size_t len, uint8_t **ret, size_t *ret_len);

/* Large data: dkmd reads in_fd and writes out_fd itself (the descriptors
 * are passed over the socket), streaming in 64 KiB segments (format v2)
 * with flat memory.  Decryption takes either format.  out_fd receives
 * plaintext before the end of the stream is verified: write to a temporary
 * file and keep it only on success.  *ret_bytes: plaintext bytes. */
int dkm_encrypt_fd(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n_ctx,
                   int in_fd, int out_fd, uint64_t *ret_bytes);
int dkm_decrypt_fd(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx, int in_fd, int out_fd,
                   uint64_t *ret_bytes);

/* Envelope encryption: a fresh 256-bit data key in ret_key, and its wrapped
 * form (*ret_wrapped, malloc'd) under the policy's active generation.  Wipe
 * the key after use.  dkm_unwrap_datakey() gives it back under the same
 * access rules and audit as dkm_decrypt(). */
int dkm_datakey(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n_ctx,
                uint8_t ret_key[32], uint8_t **ret_wrapped, size_t *ret_len);
int dkm_unwrap_datakey(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx,
                       const void *wrapped, size_t len, uint8_t ret_key[32]);

/* Many small encryptions and decryptions in few round trips.  Each item
 * gets its own result: error 0 and out (malloc'd; free it, wiping
 * decrypted plaintext with dkm_free_secret) or a negative errno and a
 * message.  Returns a negative errno only when the exchange itself failed. */
enum { DKM_BATCH_ENCRYPT = 1, DKM_BATCH_DECRYPT = 2 };
typedef struct dkm_batch_item {
        int op;
        const char *policy;           /* encrypt only; NULL: the caller's default */
        const dkm_context_pair *ctx;
        size_t n_ctx;
        const void *in;
        size_t in_len;
        int error;                    /* result */
        uint8_t *out;
        size_t out_len;
        char message[160];
} dkm_batch_item;
int dkm_batch(dkm_client *c, dkm_batch_item *items, size_t n);

/* Re-encrypts a ciphertext under the active generation of its policy inside
 * dkmd, without the plaintext reaching the caller. */
int dkm_rewrap(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx,
               const void *ciphertext, size_t len, uint8_t **ret, size_t *ret_len);

/* What a ciphertext says about itself, and whether this dkmd can decrypt it. */
typedef struct dkm_inspect_info {
        unsigned version;
        char policy_id[37];   /* UUID text */
        char policy_name[65];
        uint32_t generation;
        char algorithm[32];   /* "AES-256-GCM" */
        size_t payload_len;   /* plaintext length */
        char state[16];       /* generation state: active/archived/retired/destroyed/unknown */
        int decryptable;      /* 1 if this dkmd holds a generation that decrypts it */
} dkm_inspect_info;

int dkm_inspect(dkm_client *c, const void *ciphertext, size_t len, dkm_inspect_info *ret);

/* Daemon status and key administration return JSON text (malloc'd). */
int dkm_status_json(dkm_client *c, char **ret);
/* Operators: dkmd writes a backup of its store (wrapped material only, MACed
 * as a whole) to out_fd, a regular file open for writing; *ret
 * (malloc'd, if ret) is JSON: records, revision, left_out, bytes. */
int dkm_backup_fd(dkm_client *c, int out_fd, char **ret);
/* Operators: unwraps every generation of every policy, revealing nothing;
 * *ret is JSON per policy: checked, destroyed, failed (generation, error),
 * missing generation numbers. */
int dkm_store_verify_json(dkm_client *c, char **ret);
int dkm_key_list_json(dkm_client *c, const char *policy, char **ret);
/* Rotates policy (NULL: default); *ret_generation is the new active one. */
int dkm_key_rotate(dkm_client *c, const char *policy, uint32_t *ret_generation);
int dkm_key_retire(dkm_client *c, const char *policy, uint32_t generation);

/* Elevated access (operators ask, approvers decide).  duration is text such
 * as "30m"; scope is "decrypt" (default) or "inspect"; policy NULL means all
 * policies. */
int dkm_access_request(dkm_client *c, const char *reason, const char *duration,
                       const char *scope, const char *policy, uint32_t *ret_id);
/* *ret_state (malloc'd): "pending (1 of 2 approvals)", "granted" or "done". */
int dkm_access_approve(dkm_client *c, uint32_t id, char **ret_state);
int dkm_access_deny(dkm_client *c, uint32_t id, const char *reason);
int dkm_access_revoke(dkm_client *c, uint32_t id);
int dkm_access_list_json(dkm_client *c, char **ret);
/* Files a request to crypto-shred one generation; it is carried out when
 * approved like an access request. */
int dkm_key_destroy(dkm_client *c, const char *policy, uint32_t generation, const char *reason,
                    uint32_t *ret_request);

/* Data-encryption policies (operators).  key_a/key_b: two customer key URIs
 * (pkcs11:... or file:...), or both NULL for a service-managed policy. */
int dkm_policy_create(dkm_client *c, const char *name, const char *key_a, const char *key_b);
int dkm_policy_list_json(dkm_client *c, char **ret);
int dkm_policy_show_json(dkm_client *c, const char *name, char **ret);
/* Makes name the default policy of a uid (by_gid 0) or of a group. */
int dkm_policy_assign(dkm_client *c, const char *name, int by_gid, uint32_t id);
int dkm_policy_rekey(dkm_client *c, const char *name, const char *key_a, const char *key_b,
                     int new_policy_key);
/* Files a purge request; the policy is crypto-shredded when approved. */
int dkm_policy_purge(dkm_client *c, const char *name, const char *reason, uint32_t *ret_request);

/* Files a recovery reshare request (operators); when approved dkmd makes a
 * new recovery share set, encrypted to the custodians, and the old shares
 * stop opening the store's record. */
int dkm_recovery_reshare(dkm_client *c, const char *reason, uint32_t *ret_request);

/* Wipes and frees a buffer returned by dkm_decrypt(). */
void dkm_free_secret(void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif
