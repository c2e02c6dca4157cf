/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Streaming ciphertext format v2: the STREAM construction of Hoang,
 * Reyhanitabar, Rogaway and Vizár ("Online authenticated-encryption and its
 * nonce-reuse misuse-resistance", CRYPTO 2015) over AES-256-GCM, so that a
 * file of any size is encrypted and decrypted in fixed-size segments with
 * flat memory.  Header (40 bytes, then 32 more in the salted layout,
 * integers little-endian):
 *
 *   offset size  field
 *        0    4  magic "DKMC"
 *        4    1  version (2)
 *        5    1  algorithm (1 = AES-256-GCM)
 *        6    2  flags: 0 (first layout) or STREAM_FLAG_SALTED; others rejected
 *        8   16  policy id (UUID, binary)
 *       24    4  generation (>= 1)
 *       28    7  nonce prefix (random, fresh per stream)
 *       35    1  reserved (0; any other value is rejected)
 *       36    4  segment size S in bytes, 4096 <= S <= 1048576
 *       40   32  salted layout only: salt (random, fresh per stream)
 *   40 or 72     segments
 *
 * The segment key: in the salted layout (what dkm writes) a per-stream subkey
 *
 *   HKDF-SHA256(IKM = generation key, salt = the 32-byte salt,
 *               info = "dkm stream subkey" || header bytes 0..39, L = 32)
 *
 * so nonces only need to be unique within one stream, and a stream costs its
 * generation one use.  In the first layout (flags 0, still read, never
 * written) the generation key itself: there the 56-bit random prefix is all
 * that keeps nonces of different streams apart (two of n streams collide
 * with chance about n^2 / 2^57).
 *
 * Segment i (i = 0, 1, ...) is the GCM ciphertext of S plaintext bytes
 * followed by its 16-byte tag, except the final one, which carries 1..S bytes
 * (0 only when the whole plaintext is empty): exactly one final segment
 * always exists and nothing follows it.  Its nonce is
 *
 *   nonce prefix (7) || i as u32 big-endian (4) || 0x01 if final else 0x00 (1)
 *
 * and its AAD is the whole header (40 or 72 bytes, the salt included)
 * followed by the caller's canonical context (format_context_encode).  So a
 * reordered, duplicated or dropped segment has the wrong counter, a cut-off
 * stream ends in a segment sealed as non-final, an extended one has a final
 * segment before its end, a segment from another stream has another key or
 * prefix and header, and a changed salt or flags word changes the key and the
 * AAD: each fails authentication.  At most 2^32 segments (the counter never
 * wraps).
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
/* The part every layout has; the salted layout adds the salt. */
#define STREAM_HEADER_SIZE 40
#define STREAM_SALT_SIZE 32
#define STREAM_HEADER_MAX (STREAM_HEADER_SIZE + STREAM_SALT_SIZE)
#define STREAM_FLAG_SALTED 0x0001u
#define STREAM_SUBKEY_LABEL "dkm stream subkey"
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
        uint8_t salt[STREAM_SALT_SIZE];  /* flags & STREAM_FLAG_SALTED */
};

/* 40, or 72 for the salted layout. */
size_t stream_header_size(const struct stream_header *h);

/* How long the header that starts with these 40 bytes is (40 or 72), by its
 * flags word alone, so a reader knows how much more to read before parsing;
 * the parser validates. */
size_t stream_header_length(const uint8_t fixed[STREAM_HEADER_SIZE]);

/* Writes the stream_header_size(h) header bytes (reserved byte 0). */
void stream_header_write(const struct stream_header *h, uint8_t out[STREAM_HEADER_MAX]);

/* Parses and validates the header at the start of buf (len may be larger).
 * -EBADMSG or -EPROTONOSUPPORT with *ret_error on failure.  A header that
 * parses writes back to the same bytes. */
int stream_parse_header(const uint8_t *buf, size_t len, struct stream_header *ret,
                        const char **ret_error);

/* The key that seals the segments of the stream with header h: the subkey
 * derived from key for the salted layout (see above), key itself for the
 * first one.  For tests and for callers that want to see it. */
int stream_segment_key(const struct stream_header *h, const uint8_t key[ENGINE_KEY_SIZE],
                       uint8_t ret[ENGINE_KEY_SIZE]);

/* --- incremental API: the caller moves one segment at a time ------------- */

struct stream_enc;
struct stream_dec;

/*
 * Starts a stream in the salted layout: draws a fresh salt and nonce prefix,
 * derives the stream's subkey from key and writes the header
 * (*ret_header_len bytes, STREAM_HEADER_MAX) to ret_header.  The context is
 * copied, the subkey kept in locked memory; a is borrowed and must outlive
 * the stream (engine_aead is single-threaded, so is the stream).  -EINVAL for
 * a segment size out of range or generation 0, -EMSGSIZE when header, context
 * and one segment do not fit the engine's largest message (the kernel engine
 * carries about 200 KiB).
 */
int stream_enc_new(const struct engine_ops *ops, struct engine_aead *a,
                   const uint8_t key[ENGINE_KEY_SIZE], const uint8_t policy_id[FORMAT_POLICY_ID_SIZE],
                   uint32_t generation, const uint8_t *ctx, size_t ctx_len, uint32_t segment_size,
                   struct stream_enc **ret, uint8_t ret_header[STREAM_HEADER_MAX],
                   size_t *ret_header_len);

/*
 * Seals the next segment into out (len + STREAM_TAG_SIZE bytes).  A non-final
 * segment carries exactly the segment size; the final one 1..segment size, or
 * 0 when it is the first (empty plaintext).  -EINVAL for any other length or
 * a call after the final segment, -EFBIG when the counter is exhausted (a
 * non-final segment at STREAM_MAX_COUNTER).
 */
int stream_enc_segment(struct stream_enc *s, const uint8_t *in, size_t len, bool last,
                       uint8_t *out, size_t *ret_out_len);

/* Wipes the segment key and frees.  NULL is fine. */
void stream_enc_free(struct stream_enc *s);

/*
 * Segment number index sealed with transform a, leaving the stream's own
 * counter alone: each nonce depends on the index only, so workers with a
 * transform each may seal segments out of order (stream-pool.h).  s is
 * only read, so threads may share it.  The same length rules as
 * stream_enc_segment; -EFBIG past the counter's range.
 */
int stream_enc_seal_at(const struct stream_enc *s, struct engine_aead *a, uint64_t index,
                       const uint8_t *in, size_t len, bool last, uint8_t *out);

/*
 * Starts decrypting a stream whose header h was parsed by
 * stream_parse_header, either layout; key is the generation key (the subkey
 * is derived here).  -EMSGSIZE (with *ret_error) when a segment of this
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

/*
 * Opens segment number index with transform a, as stream_dec_segment does
 * (same checks, same messages) but without the stream's counter or its
 * sticky failure: for workers that open segments out of order; the caller
 * releases a segment only when it and all before it opened.
 */
int stream_dec_open_at(const struct stream_dec *s, struct engine_aead *a, uint64_t index,
                       const uint8_t *in, size_t len, bool last, uint8_t *out, const char **ret_error);

/* Whether the final segment has been accepted: only then is the output
 * complete and authentic. */
bool stream_dec_done(const struct stream_dec *s);

void stream_dec_free(struct stream_dec *s);

/* --- whole streams between two file descriptors -------------------------- */

/*
 * Encrypts everything readable from in_fd to out_fd (header, then segments).
 * The input is read ahead on a second thread in chunks of whole segments
 * (stream-io.h), which also tells the final segment, so pipes work as well
 * as files and the reading overlaps the crypto; the output is written once
 * per chunk.  Memory: two input chunks and one output chunk (about 1.5 MiB
 * with 64 KiB segments), whatever the size of the input.  Blocking
 * descriptors; nothing is seeked.
 * ret_plaintext_size (may be NULL) gets the bytes encrypted.
 */
int stream_encrypt_fd(const struct engine_ops *ops, struct engine_aead *a,
                      const uint8_t key[ENGINE_KEY_SIZE], const uint8_t policy_id[FORMAT_POLICY_ID_SIZE],
                      uint32_t generation, const uint8_t *ctx, size_t ctx_len, uint32_t segment_size,
                      int in_fd, int out_fd, uint64_t *ret_plaintext_size, const char **ret_error);

/* Reads exactly the header (40 or 72 bytes) from fd and parses it, so the caller
 * can find the key (policy, generation) before stream_decrypt_fd goes on
 * from the same descriptor. */
int stream_read_header_fd(int fd, struct stream_header *ret, const char **ret_error);

/*
 * Decrypts the segments that follow the header on in_fd to out_fd, read
 * ahead and written per chunk as stream_encrypt_fd does; only segments that
 * authenticated are written.  Output is unverified until this returns 0
 * (see above).  Stable messages for
 * -EBADMSG: "stream truncated", "segment failed authentication", "data after
 * the final segment", "stream too long", "empty final segment".
 */
int stream_decrypt_fd(const struct engine_ops *ops, struct engine_aead *a,
                      const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                      const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                      uint64_t *ret_plaintext_size, const char **ret_error);

/*
 * A condition a stream must keep meeting while it is decrypted, such as a
 * grant that can be revoked: fn is asked at least every interval_ms, also
 * while a slow input is awaited, and before any output when its last answer
 * is older than that; the output is then written a segment at a time.  A
 * negative errno from fn stops the stream: nothing more is written, and
 * stream_decrypt_fd_checked() returns it with *ret_error "stopped" (fn says
 * why to its own caller).  A write already under way (to a reader that is
 * slow to read) completes first; where the input reader could not start its
 * thread, a slow input is awaited without asking.
 */
struct stream_check {
        int (*fn)(void *userdata);
        void *userdata;
        unsigned interval_ms;
};

/* stream_decrypt_fd, asking check (NULL: never) as above. */
int stream_decrypt_fd_checked(const struct engine_ops *ops, struct engine_aead *a,
                              const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                              const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                              const struct stream_check *check, uint64_t *ret_plaintext_size,
                              const char **ret_error);

/* For tests: moves the segment counter, to reach its limit quickly. */
void stream_enc_test_set_counter(struct stream_enc *s, uint64_t counter);
void stream_dec_test_set_counter(struct stream_dec *s, uint64_t counter);
