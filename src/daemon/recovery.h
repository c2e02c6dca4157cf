/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recovery shares of the master key (README.md, "Recovery shares"): at
 * --init the master key is split into N Shamir shares, any K of which
 * rebuild it (shared/shamir.h), written one per file for custodians; the
 * store keeps the "recovery" record: the installation id, the share set,
 * K and N, and a check value of the master key, authenticated like every
 * record.  --recover rebuilds the key from K shares and checks it against
 * that record before anything is written.  Everything returns 0 or -errno
 * and fills err with one sentence on failure; nothing here logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "shared/recovery-share.h"
#include "store/store.h"

#define RECOVERY_RECORD_KEY "recovery"
#define RECOVERY_CHECK_SIZE 32

struct recovery_record {
        uint8_t install_id[RECOVERY_INSTALL_ID_SIZE];
        uint8_t set_id[RECOVERY_SET_ID_SIZE];
        unsigned threshold, shares;
        uint8_t check[RECOVERY_CHECK_SIZE];
        uint64_t created_usec;
};

/* The record's JSON (malloc'd, NUL-terminated). */
int recovery_record_encode(const struct recovery_record *rec, char **ret);
/* Parses the JSON (members it does not know, such as the store's dkm_auth,
 * are ignored); -EBADMSG when malformed or out of range. */
int recovery_record_decode(const uint8_t *buf, size_t len, struct recovery_record *ret);

/* HKDF-SHA256 of the master key, salted with the installation id, with a
 * label of its own: tells the right master key without revealing it. */
int recovery_check_value(const uint8_t master[ENGINE_KEY_SIZE], const uint8_t install_id[RECOVERY_INSTALL_ID_SIZE],
                         uint8_t ret[RECOVERY_CHECK_SIZE]);

/* --init: splits master into n shares (threshold k), writes them to
 * dir/recovery-share-1..n (mode 0600, never over an existing file) and the
 * recovery record to s (an authenticated store).  -EEXIST when the store
 * has a recovery record already or a share file exists; on failure no share
 * file and no record is left. */
int recovery_create(struct store *s, const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k,
                    const char *dir, struct recovery_record *ret, char *err, size_t err_size);

/* --recover: reads the share files, rebuilds the master key into ret_master
 * (locked memory of ENGINE_KEY_SIZE bytes) and checks it against the
 * recovery record of raw (the backend store, not the authenticated
 * wrapper: the record key comes from the key being rebuilt).
 *   -ENOENT        the store has no recovery record
 *   -EBADMSG       a share file is not a share, is damaged, or is unreadable
 *   -EXDEV         a share of another installation
 *   -ESTALE        a share of an older share set, or with other K and N
 *   -ENOKEY        fewer than K distinct shares
 *   -EKEYREJECTED  the shares rebuild a key the store does not know */
int recovery_recover(struct store *raw, char *const *paths, unsigned n_paths, uint8_t *ret_master,
                     struct recovery_record *ret_rec, char *err, size_t err_size);

/* Writes the recovered key to path (mode 0600; "-": raw bytes to stdout,
 * refused on a terminal).  An existing file is never replaced: holding the
 * same key it is left alone (returns 0, *ret_written false), holding
 * another it is refused (-EEXIST). */
int recovery_write_key(const char *path, const uint8_t master[ENGINE_KEY_SIZE], bool *ret_written, char *err,
                       size_t err_size);
