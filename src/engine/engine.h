/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The private crypto engine interface.  dkm needs one AEAD (AES-256-GCM with a
 * 96-bit nonce and a 128-bit tag) and random bytes; each engine implements
 * exactly that.  Everything returns 0 or a negative errno.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ENGINE_KEY_SIZE 32
#define ENGINE_NONCE_SIZE 12
#define ENGINE_TAG_SIZE 16

enum engine_kind {
        ENGINE_AUTO = 0,
        ENGINE_KERNEL,
        ENGINE_OPENSSL,
};

struct engine_info {
        const char *name;   /* "kernel" or "openssl" */
        char driver[128];   /* e.g. "generic-gcm-aesni" or "OpenSSL 3.0.x" */
        char reason[256];   /* why this engine was chosen, or why another was not */
};

/* One AEAD transform; not thread-safe, use one per thread. */
struct engine_aead;

struct engine_ops {
        const char *name;
        /* Checks that the engine can serve gcm(aes) with 256-bit keys.  On
         * failure fills ret_reason with what is missing (CONFIG_* option,
         * module or package).  */
        int (*probe)(char *ret_reason, size_t reason_size);
        /* Name of the implementation that serves gcm(aes). */
        int (*driver)(char *ret, size_t size);
        int (*aead_new)(struct engine_aead **ret);
        void (*aead_free)(struct engine_aead *a);
        /* out must hold in_len + ENGINE_TAG_SIZE bytes (ciphertext || tag). */
        int (*seal)(struct engine_aead *a, const uint8_t key[ENGINE_KEY_SIZE],
                    const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, uint8_t *out);
        /* in is ciphertext || tag (in_len >= ENGINE_TAG_SIZE); out holds
         * in_len - ENGINE_TAG_SIZE bytes.  -EBADMSG when authentication fails;
         * out is wiped then. */
        int (*open)(struct engine_aead *a, const uint8_t key[ENGINE_KEY_SIZE],
                    const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, uint8_t *out);
        /* Largest AAD + data + tag one seal/open can carry; NULL = no limit. */
        size_t (*max_message)(void);
};

extern const struct engine_ops engine_kernel_ops;
extern const struct engine_ops engine_openssl_ops;

int engine_kind_from_string(const char *s, enum engine_kind *ret);

/* Picks an engine: for ENGINE_AUTO the kernel when its probe succeeds, else
 * openssl.  An explicitly requested engine that fails its probe is an error
 * (-ENOTSUP) with the reason filled in.  ret_info says which and why. */
int engine_select(enum engine_kind want, const struct engine_ops **ret_ops,
                  struct engine_info *ret_info);

/* Cryptographically secure random bytes (getrandom). */
int engine_random(void *buf, size_t len);

/* HKDF-SHA256 (RFC 5869): out_len (1..8160) bytes from ikm (at least one
 * byte), salt and info.  For subkeys of either engine: it runs in this
 * process, by libcrypto, on the caller's copy of the key (which the caller
 * keeps in locked memory), and the result is set on the engine like any
 * key.  -EINVAL for bad lengths, -EIO when libcrypto fails. */
int engine_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                       const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len);

/* HMAC-SHA256 of data under key, by libcrypto in this process (like
 * engine_hkdf_sha256): for authenticating records, not for bulk data.
 * -EINVAL for bad arguments, -EIO when libcrypto fails. */
#define ENGINE_HMAC_SIZE 32
int engine_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t data_len,
                       uint8_t out[ENGINE_HMAC_SIZE]);

/* The kernel engine carries a whole message through the AF_ALG socket
 * buffers, so seal/open return -EMSGSIZE when AAD + data + tag exceed the
 * socket's buffer size less a page (max_message(): SO_SNDBUF/SO_RCVBUF, from
 * net.core.[wr]mem_default, 208 KiB by default); keep segments at 64 KiB.
 * Messages of 8 KiB and more that fit libkcapi's pipe go to the kernel
 * without a copy (vmsplice + splice of the caller's AAD and input pages,
 * wherever they lie); no buffer layout is asked of callers.
 *
 * For tests: the driver of the highest-priority, non-internal entry called
 * alg in a /proc/crypto listing; -ENOENT when there is none. */
int engine_kernel_parse_crypto(FILE *f, const char *alg, char *ret, size_t size);

/* --- kernel custody: transforms keyed by keyring serial (afalg-serial.c) ---
 *
 * gcm(aes) keyed from the key with a keyring serial (ALG_SET_KEY_BY_KEY_SERIAL,
 * Linux 6.2+; the key may be "logon", which nobody can read back): its bytes
 * go from the keyring into the transform inside the kernel.  A transform is
 * keyed once and kept; each thread accept()s its own operation socket from
 * it (engine_serial_accept) and may run one operation after another on it
 * (close it after an error other than -EBADMSG: it may hold half a
 * message), so threads share a transform.  The caller needs search permission on the key.  Errors: no
 * AF_ALG -ENOTSUP, bind -ENOENT, a kernel without keying by serial
 * -ENOTSUP, a key not there to use -ENOKEY/-EKEYEXPIRED/-EKEYREVOKED/-EACCES,
 * another setkey failure -EINVAL; seal/open: -EINVAL for bad arguments and
 * -EMSGSIZE beyond max_msg (out untouched), -EBADMSG for a bad tag, -EIO
 * for short I/O (out wiped). */
struct engine_serial;
/* One operation socket: a seal or an open, then engine_serial_op_close(). */
struct engine_serial_op {
        int fd;
        size_t max_msg;  /* AAD + data + tag it may carry */
};

/* 0 when keying by serial works here: zero_key is a key holding 32 zero
 * bytes (a throwaway logon key), checked end to end against a known
 * answer.  Else -ENOTSUP and why (the kernel version, most often). */
int engine_serial_probe(int32_t zero_key, char *ret_reason, size_t reason_size);
int engine_serial_new(int32_t serial, struct engine_serial **ret);
void engine_serial_free(struct engine_serial *t);
/* A number no other transform of this process has had (never 0): an
 * operation socket kept for t is recognised by it. */
uint64_t engine_serial_id(const struct engine_serial *t);
int engine_serial_accept(struct engine_serial *t, struct engine_serial_op *ret);
void engine_serial_op_close(struct engine_serial_op *op);
int engine_serial_seal(const struct engine_serial_op *op, const uint8_t nonce[ENGINE_NONCE_SIZE],
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out);
int engine_serial_open(const struct engine_serial_op *op, const uint8_t nonce[ENGINE_NONCE_SIZE],
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out);
