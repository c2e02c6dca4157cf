/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One stream sealed or opened by several threads.  Every segment's nonce
 * depends on its index alone (stream.h), so segments can be processed out of
 * order: a reader thread reads the input straight into a ring of slots (a
 * few segments each), worker threads with an engine transform each seal or
 * open whole slots, and the caller's thread writes the slots out in order.
 *
 * Decryption stays online: a slot's plaintext is written only once every
 * segment in it and before it opened; at the first rejected segment the
 * segments before it (in its slot) are written, nothing after, and the
 * error and message are those of stream_decrypt_fd.
 *
 * Each stream has threads of its own for its life, so that concurrent
 * streams share the cores as the scheduler shares threads: a second stream
 * never waits behind the first.  Memory: the ring, at most
 * STREAM_POOL_MEM_MAX whatever the size of the stream (fewer workers than
 * asked when large segments would need more), mapped out of core dumps and
 * wiped where it held plaintext.
 */
#pragma once

#include <stdint.h>

#include "shared/stream.h"

#define STREAM_POOL_MEM_MAX (8u * 1024u * 1024u)
/* What one slot carries at least (rounded up to whole segments). */
#define STREAM_POOL_SLOT (256u * 1024u)
#define STREAM_POOL_THREADS_MAX 64u

/* Threads per stream for the process (dkmd: [daemon] stream_threads): 0 for
 * auto, the CPUs this process may run on; else 1..STREAM_POOL_THREADS_MAX. */
void stream_pool_set_threads(unsigned n);
/* The setting resolved: 1..STREAM_POOL_THREADS_MAX. */
unsigned stream_pool_threads(void);

/*
 * As stream_encrypt_fd (same arguments, output, errors and messages), with
 * threads workers (2..STREAM_POOL_THREADS_MAX; -EINVAL otherwise), each with
 * a transform of ops of its own (aead_new).
 */
int stream_encrypt_fd_pool(const struct engine_ops *ops, const uint8_t key[ENGINE_KEY_SIZE],
                           const uint8_t policy_id[FORMAT_POLICY_ID_SIZE], uint32_t generation,
                           const uint8_t *ctx, size_t ctx_len, uint32_t segment_size, int in_fd,
                           int out_fd, unsigned threads, uint64_t *ret_plaintext_size,
                           const char **ret_error);

/* As stream_decrypt_fd_checked, with threads workers as above; check is
 * asked by the caller's thread only. */
int stream_decrypt_fd_pool(const struct engine_ops *ops, const uint8_t key[ENGINE_KEY_SIZE],
                           const struct stream_header *h, const uint8_t *ctx, size_t ctx_len,
                           int in_fd, int out_fd, const struct stream_check *check, unsigned threads,
                           uint64_t *ret_plaintext_size, const char **ret_error);
