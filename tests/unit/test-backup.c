/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Backups (daemon/backup.h): the file format's writer and parser, and a
 * snapshot restored into an empty store through the authenticated layer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/backup.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "store/store.h"

static const uint8_t master[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const uint8_t other[32] = { 9 };
static const uint8_t record_key[32] = { 0x42 };

static int count_cb(const char *key, const uint8_t *value, size_t len, void *userdata)
{
        (*(int *)userdata)++;
        return 0;
}

/* A small backup of two records under master. */
static void make(struct backup_writer *w, const uint8_t *mk)
{
        uint8_t key[BACKUP_KEY_SIZE];

        assert_int_equal(backup_derive_key(mk, key), 0);
        backup_writer_begin(w, 7, 1700000000, "sqlite", "/var/lib/dkm/dkm.db");
        backup_writer_add(w, "format", (const uint8_t *)"{}", 2);
        backup_writer_add(w, "policies/x", (const uint8_t *)"{\"a\":1}", 7);
        assert_int_equal(backup_writer_finish(w, key), 0);
}

static void test_roundtrip(void **state)
{
        struct backup_writer w;
        struct backup_header h;
        uint8_t key[BACKUP_KEY_SIZE];
        char err[BACKUP_ERR_MAX];
        int n = 0;

        make(&w, master);
        assert_int_equal(backup_derive_key(master, key), 0);
        assert_int_equal(backup_parse(w.buf, w.len, key, &h, count_cb, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 2);
        assert_int_equal(h.revision, 7);
        assert_int_equal(h.created, 1700000000);
        assert_int_equal(h.n_records, 2);
        assert_int_equal(h.length, w.len);
        assert_string_equal(h.backend, "sqlite");
        assert_string_equal(h.source, "/var/lib/dkm/dkm.db");
        backup_writer_free(&w);
}

static void expect_refused(const uint8_t *buf, size_t len, const uint8_t *mk, const char *what)
{
        struct backup_header h;
        uint8_t key[BACKUP_KEY_SIZE];
        char err[BACKUP_ERR_MAX] = "";

        assert_int_equal(backup_derive_key(mk, key), 0);
        assert_int_equal(backup_parse(buf, len, key, &h, NULL, NULL, err, sizeof(err)), -EBADMSG);
        if (!strstr(err, what))
                fail_msg("expected \"%s\" in \"%s\"", what, err);
}

static void test_damage(void **state)
{
        struct backup_writer w;
        uint8_t *copy;

        make(&w, master);
        copy = malloc(w.len + 1);
        assert_non_null(copy);
        /* Every truncation is named as one. */
        for (size_t n = 8; n < w.len; n += 7)
                expect_refused(w.buf, n, master, "truncated");
        expect_refused(w.buf, 4, master, "not a dkm backup");
        /* Every altered byte after the header's fixed fields fails the MAC. */
        for (size_t i = BACKUP_FIXED_HEADER; i < w.len; i++) {
                memcpy(copy, w.buf, w.len);
                copy[i] ^= 0x01;
                expect_refused(copy, w.len, master, "altered");
        }
        memcpy(copy, w.buf, w.len);
        copy[24] ^= 1; /* the revision */
        expect_refused(copy, w.len, master, "altered");
        memcpy(copy, w.buf, w.len);
        copy[8] = 2;
        expect_refused(copy, w.len, master, "version 2");
        memcpy(copy, w.buf, w.len);
        copy[w.len] = 0;
        expect_refused(copy, w.len + 1, master, "after the end");
        /* Another installation's backup: its key check tells it apart. */
        expect_refused(w.buf, w.len, other, "another master key");
        free(copy);
        backup_writer_free(&w);
}

static void test_writer_limits(void **state)
{
        struct backup_writer w;
        uint8_t key[BACKUP_KEY_SIZE] = { 0 };

        backup_writer_begin(&w, 1, 1, "sqlite", "x");
        backup_writer_add(&w, "", (const uint8_t *)"v", 1);
        assert_int_equal(backup_writer_finish(&w, key), -E2BIG);
        backup_writer_free(&w);
}

/* --- through a store ---------------------------------------------------------- */

static struct store *auth_store(struct store **ret_backend)
{
        struct store *inner, *s;

        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &inner), 0);
        *ret_backend = inner;
        assert_int_equal(store_auth_open(inner, record_key, NULL, NULL, NULL, &s), 0);
        return s;
}

static void put(struct store *s, const char *k, const char *v)
{
        const struct store_op op = { STORE_PUT, k, v, strlen(v) };

        assert_int_equal(store_ops_of(s)->txn(s, NULL, 0, &op, 1, NULL), 0);
}

static int collect_cb(const struct store_kv *kv, void *userdata)
{
        char *out = userdata;

        strcat(out, kv->key);
        strcat(out, "=");
        strncat(out, (const char *)kv->value, kv->value_len);
        strcat(out, ";");
        return 0;
}

static void test_snapshot_restore(void **state)
{
        char path[] = "/tmp/dkm-test-backup-XXXXXX", err[BACKUP_ERR_MAX] = "";
        char before[4096] = "", after[4096] = "";
        struct store *backend, *s = auth_store(&backend), *backend2, *s2;
        uint64_t records, revision, refused, bytes, n = 0;
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        put(s, "format", "{\"format\":1}");
        put(s, "policies/a", "{\"name\":\"a\"}");
        put(s, "policies/a", "{\"name\":\"a2\"}"); /* its sequence is now 3 */
        put(s, "names/a", "a-id");
        assert_int_equal(store_ops_of(s)->range(s, "", collect_cb, before), 0);
        /* A grant live in the backup may have been revoked since. */
        put(s, "access/requests/0000000001", "{\"id\":1,\"state\":\"granted\",\"ended\":0}");
        /* A record forged without the key is left out of the backup. */
        {
                const struct store_op op = { STORE_PUT, "names/forged", "x", 1 };
                assert_int_equal(store_ops_of(backend)->txn(backend, NULL, 0, &op, 1, NULL), 0);
        }
        assert_int_equal(backup_snapshot(backend, "sqlite", ":memory:", master, record_key, fd, &records,
                                         &revision, &refused, &bytes, err, sizeof(err)),
                         0);
        assert_int_equal(records, 4);
        assert_int_equal(refused, 1);
        assert_int_equal(revision, 6);
        close(fd);

        /* Into a fresh store: every record reads back as it was written. */
        s2 = auth_store(&backend2);
        assert_int_equal(backup_restore(s2, backend2, path, master, record_key, &n, err, sizeof(err)), 0);
        assert_int_equal(n, 4);
        {
                struct store_kv kv = { 0 };
                const struct store_op del = { STORE_DELETE, "access/requests/0000000001", NULL, 0 };

                assert_int_equal(store_ops_of(s2)->get(s2, "access/requests/0000000001", &kv), 0);
                assert_non_null(strstr((char *)kv.value, "\"state\":\"revoked\""));
                assert_non_null(strstr((char *)kv.value, "\"ended_by\":\"restore\""));
                assert_null(strstr((char *)kv.value, "\"ended\":0"));
                store_kv_clear(&kv);
                assert_int_equal(store_ops_of(s2)->txn(s2, NULL, 0, &del, 1, NULL), 0);
        }
        assert_int_equal(store_ops_of(s2)->range(s2, "", collect_cb, after), 0);
        assert_string_equal(before, after);
        /* A second restore finds it no longer empty, and writes nothing. */
        assert_int_equal(backup_restore(s2, backend2, path, master, record_key, &n, err, sizeof(err)), -ENOTEMPTY);
        assert_non_null(strstr(err, "not empty"));
        store_close(s2);

        /* Another installation's master key: refused before anything is written. */
        s2 = auth_store(&backend2);
        assert_int_equal(backup_restore(s2, backend2, path, other, record_key, &n, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "another master key"));
        after[0] = 0;
        assert_int_equal(store_ops_of(backend2)->range(backend2, "", collect_cb, after), 0);
        assert_string_equal(after, "");
        store_close(s2);

        unlink(path);
        store_close(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_damage),
                cmocka_unit_test(test_writer_limits),
                cmocka_unit_test(test_snapshot_restore),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
