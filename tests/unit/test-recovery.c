/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Recovery shares: the share format (shared/recovery-share.h), secret
 * sharing through libgfshare (shared/shamir.h), the store's recovery record
 * and the whole split, recover and write path (daemon/recovery.h) over an
 * in-memory store. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/masterkey.h"
#include "daemon/recovery.h"
#include "daemon/wrap.h"
#include "engine/engine.h"
#include "shared/recovery-share.h"
#include "shared/shamir.h"
#include "store/store-auth.h"
#include "store/store.h"

static const char good[] =
        "dkm-share-1:db6b376ee48b7db3:0f94f24c:3:5:1:"
        "70408cacb75ccd87af0266909b654d23b04874888a82d1b547feeef0cbf27ea3:cbc47967";

static void test_parse_good(void **state)
{
        struct recovery_share s;
        char line[RECOVERY_SHARE_TEXT_MAX], crlf[sizeof(good) + 2];

        (void)state;
        assert_int_equal(recovery_share_parse(good, strlen(good), &s), 0);
        assert_int_equal(s.threshold, 3);
        assert_int_equal(s.shares, 5);
        assert_int_equal(s.index, 1);
        assert_int_equal(s.install_id[0], 0xdb);
        assert_int_equal(s.set_id[3], 0x4c);
        assert_int_equal(s.value[0], 0x70);
        assert_int_equal(s.value[31], 0xa3);
        /* The checksum is zlib's CRC-32 of the text before the last ':'. */
        assert_int_equal(recovery_share_crc32("123456789", 9), 0xcbf43926u);
        assert_int_equal(recovery_share_format(&s, line, sizeof(line)), 0);
        assert_string_equal(line, good);
        snprintf(crlf, sizeof(crlf), "%s\r\n", good);
        assert_int_equal(recovery_share_parse(crlf, strlen(crlf), &s), 0);
        /* Too small a buffer: refused, and nothing of the share left in it. */
        assert_int_equal(recovery_share_format(&s, line, 40), -ENOBUFS);
        assert_int_equal(line[0], 0);
}

/* Replaces the field at index f (0-based, ':'-separated) and, if fix, the
 * checksum so that only the field's own check can refuse it. */
static void edit(char *out, size_t size, int f, const char *value, bool fix)
{
        char tmp[256], *fields[8], *save = NULL;
        int n = 0;

        snprintf(tmp, sizeof(tmp), "%s", good);
        for (char *p = strtok_r(tmp, ":", &save); p && n < 8; p = strtok_r(NULL, ":", &save))
                fields[n++] = p;
        assert_int_equal(n, 8);
        fields[f] = (char *)value;
        snprintf(out, size, "%s:%s:%s:%s:%s:%s:%s:", fields[0], fields[1], fields[2], fields[3], fields[4],
                 fields[5], fields[6]);
        if (fix)
                snprintf(out + strlen(out), size - strlen(out), "%08x",
                         recovery_share_crc32(out, strlen(out) - 1));
        else
                snprintf(out + strlen(out), size - strlen(out), "%s", fields[7]);
}

static void test_parse_bad(void **state)
{
        static const struct {
                int field;
                const char *value;
                bool fix;
                int want;
        } cases[] = {
                /* one digit of the share mistyped: the checksum tells */
                { 6, "70408cacb75ccd87af0266909b654d23b04874888a82d1b547feeef0cbf27ea4", false, -EILSEQ },
                { 3, "2", false, -EILSEQ },
                { 5, "2", false, -EILSEQ },
                { 0, "dkm-share-2", true, -EPROTONOSUPPORT },
                { 0, "dkm-share-", true, -EBADMSG },
                { 0, "dkm-share-01", true, -EBADMSG },
                { 0, "xkm-share-1", true, -EBADMSG },
                { 1, "db6b376ee48b7db", true, -EBADMSG },
                { 1, "DB6B376EE48B7DB3", true, -EBADMSG },
                { 2, "0f94f24", true, -EBADMSG },
                { 3, "1", true, -ERANGE },   /* threshold 1: one share would be the key */
                { 3, "6", true, -ERANGE },   /* threshold above shares */
                { 4, "17", true, -ERANGE },
                { 5, "6", true, -ERANGE },   /* index above shares */
                { 5, "0", true, -EBADMSG },
                { 5, "05", true, -EBADMSG },
                { 5, "-1", true, -EBADMSG },
                { 5, "100", true, -EBADMSG },
                { 6, "70408cacb75ccd87af0266909b654d23b04874888a82d1b547feeef0cbf27e", true, -EBADMSG },
                { 6, "70408cacb75ccd87af0266909b654d23b04874888a82d1b547feeef0cbf27eaz", true, -EBADMSG },
                { 7, "cbc4796", false, -EBADMSG },
                { 7, "CBC47967", false, -EBADMSG },
        };
        struct recovery_share s;
        char line[256];

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                memset(&s, 0x5a, sizeof(s));
                edit(line, sizeof(line), cases[i].field, cases[i].value, cases[i].fix);
                if (recovery_share_parse(line, strlen(line), &s) != cases[i].want) {
                        fprintf(stderr, "case %zu: %s\n", i, line);
                        fail();
                }
                assert_int_equal(s.threshold, 0x5a5a5a5a); /* untouched on error */
        }
        assert_int_equal(recovery_share_parse("", 0, &s), -EBADMSG);
        assert_int_equal(recovery_share_parse(good, strlen(good) - 1, &s), -EBADMSG);
        snprintf(line, sizeof(line), "%s:", good);
        assert_int_equal(recovery_share_parse(line, strlen(line), &s), -EBADMSG);
        snprintf(line, sizeof(line), "%s\n\n", good);
        assert_int_equal(recovery_share_parse(line, strlen(line), &s), -EBADMSG);
        assert_non_null(strstr(recovery_share_strerror(-EILSEQ), "checksum"));
}

static void test_shamir(void **state)
{
        uint8_t secret[32], shares[16 * 32], out[32];
        const uint8_t *pick[3];
        uint8_t nrs[3];

        (void)state;
        for (int i = 0; i < 32; i++)
                secret[i] = (uint8_t)(i * 7 + 1);
        assert_int_equal(shamir_split(secret, 32, 5, 3, shares), 0);
        /* Any three rebuild it, in any order. */
        for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++)
                        for (int c = 0; c < 5; c++) {
                                if (a == b || b == c || a == c)
                                        continue;
                                pick[0] = shares + a * 32, pick[1] = shares + b * 32, pick[2] = shares + c * 32;
                                nrs[0] = (uint8_t)(a + 1), nrs[1] = (uint8_t)(b + 1), nrs[2] = (uint8_t)(c + 1);
                                assert_int_equal(shamir_combine(pick, nrs, 3, 32, out), 0);
                                assert_memory_equal(out, secret, 32);
                        }
        /* Two do not (pick is shares 5, 4, 3 now). */
        assert_int_equal(shamir_combine(pick, nrs, 2, 32, out), 0);
        assert_memory_not_equal(out, secret, 32);
        /* Two splits differ: the coefficients are random. */
        memcpy(out, shares, 32);
        assert_int_equal(shamir_split(secret, 32, 5, 3, shares), 0);
        assert_memory_not_equal(out, shares, 32);
        /* Refused: threshold 1, threshold above n, duplicate or zero numbers. */
        assert_int_equal(shamir_split(secret, 32, 5, 1, shares), -EINVAL);
        assert_int_equal(shamir_split(secret, 32, 3, 4, shares), -EINVAL);
        nrs[0] = nrs[1] = 1;
        assert_int_equal(shamir_combine(pick, nrs, 2, 32, out), -EINVAL);
        nrs[0] = 0, nrs[1] = 2;
        assert_int_equal(shamir_combine(pick, nrs, 2, 32, out), -EINVAL);
}

static void test_record(void **state)
{
        struct recovery_record rec = { .version = RECOVERY_RECORD_LEGACY,
                                       .install_id = { 1, 2, 3, 4, 5, 6, 7, 8 }, .set_id = { 9, 10, 11, 12 },
                                       .threshold = 3, .shares = 5, .created_usec = 1796663633664065 };
        struct recovery_record back;
        char *json = NULL;
        static const char *const bad[] = {
                "{}",
                "{\"version\":2,\"installation\":\"0102030405060708\",\"set\":\"090a0b0c\",\"threshold\":3,"
                "\"shares\":5,\"check\":\"" "0000000000000000000000000000000000000000000000000000000000000000"
                "\",\"created_usec\":1}",
                "{\"version\":1,\"installation\":\"0102030405060708\",\"set\":\"090a0b0c\",\"threshold\":1,"
                "\"shares\":5,\"check\":\"" "0000000000000000000000000000000000000000000000000000000000000000"
                "\",\"created_usec\":1}",
                "{\"version\":1,\"installation\":\"0102030405060708\",\"set\":\"090a0b0c\",\"threshold\":3,"
                "\"shares\":17,\"check\":\"" "0000000000000000000000000000000000000000000000000000000000000000"
                "\",\"created_usec\":1}",
                "{\"version\":1,\"installation\":\"01020304050607\",\"set\":\"090a0b0c\",\"threshold\":3,"
                "\"shares\":5,\"check\":\"" "0000000000000000000000000000000000000000000000000000000000000000"
                "\",\"created_usec\":1}",
                "[1]",
                "{\"version\":1} x",
        };

        (void)state;
        for (int i = 0; i < 32; i++)
                rec.check[i] = (uint8_t)i;
        assert_int_equal(recovery_record_encode(&rec, &json), 0);
        assert_int_equal(recovery_record_decode((const uint8_t *)json, strlen(json), &back), 0);
        assert_memory_equal(back.install_id, rec.install_id, sizeof(rec.install_id));
        assert_memory_equal(back.set_id, rec.set_id, sizeof(rec.set_id));
        assert_memory_equal(back.check, rec.check, sizeof(rec.check));
        assert_int_equal(back.threshold, 3);
        assert_int_equal(back.shares, 5);
        assert_int_equal(back.created_usec, rec.created_usec);
        free(json);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(recovery_record_decode((const uint8_t *)bad[i], strlen(bad[i]), &back), -EBADMSG);
        /* Version 2 carries the wrapped master key, and must. */
        rec.version = RECOVERY_RECORD_WRAPPED;
        for (int i = 0; i < WRAPPED_KEY_SIZE; i++)
                rec.wrapped[i] = (uint8_t)(0x80 + i);
        assert_int_equal(recovery_record_encode(&rec, &json), 0);
        assert_non_null(strstr(json, "\"version\":2,"));
        assert_non_null(strstr(json, "\"wrapped\":\"808182"));
        assert_int_equal(recovery_record_decode((const uint8_t *)json, strlen(json), &back), 0);
        assert_int_equal(back.version, RECOVERY_RECORD_WRAPPED);
        assert_memory_equal(back.wrapped, rec.wrapped, WRAPPED_KEY_SIZE);
        free(json);
        /* A later version is named as such, not as damage. */
        {
                static const char v3[] = "{\"version\":3,\"installation\":\"0102030405060708\"}";

                assert_int_equal(recovery_record_decode((const uint8_t *)v3, strlen(v3), &back),
                                 -EPROTONOSUPPORT);
        }
        rec.version = 7;
        assert_int_equal(recovery_record_encode(&rec, &json), -EINVAL);
}

/* Writes to out the share file in with field f (0-based) replaced and the
 * checksum made right again: a well-formed share that differs in f only. */
static void rewrite_share(const char *in, const char *out, int f, const char *value)
{
        char line[256], buf[256] = "", *save = NULL;
        int n = 0;
        FILE *fp = fopen(in, "r");

        assert_non_null(fp);
        assert_non_null(fgets(line, sizeof(line), fp));
        fclose(fp);
        line[strcspn(line, "\n")] = 0;
        for (char *p = strtok_r(line, ":", &save); p && n < 7; p = strtok_r(NULL, ":", &save), n++)
                snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", n ? ":" : "", n == f ? value : p);
        fp = fopen(out, "w");
        assert_non_null(fp);
        fprintf(fp, "%s:%08x\n", buf, recovery_share_crc32(buf, strlen(buf)));
        fclose(fp);
}

/* The whole path over an in-memory store: split at init, recover from any
 * three, refuse two, a damaged share, a wrong one and another installation's. */
static void test_create_and_recover(void **state)
{
        uint8_t master[32], other[32], rkey[32], got[32];
        char dir[] = "/tmp/dkm-test-recovery.XXXXXX", path[5][300], err[1024], keyfile[320], wrong[320];
        char *paths[5];
        struct store *inner, *s;
        struct recovery_record rec, rrec;
        struct stat st;
        bool written;
        FILE *f;
        char line[256];

        (void)state;
        assert_non_null(mkdtemp(dir));
        for (int i = 0; i < 32; i++)
                master[i] = (uint8_t)(0xa0 + i), other[i] = (uint8_t)i;
        assert_int_equal(masterkey_derive_record_key(master, rkey), 0);
        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &inner), 0);
        assert_int_equal(store_auth_open(inner, rkey, NULL, NULL, NULL, &s), 0);
        assert_int_equal(recovery_create(s, master, 5, 3, dir, NULL, &rec, err, sizeof(err)), 0);
        assert_int_equal(rec.threshold, 3);
        for (int i = 0; i < 5; i++) {
                snprintf(path[i], sizeof(path[i]), "%s/recovery-share-%d", dir, i + 1);
                paths[i] = path[i];
                assert_int_equal(stat(path[i], &st), 0);
                assert_int_equal(st.st_mode & 0777, 0600);
        }
        /* A second set is refused, and leaves the first alone. */
        assert_int_equal(recovery_create(s, master, 5, 3, dir, NULL, &rrec, err, sizeof(err)), -EEXIST);
        assert_int_equal(stat(path[4], &st), 0);

        /* recover reads the backend (s owns inner): the record key comes
         * from the shares. */
        assert_int_equal(recovery_recover(inner, paths + 2, 3, got, &rrec, err, sizeof(err)), 0);
        assert_memory_equal(got, master, 32);
        assert_int_equal(recovery_recover(inner, paths, 2, got, &rrec, err, sizeof(err)), -ENOKEY);
        assert_non_null(strstr(err, "needs 3 of its 5"));
        /* The same share twice counts once. */
        char *twice[3] = { paths[0], paths[0], paths[1] };
        assert_int_equal(recovery_recover(inner, twice, 3, got, &rrec, err, sizeof(err)), -ENOKEY);

        /* A wrong share with a valid checksum: the check value refuses it. */
        f = fopen(path[1], "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        fclose(f);
        {
                char *v = line;
                for (int i = 0; i < 6; i++)
                        v = strchr(v, ':') + 1;
                v[0] = v[0] == '0' ? '1' : '0';
                snprintf(wrong, sizeof(wrong), "%s/wrong", dir);
                *strrchr(line, ':') = 0;
                f = fopen(wrong, "w");
                fprintf(f, "%s:%08x\n", line, recovery_share_crc32(line, strlen(line)));
                fclose(f);
        }
        char *w[3] = { paths[0], wrong, paths[2] };
        assert_int_equal(recovery_recover(inner, w, 3, got, &rrec, err, sizeof(err)), -EKEYREJECTED);
        /* Another installation's share, another set's, another K of N. */
        rewrite_share(path[1], wrong, 1, "0123456789abcdef");
        assert_int_equal(recovery_recover(inner, w, 3, got, &rrec, err, sizeof(err)), -EXDEV);
        assert_non_null(strstr(err, "belongs to another installation (0123456789abcdef)"));
        rewrite_share(path[1], wrong, 2, "00000000");
        assert_int_equal(recovery_recover(inner, w, 3, got, &rrec, err, sizeof(err)), -ESTALE);
        rewrite_share(path[1], wrong, 3, "2");
        assert_int_equal(recovery_recover(inner, w, 3, got, &rrec, err, sizeof(err)), -ESTALE);
        /* A damaged one is named. */
        f = fopen(wrong, "w");
        fprintf(f, "not a share\n");
        fclose(f);
        assert_int_equal(recovery_recover(inner, w, 3, got, &rrec, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "not a dkm recovery share"));

        /* The key file: written once, 0600; the same key again is fine;
         * another key is never replaced. */
        snprintf(keyfile, sizeof(keyfile), "%s/master.key", dir);
        assert_int_equal(recovery_write_key(keyfile, master, &written, err, sizeof(err)), 0);
        assert_true(written);
        assert_int_equal(stat(keyfile, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(st.st_size, 32);
        assert_int_equal(recovery_write_key(keyfile, master, &written, err, sizeof(err)), 0);
        assert_false(written);
        assert_int_equal(recovery_write_key(keyfile, other, &written, err, sizeof(err)), -EEXIST);
        assert_non_null(strstr(err, "holds another key"));

        /* A store without a recovery record (never split, or not this one). */
        {
                struct store *inner2, *s2;
                uint8_t rkey2[32];

                assert_int_equal(masterkey_derive_record_key(other, rkey2), 0);
                assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &inner2), 0);
                assert_int_equal(store_auth_open(inner2, rkey2, NULL, NULL, NULL, &s2), 0);
                assert_int_equal(recovery_recover(inner2, paths, 3, got, &rrec, err, sizeof(err)), -ENOENT);
                store_close(s2);
        }
        store_close(s);
        for (int i = 0; i < 5; i++)
                unlink(path[i]);
        unlink(wrong);
        unlink(keyfile);
        rmdir(dir);
}

/* Reads share file path into *ret. */
static void load_share(const char *path, struct recovery_share *ret)
{
        char line[256];
        FILE *f = fopen(path, "r");

        assert_non_null(f);
        assert_non_null(fgets(line, sizeof(line), f));
        fclose(f);
        assert_int_equal(recovery_share_parse(line, strlen(line), ret), 0);
}

/* The attack a reshare must defeat: K shares of a set, combined by any
 * Shamir tool, give the master key itself, so no later set can make them
 * useless.  A set made now splits a recovery key R instead: the shares
 * combine to R, which is not the master key. */
static void test_shares_not_of_master(void **state)
{
        uint8_t master[32], rkey[32], got[32];
        char dir[] = "/tmp/dkm-test-recovery.XXXXXX", path[300], err[1024];
        struct recovery_share sh[3];
        const uint8_t *values[3];
        uint8_t numbers[3];
        struct store *inner, *s;
        struct recovery_record rec;

        (void)state;
        assert_non_null(mkdtemp(dir));
        for (int i = 0; i < 32; i++)
                master[i] = (uint8_t)(0x40 + i);
        assert_int_equal(masterkey_derive_record_key(master, rkey), 0);
        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &inner), 0);
        assert_int_equal(store_auth_open(inner, rkey, NULL, NULL, NULL, &s), 0);
        assert_int_equal(recovery_create(s, master, 5, 3, dir, NULL, &rec, err, sizeof(err)), 0);
        for (int i = 0; i < 3; i++) {
                snprintf(path, sizeof(path), "%s/recovery-share-%d", dir, i + 1);
                load_share(path, &sh[i]);
                values[i] = sh[i].value;
                numbers[i] = (uint8_t)sh[i].index;
        }
        assert_int_equal(shamir_combine(values, numbers, 3, 32, got), 0);
        assert_memory_not_equal(got, master, 32);
        store_close(s);
        for (int i = 1; i <= 5; i++) {
                snprintf(path, sizeof(path), "%s/recovery-share-%d", dir, i);
                unlink(path);
        }
        rmdir(dir);
}

static void make_custodians(const char *dir, const char *keys, int n);

/* A set made by an older dkmd: shares of the master key itself, a version 1
 * record without a wrapped key.  It still recovers, and a reshare replaces
 * it, saying that the old set was of the master key itself. */
static void test_legacy_set(void **state)
{
        uint8_t master[32], rkey[32], got[32], values[5 * 32];
        char dir[] = "/tmp/dkm-test-recovery.XXXXXX", path[5][300], err[1024], line[RECOVERY_SHARE_TEXT_MAX];
        char *paths[5], *json = NULL;
        struct recovery_record rec = { .version = RECOVERY_RECORD_LEGACY, .install_id = { 7, 7, 7, 7, 1, 2, 3, 4 },
                                       .set_id = { 5, 6, 7, 8 }, .threshold = 3, .shares = 5, .created_usec = 1 };
        struct recovery_record rrec;
        struct recovery_share sh = { .threshold = 3, .shares = 5 };
        struct store *inner, *s;
        struct store_cmp cmp = { RECOVERY_RECORD_KEY, 0 };
        struct store_op op = { STORE_PUT, RECOVERY_RECORD_KEY, NULL, 0 };
        FILE *f;

        (void)state;
        assert_non_null(mkdtemp(dir));
        for (int i = 0; i < 32; i++)
                master[i] = (uint8_t)(0x11 * i);
        assert_int_equal(masterkey_derive_record_key(master, rkey), 0);
        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &inner), 0);
        assert_int_equal(store_auth_open(inner, rkey, NULL, NULL, NULL, &s), 0);
        assert_int_equal(recovery_check_value(master, rec.install_id, rec.check), 0);
        assert_int_equal(recovery_record_encode(&rec, &json), 0);
        op.value = json;
        op.value_len = strlen(json);
        assert_int_equal(store_ops_of(s)->txn(s, &cmp, 1, &op, 1, NULL), 0);
        free(json);
        assert_int_equal(shamir_split(master, 32, 5, 3, values), 0);
        memcpy(sh.install_id, rec.install_id, 8);
        memcpy(sh.set_id, rec.set_id, 4);
        for (int i = 0; i < 5; i++) {
                sh.index = (unsigned)i + 1;
                memcpy(sh.value, values + i * 32, 32);
                assert_int_equal(recovery_share_format(&sh, line, sizeof(line)), 0);
                snprintf(path[i], sizeof(path[i]), "%s/recovery-share-%d", dir, i + 1);
                paths[i] = path[i];
                f = fopen(path[i], "w");
                assert_non_null(f);
                fprintf(f, "%s\n", line);
                fclose(f);
        }
        assert_int_equal(recovery_recover(inner, paths + 1, 3, got, &rrec, err, sizeof(err)), 0);
        assert_memory_equal(got, master, 32);
        assert_int_equal(rrec.version, RECOVERY_RECORD_LEGACY);
        assert_int_equal(recovery_recover(inner, paths, 2, got, &rrec, err, sizeof(err)), -ENOKEY);
        {
                char cdir[320], cmd[700];
                struct recovery_custodians *c = NULL;
                struct recovery_record old, neu;
                const uint8_t *v[3];
                uint8_t nr[3];
                struct recovery_share ls[3];

                snprintf(cdir, sizeof(cdir), "%s/c", dir);
                assert_int_equal(mkdir(cdir, 0700), 0);
                make_custodians(cdir, cdir, 5);
                assert_int_equal(recovery_custodians_load(cdir, 5, &c, err, sizeof(err)), 0);
                snprintf(cmd, sizeof(cmd), "%s/out", dir);
                assert_int_equal(recovery_reshare(s, master, 5, 3, c, cmd, (gid_t)-1, &old, &neu, err,
                                                  sizeof(err)), 0);
                assert_int_equal(old.version, RECOVERY_RECORD_LEGACY);
                assert_int_equal(neu.version, RECOVERY_RECORD_WRAPPED);
                /* dkmd refuses the old shares now, but they are of M: any
                 * Shamir tool still rebuilds it from them (the man page says
                 * so; only a master key rotation ends that). */
                assert_int_equal(recovery_recover(inner, paths, 3, got, &rrec, err, sizeof(err)), -ESTALE);
                for (int i = 0; i < 3; i++) {
                        FILE *lf = fopen(path[i], "r");
                        assert_non_null(lf);
                        assert_non_null(fgets(line, sizeof(line), lf));
                        fclose(lf);
                        assert_int_equal(recovery_share_parse(line, strlen(line), &ls[i]), 0);
                        v[i] = ls[i].value;
                        nr[i] = (uint8_t)ls[i].index;
                }
                assert_int_equal(shamir_combine(v, nr, 3, 32, got), 0);
                assert_memory_equal(got, master, 32);
                recovery_custodians_free(c);
                snprintf(cmd, sizeof(cmd), "rm -rf %s/c %s/out", dir, dir);
                assert_int_equal(system(cmd), 0);
        }
        store_close(s);
        for (int i = 0; i < 5; i++)
                unlink(path[i]);
        rmdir(dir);
}

static void run(const char *cmd)
{
        assert_int_equal(system(cmd), 0);
}

/* Custodian certificates made by openssl(1) as a custodian would. */
static void make_custodians(const char *dir, const char *keys, int n)
{
        char cmd[1024];

        for (int i = 0; i < n; i++) {
                snprintf(cmd, sizeof(cmd),
                         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
                         "-subj /CN=c%d -keyout %s/c%d.key -out %s/c%d.pem 2>/dev/null", i, keys, i, dir, i);
                run(cmd);
        }
}

/* Decrypts share i of set dir as custodian c<i-1> does, into out. */
static void decrypt_share(const char *dir, const char *keys, int i, const char *out)
{
        char cmd[4096];

        snprintf(cmd, sizeof(cmd), "openssl cms -decrypt -in %s/recovery-share-%d.c%d.cms -inform PEM "
                 "-recip %s/c%d.pem -inkey %s/c%d.key -out %s 2>/dev/null", dir, i, i - 1, keys, i - 1, keys,
                 i - 1, out);
        /* The certificates were moved next to the keys: the custodians'. */
        run(cmd);
}

static void test_custodian_names(void **state)
{
        char name[RECOVERY_CUSTODIAN_NAME_MAX + 1], long_name[100];

        (void)state;
        assert_int_equal(recovery_custodian_name("alice.pem", name), 0);
        assert_string_equal(name, "alice");
        assert_int_equal(recovery_custodian_name("bob-2_x.y.pem", name), 0);
        assert_string_equal(name, "bob-2_x.y");
        assert_int_equal(recovery_custodian_name("README", name), -ENOENT);
        assert_int_equal(recovery_custodian_name("alice.key", name), -ENOENT);
        assert_int_equal(recovery_custodian_name(".pem", name), -EINVAL);
        assert_int_equal(recovery_custodian_name(".hidden.pem", name), -EINVAL);
        assert_int_equal(recovery_custodian_name("a b.pem", name), -EINVAL);
        assert_int_equal(recovery_custodian_name("a:b.pem", name), -EINVAL);
        memset(long_name, 'a', 65);
        snprintf(long_name + 65, sizeof(long_name) - 65, ".pem");
        assert_int_equal(recovery_custodian_name(long_name, name), -EINVAL);
        long_name[64] = 0;
        snprintf(long_name + 64, sizeof(long_name) - 64, ".pem");
        assert_int_equal(recovery_custodian_name(long_name, name), 0);
}

/* Shares encrypted to custodians at init; a reshare makes a new set that
 * recovers, and the old set's shares are refused as an older set. */
static void test_custodians_and_reshare(void **state)
{
        uint8_t master[32], rkey[32], got[32];
        char tmp[] = "/tmp/dkm-test-reshare.XXXXXX", certs[300], keys[300], init[300], out[300], set[400],
             plain[5][300], plain2[5][300], err[1024], cmd[1024], setid[9];
        char *paths[5], *paths2[5];
        struct store *inner, *s;
        struct recovery_record rec, old, neu, rrec;
        struct recovery_custodians *c = NULL;
        struct stat st;

        (void)state;
        assert_non_null(mkdtemp(tmp));
        snprintf(certs, sizeof(certs), "%s/custodians", tmp);
        snprintf(keys, sizeof(keys), "%s/keys", tmp);
        snprintf(init, sizeof(init), "%s/init", tmp);
        snprintf(out, sizeof(out), "%s/out", tmp);
        assert_int_equal(mkdir(certs, 0700), 0);
        assert_int_equal(mkdir(keys, 0700), 0);
        make_custodians(certs, keys, 5);
        snprintf(cmd, sizeof(cmd), "cp %s/*.pem %s/", certs, keys);
        run(cmd);

        /* The errors a custodian directory can have, each by name. */
        assert_int_equal(recovery_custodians_load("/nonexistent-dkm-custodians", 5, &c, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "/nonexistent-dkm-custodians"));
        assert_int_equal(recovery_custodians_load(certs, 4, &c, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "holds 5 certificates"));
        snprintf(cmd, sizeof(cmd), "echo not a certificate > %s/c9.pem", certs);
        run(cmd);
        assert_int_equal(recovery_custodians_load(certs, 6, &c, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "c9.pem: not a PEM X.509 certificate"));
        snprintf(cmd, sizeof(cmd), "mv %s/c9.pem '%s/c 9.pem'", certs, certs);
        run(cmd);
        assert_int_equal(recovery_custodians_load(certs, 6, &c, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "'c 9.pem' is not a custodian certificate name"));
        snprintf(cmd, sizeof(cmd), "rm '%s/c 9.pem'", certs);
        run(cmd);
        assert_int_equal(recovery_custodians_load(certs, 5, &c, err, sizeof(err)), 0);
        assert_int_equal(recovery_custodians_count(c), 5);
        assert_string_equal(recovery_custodians_name(c, 0), "c0");
        assert_string_equal(recovery_custodians_name(c, 4), "c4");

        for (int i = 0; i < 32; i++)
                master[i] = (uint8_t)(0xf0 - i);
        assert_int_equal(masterkey_derive_record_key(master, rkey), 0);
        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &inner), 0);
        assert_int_equal(store_auth_open(inner, rkey, NULL, NULL, NULL, &s), 0);
        /* A reshare needs a set to replace, and custodians. */
        assert_int_equal(recovery_reshare(s, master, 5, 3, c, out, (gid_t)-1, &old, &neu, err, sizeof(err)),
                         -ENOENT);
        assert_int_equal(recovery_create(s, master, 5, 3, init, c, &rec, err, sizeof(err)), 0);
        assert_int_equal(rec.version, RECOVERY_RECORD_WRAPPED);
        for (int i = 0; i < 5; i++) {
                snprintf(plain[i], sizeof(plain[i]), "%s/plain-%d", tmp, i + 1);
                decrypt_share(init, keys, i + 1, plain[i]);
                paths[i] = plain[i];
        }
        assert_int_equal(recovery_recover(inner, paths, 3, got, &rrec, err, sizeof(err)), 0);
        assert_memory_equal(got, master, 32);

        assert_int_equal(recovery_reshare(s, master, 5, 3, NULL, out, (gid_t)-1, &old, &neu, err, sizeof(err)),
                         -EINVAL);
        assert_non_null(strstr(err, "custodians"));
        assert_int_equal(recovery_reshare(s, master, 5, 3, c, out, (gid_t)-1, &old, &neu, err, sizeof(err)), 0);
        assert_memory_equal(old.set_id, rec.set_id, 4);
        assert_memory_not_equal(neu.set_id, rec.set_id, 4);
        assert_memory_equal(neu.install_id, rec.install_id, 8);
        for (int i = 0; i < 4; i++)
                sprintf(setid + 2 * i, "%02x", neu.set_id[i]);
        snprintf(set, sizeof(set), "%s/%s", out, setid);
        assert_int_equal(stat(set, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0750);
        for (int i = 0; i < 5; i++) {
                snprintf(cmd, sizeof(cmd), "%s/recovery-share-%d.c%d.cms", set, i + 1, i);
                assert_int_equal(stat(cmd, &st), 0);
                assert_int_equal(st.st_mode & 0777, 0640);
                snprintf(plain2[i], sizeof(plain2[i]), "%s/new-%d", tmp, i + 1);
                decrypt_share(set, keys, i + 1, plain2[i]);
                paths2[i] = plain2[i];
        }
        /* The old shares open nothing the store holds now. */
        assert_int_equal(recovery_recover(inner, paths, 3, got, &rrec, err, sizeof(err)), -ESTALE);
        assert_non_null(strstr(err, "an older set"));
        assert_int_equal(recovery_recover(inner, paths2 + 2, 3, got, &rrec, err, sizeof(err)), 0);
        assert_memory_equal(got, master, 32);
        /* An out_dir that is no directory: refused, left as it was, and the
         * record still the new set's. */
        snprintf(cmd, sizeof(cmd), "%s/file", tmp);
        assert_int_equal(close(open(cmd, O_WRONLY | O_CREAT | O_EXCL, 0600)), 0);
        assert_int_equal(recovery_reshare(s, master, 5, 3, c, cmd, (gid_t)-1, &old, &rrec, err, sizeof(err)),
                         -ENOTDIR);
        assert_non_null(strstr(err, "something else than a directory is there"));
        assert_int_equal(stat(cmd, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(recovery_recover(inner, paths2, 3, got, &rrec, err, sizeof(err)), 0);
        /* Another master key is not resharing this store's set. */
        got[0] ^= 1;
        assert_int_equal(recovery_reshare(s, got, 5, 3, c, out, (gid_t)-1, &old, &neu, err, sizeof(err)),
                         -EKEYREJECTED);

        recovery_custodians_free(c);
        store_close(s);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
        run(cmd);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_good),
                cmocka_unit_test(test_parse_bad),
                cmocka_unit_test(test_shamir),
                cmocka_unit_test(test_record),
                cmocka_unit_test(test_create_and_recover),
                cmocka_unit_test(test_shares_not_of_master),
                cmocka_unit_test(test_legacy_set),
                cmocka_unit_test(test_custodian_names),
                cmocka_unit_test(test_custodians_and_reshare),
        };

        crypto_set_engine(&engine_openssl_ops);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
