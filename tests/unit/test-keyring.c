/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * keyring.c against the real kernel keyring.  The suite joins a fresh
 * anonymous session keyring first, so it neither sees nor leaves anything in
 * the caller's.  keyctl is called directly only to set up situations (revoke)
 * and to look from a child process.
 */
#include <errno.h>
#include <keyutils.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/keyring.h"

static int keyring_unavailable;

static int setup_session(void **state)
{
        (void)state;
        if (keyctl_join_session_keyring(NULL) < 0) {
                /* No keyring here (seccomp, old kernel): skip, do not pass. */
                fprintf(stderr, "keyctl_join_session_keyring: %s: skipping\n", strerror(errno));
                keyring_unavailable = 1;
        }
        return 0;
}

static keyring_serial_t fresh_ring(const char *name, int attach_to_process)
{
        keyring_serial_t ring;

        if (keyring_unavailable)
                skip();

        assert_int_equal(keyring_open(name, attach_to_process, &ring), 0);
        assert_true(ring > 0);
        return ring;
}

static unsigned perm_of(keyring_serial_t key)
{
        char desc[256];
        unsigned uid, gid, perm;

        assert_int_equal(keyring_describe(key, desc, sizeof(desc)), 0);
        /* "type;uid;gid;perm;description" */
        assert_int_equal(sscanf(strchr(desc, ';') + 1, "%u;%u;%x;", &uid, &gid, &perm), 3);
        return perm;
}

static void test_open_finds_existing(void **state)
{
        keyring_serial_t a, b, other;

        (void)state;
        a = fresh_ring("dkm-test-open", 0);
        b = fresh_ring("dkm-test-open", 0);
        assert_int_equal(a, b);
        other = fresh_ring("dkm-test-open-2", 0);
        assert_int_not_equal(a, other);
        /* possessor all, nobody else anything */
        assert_int_equal(perm_of(a), KEY_POS_ALL);

        /* A loosened keyring is tightened again on open. */
        assert_int_equal(keyctl_setperm(a, KEY_POS_ALL | KEY_USR_ALL | KEY_OTH_VIEW), 0);
        b = fresh_ring("dkm-test-open", 0);
        assert_int_equal(a, b);
        assert_int_equal(perm_of(a), KEY_POS_ALL);

        assert_int_equal(keyring_open("", 0, &b), -EINVAL);
}

static void test_add_search_read(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-asr", 0), key, found;
        const char payload[] = "0123456789abcdef0123456789abcdef";
        char buf[64] = { 0 };
        size_t len = 0;

        (void)state;
        assert_int_equal(keyring_add(ring, "pk:1", payload, 32, 0, &key), 0);
        assert_int_equal(keyring_search(ring, "pk:1", &found), 0);
        assert_int_equal(found, key);
        assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), 0);
        assert_int_equal(len, 32);
        assert_memory_equal(buf, payload, 32);
        /* user key, possessor view/read/write/search/link/setattr only */
        assert_int_equal(perm_of(key),
                         KEY_POS_VIEW | KEY_POS_READ | KEY_POS_SEARCH | KEY_POS_WRITE |
                                 KEY_POS_SETATTR | KEY_POS_LINK);

        assert_int_equal(keyring_search(ring, "pk:absent", &found), -ENOKEY);

        /* Same description: the key is updated in place. */
        assert_int_equal(keyring_add(ring, "pk:1", "other", 5, 0, &found), 0);
        assert_int_equal(found, key);
        assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(buf, "other", 5);

        assert_int_equal(keyring_add(ring, "", "x", 1, 0, &found), -EINVAL);
        /* The kernel refuses an empty "user" payload. */
        assert_int_equal(keyring_add(ring, "pk:empty", "", 0, 0, &found), -EINVAL);
}

/* A logon key holds the generation keys in kernel custody: the process
 * that added it, which possesses it with every possessor permission, still
 * cannot read a byte back; yet it is alive, and dies like any key. */
static void test_logon_unreadable(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-logon", 1), key;
        uint8_t payload[32], buf[64];
        size_t len = 0;

        (void)state;
        memset(payload, 0x5a, sizeof(payload));
        memset(buf, 0, sizeof(buf));
        assert_int_equal(keyring_add_logon(ring, "dkm:gen:test:1", payload, sizeof(payload), 60, &key), 0);
        assert_true(key > 0);
        assert_int_equal(perm_of(key),
                         KEY_POS_VIEW | KEY_POS_READ | KEY_POS_SEARCH | KEY_POS_WRITE |
                                 KEY_POS_SETATTR | KEY_POS_LINK);
        assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), -EOPNOTSUPP);
        for (size_t i = 0; i < sizeof(buf); i++)
                assert_int_equal(buf[i], 0);
        /* Not even through libkeyutils' allocating read. */
        {
                void *p = NULL;

                assert_true(keyctl_read_alloc(key, &p) < 0);
                assert_int_equal(errno, EOPNOTSUPP);
                assert_null(p);
        }
        {
                keyring_serial_t found = 0;
                int r;

                assert_int_equal(keyring_find(ring, "logon", "dkm:gen:test:1", &found), 0);
                assert_int_equal(found, key);
                /* A dead logon key still answers a read with EOPNOTSUPP
                 * until the collector reaps it: only a search tells. */
                assert_int_equal(keyring_invalidate(key), 0);
                /* -EKEYREVOKED until the collector unlinks it, then -ENOKEY. */
                r = keyring_find(ring, "logon", "dkm:gen:test:1", &found);
                assert_true(r == -ENOKEY || r == -EKEYREVOKED);
                r = keyring_find(ring, "user", "dkm:gen:test:1", &found);
                assert_true(r == -ENOKEY || r == -EKEYREVOKED);
        }

        /* The kernel wants "service:name"; dkm checks before it asks. */
        assert_int_equal(keyring_add_logon(ring, "nocolon", payload, 32, 0, &key), -EINVAL);
        assert_int_equal(keyring_add_logon(ring, ":x", payload, 32, 0, &key), -EINVAL);
        assert_int_equal(keyring_add_logon(ring, "dkm:x", NULL, 0, 0, &key), -EINVAL);
        assert_int_equal(keyring_find(ring, "logon", NULL, &key), -EINVAL);
}

static void test_read_enobufs(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-nobufs", 0), key;
        uint8_t payload[32], buf[32], zero[16] = { 0 };
        size_t len = 12345;

        (void)state;
        memset(payload, 0xA5, sizeof(payload));
        assert_int_equal(keyring_add(ring, "k", payload, sizeof(payload), 0, &key), 0);

        memset(buf, 0x11, sizeof(buf));
        assert_int_equal(keyring_read(key, buf, 16, &len), -ENOBUFS);
        assert_int_equal(len, 12345);              /* not written on error */
        assert_memory_equal(buf, zero, 16);        /* truncated secret wiped */
        assert_int_equal(buf[16], 0x11);           /* nothing past size */

        assert_int_equal(keyring_read(key, buf, 31, &len), -ENOBUFS);
        assert_int_equal(keyring_read(key, buf, 32, &len), 0);
        assert_int_equal(len, 32);
        assert_memory_equal(buf, payload, 32);
}

/* Returns just after CLOCK_REALTIME's whole second changed (time() and the
 * kernel's key expiry both read that clock's seconds). */
static void at_second_start(void)
{
        time_t t = time(NULL);

        while (time(NULL) == t)
                usleep(1000);
}

static void test_timeout_expires(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-expire", 0), key, found;
        char buf[16];
        size_t len;
        uint64_t sec = 0;

        (void)state;
        /* The kernel counts the timeout from the current whole second: a
         * second beginning between the add and the checks below would end
         * the key already.  Start just after one begins. */
        at_second_start();
        assert_int_equal(keyring_add(ring, "short", "secret", 6, 1, &key), 0);
        assert_int_equal(keyring_search(ring, "short", &found), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_int_equal(sec, 1);

        sleep(2);
        /* The kernel reports an expired key as -EKEYEXPIRED (until its
         * garbage collector reaps it, gc_delay seconds later: -ENOKEY). */
        assert_int_equal(keyring_search(ring, "short", &found), -EKEYEXPIRED);
        assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), -EKEYEXPIRED);
        assert_int_equal(keyring_remaining(key, &sec), -EKEYEXPIRED);
}

static void test_remaining(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-remaining", 0), key;
        uint64_t sec = 999;

        (void)state;
        assert_int_equal(keyring_add(ring, "forever", "x", 1, 0, &key), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_int_equal(sec, 0);

        assert_int_equal(keyring_set_timeout(key, 30), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_in_range(sec, 28, 30);

        /* Coarser above a minute: "2m" (or "1m" a second later). */
        assert_int_equal(keyring_set_timeout(key, 120), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_in_range(sec, 60, 120);

        assert_int_equal(keyring_set_timeout(key, 5 * 3600), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_in_range(sec, 4 * 3600, 5 * 3600);

        assert_int_equal(keyring_set_timeout(key, 3 * 86400), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_in_range(sec, 2 * 86400, 3 * 86400);

        assert_int_equal(keyring_set_timeout(key, 14 * 86400), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_in_range(sec, 7 * 86400, 14 * 86400);

        /* Timeout 0 clears it again. */
        assert_int_equal(keyring_set_timeout(key, 0), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_int_equal(sec, 0);

        /* A replaced key takes the new timeout, also "none". */
        assert_int_equal(keyring_add(ring, "forever", "y", 1, 600, &key), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_in_range(sec, 540, 600);
        assert_int_equal(keyring_add(ring, "forever", "z", 1, 0, &key), 0);
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_int_equal(sec, 0);

        assert_int_equal(keyring_remaining(0x7ffffff0, &sec), -ENOKEY);
}

/* Every unit of /proc/keys' timeout column, read at its own resolution:
 * the kernel writes whole units, rounded down. */
static void expect_line(const char *timeout, int state, uint64_t min, uint64_t max)
{
        char line[160];
        struct keyring_proc_entry e;

        snprintf(line, sizeof(line), "1c2d3e4f I--Q---     1 %-4s 3f010000     0     0 user      dkm:grant:7: 9\n",
                 timeout);
        assert_int_equal(keyring_proc_parse_line(line, &e), 0);
        assert_int_equal(e.serial, 0x1c2d3e4f);
        assert_int_equal(e.state, state);
        if (state == 0) {
                assert_int_equal(e.min_sec, min);
                assert_int_equal(e.max_sec, max);
        }
}

static void expect_bad(const char *line)
{
        struct keyring_proc_entry e = { .serial = 42 };

        assert_int_equal(keyring_proc_parse_line(line, &e), -EBADMSG);
        assert_int_equal(e.serial, 42); /* untouched */
}

static void test_proc_parse(void **state)
{
        struct keyring_proc_entry e;

        (void)state;
        expect_line("perm", 0, 0, 0);
        expect_line("expd", -EKEYEXPIRED, 0, 0);
        expect_line("59s", 0, 59, 59);
        expect_line("1s", 0, 1, 1);
        expect_line("0s", 0, 1, 1); /* the last second; never "no expiry" */
        expect_line("1m", 0, 60, 119);
        expect_line("59m", 0, 3540, 3599);
        expect_line("1h", 0, 3600, 7199);
        expect_line("2h", 0, 7200, 10799);  /* a 2 h grant one second in: 1h */
        expect_line("7h", 0, 25200, 28799); /* an 8 h grant one second in */
        expect_line("23h", 0, 82800, 86399);
        expect_line("1d", 0, 86400, 172799);
        expect_line("6d", 0, 518400, 604799);
        expect_line("1w", 0, 604800, 1209599);
        expect_line("52w", 0, 52 * 604800ULL, 53 * 604800ULL - 1);

        /* The flags decide before the timeout. */
        assert_int_equal(keyring_proc_parse_line("0000000a I--Q---     1 perm 3f1b0000  2995  3904 user      "
                                                 "dkm:grant:7: 9", &e), 0);
        assert_int_equal(e.perm, 0x3f1b0000);
        assert_int_equal(e.uid, 2995);
        assert_int_equal(e.gid, 3904);
        assert_int_equal(keyring_proc_parse_line("00000007 IR-Q---     1 1h   3f010000 0 0 user x: 1", &e), 0);
        assert_int_equal(e.state, -EKEYREVOKED);
        assert_int_equal(keyring_proc_parse_line("00000007 I-DQ---     1 1h   3f010000 0 0 user x: 1", &e), 0);
        assert_int_equal(e.state, -ENOKEY);
        assert_int_equal(keyring_proc_parse_line("00000007 I--Q--i     1 1h   3f010000 0 0 user x: 1", &e), 0);
        assert_int_equal(e.state, -ENOKEY);
        assert_int_equal(keyring_proc_parse_line("00000007 I--Q-N-     1 perm 3f010000 0 0 user x: 1", &e), 0);
        assert_int_equal(e.state, -ENOKEY);

        expect_bad("");
        expect_bad("garbage");
        expect_bad("00000007 I--Q---     1");
        expect_bad("00000007 I--Q---     1 1h   3f010000");                    /* no uid, gid */
        expect_bad("00000007 I--Q---     1 1h   3f010000 0 x user x: 1");     /* gid */
        expect_bad("00000007 I--Q--     1 1h   3f010000 0 0 user x: 1");     /* six flags */
        expect_bad("00000000 I--Q---     1 1h   3f010000 0 0 user x: 1");     /* serial 0 */
        expect_bad("80000000 I--Q---     1 1h   3f010000 0 0 user x: 1");     /* not a serial */
        expect_bad("00000007 I--Q---     1 1x   3f010000 0 0 user x: 1");     /* unit */
        expect_bad("00000007 I--Q---     1 h    3f010000 0 0 user x: 1");     /* no count */
        expect_bad("00000007 I--Q---     1 12   3f010000 0 0 user x: 1");     /* no unit */
        expect_bad("00000007 I--Q---     1 -1h  3f010000 0 0 user x: 1");     /* sign */
        expect_bad("00000007 I--Q---     1 1hh  3f010000 0 0 user x: 1");
        expect_bad("00000007 I--Q---     1 99999999999999w 3f010000 0 0 user x: 1"); /* overflow */
}

/* The range against the real kernel: what was set lies within it. */
static void test_remaining_range(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-range", 0), key;
        const unsigned set[] = { 30, 120, 3599, 3600, 7200, 28800, 3 * 86400, 14 * 86400 };
        uint64_t min, max;

        (void)state;
        assert_int_equal(keyring_add(ring, "ranged", "x", 1, 0, &key), 0);
        assert_int_equal(keyring_remaining_range(key, &min, &max), 0);
        assert_int_equal(min, 0);
        assert_int_equal(max, 0);
        for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
                assert_int_equal(keyring_set_timeout(key, set[i]), 0);
                assert_int_equal(keyring_remaining_range(key, &min, &max), 0);
                /* Read within two seconds of setting it. */
                assert_true(min <= set[i]);
                assert_true(max + 2 >= set[i]);
                assert_true(min <= max);
        }
        assert_int_equal(keyring_remaining_range(0x7ffffff0, &min, &max), -ENOKEY);
}

/* The snapshot agrees with a read per key, for live, permanent, revoked
 * and unknown keys; a key made after it is not in it (-ENOKEY: the caller
 * reads /proc/keys for that one). */
static void test_proc_snapshot(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-snap", 0), keys[40], late, revoked;
        struct keyring_proc_snapshot snap;
        uint64_t min, max, min1, max1;

        (void)state;
        for (size_t i = 0; i < 40; i++) {
                char desc[16];

                snprintf(desc, sizeof(desc), "k%zu", i);
                assert_int_equal(keyring_add(ring, desc, "x", 1, i ? (unsigned)(i * 100) : 0, &keys[i]), 0);
        }
        assert_int_equal(keyring_add(ring, "rv", "x", 1, 0, &revoked), 0);
        assert_int_equal(keyctl_revoke(revoked), 0);
        assert_int_equal(keyring_proc_snapshot_read(&snap), 0);
        assert_true(snap.n >= 41);
        assert_int_equal(keyring_add(ring, "late", "x", 1, 600, &late), 0);
        for (size_t i = 0; i < 40; i++) {
                assert_int_equal(keyring_proc_snapshot_range(&snap, keys[i], &min, &max), 0);
                assert_int_equal(keyring_remaining_range(keys[i], &min1, &max1), 0);
                /* Read a moment apart: the same range, or the next one down. */
                assert_true(min <= i * 100 && max + 2 >= i * 100);
                assert_true(min1 <= max && max1 <= max);
        }
        assert_int_equal(keyring_proc_snapshot_range(&snap, revoked, &min, &max), -EKEYREVOKED);
        assert_int_equal(keyring_proc_snapshot_range(&snap, late, &min, &max), -ENOKEY);
        assert_int_equal(keyring_proc_snapshot_range(&snap, 0x7ffffff0, &min, &max), -ENOKEY);
        assert_int_equal(keyring_proc_snapshot_range(NULL, late, &min, &max), -EINVAL);
        keyring_proc_snapshot_free(&snap);
        assert_int_equal(snap.n, 0);
        keyring_proc_snapshot_free(&snap); /* twice is harmless */
}

/* In place, unlike keyring_add: a revoked key stays revoked. */
static void test_update(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-update", 0), key, found;
        uint64_t sec = 1;
        char buf[16];
        size_t len;

        (void)state;
        assert_int_equal(keyring_add(ring, "up", "old", 3, 600, &key), 0);
        assert_int_equal(keyring_update(key, "newer", 5), 0);
        assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), 0);
        assert_int_equal(len, 5);
        assert_memory_equal(buf, "newer", 5);
        /* The kernel drops the timeout on update: callers set it again. */
        assert_int_equal(keyring_remaining(key, &sec), 0);
        assert_int_equal(sec, 0);

        assert_int_equal(keyctl_revoke(key), 0);
        assert_int_equal(keyring_update(key, "again", 5), -EKEYREVOKED);
        assert_int_equal(keyring_search(ring, "up", &found), -EKEYREVOKED);
        assert_int_equal(keyring_update(key, NULL, 1), -EINVAL);
}

static void test_revoked(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-revoke", 0), key, found;
        uint64_t sec;
        char buf[8];
        size_t len;

        (void)state;
        assert_int_equal(keyring_add(ring, "rv", "x", 1, 0, &key), 0);
        assert_int_equal(keyctl_revoke(key), 0);
        assert_int_equal(keyring_search(ring, "rv", &found), -EKEYREVOKED);
        assert_int_equal(keyring_read(key, buf, sizeof(buf), &len), -EKEYREVOKED);
        assert_int_equal(keyring_remaining(key, &sec), -EKEYREVOKED);
}

static int contains(const keyring_serial_t *v, size_t n, keyring_serial_t k)
{
        for (size_t i = 0; i < n; i++)
                if (v[i] == k)
                        return 1;
        return 0;
}

static void test_invalidate_and_list(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-list", 0), k[3], found;
        keyring_serial_t *v = NULL;
        size_t n = 0;
        char buf[8];
        size_t len;
        int gone = 0, r;

        (void)state;
        assert_int_equal(keyring_list(ring, &v, &n), 0);
        assert_null(v);
        assert_int_equal(n, 0);

        assert_int_equal(keyring_add(ring, "a", "1", 1, 0, &k[0]), 0);
        assert_int_equal(keyring_add(ring, "b", "2", 1, 0, &k[1]), 0);
        assert_int_equal(keyring_add(ring, "c", "3", 1, 0, &k[2]), 0);
        assert_int_equal(keyring_list(ring, &v, &n), 0);
        assert_int_equal(n, 3);
        for (int i = 0; i < 3; i++)
                assert_true(contains(v, n, k[i]));
        free(v);

        assert_int_equal(keyring_invalidate(k[1]), 0);
        /* Gone at once for lookups: a search says -EKEYREVOKED until the
         * garbage collector has unlinked it, -ENOKEY after... */
        r = keyring_search(ring, "b", &found);
        assert_true(r == -EKEYREVOKED || r == -ENOKEY);
        /* By serial the answer depends on how far the garbage collector
         * got: -EKEYREVOKED while still linked, -EACCES once unlinked (no
         * longer possessed), -ENOKEY once destroyed.  Never success. */
        r = keyring_read(k[1], buf, sizeof(buf), &len);
        assert_true(r == -EKEYREVOKED || r == -EACCES || r == -ENOKEY);
        r = keyring_invalidate(k[1]);
        assert_true(r == -EKEYREVOKED || r == -EACCES || r == -ENOKEY);
        /* ...and unlinked by the kernel's garbage collector shortly after. */
        for (int i = 0; i < 100 && !gone; i++) {
                assert_int_equal(keyring_list(ring, &v, &n), 0);
                gone = !contains(v, n, k[1]);
                assert_true(contains(v, n, k[0]) && contains(v, n, k[2]));
                free(v);
                if (!gone)
                        usleep(10000);
        }
        assert_true(gone);
        assert_int_equal(n, 2);
}

/* In a child: optionally drop to nobody, optionally start a new session,
 * then try to read key.  Exits with the errno of the read (0 = it worked). */
static int child_read(keyring_serial_t key, int drop_uid, int new_session)
{
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0) {
                char buf[64];

                if (drop_uid && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
                        _exit(200);
                if (new_session && keyctl_join_session_keyring(NULL) < 0)
                        _exit(201);
                if (keyctl_read(key, buf, sizeof(buf)) < 0)
                        _exit(errno);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static void test_possessor_only(void **state)
{
        keyring_serial_t proc_ring, sess_ring, pkey, skey;
        char buf[8];
        size_t len;

        (void)state;
        if (geteuid() != 0)
                skip(); /* needs setuid() to 65534 */

        proc_ring = fresh_ring("dkm-test-perm-proc", 1);
        sess_ring = fresh_ring("dkm-test-perm-sess", 0);
        assert_int_equal(keyring_add(proc_ring, "p", "secret", 6, 0, &pkey), 0);
        assert_int_equal(keyring_add(sess_ring, "s", "secret", 6, 0, &skey), 0);
        assert_int_equal(keyring_read(pkey, buf, sizeof(buf), &len), 0);

        /* The process keyring is not inherited across fork(): the child does
         * not possess the key, and neither nobody nor root may read it. */
        assert_int_equal(child_read(pkey, 1, 0), EACCES);
        assert_int_equal(child_read(pkey, 0, 0), EACCES);

        /* Another session of another user has no access either. */
        assert_int_equal(child_read(skey, 1, 1), EACCES);
        assert_int_equal(child_read(skey, 0, 1), EACCES);

        /* But a session keyring is inherited, and possession does not care
         * about uid: this is why dkmd attaches its keyring to the process. */
        assert_int_equal(child_read(skey, 1, 0), 0);
}

/* Reads key from a child that is uid 65534 in a session of its own (no
 * possession), in group `group` or in none ((gid_t)-1). */
static int child_read_in_group(keyring_serial_t key, gid_t group)
{
        pid_t pid = fork();
        int status;

        assert_true(pid >= 0);
        if (pid == 0) {
                char buf[64];

                if (setgroups(group == (gid_t)-1 ? 0 : 1, &group) < 0 || setgid(65534) < 0 ||
                    setuid(65534) < 0)
                        _exit(200);
                if (keyctl_join_session_keyring(NULL) < 0)
                        _exit(201);
                if (keyctl_read(key, buf, sizeof(buf)) < 0)
                        _exit(errno);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

/* The grants keyring's scheme: a group's members get the group bits. */
static void test_group(void **state)
{
        keyring_serial_t ring = fresh_ring("dkm-test-group", 0), key;
        char desc[256];
        unsigned uid, gid, perm;

        (void)state;
        if (geteuid() != 0)
                skip(); /* another gid than our own, and setuid() to 65534 */
        assert_int_equal(keyring_add(ring, "g", "grant", 5, 0, &key), 0);
        assert_int_equal(keyring_set_group(key, 4242), 0);
        assert_int_equal(keyring_set_perm(key, KEY_POS_ALL | KEY_GRP_VIEW | KEY_GRP_READ), 0);
        assert_int_equal(keyring_describe(key, desc, sizeof(desc)), 0);
        assert_int_equal(sscanf(strchr(desc, ';') + 1, "%u;%u;%x;", &uid, &gid, &perm), 3);
        assert_int_equal(gid, 4242);
        assert_int_equal(perm, KEY_POS_ALL | KEY_GRP_VIEW | KEY_GRP_READ);

        assert_int_equal(child_read_in_group(key, 4242), 0);
        assert_int_equal(child_read_in_group(key, (gid_t)-1), EACCES);
        assert_int_equal(child_read_in_group(key, 4243), EACCES);
        assert_int_equal(keyring_set_group(0x7ffffff0, 4242), -ENOKEY);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_open_finds_existing),
                cmocka_unit_test(test_add_search_read),
                cmocka_unit_test(test_logon_unreadable),
                cmocka_unit_test(test_read_enobufs),
                cmocka_unit_test(test_timeout_expires),
                cmocka_unit_test(test_remaining),
                cmocka_unit_test(test_proc_parse),
                cmocka_unit_test(test_remaining_range),
                cmocka_unit_test(test_proc_snapshot),
                cmocka_unit_test(test_update),
                cmocka_unit_test(test_revoked),
                cmocka_unit_test(test_invalidate_and_list),
                cmocka_unit_test(test_possessor_only),
                cmocka_unit_test(test_group),
        };

        return cmocka_run_group_tests(tests, setup_session, NULL);
}
