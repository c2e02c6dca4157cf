/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Streaming ciphertext format v2: the STREAM construction of Hoang,
 * Reyhanitabar, Rogaway and Vizár ("Online authenticated-encryption and its
 * nonce-reuse misuse-resistance", CRYPTO 2015) over AES-256-GCM, so that a
 * file of any size is encrypted and decrypted in fixed-size segments with
 * flat memory.  Header (40 bytes, integers little-endian):
 *
 *   offset size  field
 *        0    4  magic "DKMC"
 *        4    1  version (2)
 *        5    1  algorithm (1 = AES-256-GCM)
 *        6    2  flags (0; any other value is rejected)
 *        8   16  policy id (UUID, binary)
 *       24    4  generation (>= 1)
 *       28    7  nonce prefix (random, fresh per stream)
 *       35    1  reserved (0; any other value is rejected)
 *       36    4  segment size S in bytes, 4096 <= S <= 1048576
 *       40       segments
 *
 * Segment i (i = 0, 1, ...) is the GCM ciphertext of S plaintext bytes
 * followed by its 16-byte tag, except the final one, which carries 1..S bytes
 * (0 only when the whole plaintext is empty): exactly one final segment
 * always exists and nothing follows it.  Its nonce is
 *
 *   nonce prefix (7) || i as u32 big-endian (4) || 0x01 if final else 0x00 (1)
 *
 * and its AAD is the 40 header bytes followed by the caller's canonical
 * context (format_context_encode).  So a reordered, duplicated or dropped
 * segment has the wrong counter, a cut-off stream ends in a segment sealed as
 * non-final, an extended one has a final segment before its end, and a
 * segment from another stream has another prefix and header: each fails
 * authentication.  At most 2^32 segments (the counter never wraps).
 *
 * The prefix is random, so two of n streams under one key share it (and so
 * reuse GCM nonces) with chance about n^2 / 2^57: one in 10^5 for a million
 * streams per generation.  Rotate generations well before that.
 *
 * Decryption is online: a segment's plaintext is released once that segment
 * authenticates, before the end of the stream is seen.  Callers must treat
 * the output as unverified until the final segment has been accepted (for
 * files: write to a temporary file and rename it on success).
 *
 * Errors are negative errno; -EBADMSG (and -EPROTONOSUPPORT for an unknown
 * version or algorithm) come with a stable message in *ret_error.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "shared/format.h"

#define STREAM_VERSION 2
#define STREAM_HEADER_SIZE 40
#define STREAM_PREFIX_SIZE 7
#define STREAM_TAG_SIZE 16
#define STREAM_SEGMENT_MIN 4096u
#define STREAM_SEGMENT_MAX 1048576u
#define STREAM_SEGMENT_DEFAULT 65536u
/* Segment counters run from 0 to this; a final segment may use it. */
#define STREAM_MAX_COUNTER UINT32_MAX

struct stream_header {
        uint8_t version;
        uint8_t algorithm;
        uint16_t flags;
        uint8_t policy_id[FORMAT_POLICY_ID_SIZE];
        uint32_t generation;
        uint8_t nonce_prefix[STREAM_PREFIX_SIZE];
        uint32_t segment_size;
};

/* Writes the 40-byte header (reserved byte 0). */
void stream_header_write(const struct stream_header *h, uint8_t out[STREAM_HEADER_SIZE]);

/* Parses and validates the first STREAM_HEADER_SIZE bytes of buf (len may be
 * larger).  -EBADMSG or -EPROTONOSUPPORT with *ret_error on failure.  A
 * header that parses writes back to the same 40 bytes. */
int stream_parse_header(const uint8_t *buf, size_t len, struct stream_header *ret,
                        const char **ret_error);

/* --- incremental API: the caller moves one segment at a time ------------- */

struct stream_enc;
struct stream_dec;

/*
 * Starts a stream: draws a fresh nonce prefix and writes the header to
 * ret_header.  The key and context are copied; a is borrowed and must outlive
 * the stream (engine_aead is single-threaded, so is the stream).  -EINVAL for
 * a segment size out of range or generation 0, -EMSGSIZE when header, context
 * and one segment do not fit the engine's largest message (the kernel engine
 * carries about 200 KiB).
 */
int stream_enc_new(const struct engine_ops *ops, struct engine_aead *a,
                   const uint8_t key[ENGINE_KEY_SIZE], const uint8_t policy_id[FORMAT_POLICY_ID_SIZE],
                   uint32_t generation, const uint8_t *ctx, size_t ctx_len, uint32_t segment_size,
                   struct stream_enc **ret, uint8_t ret_header[STREAM_HEADER_SIZE]);

/*
 * Seals the next segment into out (len + STREAM_TAG_SIZE bytes).  A non-final
 * segment carries exactly the segment size; the final one 1..segment size, or
 * 0 when it is the first (empty plaintext).  -EINVAL for any other length or
 * a call after the final segment, -EFBIG when the counter is exhausted (a
 * non-final segment at STREAM_MAX_COUNTER).
 */
int stream_enc_segment(struct stream_enc *s, const uint8_t *in, size_t len, bool last,
                       uint8_t *out, size_t *ret_out_len);

/* Wipes the key copy and frees.  NULL is fine. */
void stream_enc_free(struct stream_enc *s);

/*
 * Starts decrypting a stream whose header h was parsed by
 * stream_parse_header.  -EMSGSIZE (with *ret_error) when a segment of this
 * stream does not fit the engine's largest message; the openssl engine has
 * no limit.
 */
int stream_dec_new(const struct engine_ops *ops, struct engine_aead *a,
                   const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                   const uint8_t *ctx, size_t ctx_len, struct stream_dec **ret,
                   const char **ret_error);

/*
 * Opens the next segment: in is its ciphertext and tag, last says whether it
 * ends the input (the reader saw end of file right after it).  A non-final
 * segment must be exactly segment size + 16 bytes and a final one at most
 * that (-EINVAL otherwise: split the input by position).  out holds
 * len - 16 bytes.  -EBADMSG with *ret_error when the segment is rejected;
 * then out holds nothing and the stream refuses every later call.
 */
int stream_dec_segment(struct stream_dec *s, const uint8_t *in, size_t len, bool last,
                       uint8_t *out, size_t *ret_out_len, const char **ret_error);

/* Whether the final segment has been accepted: only then is the output
 * complete and authentic. */
bool stream_dec_done(const struct stream_dec *s);

void stream_dec_free(struct stream_dec *s);

/* --- whole streams between two file descriptors -------------------------- */

/*
 * Encrypts everything readable from in_fd to out_fd (header, then segments),
 * reading one byte ahead to tell the final segment, so pipes work as well as
 * files.  Memory: one plaintext and one ciphertext segment buffer, whatever
 * the size of the input.  Blocking descriptors; nothing is seeked.
 * ret_plaintext_size (may be NULL) gets the bytes encrypted.
 */
int stream_encrypt_fd(const struct engine_ops *ops, struct engine_aead *a,
                      const uint8_t key[ENGINE_KEY_SIZE], const uint8_t policy_id[FORMAT_POLICY_ID_SIZE],
                      uint32_t generation, const uint8_t *ctx, size_t ctx_len, uint32_t segment_size,
                      int in_fd, int out_fd, uint64_t *ret_plaintext_size, const char **ret_error);

/* Reads exactly the 40 header bytes from fd and parses them, so the caller
 * can find the key (policy, generation) before stream_decrypt_fd goes on
 * from the same descriptor. */
int stream_read_header_fd(int fd, struct stream_header *ret, const char **ret_error);

/*
 * Decrypts the segments that follow the header on in_fd to out_fd.  Output is
 * unverified until this returns 0 (see above).  Stable messages for
 * -EBADMSG: "stream truncated", "segment failed authentication", "data after
 * the final segment", "stream too long", "empty final segment".
 */
int stream_decrypt_fd(const struct engine_ops *ops, struct engine_aead *a,
                      const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                      const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                      uint64_t *ret_plaintext_size, const char **ret_error);

/* For tests: moves the segment counter, to reach its limit quickly. */
void stream_enc_test_set_counter(struct stream_enc *s, uint64_t counter);
void stream_dec_test_set_counter(struct stream_dec *s, uint64_t counter);
