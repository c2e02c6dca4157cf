/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdkm against a scripted fake dkmd: replies, refusals with their reason,
 * malformed and truncated replies, and one client shared by threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dkm/dkm.h"
#include "shared/util.h"
#include "shared/wire.h"

enum script { ECHO_DATA, REFUSE, GARBAGE, HANG_UP, IDLE_CLOSE };

struct fake {
        char path[108];
        int listen_fd;
        enum script script;
        pthread_t thread;
        int requests;
        _Atomic int connections;
        _Atomic bool closed; /* IDLE_CLOSE: the first connection was closed */
};

/* Serves one connection until the client goes away. */
static void *serve(void *p)
{
        struct fake *f = p;
        int fd = accept(f->listen_fd, NULL, NULL);

        f->connections++;
        for (;;) {
                struct wire_builder b;
                struct wire_msg *m = malloc(sizeof(*m));
                const char *why;
                uint8_t *buf;
                size_t len;

                if (wire_recv(fd, &buf, &len) < 0) {
                        free(m);
                        break;
                }
                f->requests++;
                assert_int_equal(wire_parse(buf, len, m, &why), 0);
                switch (f->script) {
                case IDLE_CLOSE:
                case ECHO_DATA: {
                        const struct wire_field *d = wire_get(m, WIRE_TAG_DATA);
                        wire_begin(&b, WIRE_REPLY_OK);
                        wire_add(&b, WIRE_TAG_DATA, d ? d->value : NULL, d ? d->len : 0);
                        break;
                }
                case REFUSE:
                        wire_begin(&b, WIRE_REPLY_ERROR);
                        wire_add_u32(&b, WIRE_TAG_ERRNO, EPERM);
                        wire_add_string(&b, WIRE_TAG_MESSAGE, "permission denied: not in the users group");
                        break;
                case GARBAGE:
                        wire_send(fd, (const uint8_t *)"nonsense", 8);
                        wire_free_buf(buf, len);
                        free(m);
                        continue;
                case HANG_UP:
                        wire_free_buf(buf, len);
                        free(m);
                        close(fd);
                        return NULL;
                }
                assert_int_equal(wire_finish(&b), 0);
                wire_send(fd, b.buf, b.len);
                wire_builder_free(&b);
                wire_free_buf(buf, len);
                free(m);
                if (f->script == IDLE_CLOSE) {
                        /* As dkmd does after [daemon] idle_timeout; then
                         * serve the client's next connection. */
                        f->script = ECHO_DATA;
                        close(fd);
                        f->closed = true;
                        fd = accept(f->listen_fd, NULL, NULL);
                        f->connections++;
                }
        }
        close(fd);
        return NULL;
}

static struct fake *fake_start(enum script s)
{
        struct fake *f = calloc(1, sizeof(*f));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        snprintf(f->path, sizeof(f->path), "/tmp/dkm-test-libdkm.%d.sock", getpid());
        unlink(f->path);
        strcpy(sa.sun_path, f->path);
        f->script = s;
        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, 4), 0);
        pthread_create(&f->thread, NULL, serve, f);
        return f;
}

static void fake_stop(struct fake *f)
{
        pthread_join(f->thread, NULL);
        close(f->listen_fd);
        unlink(f->path);
        free(f);
}

static void test_round_trip(void **state)
{
        struct fake *f = fake_start(ECHO_DATA);
        dkm_context_pair ctx[] = { { "a", "b" } };
        dkm_client *c;
        uint8_t *out;
        size_t n;

        assert_int_equal(dkm_connect(f->path, &c), 0);
        assert_int_equal(dkm_encrypt(c, "p", ctx, 1, "hello", 5, &out, &n), 0);
        assert_int_equal(n, 5);
        assert_memory_equal(out, "hello", 5);
        free(out);
        dkm_disconnect(c);
        fake_stop(f);
}

static void test_refusal_carries_reason(void **state)
{
        struct fake *f = fake_start(REFUSE);
        dkm_client *c;
        uint8_t *out = (uint8_t *)0x1;
        size_t n = 77;

        assert_int_equal(dkm_connect(f->path, &c), 0);
        assert_int_equal(dkm_decrypt(c, NULL, 0, "x", 1, &out, &n), -EPERM);
        assert_string_equal(dkm_last_error(c), "permission denied: not in the users group");
        /* Outputs untouched on failure. */
        assert_ptr_equal(out, (uint8_t *)0x1);
        assert_int_equal(n, 77);
        dkm_disconnect(c);
        fake_stop(f);
}

static void test_garbage_reply(void **state)
{
        struct fake *f = fake_start(GARBAGE);
        dkm_client *c;
        char *json;

        assert_int_equal(dkm_connect(f->path, &c), 0);
        assert_int_equal(dkm_status_json(c, &json), -EBADMSG);
        assert_non_null(strstr(dkm_last_error(c), "malformed reply"));
        dkm_disconnect(c);
        fake_stop(f);
}

static void test_hang_up(void **state)
{
        struct fake *f = fake_start(HANG_UP);
        dkm_client *c;
        uint32_t g;

        assert_int_equal(dkm_connect(f->path, &c), 0);
        assert_true(dkm_key_rotate(c, NULL, &g) < 0);
        assert_non_null(strstr(dkm_last_error(c), "lost the connection"));
        dkm_disconnect(c);
        fake_stop(f);
}

static void test_bad_arguments(void **state)
{
        dkm_client *c = NULL;
        dkm_context_pair too_long = { "", "v" };
        struct fake *f = fake_start(ECHO_DATA);
        uint8_t *out;
        size_t n;

        assert_int_equal(dkm_connect("/nonexistent/dir/sock", &c), -ENOENT);
        assert_int_equal(dkm_connect(NULL, NULL), -EINVAL);
        assert_int_equal(dkm_connect(f->path, &c), 0);
        assert_int_equal(dkm_encrypt(c, NULL, &too_long, 1, "x", 1, &out, &n), -EINVAL);
        assert_int_equal(dkm_encrypt(NULL, NULL, NULL, 0, "x", 1, &out, &n), -EINVAL);
        dkm_disconnect(c);
        fake_stop(f);
}

struct shared {
        dkm_client *c;
        int ok;
};

static void *hammer(void *p)
{
        struct shared *s = p;
        char msg[32];

        for (int i = 0; i < 200; i++) {
                uint8_t *out;
                size_t n;

                snprintf(msg, sizeof(msg), "%p-%d", (void *)pthread_self(), i);
                if (dkm_encrypt(s->c, NULL, NULL, 0, msg, strlen(msg), &out, &n) == 0 &&
                    n == strlen(msg) && memcmp(out, msg, n) == 0)
                        __atomic_add_fetch(&s->ok, 1, __ATOMIC_RELAXED);
                free(out);
        }
        return NULL;
}

static void test_shared_between_threads(void **state)
{
        struct fake *f = fake_start(ECHO_DATA);
        struct shared s = { 0 };
        pthread_t t[4];

        assert_int_equal(dkm_connect(f->path, &s.c), 0);
        for (int i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, hammer, &s);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        /* Every reply reached the thread that asked: requests never interleave. */
        assert_int_equal(s.ok, 800);
        dkm_disconnect(s.c);
        fake_stop(f);
}

/* dkmd closed the connection while it was idle: the next call connects
 * again instead of failing, and the request is sent once. */
static void test_reconnects_after_idle_close(void **state)
{
        struct fake *f = fake_start(IDLE_CLOSE);
        dkm_client *c;
        uint8_t *out;
        size_t n;

        assert_int_equal(dkm_connect(f->path, &c), 0);
        assert_int_equal(dkm_encrypt(c, "p", NULL, 0, "one", 3, &out, &n), 0);
        free(out);
        for (int i = 0; i < 500 && !f->closed; i++)
                usleep(10000);
        assert_true(f->closed);
        assert_int_equal(dkm_encrypt(c, "p", NULL, 0, "two", 3, &out, &n), 0);
        assert_int_equal(f->connections, 2);
        assert_memory_equal(out, "two", 3);
        free(out);
        assert_int_equal(f->requests, 2);
        dkm_disconnect(c);
        fake_stop(f);
}

static int logged;
static void log_cb(int prio, const char *msg, void *ud)
{
        logged++;
}

static void test_silent_with_log_callback(void **state)
{
        dkm_client *c;

        dkm_set_log_callback(log_cb, NULL);
        assert_true(dkm_connect("/nonexistent/dir/sock", &c) < 0);
        assert_true(logged > 0);
        dkm_set_log_callback(NULL, NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_refusal_carries_reason),
                cmocka_unit_test(test_garbage_reply),
                cmocka_unit_test(test_hang_up),
                cmocka_unit_test(test_bad_arguments),
                cmocka_unit_test(test_shared_between_threads),
                cmocka_unit_test(test_reconnects_after_idle_close),
                cmocka_unit_test(test_silent_with_log_callback),
        };
        return cmocka_run_group_tests_name("libdkm", tests, NULL, NULL);
}
