/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Input for the streaming format: a descriptor read ahead on a thread of its
 * own, in large chunks of whole pieces (segments), into two buffers in turn,
 * so that the copy out of the page cache or pipe overlaps the caller's crypto
 * on the other buffer, with one read per chunk instead of two per segment.
 * The caller takes the input one piece at a time and is told which piece is
 * the last: a full piece is last only when the input ends right after it.
 *
 * Memory: two chunks, whatever the size of the input.  The thread only reads;
 * it waits for input with poll() beside an eventfd, so that freeing the
 * reader stops it even while a pipe stays open and silent.  Where no thread
 * can be started the same reads happen in the caller's thread.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Input read per chunk (rounded up to whole pieces). */
#define STREAM_IO_CHUNK (512u * 1024u)

struct piece_reader;

/* Starts reading fd (blocking or not) in pieces of piece bytes.  -ENOMEM. */
int piece_reader_new(int fd, size_t piece, struct piece_reader **ret);

/*
 * The next piece: piece bytes, or for the last one 0..piece (0 only when the
 * whole input is empty).  *ret_p stays valid until the next call or
 * piece_reader_free.  A read error comes back as its negative errno; a call
 * after the last piece is -EINVAL.
 */
int piece_reader_next(struct piece_reader *r, const uint8_t **ret_p, size_t *ret_len, bool *ret_last);

/* Waits at most timeout_ms until piece_reader_next() would not block:
 * 0 then (also at end of input, after an error, and always where no thread
 * could be started: there next() reads itself), -ETIMEDOUT when the input
 * has not come yet.  For a caller that must act on time while a slow input
 * trickles in. */
int piece_reader_wait(struct piece_reader *r, unsigned timeout_ms);

/* Stops the thread, wipes the buffers (they may hold plaintext) and frees.
 * NULL is fine. */
void piece_reader_free(struct piece_reader *r);

/* Writes all n bytes (EINTR retried, short writes continued).  Under a
 * timeout, a pipe, socket or terminal is written as fast as it is read,
 * and -ETIME comes back when it takes nothing for that long. */
int stream_write_full(int fd, const uint8_t *buf, size_t n);

/* read_full (util.h) for stream input: a pipe or socket that stays silent
 * for the timeout gives -ETIME (not -ETIMEDOUT, which stores use: a caller
 * can tell the descriptor's silence from theirs). */
int stream_read_full(int fd, void *buf, size_t size, size_t *ret_len);

/* stream_read_full, and a write to the eventfd stop_fd ends a wait for a
 * silent pipe or socket with -ECANCELED: for a reader thread that must stop
 * when its stream does. */
int stream_read_stoppable(int fd, void *buf, size_t size, int stop_fd, size_t *ret_len);

/* The process's limit on how long one pipe or socket may go without moving
 * data in this module's reads, piece_reader_next() included, and writes
 * (dkmd: [daemon] stream_timeout); 0, the default, waits for ever. */
void stream_io_set_timeout_usec(uint64_t usec);
