/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dkmd --config NEW --migrate-from OLD: every record of one store copied
 * into another, empty one (SQLite to an etcd prefix, or back), without
 * re-encrypting anything: the records hold wrapped keys only, and the same
 * master key opens them on both sides.  Each record is read from the source
 * (opened read-only), its MAC checked under the record key, and written to
 * the target through its authenticated layer (backup_fill(), shared with
 * --restore), which seals it afresh under the target's revisions.  What is
 * here is what needs no running daemon; main.c opens the stores, verifies
 * every generation of the copy (keys-verify.c) and audits.  Everything
 * returns 0 or -errno, with err saying why.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backup.h"
#include "shared/config.h"

struct store;

#define MIGRATE_ERR_MAX 1024

/* Whether the two configurations name the same store: both SQLite in the
 * same state directory (after resolving links), or both etcd on the same
 * prefix with an endpoint in common. */
bool migrate_same_store(const struct dkm_config *a, const struct dkm_config *b);

/* Every record of the backend src, its MAC checked under record_key, into
 * *ret (sorted by key).  Records under a lease are left out and counted in
 * *ret_leased: node heartbeats and grant markers end by themselves and the
 * nodes put their own back.  -EKEYREJECTED when a record does not verify
 * (err says which: the wrong master key, or an altered source), -EPROTO
 * when none is authenticated yet (a store of a dkmd from before records
 * were: this version must start on it once), -ENODATA when it is empty, -EBUSY
 * when live nodes still heartbeat in the source (err: stop them first). */
int migrate_read(struct store *src, const uint8_t *record_key, struct backup_set *ret, size_t *ret_leased,
                 char *err, size_t err_size);

/* The master key against the records: every service-managed policy key
 * (not purged) must unwrap with it.  -EKEYREJECTED otherwise.
 * *ret_policies: how many policies the set holds. */
int migrate_check_master(const struct backup_set *set, const uint8_t *master, unsigned *ret_policies,
                         char *err, size_t err_size);

/* Adds the "initialized" marker (main.c's STORE_INIT_KEY) in its place
 * when the set lacks it: a plain start of a target node must take the
 * copy for a store created on purpose.  1 when added, 0 when present. */
int migrate_ensure_marker(struct backup_set *set, const char *key, uint64_t now_usec);
