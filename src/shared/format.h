/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Ciphertext format v1 (all integers little-endian):
 *
 *   offset size  field
 *        0    4  magic "DKMC"
 *        4    1  version (1)
 *        5    1  algorithm (1 = AES-256-GCM)
 *        6    2  flags (0; any other value is rejected)
 *        8   16  policy id (UUID, binary)
 *       24    4  generation
 *       28   12  nonce (random)
 *       40    n  ciphertext (n = plaintext length)
 *     40+n   16  GCM tag
 *
 * The AAD is the whole 40-byte header followed by the canonical encoding of
 * the caller's context (format_context_encode), so changing any header byte,
 * the context, or the key it names makes decryption fail.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define FORMAT_MAGIC "DKMC"
#define FORMAT_VERSION 1
#define FORMAT_ALG_AES256GCM 1
#define FORMAT_HEADER_SIZE 40
#define FORMAT_TAG_SIZE 16
#define FORMAT_NONCE_SIZE 12
#define FORMAT_POLICY_ID_SIZE 16
#define FORMAT_OVERHEAD (FORMAT_HEADER_SIZE + FORMAT_TAG_SIZE)

/* Caller context limits (also enforced on the wire). */
#define CONTEXT_MAX_PAIRS 64
#define CONTEXT_MAX_KEY 128
#define CONTEXT_MAX_VALUE 1024

struct format_header {
        uint8_t version;
        uint8_t algorithm;
        uint16_t flags;
        uint8_t policy_id[FORMAT_POLICY_ID_SIZE];
        uint32_t generation;
        uint8_t nonce[FORMAT_NONCE_SIZE];
};

struct context_pair {
        const char *key;
        const char *value;
};

/* Writes the 40-byte header. */
void format_header_write(const struct format_header *h, uint8_t out[FORMAT_HEADER_SIZE]);

/* Parses and validates a whole ciphertext's framing.  On failure returns
 * -EBADMSG (not dkm, truncated, bad flags) or -EPROTONOSUPPORT (version or
 * algorithm unknown) and points *ret_error at a stable message. */
int format_parse(const uint8_t *buf, size_t len, struct format_header *ret,
                 const char **ret_error);

/* Reads only magic and version, for dispatching between v1 (format_parse)
 * and the v2 stream format (stream_parse_header).  -EBADMSG with *ret_error
 * for bad magic or fewer than 5 bytes. */
int format_peek_version(const uint8_t *buf, size_t len, uint8_t *ret_version,
                        const char **ret_error);

/* Writes the fields that a v2 stream header (stream.h) shares with a v1
 * header, at the same offsets: magic, version, algorithm, flags, policy id
 * and generation (bytes 0 to 27). */
void format_write_shared_fields(uint8_t *out, uint8_t version, uint8_t algorithm, uint16_t flags,
                                const uint8_t policy_id[FORMAT_POLICY_ID_SIZE], uint32_t generation);

/* The checks of the fields that a v2 stream header (stream.h) shares with
 * a v1 header, at the same offsets: the algorithm, no flag outside
 * allowed_flags, a generation other than 0.  buf holds at least 28 bytes.
 * Returns 0, or -errno with *ret_error as format_parse() words it. */
int format_check_shared_fields(const uint8_t *buf, uint16_t allowed_flags, const char **ret_error);

/* Canonical context encoding: pairs sorted by key (bytes), each as
 * u16 key length, key, u16 value length, value, after a u16 pair count.
 * Rejects duplicate or empty keys and oversize items (-EINVAL, *ret_error).
 * *ret is malloc'd. */
int format_context_encode(const struct context_pair *pairs, size_t n, uint8_t **ret,
                          size_t *ret_len, const char **ret_error);

/* UUID helpers for policy ids. */
void uuid_to_string(const uint8_t id[16], char out[37]);
int uuid_from_string(const char *s, uint8_t ret[16]);
