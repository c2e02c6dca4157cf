/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel keyring, through libkeyutils.  Every call here turns
 * libkeyutils' "-1 and errno" into -errno; nothing else in dkm links
 * against it.
 *
 * Permissions are possessor-only.  Possession is a property of the calling
 * process's keyrings, not of its uid: the keys below are reachable from the
 * process (or session) keyring of dkmd, so dkmd can use them whatever its
 * uid, and root gets no access by being root (no uid bits are set).  A child
 * forked from dkmd does not inherit the process keyring, so with
 * attach_to_process it cannot reach the keys either; a session keyring, by
 * contrast, is inherited across fork() and setuid().
 */
#include <errno.h>
#include <inttypes.h>
#include <keyutils.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyring.h"
#include "util.h"

#define KEY_PERM_POSSESSOR_ONLY \
        (KEY_POS_VIEW | KEY_POS_READ | KEY_POS_SEARCH | KEY_POS_WRITE | KEY_POS_SETATTR | \
         KEY_POS_LINK)

/* libkeyutils returns -1 (or a long) with errno set on failure. */
static int keyerr(long r)
{
        return r < 0 ? negative_errno() : 0;
}

int keyring_open(const char *name, int attach_to_process, keyring_serial_t *ret)
{
        return keyring_open_at(attach_to_process ? KEY_SPEC_PROCESS_KEYRING : KEY_SPEC_SESSION_KEYRING,
                               name, KEY_POS_ALL, ret);
}

int keyring_open_at(keyring_serial_t target, const char *name, uint32_t perm, keyring_serial_t *ret)
{
        long found;
        key_serial_t ring;
        int r;

        if (!name || !*name || !ret)
                return -EINVAL;

        /* add_key() of a keyring never finds an existing one: it would make a
         * new keyring and displace the link to ours.  So look first. */
        found = keyctl_search(target, "keyring", name, 0);
        if (found >= 0) {
                ring = (key_serial_t)found;
        } else {
                r = negative_errno();
                /* No process keyring yet reads as -ENOKEY as well. */
                if (r != -ENOKEY && r != -EKEYEXPIRED && r != -EKEYREVOKED)
                        return r;
                ring = add_key("keyring", name, NULL, 0, target);
                if (ring < 0)
                        return negative_errno();
        }

        /* Also for a found keyring: somebody may have loosened it. */
        r = keyerr(keyctl_setperm(ring, perm));
        if (r < 0)
                return r;
        *ret = ring;
        return 0;
}

int keyring_add(keyring_serial_t ring, const char *desc, const void *payload, size_t len,
                unsigned timeout_sec, keyring_serial_t *ret)
{
        return keyring_add_perm(ring, desc, payload, len, timeout_sec, KEY_PERM_POSSESSOR_ONLY, ret);
}

int keyring_add_perm(keyring_serial_t ring, const char *desc, const void *payload, size_t len,
                     unsigned timeout_sec, uint32_t perm, keyring_serial_t *ret)
{
        key_serial_t key;
        int r;

        if (!desc || !*desc || (!payload && len) || !ret)
                return -EINVAL;

        key = add_key("user", desc, payload, len, ring);
        if (key < 0)
                return negative_errno();

        /* The kernel's default adds KEY_USR_VIEW; take it away.  The timeout
         * is set even when 0: add_key() on an existing description updates
         * that key, which must not keep an older timeout. */
        r = keyerr(keyctl_setperm(key, perm));
        if (r >= 0)
                r = keyerr(keyctl_set_timeout(key, timeout_sec));
        if (r < 0) {
                /* Never leave a key behind without its limits. */
                (void)keyctl_invalidate(key);
                return r;
        }
        *ret = key;
        return 0;
}

int keyring_add_logon(keyring_serial_t ring, const char *desc, const void *payload, size_t len,
                      unsigned timeout_sec, keyring_serial_t *ret)
{
        key_serial_t key;
        int r;

        /* The kernel wants "service:name" for logon keys. */
        if (!desc || !strchr(desc, ':') || desc[0] == ':' || !payload || !len || !ret)
                return -EINVAL;
        key = add_key("logon", desc, payload, len, ring);
        if (key < 0)
                return negative_errno();
        /* Search is what AF_ALG asks of whoever keys a transform by serial;
         * read would mean nothing, the logon type has no read. */
        r = keyerr(keyctl_setperm(key, KEY_PERM_POSSESSOR_ONLY));
        if (r >= 0)
                r = keyerr(keyctl_set_timeout(key, timeout_sec));
        if (r < 0) {
                (void)keyctl_invalidate(key);
                return r;
        }
        *ret = key;
        return 0;
}

int keyring_find(keyring_serial_t ring, const char *type, const char *desc, keyring_serial_t *ret)
{
        long r;

        if (!type || !desc || !ret)
                return -EINVAL;
        /* A search, not a read: only a search passes over expired, revoked
         * and invalidated keys (keyctl_read of a logon key answers
         * EOPNOTSUPP before it looks at the key's state). */
        r = keyctl_search(ring, type, desc, 0);
        if (r < 0)
                return negative_errno();
        *ret = (keyring_serial_t)r;
        return 0;
}

int keyring_search(keyring_serial_t ring, const char *desc, keyring_serial_t *ret)
{
        long r;

        if (!desc || !ret)
                return -EINVAL;
        r = keyctl_search(ring, "user", desc, 0);
        if (r < 0)
                return negative_errno();
        *ret = (keyring_serial_t)r;
        return 0;
}

int keyring_read(keyring_serial_t key, void *buf, size_t size, size_t *ret_len)
{
        long r;

        if ((!buf && size) || !ret_len)
                return -EINVAL;

        /* Straight into the caller's buffer: no heap copy of the secret.
         * keyctl_read() returns the full payload length and copies at most
         * size bytes, so a short buffer holds a truncated secret: wipe it. */
        r = keyctl_read(key, buf, size);
        if (r < 0)
                return negative_errno();
        if ((size_t)r > size) {
                secure_wipe(buf, size);
                return -ENOBUFS;
        }
        *ret_len = (size_t)r;
        return 0;
}

int keyring_update(keyring_serial_t key, const void *payload, size_t len)
{
        if (!payload && len)
                return -EINVAL;
        return keyerr(keyctl_update(key, payload, len));
}

int keyring_set_perm(keyring_serial_t key, uint32_t perm)
{
        return keyerr(keyctl_setperm(key, perm));
}

int keyring_set_group(keyring_serial_t key, gid_t gid)
{
        /* uid -1: the owner stays (and so does its quota). */
        return keyerr(keyctl_chown(key, (uid_t)-1, gid));
}

int keyring_set_timeout(keyring_serial_t key, unsigned timeout_sec)
{
        return keyerr(keyctl_set_timeout(key, timeout_sec));
}

/* /proc/keys timeout column: "perm", "expd" or a count with a unit that
 * grows with the value: seconds below a minute, then whole minutes, hours,
 * days, weeks, each rounded down.  So "2h" is anything from 2 h to 3 h less
 * a second: each unit is read at its own resolution. */
static int parse_proc_timeout(const char *s, uint64_t *ret_min, uint64_t *ret_max)
{
        uint64_t n = 0, unit;
        size_t i;

        if (strcmp(s, "perm") == 0) {
                *ret_min = *ret_max = 0;
                return 0;
        }
        if (strcmp(s, "expd") == 0)
                return -EKEYEXPIRED;
        /* Digits only: sscanf's %llu would take a sign or blanks. */
        for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
                if (n > (UINT64_MAX - 9) / 10)
                        return -EBADMSG;
                n = n * 10 + (uint64_t)(s[i] - '0');
        }
        if (i == 0 || s[i] == '\0' || s[i + 1] != '\0')
                return -EBADMSG;
        switch (s[i]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 604800; break;
        default: return -EBADMSG;
        }
        if (n > (UINT64_MAX - unit) / unit)
                return -EBADMSG;
        /* "0s" can show in the last second; 0 would read as "no expiry". */
        *ret_min = n ? n * unit : 1;
        *ret_max = n * unit + unit - 1;
        if (*ret_max < *ret_min)
                *ret_max = *ret_min;
        return 0;
}

int keyring_proc_parse_line(const char *line, struct keyring_proc_entry *ret)
{
        char flags[16], timeout[16];
        unsigned serial;
        int usage, n = 0;
        struct keyring_proc_entry e = {};

        if (!line || !ret)
                return -EINVAL;
        /* "serial flags usage timeout perm uid gid type desc"; %n makes
         * sure they were there. */
        if (sscanf(line, "%8x %15s %d %15s %8x %u %u%n", &serial, flags, &usage, timeout, &e.perm, &e.uid,
                   &e.gid, &n) != 7 || n == 0)
                return -EBADMSG;
        if (serial == 0 || serial > INT32_MAX)
                return -EBADMSG;
        e.serial = (keyring_serial_t)serial;
        /* Flags: I R D Q U N i (instantiated, revoked, dead, quota, under
         * construction, negative, invalidated), '-' where not set. */
        if (strlen(flags) != 7)
                return -EBADMSG;
        if (flags[1] == 'R')
                e.state = -EKEYREVOKED;
        else if (flags[2] == 'D' || flags[6] == 'i' || flags[5] == 'N')
                e.state = -ENOKEY;
        else {
                int r = parse_proc_timeout(timeout, &e.min_sec, &e.max_sec);

                if (r == -EBADMSG)
                        return r;
                e.state = r;
        }
        *ret = e;
        return 0;
}

int keyring_remaining_range(keyring_serial_t key, uint64_t *ret_min, uint64_t *ret_max)
{
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        FILE *f;
        int r = -ENOKEY;

        if (!ret_min || !ret_max)
                return -EINVAL;

        /* There is no keyctl that reports a key's expiry; /proc/keys is the
         * only source.  It lists the keys the reader may view, possession
         * included. */
        f = fopen("/proc/keys", "re");
        if (!f)
                return negative_errno();
        while (getline(&line, &cap, f) > 0) {
                struct keyring_proc_entry e;

                if (keyring_proc_parse_line(line, &e) < 0 || e.serial != key)
                        continue;
                r = e.state;
                if (r == 0) {
                        *ret_min = e.min_sec;
                        *ret_max = e.max_sec;
                }
                break;
        }
        fclose(f);
        return r;
}

static int entry_cmp(const void *a, const void *b)
{
        keyring_serial_t x = ((const struct keyring_proc_entry *)a)->serial;
        keyring_serial_t y = ((const struct keyring_proc_entry *)b)->serial;

        return x < y ? -1 : x > y;
}

int keyring_proc_snapshot_read(struct keyring_proc_snapshot *ret)
{
        _cleanup_free_ char *line = NULL;
        struct keyring_proc_snapshot s = { .usec = now_real_usec() };
        size_t cap = 0, size = 0;
        FILE *f;

        if (!ret)
                return -EINVAL;
        f = fopen("/proc/keys", "re");
        if (!f)
                return negative_errno();
        while (getline(&line, &cap, f) > 0) {
                struct keyring_proc_entry e;

                if (keyring_proc_parse_line(line, &e) < 0)
                        continue;
                if (s.n == size) {
                        struct keyring_proc_entry *v;

                        size = size ? 2 * size : 256;
                        v = reallocarray(s.v, size, sizeof(*v));
                        if (!v) {
                                free(s.v);
                                fclose(f);
                                return -ENOMEM;
                        }
                        s.v = v;
                }
                s.v[s.n++] = e;
        }
        fclose(f);
        /* The kernel lists them by serial already; sorting costs little and
         * does not rely on it. */
        if (s.n)
                qsort(s.v, s.n, sizeof(*s.v), entry_cmp);
        *ret = s;
        return 0;
}

const struct keyring_proc_entry *keyring_proc_snapshot_find(const struct keyring_proc_snapshot *s,
                                                            keyring_serial_t key)
{
        const struct keyring_proc_entry want = { .serial = key };

        return s && s->n ? bsearch(&want, s->v, s->n, sizeof(*s->v), entry_cmp) : NULL;
}

int keyring_proc_snapshot_range(const struct keyring_proc_snapshot *s, keyring_serial_t key,
                                uint64_t *ret_min, uint64_t *ret_max)
{
        const struct keyring_proc_entry *e;

        if (!s || !ret_min || !ret_max)
                return -EINVAL;
        e = keyring_proc_snapshot_find(s, key);
        if (!e)
                return -ENOKEY;
        if (e->state == 0) {
                *ret_min = e->min_sec;
                *ret_max = e->max_sec;
        }
        return e->state;
}

void keyring_proc_snapshot_free(struct keyring_proc_snapshot *s)
{
        if (!s)
                return;
        free(s->v);
        *s = (struct keyring_proc_snapshot){ 0 };
}

int keyring_remaining(keyring_serial_t key, uint64_t *ret_sec)
{
        uint64_t min, max;
        int r;

        if (!ret_sec)
                return -EINVAL;
        r = keyring_remaining_range(key, &min, &max);
        if (r == 0)
                *ret_sec = min;
        return r;
}

int keyring_invalidate(keyring_serial_t key)
{
        /* Invalidation makes the key unreachable for everyone at once and
         * the kernel's garbage collector then unlinks it from every keyring
         * that holds it.  An explicit keyctl_unlink() afterwards cannot work
         * (the key can no longer be looked up) and one before would cost us
         * possession, which invalidation needs. */
        return keyerr(keyctl_invalidate(key));
}

int keyring_list(keyring_serial_t ring, keyring_serial_t **ret, size_t *ret_n)
{
        _cleanup_free_ key_serial_t *v = NULL;
        size_t cap = 0;
        long r;

        if (!ret || !ret_n)
                return -EINVAL;

        /* Reading a keyring yields its serials; it may grow between the
         * size query and the read, so loop until the buffer was big enough. */
        for (;;) {
                r = keyctl_read(ring, (char *)v, cap * sizeof(*v));
                if (r < 0)
                        return negative_errno();
                if ((size_t)r <= cap * sizeof(*v))
                        break;
                free(v);
                cap = (size_t)r / sizeof(*v) + 4;
                v = calloc(cap, sizeof(*v));
                if (!v)
                        return -ENOMEM;
        }
        if (r == 0) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        *ret_n = (size_t)r / sizeof(*v);
        *ret = v;
        v = NULL;
        return 0;
}

int keyring_describe(keyring_serial_t key, char *buf, size_t size)
{
        long r;

        if (!buf || size == 0)
                return -EINVAL;
        /* Returns the length including the NUL; copies at most size bytes,
         * unterminated when short. */
        r = keyctl_describe(key, buf, size);
        if (r < 0)
                return negative_errno();
        if ((size_t)r > size) {
                buf[0] = '\0';
                return -ENOBUFS;
        }
        return 0;
}
