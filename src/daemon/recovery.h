/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Recovery shares (dkmd(8), "RECOVERY SHARES"): a share set splits a random
 * recovery key R into N Shamir shares, any K of which rebuild it
 * (shared/shamir.h), one per custodian; the store keeps the "recovery"
 * record: the installation id, the share set, K and N, the master key
 * wrapped under R (wrap.h, WRAP_RECOVERY_MASTER) and a check value of the
 * master key, authenticated like every record.  --recover rebuilds R, opens
 * the master key and checks it against that record before anything is
 * written.  A new set (a reshare) replaces the record, so the old shares
 * open nothing the store holds any more.  Sets made by an older dkmd
 * (record version 1) split the master key itself and still recover.
 * With [recovery] custodians=DIR each share is encrypted to one custodian's
 * certificate (CMS EnvelopedData, AES-256).  Everything returns 0 or -errno
 * and fills err with one sentence on failure; nothing here logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/engine.h"
#include "wrap.h"
#include "shared/recovery-share.h"
#include "store/store.h"

#define RECOVERY_RECORD_KEY "recovery"
#define RECOVERY_CHECK_SIZE 32
/* Record versions: 1, the shares are of the master key (an older dkmd's
 * sets); 2, the shares are of a recovery key that wraps the master key. */
#define RECOVERY_RECORD_LEGACY 1
#define RECOVERY_RECORD_WRAPPED 2
#define RECOVERY_CUSTODIAN_NAME_MAX 64

struct recovery_record {
        unsigned version;
        uint8_t install_id[RECOVERY_INSTALL_ID_SIZE];
        uint8_t set_id[RECOVERY_SET_ID_SIZE];
        unsigned threshold, shares;
        uint8_t check[RECOVERY_CHECK_SIZE];
        uint8_t wrapped[WRAPPED_KEY_SIZE]; /* version 2: the master key under R */
        uint64_t created_usec;
};

/* The record's JSON (malloc'd, NUL-terminated); rec->version says which. */
int recovery_record_encode(const struct recovery_record *rec, char **ret);
/* Parses the JSON (members it does not know, such as the store's dkm_auth,
 * are ignored); -EPROTONOSUPPORT for a version other than 1 and 2,
 * -EBADMSG when malformed or out of range. */
int recovery_record_decode(const uint8_t *buf, size_t len, struct recovery_record *ret);

/* The custodians of [recovery] custodians=DIR: one certificate per
 * NAME.pem, sorted by name. */
struct recovery_custodians;

/* The custodian name of a directory entry "NAME.pem": NAME is 1 to
 * RECOVERY_CUSTODIAN_NAME_MAX letters, digits, '-', '_' or '.', not
 * starting with '.'.  -EINVAL for another .pem name, -ENOENT for a name
 * that is not .pem (skipped); ret gets NAME with its NUL. */
int recovery_custodian_name(const char *entry, char ret[RECOVERY_CUSTODIAN_NAME_MAX + 1]);
/* Reads every NAME.pem of dir (a PEM X.509 certificate with an RSA or EC
 * key, valid now); want is [recovery] shares=, which their number must
 * equal (-EINVAL).  -ENOENT: no such directory; -EBADMSG: a file that is
 * not such a certificate (named in err). */
int recovery_custodians_load(const char *dir, unsigned want, struct recovery_custodians **ret, char *err,
                             size_t err_size);
void recovery_custodians_free(struct recovery_custodians *c);
size_t recovery_custodians_count(const struct recovery_custodians *c);
const char *recovery_custodians_name(const struct recovery_custodians *c, size_t i);

/* HKDF-SHA256 of the master key, salted with the installation id, with a
 * label of its own: tells the right master key without revealing it. */
int recovery_check_value(const uint8_t master[ENGINE_KEY_SIZE], const uint8_t install_id[RECOVERY_INSTALL_ID_SIZE],
                         uint8_t ret[RECOVERY_CHECK_SIZE]);

/* --init: a new recovery key split into n shares (threshold k), written
 * to dir/recovery-share-1..n (mode 0600, never over an existing file), or
 * with custodians (NULL: none) encrypted to them as
 * dir/recovery-share-I.NAME.cms, and the recovery record to s (an
 * authenticated store).  -EEXIST when the store has a recovery record
 * already or a share file exists; on failure no share file and no record
 * is left. */
int recovery_create(struct store *s, const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k,
                    const char *dir, const struct recovery_custodians *custodians, struct recovery_record *ret,
                    char *err, size_t err_size);

/* A reshare: a new recovery key R' split into n shares (threshold k),
 * encrypted to the custodians into out_root/<new set id>/ (directories
 * 0750, files 0640, group gid unless (gid_t)-1), and the store's record
 * replaced by one of the new set in one transaction that fails if the
 * record changed meanwhile.  The old set's record comes back in ret_old
 * (version 1: its shares still rebuild the master key itself).
 *   -ENOENT        the store has no recovery record (none made by --init)
 *   -EKEYREJECTED  master is not the key the record knows
 *   -ESTALE        the record changed meanwhile (another reshare)
 * On failure the record is the old one and no share file is left. */
int recovery_reshare(struct store *s, const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k,
                     const struct recovery_custodians *custodians, const char *out_root, gid_t gid,
                     struct recovery_record *ret_old, struct recovery_record *ret_new, char *err,
                     size_t err_size);

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
