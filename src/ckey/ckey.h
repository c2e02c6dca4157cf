/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Customer keys: the two keys held outside the service that each wrap a copy
 * of a policy key (DESIGN.md §4).  A key is named by a URI:
 *
 *   pkcs11:token=T;object=K?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234
 *   pkcs11:token=T;object=K?module-name=customer-a&pin-source=file:/etc/dkm/keys/pin-a
 *   file:/path/to/32-byte-key
 *
 * Blob format (64 bytes, opaque to callers): "DK" 0x01 kind nonce[12]
 * ciphertext[32] tag[16].  The policy key is sealed with AES-256-GCM under a
 * key-encryption key (KEK) that the customer key gives for this nonce; the
 * AAD is "dkm-ckey-v1:" || the 4 header bytes || label, so a blob moved to
 * another policy (label) or to another kind of key does not open.
 *
 * How each provider gives the KEK:
 *   file:   the file's 32 bytes, read again on every call (deleting the file
 *           revokes).
 *   pkcs11: the token computes AES-ECB_K(nonce || "dkm" 1) || AES-ECB_K(nonce
 *           || "dkm" 2): AES in counter mode over fresh blocks, i.e. a PRF of
 *           the nonce under K, and K never leaves the token.  Not in-token
 *           AES-GCM or CKM_AES_KEY_WRAP_PAD: p11-kit 0.24 (Debian 12) cannot
 *           carry those mechanisms' parameters over its RPC (the client module
 *           answers CKR_MECHANISM_INVALID), and a customer key must work the
 *           same on a local token and through `p11-kit server`.  The key must
 *           be an AES key with CKA_ENCRYPT; clearing CKA_ENCRYPT revokes it.
 *
 * Errors are negative errno values, classified by ckey_classify():
 *
 *   UNAVAILABLE  -ETIMEDOUT     no answer within the caller's timeout
 *                -EHOSTUNREACH  module cannot be loaded or initialised (e.g. the
 *                               p11-kit server refuses the connection), or the
 *                               token/connection failed mid-call
 *                               (CKR_DEVICE_ERROR, CKR_GENERAL_ERROR, ...)
 *                -ENODEV        no token matching the URI is present (also what
 *                               p11-kit's client module reports once its server
 *                               is gone); for file: the key file's directory
 *                               does not exist
 *                -ENOENT        the pin-source file cannot be read (a problem
 *                               on the service's side, not the customer's)
 *                -ECONNREFUSED, -EIO, -ENOMEM, -EAGAIN, and any errno not
 *                               listed here: "not an explicit act of the
 *                               customer", so the availability key may be used
 *   REVOKED      -EKEYREVOKED   key object not found on a present token,
 *                               CKR_KEY_FUNCTION_NOT_PERMITTED (CKA_ENCRYPT
 *                               cleared), key handle invalid; for file: the key
 *                               file is gone (its directory exists) or empty
 *                -EACCES        CKR_PIN_INCORRECT/LOCKED/EXPIRED, not logged
 *                               in; for file: permission denied
 *                -EPERM, -ENOKEY, -EKEYEXPIRED, -EKEYREJECTED
 *   BAD_INPUT    -EINVAL        malformed URI (message names the problem), bad
 *                               arguments, a key file that is not 32 bytes
 *                -EBADMSG       blob does not authenticate: altered, wrong
 *                               label, other key, other kind of key
 *                -ENOBUFS, -EOPNOTSUPP (token lacks CKM_AES_ECB), -EPROTO
 *
 * A file key on an unmounted path: when the mount point exists as an empty
 * directory the file simply looks deleted (REVOKED).  Put key files in a
 * subdirectory of the mount so that "not mounted" reads as -ENODEV.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ckey/ckey-provider.h"

#define CKEY_BLOB_SIZE 64   /* what ckey_wrap() writes today */
#define CKEY_BLOB_MAX 512   /* what callers should be ready to store */

struct ckey;

/* Parses the URI and picks the provider; no I/O that can block (modules are
 * loaded and tokens opened on first use).  -EINVAL with the reason in err. */
int ckey_open(const char *uri, struct ckey **ret, char *err, size_t err_size);
/* Drops the caller's reference.  A worker thread still waiting on the key
 * (abandoned by a hedged call) keeps it alive until it returns. */
void ckey_free(struct ckey *k);
/* The URI without its PIN, for logs and status. */
const char *ckey_uri_redacted(const struct ckey *k);

/* --- what the administrator allows ------------------------------------------
 * A pkcs11: URI names a library that dkmd loads and a PIN file it reads; a
 * file: URI names a file it reads.  Only what dkmd.conf allows is used:
 * [policy] pkcs11_modules (absolute module paths, or p11-kit module names for
 * module-name=) and [policy] key_dirs (the directories of key and PIN
 * files).  Empty lists, the default, allow nothing.  Every use checks again
 * (ckey-allow.c says what else a module or file must satisfy), so a URI read
 * from the store is held to the same rules as one an operator gave. */

/* Replaces the lists (NULL-terminated; NULL allows nothing) with copies.
 * dkmd calls it at start and on SIGHUP.  Thread-safe.  0 or -ENOMEM. */
int ckey_allow_set(char *const *modules, char *const *key_dirs);
/* Checks k's module and files against the lists without using the token:
 * 0, or -EINVAL with a message that names the setting.  Files that do not
 * exist (yet) pass here; using the key then fails as usual. */
int ckey_check(struct ckey *k, char *err, size_t err_size);

/* Wraps a 32-byte key, binding label (e.g. the policy id).  *out_len: in, the
 * size of out (>= CKEY_BLOB_SIZE); out, the blob's length.  timeout_usec 0
 * waits as long as the token takes, in the calling thread; otherwise the call
 * runs in a worker thread and gives up with -ETIMEDOUT (the worker is then
 * abandoned: see ckey_wait_idle()). */
int ckey_wrap(struct ckey *k, const uint8_t key[CKEY_KEY_SIZE], const char *label,
              uint64_t timeout_usec, uint8_t *out, size_t *out_len, char *err, size_t err_size);
int ckey_unwrap(struct ckey *k, const uint8_t *blob, size_t len, const char *label,
                uint64_t timeout_usec, uint8_t ret_key[CKEY_KEY_SIZE], char *err, size_t err_size);

enum ckey_failure {
        CKEY_OK,
        CKEY_UNAVAILABLE, /* may fall back to the availability key */
        CKEY_REVOKED,     /* must not */
        CKEY_BAD_INPUT,   /* caller's or store's data is wrong; neither */
};
enum ckey_failure ckey_classify(int error);
const char *ckey_failure_name(enum ckey_failure f); /* "ok", "unavailable", ... */

/* Hedged unwrap over two customer keys: ask a; if it has not answered within
 * hedge_usec (or failed), ask b too; the first success wins and the other is
 * abandoned (its worker keeps its own references and its result is wiped).
 * When both fail, returns the error of the worse class: REVOKED, then
 * UNAVAILABLE, then BAD_INPUT.  timeout_usec bounds the whole call (0: none);
 * a key still silent then counts as -ETIMEDOUT.  b may be NULL (one key with a
 * timeout).  res (may be NULL) says who answered and how each one fared.
 * Thread-safe; calls for one key are serialised, calls for different keys
 * run in parallel. */
struct ckey_hedge_result {
        int winner;                /* 0 = a, 1 = b, -1 = none */
        int asked[2];              /* whether a/b was asked at all */
        int err[2];                /* 0 or -errno per key (-ETIMEDOUT if silent) */
        uint64_t latency_usec[2];  /* from asking to answer (or to giving up) */
};
int ckey_unwrap_hedged(struct ckey *a, const uint8_t *blob_a, size_t len_a,
                       struct ckey *b, const uint8_t *blob_b, size_t len_b,
                       const char *label, uint64_t hedge_usec, uint64_t timeout_usec,
                       uint8_t ret_key[CKEY_KEY_SIZE], struct ckey_hedge_result *res,
                       char *err, size_t err_size);

/* Waits until no abandoned worker is left (0), or -ETIMEDOUT.  A worker stuck
 * in a token that never answers (a stopped p11-kit server) stays stuck: call
 * this at shutdown with a short limit, then exit anyway. */
int ckey_wait_idle(uint64_t timeout_usec);

/* Adds a provider (tests register "test:").  -EEXIST for a scheme or kind
 * already taken, -ENOSPC when the table is full.  The struct must outlive
 * every key opened with it. */
int ckey_register_provider(const struct ckey_provider *p);
