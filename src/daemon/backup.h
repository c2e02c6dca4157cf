/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Backups of the store (dkmctl backup, dkmd --restore).  A backup is every
 * record of the store at one revision, as the backend holds it: each value
 * still carries its own MAC (store/store-auth.h), and so holds wrapped keys
 * only.  The file as a whole is MACed under a key derived from the master
 * key with a label of its own.  Little-endian throughout:
 *
 *   offset size  field
 *        0    8  magic "DKMBKUP\n"
 *        8    4  format version (1)
 *       12    4  flags (0)
 *       16    8  length of the whole file, MAC included
 *       24    8  store revision of the snapshot (its latest write)
 *       32    8  time the backup was made (Unix seconds)
 *       40    8  number of records
 *       48    8  key check: the first 8 bytes of HMAC-SHA256(backup key,
 *                "dkm backup key check"), to tell another installation's
 *                backup from an altered one
 *       56    2  length of the backend name, then the name ("sqlite", "etcd")
 *        .    2  length of the source, then the source (the SQLite file or
 *                the etcd prefix)
 *        .       records, sorted by key, each: u32 key length (1..1024),
 *                the key (UTF-8), u32 value length (<= 1 MiB + 256), the value
 *     end-32 32  HMAC-SHA256 under the backup key of every byte before it
 *
 * The backup key is HKDF-SHA256(master key, no salt, "dkm store backup v1").
 * Everything returns 0 or -errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "shared/keyring.h"
#include "store/store-auth.h"

struct store;

#define BACKUP_MAGIC "DKMBKUP\n"
#define BACKUP_VERSION 1
#define BACKUP_KEY_SIZE 32
#define BACKUP_FIXED_HEADER 56
#define BACKUP_NAME_MAX 4096
#define BACKUP_VALUE_MAX (1024u * 1024u + 256u)
#define BACKUP_ERR_MAX 512

struct backup_header {
        uint32_t version;
        uint64_t length, revision, created, n_records;
        uint8_t check[8];
        char backend[BACKUP_NAME_MAX + 1];
        char source[BACKUP_NAME_MAX + 1];
};

/* The backup key from the 32-byte master key. */
int backup_derive_key(const uint8_t *master, uint8_t ret[BACKUP_KEY_SIZE]);

/* --- the file format, for the daemon, unit tests and the fuzzer --------- */

struct backup_writer {
        uint8_t *buf;
        size_t len, cap;
        uint64_t n_records;
        int error;
};

/* Starts a backup of the given header fields (n_records and length are
 * filled in by backup_writer_finish). */
void backup_writer_begin(struct backup_writer *w, uint64_t revision, uint64_t created, const char *backend,
                         const char *source);
void backup_writer_add(struct backup_writer *w, const char *key, const uint8_t *value, size_t len);
/* Completes the header and appends the MAC: the file is w->buf, w->len. */
int backup_writer_finish(struct backup_writer *w, const uint8_t key[BACKUP_KEY_SIZE]);
void backup_writer_free(struct backup_writer *w);

/* Checks a whole backup file and hands each record to cb (which may stop
 * the walk with a non-zero value, returned).  key NULL skips the MAC and
 * key check (the fuzzer's way into the records).  -EBADMSG with err saying
 * what is wrong: not a backup, another version, truncated, made under
 * another master key, altered. */
int backup_parse(const uint8_t *buf, size_t len, const uint8_t *key, struct backup_header *ret_header,
                 int (*cb)(const char *key, const uint8_t *value, size_t len, void *userdata), void *userdata,
                 char *err, size_t err_size);

/* --- what dkmd does with them -------------------------------------------- */

/* Writes a backup of backend (the store under the authenticated layer) to
 * fd: every record not under a lease (those end by themselves: node
 * heartbeats), at one revision.  Records whose own MAC does not verify
 * under record_key are left out and counted in *ret_refused. */
int backup_snapshot(struct store *backend, const char *backend_name, const char *source,
                    const uint8_t *master, const uint8_t *record_key, int fd, uint64_t *ret_records,
                    uint64_t *ret_revision, uint64_t *ret_refused, uint64_t *ret_bytes, char *err,
                    size_t err_size);

/* Records as their writers wrote them (MACs checked and taken off), sorted
 * by key: what a restore or a migration puts into an empty store. */
struct backup_rec {
        char *key;
        uint8_t *value;
        size_t len;
};

struct backup_set {
        struct backup_rec *v;
        size_t n;
};

/* Appends the record key = sealed (as the backend holds it) once its MAC
 * verifies under record_key; keys must come in order.  -EBADMSG with err
 * naming the record when it does not. */
int backup_set_add(struct backup_set *set, const uint8_t *record_key, const char *key, const uint8_t *sealed,
                   size_t len, char *err, size_t err_size);
void backup_set_free(struct backup_set *set);
/* How many records backend (under any wrapping) holds. */
int backup_store_count(struct store *backend, size_t *ret_n);
/* Writes every record of set into s (authenticated, over an empty backend:
 * each put requires the key to be absent), re-sealed under s's revisions
 * so that its authentication holds, then reads every record back through s
 * and compares: -EBADMSG with err naming the first that differs or was
 * refused. */
int backup_fill(struct store *s, const struct backup_set *set, char *err, size_t err_size);

/* dkmd --restore: fills the empty store s (authenticated, over an empty
 * backend) from the backup at path after checking it whole, re-sealing
 * each record under s's revisions so that its authentication holds, then
 * reads every record back through s and compares.  backend: the store
 * under s, which must hold no record at all.  Logs which generations
 * of which policies the backup holds.  -ENOTEMPTY when s holds anything. */
int backup_restore(struct store *s, struct store *backend, const char *path, const uint8_t *master,
                   const uint8_t *record_key, uint64_t *ret_records, char *err, size_t err_size);

/* dkmd --restore path: wraps *backend (an empty backend store, just
 * opened) in the authenticated layer with the node's seen file for that
 * store, seen (*backend then names the wrapper, or NULL on failure),
 * restores, logs and audits (op=store-restore).  master: the master key's
 * serial. */
int backup_restore_file(struct store **backend, keyring_serial_t master, const uint8_t *record_key,
                        const char *seen, const char *path, store_auth_refused_fn refused);
