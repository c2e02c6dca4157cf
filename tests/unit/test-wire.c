/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The wire protocol: building, parsing, limits, framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shared/util.h"
#include "shared/wire.h"

static void test_roundtrip(void **state)
{
        struct wire_builder b;
        struct wire_msg m;
        const char *why;
        char s[65];
        uint32_t g;

        wire_begin(&b, WIRE_KEY_RETIRE);
        wire_add_string(&b, WIRE_TAG_POLICY, "payroll");
        wire_add_u32(&b, WIRE_TAG_GENERATION, 42);
        wire_add(&b, WIRE_TAG_CONTEXT, "a\0b", 3);
        wire_add(&b, WIRE_TAG_CONTEXT, "c\0d", 3);
        assert_int_equal(wire_finish(&b), 0);
        assert_int_equal(wire_parse(b.buf, b.len, &m, &why), 0);
        assert_int_equal(m.type, WIRE_KEY_RETIRE);
        assert_int_equal(m.n_fields, 4);
        assert_int_equal(wire_get_string(&m, WIRE_TAG_POLICY, s, sizeof(s)), 0);
        assert_string_equal(s, "payroll");
        assert_int_equal(wire_get_u32(&m, WIRE_TAG_GENERATION, &g), 0);
        assert_int_equal(g, 42);
        assert_int_equal(wire_get_string(&m, WIRE_TAG_MESSAGE, s, sizeof(s)), -ENOENT);
        /* A context field holds a NUL: it is not a string. */
        assert_int_equal(wire_get_string(&m, WIRE_TAG_CONTEXT, s, sizeof(s)), -EBADMSG);
        wire_builder_free(&b);
}

static void expect_reject(const uint8_t *buf, size_t len, const char *text)
{
        struct wire_msg m;
        const char *why = NULL;

        assert_true(wire_parse(buf, len, &m, &why) < 0);
        assert_non_null(why);
        if (!strstr(why, text))
                fail_msg("expected '%s', got '%s'", text, why);
}

static void test_rejects(void **state)
{
        uint8_t buf[64];

        expect_reject((const uint8_t *)"DKM", 3, "not a dkm");
        expect_reject((const uint8_t *)"XXXW\x0b\0\0\0", 8, "not a dkm");
        expect_reject((const uint8_t *)"DKMW\x63\0\0\0", 8, "unknown request type");
        expect_reject((const uint8_t *)"DKMW\x0b\0\x01\0", 8, "truncated field header");
        expect_reject((const uint8_t *)"DKMW\x0b\0\xff\xff", 8, "too many fields");
        /* field tag 0x30 does not exist */
        memcpy(buf, "DKMW\x0b\0\x01\0\x30\0\0\0\0\0", 14);
        expect_reject(buf, 14, "unknown field tag");
        /* policy (limit 64) announcing 65 bytes */
        memcpy(buf, "DKMW\x0b\0\x01\0\x01\0\x41\0\0\0", 14);
        expect_reject(buf, 14, "size limit");
        /* policy announcing 5 bytes but carrying 2 */
        memcpy(buf, "DKMW\x0b\0\x01\0\x01\0\x05\0\0\0ab", 16);
        expect_reject(buf, 16, "truncated field");
        /* one field declared, two present */
        memcpy(buf, "DKMW\x0b\0\x01\0\x01\0\x01\0\0\0a\x01\0\x01\0\0\0b", 22);
        expect_reject(buf, 22, "trailing bytes");
        /* the same single field twice */
        memcpy(buf, "DKMW\x0b\0\x02\0\x01\0\x01\0\0\0a\x01\0\x01\0\0\0b", 22);
        expect_reject(buf, 22, "repeated");
}

static void test_builder_limits(void **state)
{
        struct wire_builder b;
        char big[100];

        memset(big, 'x', sizeof(big));
        wire_begin(&b, WIRE_ENCRYPT);
        wire_add(&b, WIRE_TAG_POLICY, big, sizeof(big)); /* above 64 */
        assert_int_equal(wire_finish(&b), -E2BIG);
        wire_builder_free(&b);
}

static void test_framing(void **state)
{
        int sv[2];
        uint8_t *got;
        size_t len;
        uint8_t msg[] = "DKMW\x0a\0\0\0";

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(wire_send(sv[0], msg, 8), 0);
        assert_int_equal(wire_recv(sv[1], &got, &len), 0);
        assert_int_equal(len, 8);
        assert_memory_equal(got, msg, 8);
        wire_free_buf(got, len);

        /* A frame announcing more than the limit is refused before reading it. */
        {
                uint8_t hdr[4];
                put_le32(hdr, WIRE_MAX_MESSAGE + 1);
                assert_int_equal(write(sv[0], hdr, 4), 4);
                assert_int_equal(wire_recv(sv[1], &got, &len), -EMSGSIZE);
        }
        /* A frame cut short by the peer going away. */
        {
                uint8_t hdr[6] = { 10, 0, 0, 0, 'D', 'K' };
                assert_int_equal(write(sv[0], hdr, 6), 6);
                close(sv[0]);
                assert_int_equal(wire_recv(sv[1], &got, &len), -EIO);
                assert_int_equal(wire_recv(sv[1], &got, &len), -EPIPE);
        }
        close(sv[1]);
}

static uint32_t checked_len;

static int refuse_above_16(void *userdata, uint32_t len)
{
        checked_len = len;
        return len > 16 ? -EACCES : 0;
}

/* A server's limits: a peer idle too long, one that stalls mid-frame even
 * while it trickles bytes, and a frame refused unread by its length. */
static void test_limits(void **state)
{
        struct wire_recv_limits lim = { .idle_usec = 100000, .frame_usec = 300000,
                                        .check = refuse_above_16 };
        uint8_t msg[] = "DKMW\x0a\0\0\0", hdr[4], *got;
        uint64_t start;
        size_t len;
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        start = now_mono_usec();
        assert_int_equal(wire_recv_limited(sv[1], &lim, &got, &len, NULL, 0, NULL), -ETIME);
        assert_true(now_mono_usec() - start >= 100000);

        /* One byte every 100 ms never completes the frame in 300 ms. */
        put_le32(hdr, 8);
        assert_int_equal(write(sv[0], hdr, 4), 4);
        start = now_mono_usec();
        for (int i = 0; i < 2; i++) {
                usleep(100000);
                assert_int_equal(write(sv[0], msg + i, 1), 1);
        }
        assert_int_equal(wire_recv_limited(sv[1], &lim, &got, &len, NULL, 0, NULL), -ETIMEDOUT);
        assert_true(now_mono_usec() - start >= 300000);
        close(sv[0]);
        close(sv[1]);

        /* Within the limits: received as before. */
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(wire_send(sv[0], msg, 8), 0);
        assert_int_equal(wire_recv_limited(sv[1], &lim, &got, &len, NULL, 0, NULL), 0);
        assert_int_equal(checked_len, 8);
        assert_memory_equal(got, msg, 8);
        wire_free_buf(got, len);

        /* Refused on its announced length alone: the body is never read. */
        put_le32(hdr, 1024 * 1024);
        assert_int_equal(write(sv[0], hdr, 4), 4);
        assert_int_equal(wire_recv_limited(sv[1], &lim, &got, &len, NULL, 0, NULL), -EACCES);
        assert_int_equal(checked_len, 1024 * 1024);
        close(sv[0]);
        close(sv[1]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_limits),
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_rejects),
                cmocka_unit_test(test_builder_limits),
                cmocka_unit_test(test_framing),
        };
        return cmocka_run_group_tests_name("wire", tests, NULL, NULL);
}
