/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shared/duration.h"

#define US UINT64_C(1)
#define MS (1000 * US)
#define SEC (1000 * MS)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define WEEK (7 * DAY)

static void test_good(void **state)
{
        static const struct {
                const char *s;
                uint64_t usec;
        } cases[] = {
                { "50ms", 50 * MS },      { "30m", 30 * MIN },   { "8h", 8 * HOUR },
                { "30d", 30 * DAY },      { "1h30m", 90 * MIN }, { "90s", 90 * SEC },
                { "2w", 2 * WEEK },       { "1min", MIN },       { "0s", 0 },
                { "0us", 0 },             { "7us", 7 },          { "007s", 7 * SEC },
                { "1d12h", 36 * HOUR },   { "1w1d1h1m1s1ms1us", WEEK + DAY + HOUR + MIN + SEC + MS + US },
                { "1h1min", HOUR + MIN }, { "18446744073709551615us", UINT64_MAX },
        };

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint64_t v = 12345;
                int r = duration_parse(cases[i].s, 0, &v);

                if (r != 0 || v != cases[i].usec)
                        fail_msg("'%s': r=%d v=%llu", cases[i].s, r, (unsigned long long)v);
        }
}

static void test_bad(void **state)
{
        static const char *const einval[] = {
                "",      "5",      "0",      "-5m",  "+5m",  "1x",   " 5m",   "5m ",
                "5 m",   "1.5h",   "5M",     "m",    "5mm",  "30m1h", "1h1h", "1m1min",
                "5ms5ms", "1hx",   "1h30",   "5mins", "5m\n", "0x10s", "h1",  "5\tm",
                "1s1h",  "99999999999999999999999x", "5m-1s", "1_000s", "１s",
        };
        uint64_t v = 777;

        (void)state;
        for (size_t i = 0; i < sizeof(einval) / sizeof(einval[0]); i++) {
                int r = duration_parse(einval[i], 0, &v);

                if (r != -EINVAL)
                        fail_msg("'%s': r=%d, expected -EINVAL", einval[i], r);
        }
        assert_int_equal(duration_parse(NULL, 0, &v), -EINVAL);
        assert_int_equal(v, 777); /* not written on error */
}

static void test_range(void **state)
{
        uint64_t v = 777;

        (void)state;
        assert_int_equal(duration_parse("99999h", 8 * HOUR, &v), -ERANGE);
        assert_int_equal(duration_parse("8h1us", 8 * HOUR, &v), -ERANGE);
        assert_int_equal(v, 777);
        assert_int_equal(duration_parse("8h", 8 * HOUR, &v), 0);
        assert_int_equal(v, 8 * HOUR);
        assert_int_equal(duration_parse("99999h", 0, &v), 0); /* 0 = no limit */
        assert_int_equal(v, 99999 * HOUR);

        /* overflow, in the number and in the sum */
        assert_int_equal(duration_parse("18446744073709551616us", 0, &v), -ERANGE);
        assert_int_equal(duration_parse("213503983d", 0, &v), -ERANGE);
        assert_int_equal(duration_parse("9223372036854775807w", 0, &v), -ERANGE);
        assert_int_equal(duration_parse("213503982d86399s999ms999us", 0, &v), -ERANGE);
        assert_int_equal(duration_parse("213503982d4h", 0, &v), 0);
}

static void test_format(void **state)
{
        static const struct {
                uint64_t usec;
                const char *s;
        } cases[] = {
                { 0, "0s" },           { 1, "1us" },         { 1500, "1ms500us" },
                { 90 * SEC, "1m30s" }, { 30 * DAY, "30d" },  { 90 * MIN, "1h30m" },
                { 50 * MS, "50ms" },   { 2 * WEEK, "14d" },  { DAY + SEC, "1d1s" },
                { UINT64_MAX, "213503982d8h1m49s551ms615us" },
        };
        char buf[64];

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                uint64_t back = 0;

                assert_string_equal(duration_format(cases[i].usec, buf, sizeof(buf)), cases[i].s);
                assert_int_equal(duration_parse(buf, 0, &back), 0);
                assert_int_equal(back, cases[i].usec);
        }
        /* Too small a buffer: whole components only, always terminated. */
        assert_string_equal(duration_format(90 * MIN, buf, 4), "1h");
        assert_string_equal(duration_format(90 * MIN, buf, 1), "");
        assert_string_equal(duration_format(90 * MIN, buf, 0), "");
}

static void test_parse_u64(void **state)
{
        static const char *const bad[] = { "", "-1", "+1", " 1", "1 ", "1a", "0x1", "1.0", "١" };
        uint64_t v = 5;

        (void)state;
        assert_int_equal(parse_u64("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_u64("0042", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(parse_u64("18446744073709551615", &v), 0);
        assert_int_equal(v, UINT64_MAX);
        v = 5;
        assert_int_equal(parse_u64("18446744073709551616", &v), -ERANGE);
        assert_int_equal(parse_u64("99999999999999999999999", &v), -ERANGE);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (parse_u64(bad[i], &v) != -EINVAL)
                        fail_msg("'%s' accepted", bad[i]);
        assert_int_equal(parse_u64(NULL, &v), -EINVAL);
        assert_int_equal(v, 5);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_good),   cmocka_unit_test(test_bad),
                cmocka_unit_test(test_range),  cmocka_unit_test(test_format),
                cmocka_unit_test(test_parse_u64),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
