/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ciphertext format v1: header layout, validation, context encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shared/format.h"

static void sample(uint8_t buf[FORMAT_OVERHEAD + 4])
{
        struct format_header h = { .version = 1, .algorithm = 1, .generation = 7 };

        for (int i = 0; i < 16; i++)
                h.policy_id[i] = (uint8_t)(0xa0 + i);
        for (int i = 0; i < 12; i++)
                h.nonce[i] = (uint8_t)i;
        memset(buf, 0xee, FORMAT_OVERHEAD + 4);
        format_header_write(&h, buf);
}

static void test_layout(void **state)
{
        uint8_t buf[FORMAT_OVERHEAD + 4];

        sample(buf);
        assert_memory_equal(buf, "DKMC", 4);
        assert_int_equal(buf[4], 1);     /* version */
        assert_int_equal(buf[5], 1);     /* AES-256-GCM */
        assert_int_equal(buf[6] | buf[7], 0);
        assert_int_equal(buf[8], 0xa0);  /* policy id */
        assert_int_equal(buf[24], 7);    /* generation, little-endian */
        assert_int_equal(buf[25] | buf[26] | buf[27], 0);
        assert_int_equal(buf[28], 0);    /* nonce */
        assert_int_equal(buf[39], 11);
}

static void test_parse_roundtrip(void **state)
{
        uint8_t buf[FORMAT_OVERHEAD + 4];
        struct format_header h;
        const char *why = NULL;

        sample(buf);
        assert_int_equal(format_parse(buf, sizeof(buf), &h, &why), 0);
        assert_int_equal(h.generation, 7);
        assert_int_equal(h.policy_id[15], 0xaf);
        assert_int_equal(h.nonce[11], 11);
        /* Exactly header + tag: an empty plaintext. */
        assert_int_equal(format_parse(buf, FORMAT_OVERHEAD, &h, &why), 0);
}

static void expect_error(const uint8_t *buf, size_t len, int err, const char *text)
{
        struct format_header h = { .generation = 12345 };
        const char *why = NULL;

        assert_int_equal(format_parse(buf, len, &h, &why), err);
        assert_non_null(why);
        assert_non_null(strstr(why, text));
        assert_int_equal(h.generation, 12345); /* ret untouched on error */
}

static void test_rejects(void **state)
{
        uint8_t buf[FORMAT_OVERHEAD + 4];

        sample(buf);
        expect_error(buf, 0, -EBADMSG, "not a dkm ciphertext");
        expect_error(buf, 3, -EBADMSG, "not a dkm ciphertext");
        expect_error(buf, 4, -EBADMSG, "truncated");
        expect_error(buf, FORMAT_OVERHEAD - 1, -EBADMSG, "truncated");
        buf[0] = 'X';
        expect_error(buf, sizeof(buf), -EBADMSG, "bad magic");
        sample(buf);
        buf[4] = 2;
        expect_error(buf, sizeof(buf), -EPROTONOSUPPORT, "version");
        sample(buf);
        buf[5] = 9;
        expect_error(buf, sizeof(buf), -EPROTONOSUPPORT, "algorithm");
        sample(buf);
        buf[7] = 1;
        expect_error(buf, sizeof(buf), -EBADMSG, "flags");
        sample(buf);
        memset(buf + 24, 0, 4);
        expect_error(buf, sizeof(buf), -EBADMSG, "generation 0");
}

static void test_context_canonical(void **state)
{
        struct context_pair a[] = { { "tenant", "acme" }, { "purpose", "api" } };
        struct context_pair b[] = { { "purpose", "api" }, { "tenant", "acme" } };
        uint8_t *ea, *eb;
        size_t la, lb;
        const char *why;

        assert_int_equal(format_context_encode(a, 2, &ea, &la, &why), 0);
        assert_int_equal(format_context_encode(b, 2, &eb, &lb, &why), 0);
        assert_int_equal(la, lb);
        assert_memory_equal(ea, eb, la);
        /* count, then "purpose" first: sorted by key. */
        assert_int_equal(ea[0], 2);
        assert_int_equal(ea[2], 7);
        assert_memory_equal(ea + 4, "purpose", 7);
        free(ea);
        free(eb);

        /* "ab"="c" must differ from "a"="bc": lengths are encoded. */
        {
                struct context_pair x[] = { { "ab", "c" } }, y[] = { { "a", "bc" } };
                assert_int_equal(format_context_encode(x, 1, &ea, &la, &why), 0);
                assert_int_equal(format_context_encode(y, 1, &eb, &lb, &why), 0);
                assert_true(la != lb || memcmp(ea, eb, la) != 0);
                free(ea);
                free(eb);
        }
        /* Empty context: just a zero count. */
        assert_int_equal(format_context_encode(NULL, 0, &ea, &la, &why), 0);
        assert_int_equal(la, 2);
        free(ea);
}

static void test_context_rejects(void **state)
{
        struct context_pair dup[] = { { "k", "1" }, { "k", "2" } };
        struct context_pair empty[] = { { "", "v" } };
        char longkey[CONTEXT_MAX_KEY + 2];
        struct context_pair big[] = { { longkey, "v" } };
        uint8_t *e;
        size_t l;
        const char *why;

        assert_int_equal(format_context_encode(dup, 2, &e, &l, &why), -EINVAL);
        assert_non_null(strstr(why, "duplicate"));
        assert_int_equal(format_context_encode(empty, 1, &e, &l, &why), -EINVAL);
        assert_non_null(strstr(why, "empty"));
        memset(longkey, 'k', sizeof(longkey) - 1);
        longkey[sizeof(longkey) - 1] = 0;
        assert_int_equal(format_context_encode(big, 1, &e, &l, &why), -EINVAL);
        assert_int_equal(format_context_encode(dup, CONTEXT_MAX_PAIRS + 1, &e, &l, &why), -EINVAL);
}

static void test_uuid(void **state)
{
        uint8_t id[16], back[16];
        char s[37];

        for (int i = 0; i < 16; i++)
                id[i] = (uint8_t)(i * 17);
        uuid_to_string(id, s);
        assert_string_equal(s, "00112233-4455-6677-8899-aabbccddeeff");
        assert_int_equal(uuid_from_string(s, back), 0);
        assert_memory_equal(id, back, 16);
        assert_int_equal(uuid_from_string("00112233-4455-6677-8899-aabbccddeefg", back), -EINVAL);
        assert_int_equal(uuid_from_string("0011223344556677-8899-aabbccddeeff0", back), -EINVAL);
        assert_int_equal(uuid_from_string("short", back), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_layout),
                cmocka_unit_test(test_parse_roundtrip),
                cmocka_unit_test(test_rejects),
                cmocka_unit_test(test_context_canonical),
                cmocka_unit_test(test_context_rejects),
                cmocka_unit_test(test_uuid),
        };
        return cmocka_run_group_tests_name("format", tests, NULL, NULL);
}
