/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Authenticated records: a store that wraps another (SQLite or etcd) and
 * MACs every value it writes, so that whoever can write to the store
 * without the master key (etcdctl, a disk editor) cannot forge or replay
 * what decides access or key state.
 *
 * Each value carries, inside it, "dkm_auth":"1.<seq>.<hex HMAC-SHA256>".  A
 * JSON object gets it as its last member (readers that do not know it, an
 * older dkmd among them, ignore it); any other value gets it after a
 * newline.  The MAC, under a key derived from the master key
 * (masterkey_derive_record_key), covers the store key (the record's name),
 * the sequence number and the value as the caller wrote it.
 *
 * The sequence number is one above the store's revision just before the
 * write, so a record's sequence only grows with each write of it, and is
 * never above the revision that wrote it.  Each node remembers, per key,
 * the highest sequence it has accepted (and the revision of each deletion),
 * persisted in its state directory; a record below that is a replay of an
 * earlier state and is refused.  (The same value put back again is
 * accepted: it is the state the node already has.)  A refused record is never handed to the caller: range()
 * and changes() leave it out, get() gives -EBADMSG; the node keeps its
 * previous state, and the refused() callback (log and audit) is told once
 * per key and revision.
 *
 * A store written before records were authenticated is taken over by
 * store_auth_migrate() at the first start: it authenticates every record
 * and then writes the format record; from then on an unauthenticated record
 * is refused.  Everything returns 0 or -errno.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_AUTH_KEY_SIZE 32
/* The format record: once present (and authentic), every record must be. */
#define STORE_AUTH_FORMAT_KEY "format"

/* Told of each refused record once per key and mod revision; why is one
 * short sentence.  Called without the store's locks held. */
typedef void (*store_auth_refused_fn)(const char *key, uint64_t mod_revision, const char *why,
                                      void *userdata);

/* Wraps inner (whose ownership passes to the new store, also on failure)
 * with the record key (copied into locked memory).  seen_path: the file
 * that keeps the sequences seen across restarts (NULL: memory only). */
int store_auth_open(struct store *inner, const uint8_t key[STORE_AUTH_KEY_SIZE], const char *seen_path,
                    store_auth_refused_fn refused, void *userdata, struct store **ret);

/* At start: when the format record is there and authentic, nothing to do
 * (0, *ret_migrated 0).  Otherwise authenticates every record of the store
 * (*ret_migrated of them) and writes the format record.  -EKEYREJECTED,
 * with err filled in, when the format record is missing or not authentic
 * although this node has seen it before (someone removed it to have forged
 * records authenticated). */
int store_auth_migrate(struct store *s, size_t *ret_migrated, char *err, size_t err_size);

/* At start, before anything is read: the backend's revision
 * (*ret_revision) against the highest this node has seen (*ret_high, kept
 * in the seen file, which the store's own damage cannot reach).  Below it,
 * the store was rolled back or replaced: -ESTALE with err naming both,
 * unless accept_older, which lowers the mark to the store's revision and
 * marks every key seen above it as lost (store_auth_lost). */
int store_auth_check_revision(struct store *s, bool accept_older, uint64_t *ret_revision,
                              uint64_t *ret_high, char *err, size_t err_size);

/* Whether key was seen in a newer store that this node gave up
 * (--accept-older-store) and not in the one it serves: a generation number
 * seen there must not be issued again under another key. */
bool store_auth_lost(struct store *s, const char *key);

/* For the administrator after a rolling upgrade (dkmd --authenticate-store):
 * authenticates every record that carries no MAC at all, as the first start
 * did; one whose MAC does not verify stays refused.  It vouches for whoever
 * wrote those records: older nodes, and anyone else with write access. */
int store_auth_adopt(struct store *s, size_t *ret_n, char *err, size_t err_size);

/* The backend under any wrapping (store_ops_of() gives the wrapper's). */
const struct store_ops *store_backend_ops(struct store *s);
/* The backend store itself, records as sealed (for backups); s when s is
 * not a wrapper. */
struct store *store_backend(struct store *s);

/* --- the envelope, for the wrapper, unit tests and the fuzzer ------------ */

/* A malloc'd copy of value with the MAC added. */
int store_auth_seal(const uint8_t key[STORE_AUTH_KEY_SIZE], const char *name, const uint8_t *value,
                    size_t len, uint64_t seq, uint8_t **ret, size_t *ret_len);
/* The value as written (malloc'd; ret_len bytes, plus a NUL not counted) and
 * its sequence: -ENODATA when buf carries no MAC at all, -EBADMSG when the
 * envelope is malformed, -EKEYREJECTED when the MAC does not match. */
int store_auth_unseal(const uint8_t key[STORE_AUTH_KEY_SIZE], const char *name, const uint8_t *buf,
                      size_t len, uint8_t **ret, size_t *ret_len, uint64_t *ret_seq);
