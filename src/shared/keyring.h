/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one place that speaks libkeyutils (-1 plus errno) and turns it into
 * -errno.  dkmd keeps unwrapped keys in a dedicated keyring of its own, as
 * "user" keys readable only by their possessor, each with a timeout.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef int32_t keyring_serial_t;

/* Finds or creates the keyring called name, linked into the process keyring
 * (so that it dies with the process) when attach_to_process is set, else the
 * session keyring.  Permissions: possessor all, nobody else anything. */
int keyring_open(const char *name, int attach_to_process, keyring_serial_t *ret);

/* The same under any keyring (KEY_SPEC_* or a serial), with the given
 * permission mask (KEY_POS_*, KEY_USR_*, KEY_GRP_*, KEY_OTH_*). */
int keyring_open_at(keyring_serial_t parent, const char *name, uint32_t perm, keyring_serial_t *ret);

/* Adds (or replaces) a key of type "user" with the description in ring,
 * setting possessor-only permissions and a timeout (seconds, 0 = none). */
int keyring_add(keyring_serial_t ring, const char *desc, const void *payload, size_t len,
                unsigned timeout_sec, keyring_serial_t *ret);

/* Searches ring for a "user" key by description.  -ENOKEY when absent,
 * -EKEYEXPIRED, -EKEYREVOKED as the kernel says.  Treat all three as "not
 * cached": an expired key reads -EKEYEXPIRED until the garbage collector
 * reaps it (gc_delay, 5 min) and -ENOKEY after; an invalidated one reads
 * -EKEYREVOKED for the moment before it is unlinked. */
/* keyring_add with a permission mask of the caller's choosing. */
int keyring_add_perm(keyring_serial_t ring, const char *desc, const void *payload, size_t len,
                     unsigned timeout_sec, uint32_t perm, keyring_serial_t *ret);

int keyring_search(keyring_serial_t ring, const char *desc, keyring_serial_t *ret);

/* Adds a key of type "logon" (desc must read "service:name"): nobody can
 * read it back, the process that added it included; the kernel uses it (an
 * AF_ALG transform keyed by serial).  Possessor-only, with a timeout like
 * keyring_add().  keyring_read() of it fails with -EOPNOTSUPP. */
int keyring_add_logon(keyring_serial_t ring, const char *desc, const void *payload, size_t len,
                      unsigned timeout_sec, keyring_serial_t *ret);

/* The live key of this type and description in ring (keyring_search for
 * any type): expired, revoked and invalidated keys are passed over, which
 * is how a logon key's liveness is told (it cannot be read). */
int keyring_find(keyring_serial_t ring, const char *type, const char *desc, keyring_serial_t *ret);

/* Reads the payload straight into buf (size bytes, no copy on the heap);
 * *ret_len is the payload length.  -ENOBUFS if buf is too small: the kernel
 * may have written a truncated payload there, which is then wiped. */
int keyring_read(keyring_serial_t key, void *buf, size_t size, size_t *ret_len);

int keyring_set_timeout(keyring_serial_t key, unsigned timeout_sec);

/* Replaces the payload of this very key: -EKEYREVOKED for a revoked one
 * (where add_key() would make a new key).  The kernel drops the timeout
 * of a "user" key on update: set it again. */
int keyring_update(keyring_serial_t key, const void *payload, size_t len);

/* Sets the permission mask (KEY_POS_* ... KEY_OTH_*). */
int keyring_set_perm(keyring_serial_t key, uint32_t perm);

/* Gives the key to group gid, whose members then get the KEY_GRP_* bits.
 * Without CAP_SYS_ADMIN the caller must be a member of gid: -EACCES. */
int keyring_set_group(keyring_serial_t key, gid_t gid);

/* Seconds until the key expires: 0 for no expiry; -EKEYEXPIRED,
 * -EKEYREVOKED, -ENOKEY.  Read from /proc/keys (no keyctl reports expiry),
 * whose resolution grows with the value: exact below a minute, then whole
 * minutes, hours, days, weeks; rounded down, so "5m" gives 300: the least
 * the key may have left. */
int keyring_remaining(keyring_serial_t key, uint64_t *ret_sec);

/* The same as the range /proc/keys allows: "5m" is 300 to 359 s.  Both 0
 * for no expiry.  Compare against what dkm set with the range, never with
 * one end of it. */
int keyring_remaining_range(keyring_serial_t key, uint64_t *ret_min, uint64_t *ret_max);

/* One line of /proc/keys.  0 when it names a key: its serial, and state 0
 * (live, min_sec..max_sec seconds left, both 0 for no expiry) or
 * -EKEYEXPIRED, -EKEYREVOKED, -ENOKEY (dead, invalidated, negative).
 * -EBADMSG for a line that does not read as one. */
struct keyring_proc_entry {
        keyring_serial_t serial;
        int state;
        uint64_t min_sec, max_sec;
        uint32_t perm;     /* as keyctl describe gives them */
        unsigned uid, gid;
};
int keyring_proc_parse_line(const char *line, struct keyring_proc_entry *ret);

/* /proc/keys read once, for looking up many keys: each read lists every
 * key the reader may view, so reading it per key costs the square of the
 * keys.  usec: the wall clock just before the read (the figures are from
 * then). */
struct keyring_proc_snapshot {
        struct keyring_proc_entry *v; /* sorted by serial */
        size_t n;
        uint64_t usec;
};
int keyring_proc_snapshot_read(struct keyring_proc_snapshot *ret);
/* What keyring_remaining_range() says of key, as of the snapshot; -ENOKEY
 * also for a key the snapshot does not list (made after it). */
int keyring_proc_snapshot_range(const struct keyring_proc_snapshot *s, keyring_serial_t key,
                                uint64_t *ret_min, uint64_t *ret_max);
/* The snapshot's line for key, NULL when it has none. */
const struct keyring_proc_entry *keyring_proc_snapshot_find(const struct keyring_proc_snapshot *s,
                                                            keyring_serial_t key);
void keyring_proc_snapshot_free(struct keyring_proc_snapshot *s);

/* Invalidates a key: gone at once for everyone; the kernel's garbage
 * collector then unlinks it from every keyring (asynchronously). */
int keyring_invalidate(keyring_serial_t key);

/* Serial numbers of all keys linked in ring: a malloc'd array (free()),
 * NULL when the ring is empty. */
int keyring_list(keyring_serial_t ring, keyring_serial_t **ret, size_t *ret_n);
/* "type;uid;gid;perm;description" into buf; -ENOBUFS if it does not fit. */
int keyring_describe(keyring_serial_t key, char *buf, size_t size);
