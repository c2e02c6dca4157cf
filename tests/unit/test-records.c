/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Store records of policies and generations: round trips and damage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/records.h"

static void test_policy_roundtrip(void **state)
{
        struct policy_record r = { .created_usec = 1700000000123456ULL, .active = 3, .n_generations = 4 }, back;
        char *json;

        strcpy(r.id, "00112233-4455-6677-8899-aabbccddeeff");
        strcpy(r.name, "payroll");
        for (int i = 0; i < WRAPPED_KEY_SIZE; i++)
                r.wrapped_key[i] = (uint8_t)(i * 7);
        assert_int_equal(policy_record_encode(&r, &json), 0);
        assert_null(strstr(json, "payroll\\"));
        assert_int_equal(policy_record_decode((uint8_t *)json, strlen(json), &back), 0);
        assert_string_equal(back.id, r.id);
        assert_string_equal(back.name, r.name);
        assert_int_equal(back.created_usec, r.created_usec);
        assert_int_equal(back.active, 3);
        assert_int_equal(back.n_generations, 4);
        assert_memory_equal(back.wrapped_key, r.wrapped_key, WRAPPED_KEY_SIZE);
        free(json);
}

static void test_gen_roundtrip(void **state)
{
        struct gen_record r = { .generation = 9, .state = GEN_RETIRED, .created_usec = 1, .activated_usec = 2,
                                .uses_reserved = 1ULL << 33 }, back;
        char *json;

        memset(r.wrapped_key, 0xab, sizeof(r.wrapped_key));
        assert_int_equal(gen_record_encode(&r, &json), 0);
        assert_non_null(strstr(json, "\"state\":\"retired\""));
        assert_int_equal(gen_record_decode((uint8_t *)json, strlen(json), &back), 0);
        assert_int_equal(back.generation, 9);
        assert_int_equal(back.state, GEN_RETIRED);
        assert_int_equal(back.created_usec, 1);
        assert_int_equal(back.activated_usec, 2);
        assert_int_equal(back.uses_reserved, 1ULL << 33);
        assert_memory_equal(back.wrapped_key, r.wrapped_key, WRAPPED_KEY_SIZE);
        free(json);
}

static void expect_damaged_gen(const char *json)
{
        struct gen_record g;

        assert_int_equal(gen_record_decode((const uint8_t *)json, strlen(json), &g), -EBADMSG);
}

static void test_damaged(void **state)
{
        struct policy_record p;
        const char *w = "\"wrapped_key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"";
        char buf[512];

        expect_damaged_gen("");
        expect_damaged_gen("not json");
        expect_damaged_gen("[1,2]");
        expect_damaged_gen("{\"generation\":1}");
        snprintf(buf, sizeof(buf), "{\"generation\":0,\"state\":\"active\",\"created\":1,\"activated\":1,"
                 "\"uses_reserved\":0,%s}", w);
        expect_damaged_gen(buf); /* generation 0 */
        snprintf(buf, sizeof(buf), "{\"generation\":1,\"state\":\"zombie\",\"created\":1,\"activated\":1,"
                 "\"uses_reserved\":0,%s}", w);
        expect_damaged_gen(buf); /* unknown state */
        snprintf(buf, sizeof(buf), "{\"generation\":1,\"state\":\"active\",\"created\":1,\"activated\":1,"
                 "\"uses_reserved\":0,\"wrapped_key\":\"QUJD\"}");
        expect_damaged_gen(buf); /* short wrapped key */
        snprintf(buf, sizeof(buf), "{\"generation\":1,\"state\":\"active\",\"created\":1,\"activated\":1,"
                 "\"uses_reserved\":0,%s}", w);
        {
                struct gen_record g;
                assert_int_equal(gen_record_decode((const uint8_t *)buf, strlen(buf), &g), 0);
        }
        /* active beyond the number of generations */
        snprintf(buf, sizeof(buf), "{\"id\":\"x\",\"name\":\"n\",\"created\":1,\"active\":5,"
                 "\"generations\":4,%s}", w);
        assert_int_equal(policy_record_decode((const uint8_t *)buf, strlen(buf), &p), -EBADMSG);
}

static void test_names(void **state)
{
        char k[200];

        assert_true(policy_name_valid("default"));
        assert_true(policy_name_valid("mail.tokens_v2-eu"));
        assert_false(policy_name_valid(""));
        assert_false(policy_name_valid("-x"));
        assert_false(policy_name_valid(".x"));
        assert_false(policy_name_valid("a b"));
        assert_false(policy_name_valid("a/b"));
        assert_false(policy_name_valid("0123456789012345678901234567890123456789012345678901234567890123456789"));
        key_generation(k, sizeof(k), "id", 42);
        assert_string_equal(k, "policies/id/gens/0000000042");
        key_policy(k, sizeof(k), "id");
        assert_string_equal(k, "policies/id");
        key_name(k, sizeof(k), "default");
        assert_string_equal(k, "names/default");
}

/* A rekey with a new policy key: the key versions and the previous key
 * round-trip; records without them read as version 0; damage is refused. */
static void test_key_versions(void **state)
{
        struct policy_record r = { .created_usec = 1, .active = 1, .n_generations = 1, .key_version = 3,
                                   .has_previous = true, .previous_version = 2 }, *back = calloc(1, sizeof(*back));
        struct gen_record g = { .generation = 1, .state = GEN_ACTIVE, .key_version = 2 }, gb;
        char *json;

        (void)state;
        assert_non_null(back);
        strcpy(r.id, "00112233-4455-6677-8899-aabbccddeeff");
        strcpy(r.name, "p");
        memset(r.previous_key, 0x5c, sizeof(r.previous_key));
        assert_int_equal(policy_record_encode(&r, &json), 0);
        assert_int_equal(policy_record_decode((uint8_t *)json, strlen(json), back), 0);
        assert_int_equal(back->key_version, 3);
        assert_true(back->has_previous);
        assert_int_equal(back->previous_version, 2);
        assert_memory_equal(back->previous_key, r.previous_key, WRAPPED_KEY_SIZE);
        free(json);
        r.has_previous = false;
        r.key_version = 0;
        assert_int_equal(policy_record_encode(&r, &json), 0);
        assert_null(strstr(json, "key_version"));
        assert_null(strstr(json, "previous"));
        assert_int_equal(policy_record_decode((uint8_t *)json, strlen(json), back), 0);
        assert_int_equal(back->key_version, 0);
        assert_false(back->has_previous);
        free(json);
        /* The previous version must be older than the current one. */
        r.key_version = 2;
        r.has_previous = true;
        assert_int_equal(policy_record_encode(&r, &json), 0);
        assert_int_equal(policy_record_decode((uint8_t *)json, strlen(json), back), -EBADMSG);
        free(json);
        assert_int_equal(gen_record_encode(&g, &json), 0);
        assert_int_equal(gen_record_decode((uint8_t *)json, strlen(json), &gb), 0);
        assert_int_equal(gb.key_version, 2);
        free(json);
        g.key_version = 0;
        assert_int_equal(gen_record_encode(&g, &json), 0);
        assert_null(strstr(json, "key_version"));
        free(json);
        {
                struct gen_record x;
                const char *bad = "{\"generation\":1,\"state\":\"destroyed\",\"created\":0,"
                                  "\"activated\":0,\"uses_reserved\":0,\"key_version\":4294967296}";
                assert_int_equal(gen_record_decode((const uint8_t *)bad, strlen(bad), &x), -EBADMSG);
        }
        free(back);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_policy_roundtrip),
                cmocka_unit_test(test_gen_roundtrip),
                cmocka_unit_test(test_damaged),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_key_versions),
        };
        return cmocka_run_group_tests_name("records", tests, NULL, NULL);
}
