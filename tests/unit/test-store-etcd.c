/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests for the etcd store backend.
 *
 * The store contract every backend keeps (store-contract.h, shared with
 * test-store.c), and etcd's own cases, run against a real etcd cluster
 * named by DKM_ETCD_ENDPOINTS (comma-separated client URLs; the integration
 * test tests/integration/test-store-etcd.sh starts one); without it they are
 * skipped, saying why.  Each case works under its own key prefix, and the
 * revisions it checks are counted from the cluster's revision when the case
 * began (the contract's `base`), so the expected strings are the same as
 * SQLite's.
 *
 * The location parser, error mapping (against a small fake gateway in this
 * file), unreachable endpoints and failover to a later endpoint run always.
 *
 * Modes, for the integration test:
 *   DKM_ETCD_QUICK=1          a small subset (run while one member is down)
 *   DKM_ETCD_QUORUM_LOSS=DIR  only the quorum-loss case: write, create
 *                             DIR/ready, wait for DIR/go (the script stops a
 *                             second member meanwhile), then check that reads
 *                             and writes fail with -EAGAIN/-ETIMEDOUT in time
 *   DKM_ETCD_AUTH=USER:PASS   only the authentication case (etcd with auth on)
 *   DKM_ETCD_TLS=DIR          only the TLS case (https members, client
 *                             certificates; DIR from lib-etcd.sh's etcd_tls_make)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shared/util.h"
#include "store/etcd-http.h"
#include "store/store-etcd.h"
#include "store/store.h"
#include "store-contract.h"

static const char *endpoints;  /* DKM_ETCD_ENDPOINTS */
static unsigned prefix_serial; /* one key prefix per case */
static char cur_prefix[128];

#define NEED_ETCD()                                                                               \
        do {                                                                                      \
                if (!endpoints) {                                                                 \
                        print_message("SKIPPED: DKM_ETCD_ENDPOINTS is not set (no etcd cluster;"  \
                                      " tests/integration/test-store-etcd.sh starts one)\n");     \
                        skip();                                                                   \
                }                                                                                 \
        } while (0)

static double elapsed_s(uint64_t start)
{
        return (double)(now_mono_usec() - start) / 1e6;
}

static struct store *open_at(const char *prefix)
{
        struct store *s = NULL;
        char loc[1024];

        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s", endpoints, prefix);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), 0);
        assert_non_null(s);
        return s;
}

static uint64_t raw_revision(struct store *s)
{
        uint64_t rev = 0;

        assert_int_equal(store_ops_of(s)->revision(s, &rev), 0);
        return rev;
}

/* A store under a new prefix; revisions count from now. */
static struct store *open_new(void)
{
        struct store *s;

        snprintf(cur_prefix, sizeof(cur_prefix), "/dkm-test-%ld-%u/", (long)getpid(), ++prefix_serial);
        s = open_at(cur_prefix);
        base = raw_revision(s);
        return s;
}

/* ---- the contract's hooks and fixtures ----------------------------------- */

static const struct store_ops *backend_ops(void)
{
        return &store_etcd_ops;
}

static void backend_require(void)
{
        NEED_ETCD();
}

/* Another handle on the current case's prefix. */
static int backend_open_again(struct store **ret)
{
        char loc[1024];

        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s", endpoints, cur_prefix);
        return store_open(&store_etcd_ops, loc, ret);
}

/* etcd keeps history until compacted. */
static void backend_compact(struct store *s, uint64_t rev)
{
        assert_int_equal(store_etcd_compact(s, base + rev), 0);
}

/* A store under a new prefix; none without a cluster (the case skips). */
static int setup_store(void **state)
{
        *state = endpoints ? open_new() : NULL;
        return 0;
}

static int teardown_store(void **state)
{
        store_close(*state);
        return 0;
}

/* ---- the location string (no etcd needed) ------------------------------ */

/* dkmd.conf's values, handed over without a location string: the same
 * location as the string gives, and the same refusals. */
static void test_location_settings(void **state)
{
        struct etcd_location l, m;
        static const struct store_etcd_settings bad[] = {
                { .prefix = "/x/" },                                     /* no endpoints */
                { .endpoints = "" },
                { .endpoints = "http://a:1,https://b:2" },               /* mixed schemes */
                { .endpoints = "http://a:1", .cacert = "/ca.pem" },     /* TLS without https */
                { .endpoints = "https://a:1", .cert = "/c.pem" },       /* cert without key */
                { .endpoints = "https://a:1", .cacert = "ca.pem" },     /* relative path */
                { .endpoints = "https://a:1", .cacert = "" },           /* empty value */
                { .endpoints = "http://a:1", .user = "u" },             /* user without password */
                { .endpoints = "http://a:1", .prefix = "/a\tb/" },
                { .endpoints = "http://a:1", .prefix = "/a\001b/" },
        };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                int r = store_etcd_location_from_settings(&bad[i], &l);

                if (r != -EINVAL)
                        print_message("accepted: settings %zu\n", i);
                assert_int_equal(r, -EINVAL);
        }
        assert_int_equal(store_etcd_location_from_settings(NULL, &l), -EINVAL);
        assert_int_equal(store_etcd_open(NULL, NULL), -EINVAL);

        /* A ';' and a '\\' in a value need no escaping here. */
        assert_int_equal(store_etcd_location_from_settings(
                                 &(const struct store_etcd_settings){
                                         .endpoints = "https://e:1,https://[::1]", .cacert = "/etc/ca;1.pem",
                                         .cert = "/c.pem", .key = "/k\\.pem", .user = "u", .password = "p;w" },
                                 &l),
                         0);
        assert_int_equal(store_etcd_parse_location("endpoints=https://e:1,https://[::1];cacert=/etc/ca\\;1.pem;"
                                                   "cert=/c.pem;key=/k\\\\.pem;user=u;password=p\\;w",
                                                   &m),
                         0);
        assert_int_equal(l.n_endpoints, 2);
        assert_int_equal(m.n_endpoints, 2);
        for (size_t i = 0; i < l.n_endpoints; i++)
                assert_string_equal(l.endpoints[i], m.endpoints[i]);
        assert_string_equal(l.endpoints[1], "https://[::1]:2379");
        assert_string_equal(l.prefix, STORE_ETCD_DEFAULT_PREFIX);
        assert_string_equal(l.prefix, m.prefix);
        assert_string_equal(l.cacert, "/etc/ca;1.pem");
        assert_string_equal(l.cacert, m.cacert);
        assert_string_equal(l.key, "/k\\.pem");
        assert_string_equal(l.key, m.key);
        assert_string_equal(l.password, m.password);
        etcd_location_free(&l);
        etcd_location_free(&m);
}

static void test_location(void **state)
{
        struct etcd_location l;
        static const char *const bad[] = {
                "",
                ";",
                "prefix=/x/",                              /* no endpoints */
                "endpoints=",                              /* empty value */
                "endpoints",                               /* no '=' */
                "endpoints=http://a:1;endpoints=http://b:2", /* repeated */
                "Endpoints=http://a:1",                    /* names are case-sensitive */
                "endpoints=http://a:1;bogus=1",            /* unknown name */
                "endpoints=http://a:1,",                   /* empty endpoint */
                "endpoints=,http://a:1",
                "endpoints=ftp://a:1",
                "endpoints=http://",
                "endpoints=http://:2379",
                "endpoints=http://a:0",
                "endpoints=http://a:65536",
                "endpoints=http://a:02379",
                "endpoints=http://a:23x9",
                "endpoints=http://a:",
                "endpoints=http://a/v3",                   /* no paths */
                "endpoints=http://a:1//",
                "endpoints=http://a b:1",
                "endpoints=http://-a:1",
                "endpoints=http://[]:1",
                "endpoints=http://[::1:1",
                "endpoints=http://[zz]:1",
                "endpoints=http://user@a:1",
                "endpoints=http://a:1,https://b:2",        /* mixed schemes */
                "endpoints=http://a:1;cacert=/ca.pem",     /* TLS options without https */
                "endpoints=https://a:1;cert=/c.pem",       /* cert without key */
                "endpoints=https://a:1;key=/k.pem",
                "endpoints=https://a:1;cacert=ca.pem",     /* relative path */
                "endpoints=http://a:1;user=u",             /* user without password */
                "endpoints=http://a:1;password=p",
                "endpoints=http://a:1;prefix=",
                "endpoints=http://a:1;prefix=/\xc3/",      /* not UTF-8 */
                "endpoints=http://a:1;prefix=/a\tb/",      /* control character */
                "endpoints=http://a:1;user=u;password=a\\b", /* unknown escape */
                "endpoints=http://a:1;user=u;password=a\\",
                "endpoints=http://a:1; prefix=/x/",        /* nothing is trimmed */
                "endpoints=http://a:1;;prefix=/x/",
        };

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                int r = store_etcd_parse_location(bad[i], &l);

                if (r != -EINVAL)
                        print_message("accepted: \"%s\"\n", bad[i]);
                assert_int_equal(r, -EINVAL);
        }
        assert_int_equal(store_etcd_parse_location(NULL, &l), -EINVAL);

        assert_int_equal(
                store_etcd_parse_location("endpoints=http://127.0.0.1:2379,http://etcd-2.example:22379/,"
                                          "http://[::1];prefix=/dkm/;",
                                          &l),
                0);
        assert_int_equal(l.n_endpoints, 3);
        assert_string_equal(l.endpoints[0], "http://127.0.0.1:2379");
        assert_string_equal(l.endpoints[1], "http://etcd-2.example:22379");
        assert_string_equal(l.endpoints[2], "http://[::1]:2379");
        assert_string_equal(l.prefix, "/dkm/");
        assert_null(l.cacert);
        assert_null(l.user);
        etcd_location_free(&l);

        /* The default prefix, TLS, auth, and escapes in a password. */
        assert_int_equal(store_etcd_parse_location("endpoints=https://e:1;cacert=/etc/ca.pem;cert=/c.pem;"
                                                   "key=/k.pem;user=dkm;password=p\\;w\\\\d=x",
                                                   &l),
                         0);
        assert_string_equal(l.prefix, STORE_ETCD_DEFAULT_PREFIX);
        assert_string_equal(l.cacert, "/etc/ca.pem");
        assert_string_equal(l.cert, "/c.pem");
        assert_string_equal(l.key, "/k.pem");
        assert_string_equal(l.user, "dkm");
        assert_string_equal(l.password, "p;w\\d=x");
        etcd_location_free(&l);
        etcd_location_free(NULL);

        /* At most STORE_ETCD_ENDPOINTS_MAX endpoints. */
        {
                char buf[2048] = "endpoints=";

                for (unsigned i = 0; i < STORE_ETCD_ENDPOINTS_MAX; i++)
                        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%shttp://h%u:1", i ? "," : "",
                                 i);
                assert_int_equal(store_etcd_parse_location(buf, &l), 0);
                assert_int_equal(l.n_endpoints, STORE_ETCD_ENDPOINTS_MAX);
                etcd_location_free(&l);
                strcat(buf, ",http://more:1");
                assert_int_equal(store_etcd_parse_location(buf, &l), -EINVAL);
        }

        /* store_open passes the parser's verdict on. */
        {
                struct store *s = NULL;

                assert_int_equal(store_open(&store_etcd_ops, "endpoints=nope", &s), -EINVAL);
                assert_null(s);
        }
}

static void test_codecs(void **state)
{
        uint8_t *p = NULL;
        size_t n = 99;
        char *s = NULL;
        struct json_object *o;
        uint64_t v = 0;

        assert_int_equal(etcd_b64_encode("hi", 2, &s), 0);
        assert_string_equal(s, "aGk=");
        free(s);
        assert_int_equal(etcd_b64_decode("aGk=", 4, &p, &n), 0);
        assert_int_equal(n, 2);
        assert_memory_equal(p, "hi", 2);
        free(p);
        assert_int_equal(etcd_b64_decode("", 0, &p, &n), 0);
        assert_non_null(p);
        assert_int_equal(n, 0);
        free(p);
        assert_int_equal(etcd_b64_decode("aGk", 3, &p, &n), -EBADMSG);
        assert_int_equal(etcd_b64_decode("a Gk", 4, &p, &n), -EBADMSG);
        assert_int_equal(etcd_b64_decode("a=Gk", 4, &p, &n), -EBADMSG);
        assert_int_equal(etcd_b64_decode("====", 4, &p, &n), -EBADMSG);

        o = json_tokener_parse(
                "{\"a\":\"12\",\"b\":7,\"c\":\"-1\",\"d\":\"x\",\"e\":-3,\"f\":\"99999999999999999999\"}");
        assert_non_null(o);
        assert_int_equal(etcd_json_u64(o, "a", &v), 0);
        assert_int_equal(v, 12);
        assert_int_equal(etcd_json_u64(o, "b", &v), 0);
        assert_int_equal(v, 7);
        assert_int_equal(etcd_json_u64(o, "missing", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(etcd_json_u64(o, "c", &v), -EBADMSG);
        assert_int_equal(etcd_json_u64(o, "d", &v), -EBADMSG);
        assert_int_equal(etcd_json_u64(o, "e", &v), -EBADMSG);
        assert_int_equal(etcd_json_u64(o, "f", &v), -EBADMSG);
        json_object_put(o);

        /* The error texts of etcd 3.4 we rely on. */
        assert_int_equal(etcd_error_to_errno("etcdserver: no leader", 14), -EAGAIN);
        assert_int_equal(etcd_error_to_errno("etcdserver: request timed out", 14), -ETIMEDOUT);
        assert_int_equal(
                etcd_error_to_errno("etcdserver: request timed out, possibly due to previous leader failure",
                                    14),
                -ETIMEDOUT);
        assert_int_equal(etcd_error_to_errno("etcdserver: mvcc: required revision has been compacted", 11),
                         -ERANGE);
        assert_int_equal(etcd_error_to_errno("etcdserver: request is too large", 3), -E2BIG);
        assert_int_equal(etcd_error_to_errno("etcdserver: too many operations in txn request", 3), -E2BIG);
        assert_int_equal(etcd_error_to_errno("etcdserver: duplicate key given in txn request", 3), -EINVAL);
        assert_int_equal(etcd_error_to_errno("etcdserver: permission denied", 7), -EACCES);
        assert_int_equal(
                etcd_error_to_errno("etcdserver: authentication failed, invalid user ID or password", 3),
                -EACCES);
        assert_int_equal(etcd_error_to_errno("etcdserver: mvcc: database space exceeded", 8), -ENOSPC);
        assert_int_equal(etcd_error_to_errno("something new", 14), -EAGAIN);
        assert_int_equal(etcd_error_to_errno("something new", 4), -ETIMEDOUT);
        assert_int_equal(etcd_error_to_errno(NULL, 0), -EIO);
}

/* ---- follow()'s callback ------------------------------------------- */

struct follow_rec {
        struct store *s; /* for a write from inside the callback */
        char buf[2048];
        int calls, stop_at;
        uint64_t last_usec;
};

/* "rev:key=value,key!;" per call; stops with 42 after stop_at calls.  The
 * third call writes to the store from inside the callback, as the daemon's
 * apply does (it re-reads policies). */
static int follow_cb(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata)
{
        struct follow_rec *f = userdata;
        size_t len = strlen(f->buf);

        assert_true(n > 0);
        len += (size_t)snprintf(f->buf + len, sizeof(f->buf) - len, "%llu:", (unsigned long long)(revision - base));
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(kvs[i].mod_revision, revision);
                if (kvs[i].value)
                        len += (size_t)snprintf(f->buf + len, sizeof(f->buf) - len, "%s%s=%.*s", i ? "," : "",
                                                kvs[i].key, (int)kvs[i].value_len, (const char *)kvs[i].value);
                else
                        len += (size_t)snprintf(f->buf + len, sizeof(f->buf) - len, "%s%s!", i ? "," : "",
                                                kvs[i].key);
        }
        snprintf(f->buf + len, sizeof(f->buf) - len, ";");
        f->last_usec = now_mono_usec();
        if (++f->calls == 3 && f->s)
                get(f->s, "a/1", NULL, NULL);
        return f->calls == f->stop_at ? 42 : 0;
}

/* ---- a fake gateway, for replies a real etcd does not give ----------- */

enum fake_mode {
        FAKE_JUNK,        /* 200 and not JSON */
        FAKE_NO_HEADER,   /* 200, JSON without a header */
        FAKE_NO_LEADER,   /* 503 "etcdserver: no leader" */
        FAKE_V3BETA,      /* 404 (plain) on /v3/, a good reply on /v3beta/ */
        FAKE_BAD_KEY,     /* a range reply with a key outside the prefix */
        FAKE_BAD_B64,     /* a range reply whose value is not base64 */
        FAKE_HANG,        /* reads the request and never answers */
        FAKE_WATCH,       /* 200 and watch_body, then the connection closes */
};

struct fake {
        int fd;
        uint16_t port;
        enum fake_mode mode;
        pthread_t thread;
        int stop[2];
        int requests;
        char last_path[128];
        const char *watch_body;
};

static const char good_range[] =
        "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"L2RrbS9r\",\"create_revision\":\"5\","
        "\"mod_revision\":\"7\",\"value\":\"dg==\"}],\"count\":\"1\"}";

static void fake_reply(int fd, const char *status, const char *body)
{
        char buf[2048];
        int n = snprintf(buf, sizeof(buf),
                         "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n%s",
                         status, strlen(body), body);

        (void)!write(fd, buf, (size_t)n);
}

/* Reads one request (headers, then Content-Length bytes) into buf. */
static bool fake_read_request(int fd, char *buf, size_t size)
{
        size_t n = 0;
        char *end = NULL;
        long want = -1;

        while (n + 1 < size) {
                ssize_t k = read(fd, buf + n, size - 1 - n);

                if (k <= 0)
                        return false;
                n += (size_t)k;
                buf[n] = 0;
                if (!end && (end = strstr(buf, "\r\n\r\n"))) {
                        const char *cl = strcasestr(buf, "Content-Length:");

                        want = (long)(end + 4 - buf) + (cl ? strtol(cl + 15, NULL, 10) : 0);
                }
                if (end && (long)n >= want)
                        return true;
        }
        return false;
}

static void *fake_main(void *userdata)
{
        struct fake *f = userdata;

        for (;;) {
                struct pollfd p[2] = { { f->fd, POLLIN, 0 }, { f->stop[0], POLLIN, 0 } };
                char req[8192], *path;
                int c;

                if (poll(p, 2, -1) < 0 || p[1].revents)
                        break;
                c = accept4(f->fd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0)
                        continue;
                if (!fake_read_request(c, req, sizeof(req))) {
                        close(c);
                        continue;
                }
                f->requests++;
                path = strchr(req, ' ');
                snprintf(f->last_path, sizeof(f->last_path), "%.*s", path ? (int)strcspn(path + 1, " ") : 0,
                         path ? path + 1 : "");
                switch (f->mode) {
                case FAKE_JUNK:
                        fake_reply(c, "200 OK", "hello");
                        break;
                case FAKE_NO_HEADER:
                        fake_reply(c, "200 OK", "{\"kvs\":[]}");
                        break;
                case FAKE_NO_LEADER:
                        fake_reply(c, "503 Service Unavailable",
                                   "{\"error\":\"etcdserver: no leader\",\"message\":\"etcdserver: no "
                                   "leader\",\"code\":14}");
                        break;
                case FAKE_V3BETA:
                        if (strncmp(f->last_path, "/v3/", 4) == 0) {
                                const char r404[] =
                                        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                                        "Content-Length: 19\r\nConnection: close\r\n\r\n404 page not found\n";
                                (void)!write(c, r404, sizeof(r404) - 1);
                        } else
                                fake_reply(c, "200 OK", good_range);
                        break;
                case FAKE_BAD_KEY:
                        fake_reply(c, "200 OK",
                                   "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"L290aGVyL2s=\","
                                   "\"mod_revision\":\"7\"}]}");
                        break;
                case FAKE_BAD_B64:
                        fake_reply(c, "200 OK",
                                   "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"L2RrbS9r\","
                                   "\"value\":\"!!\"}]}");
                        break;
                case FAKE_WATCH:
                        fake_reply(c, "200 OK", f->watch_body);
                        break;
                case FAKE_HANG: {
                        struct pollfd s = { f->stop[0], POLLIN, 0 };
                        (void)poll(&s, 1, -1);
                        break;
                }
                }
                close(c);
        }
        return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);

        *f = (struct fake){ .mode = mode };
        f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f->fd >= 0);
        assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(listen(f->fd, 16), 0);
        assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
        f->port = ntohs(a.sin_port);
        assert_int_equal(pipe2(f->stop, O_CLOEXEC), 0);
        assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(struct fake *f)
{
        (void)!write(f->stop[1], "x", 1);
        pthread_join(f->thread, NULL);
        close(f->fd);
        close(f->stop[0]);
        close(f->stop[1]);
}

/* A port on loopback where nothing listens: bound, never listening, so
 * connections are refused and nobody else gets it meanwhile. */
static int dead_port(uint16_t *ret)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        *ret = ntohs(a.sin_port);
        return fd;
}

static int open_fake(const char *endpoints_list, struct store **ret)
{
        char loc[512];

        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=/dkm/", endpoints_list);
        return store_open(&store_etcd_ops, loc, ret);
}

static void test_bad_replies(void **state)
{
        static const struct {
                enum fake_mode mode;
                int open_err;
        } cases[] = {
                { FAKE_JUNK, -EBADMSG },
                { FAKE_NO_HEADER, -EBADMSG },
                { FAKE_NO_LEADER, -EAGAIN },
        };
        struct store *s = NULL;
        struct store_kv kv = { 0 };
        struct fake f;
        char ep[64];

        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                fake_start(&f, cases[i].mode);
                snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", f.port);
                assert_int_equal(open_fake(ep, &s), cases[i].open_err);
                assert_null(s);
                assert_true(f.requests >= 1);
                fake_stop(&f);
        }

        /* An etcd that serves its gateway under /v3beta/ only. */
        fake_start(&f, FAKE_V3BETA);
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", f.port);
        assert_int_equal(open_fake(ep, &s), 0);
        assert_string_equal(f.last_path, "/v3beta/kv/range");
        assert_int_equal(store_ops_of(s)->get(s, "k", &kv), 0);
        assert_string_equal(kv.key, "k");
        assert_int_equal(kv.value_len, 1);
        assert_int_equal(kv.mod_revision, 7);
        assert_int_equal(kv.create_revision, 5);
        store_kv_clear(&kv);
        assert_int_equal(f.requests, 3); /* 404, then straight to /v3beta/ */
        store_close(s);
        fake_stop(&f);

        /* Replies that parse but say impossible things. */
        fake_start(&f, FAKE_V3BETA);
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", f.port);
        assert_int_equal(open_fake(ep, &s), 0);
        f.mode = FAKE_BAD_KEY;
        assert_int_equal(store_ops_of(s)->get(s, "k", &kv), -EBADMSG);
        f.mode = FAKE_BAD_B64;
        assert_int_equal(store_ops_of(s)->get(s, "k", &kv), -EBADMSG);
        f.mode = FAKE_NO_LEADER;
        {
                struct store_op op = { STORE_PUT, "k", "v", 1 };
                assert_int_equal(store_ops_of(s)->txn(s, NULL, 0, &op, 1, NULL), -EAGAIN);
        }
        assert_null(kv.key);
        store_close(s);
        fake_stop(&f);

        /* "No leader" on one member: the next one is asked. */
        {
                struct fake g;

                fake_start(&f, FAKE_NO_LEADER);
                fake_start(&g, FAKE_V3BETA);
                snprintf(ep, sizeof(ep), "http://127.0.0.1:%u,http://127.0.0.1:%u", f.port, g.port);
                assert_int_equal(open_fake(ep, &s), 0);
                assert_int_equal(f.requests, 1);
                store_close(s);
                fake_stop(&f);
                fake_stop(&g);
        }
}

/* Watch streams a real etcd does not send, or not on demand: follow() must
 * hand over what came before the break, then report it. */
static void test_follow_bad_streams(void **state)
{
#define CREATED "{\"result\":{\"header\":{\"revision\":\"5\"},\"created\":true}}\n"
        static const struct {
                const char *body;
                int err;
                const char *seen;
        } cases[] = {
                /* One transaction of two keys, then the member goes away. */
                { CREATED "{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":["
                          "{\"kv\":{\"key\":\"L2RrbS9h\",\"mod_revision\":\"5\",\"create_revision\":\"5\","
                          "\"value\":\"eA==\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"L2RrbS9i\","
                          "\"mod_revision\":\"5\"}}]}}\n",
                  -ECONNRESET, "5:a=x,b!;" },
                /* History in one response, two revisions: two calls. */
                { CREATED "{\"result\":{\"events\":[{\"kv\":{\"key\":\"L2RrbS9h\",\"mod_revision\":\"4\"}},"
                          "{\"kv\":{\"key\":\"L2RrbS9i\",\"mod_revision\":\"6\"}}]}}",
                  -ECONNRESET, "4:a=;6:b=;" },
                /* Out of order. */
                { CREATED "{\"result\":{\"events\":[{\"kv\":{\"key\":\"L2RrbS9h\",\"mod_revision\":\"6\"}},"
                          "{\"kv\":{\"key\":\"L2RrbS9i\",\"mod_revision\":\"5\"}}]}}",
                  -EBADMSG, "" },
                /* A key outside the prefix, an unknown event type, junk. */
                { CREATED "{\"result\":{\"events\":[{\"kv\":{\"key\":\"L290aGVy\",\"mod_revision\":\"6\"}}]}}",
                  -EBADMSG, "" },
                { CREATED "{\"result\":{\"events\":[{\"type\":\"MOVE\",\"kv\":{\"key\":\"L2RrbS9h\","
                          "\"mod_revision\":\"6\"}}]}}",
                  -EBADMSG, "" },
                { CREATED "{nope", -EBADMSG, "" },
                /* A progress notification, then compaction. */
                { CREATED "{\"result\":{\"header\":{\"revision\":\"9\"}}}"
                          "{\"result\":{\"compact_revision\":\"3\",\"canceled\":true}}",
                  -ERANGE, "" },
                /* Refused at creation (no user here: no second try). */
                { "{\"result\":{\"created\":true,\"canceled\":true,"
                  "\"cancel_reason\":\"etcdserver: permission denied\"}}",
                  -EACCES, "" },
                /* An error object instead of a result. */
                { "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\"}}",
                  -EAGAIN, "" },
        };
#undef CREATED
        unsigned idle = store_etcd_follow_idle_ms;
        struct store *s = NULL;
        struct fake f;
        uint64_t start;
        char ep[64];

        base = 0;
        fake_start(&f, FAKE_V3BETA);
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", f.port);
        assert_int_equal(open_fake(ep, &s), 0);
        f.mode = FAKE_WATCH;
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                struct follow_rec rec = { 0 };
                int r;

                f.watch_body = cases[i].body;
                r = store_ops_of(s)->follow(s, "", 3, -1, follow_cb, &rec);
                print_message("stream %zu: %d, \"%s\"\n", i, r, rec.buf);
                assert_int_equal(r, cases[i].err);
                assert_string_equal(rec.buf, cases[i].seen);
        }
        /* A member that takes the watch and never answers: the silence
         * bound ends it. */
        f.mode = FAKE_HANG;
        store_etcd_follow_idle_ms = 300;
        start = now_mono_usec();
        assert_int_equal(store_ops_of(s)->follow(s, "", 3, -1, follow_cb, NULL), -ETIMEDOUT);
        store_etcd_follow_idle_ms = idle;
        assert_true(elapsed_s(start) >= 0.25 && elapsed_s(start) < 2.0);
        store_close(s);
        fake_stop(&f);
}

/* A member that takes a write and never answers: the write ends with
 * -ETIMEDOUT within the call timeout, and is not sent elsewhere. */
static void test_write_timeout(void **state)
{
        struct store_op op = { STORE_PUT, "k", "v", 1 };
        struct store *s = NULL;
        struct fake f, hang;
        uint64_t start;
        char ep[128];

        fake_start(&f, FAKE_V3BETA);
        fake_start(&hang, FAKE_HANG);
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%u,http://127.0.0.1:%u", f.port, hang.port);
        assert_int_equal(open_fake(ep, &s), 0);
        fake_stop(&f); /* the first member goes away: the write goes to the second */

        start = now_mono_usec();
        assert_int_equal(store_ops_of(s)->txn(s, NULL, 0, &op, 1, NULL), -ETIMEDOUT);
        print_message("write to a silent member: -ETIMEDOUT after %.2fs\n", elapsed_s(start));
        assert_true(elapsed_s(start) < ETCD_CALL_TIMEOUT_MS / 1000.0 + 0.5);
        assert_int_equal(hang.requests, 1);
        store_close(s);
        fake_stop(&hang);
}

static void test_unreachable(void **state)
{
        struct store *s = NULL;
        uint16_t port[3];
        int fd[3];
        char ep[256];
        uint64_t start;
        int r;

        for (int i = 0; i < 3; i++)
                fd[i] = dead_port(&port[i]);
        snprintf(ep, sizeof(ep), "http://127.0.0.1:%u,http://127.0.0.1:%u,http://127.0.0.1:%u", port[0],
                 port[1], port[2]);
        start = now_mono_usec();
        r = open_fake(ep, &s);
        print_message("all endpoints down: %d (%s) after %.2fs\n", r, strerror(-r), elapsed_s(start));
        assert_true(r == -EHOSTUNREACH || r == -ETIMEDOUT);
        assert_null(s);
        assert_true(elapsed_s(start) < 3.0);
        for (int i = 0; i < 3; i++)
                close(fd[i]);
}

/* connect() refused by this host (here seccomp, in production SELinux):
 * opening says -EACCES, not "unreachable", so that the operator looks at
 * the policy rather than the network.  In a child: the filter stays. */
static void test_connect_denied(void **state)
{
#ifdef __x86_64__
        struct sock_filter f[] = {
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
                BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
                BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 0, 1),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
                BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };
        uint16_t port;
        int fd, status;
        pid_t pid;

        fd = dead_port(&port);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                struct store *s = NULL;
                char ep[64];
                int r;

                if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
                    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
                        _exit(3);
                snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", port);
                r = open_fake(ep, &s);
                fprintf(stderr, "connect denied by seccomp: %d (%s)\n", r, strerror(-r));
                _exit(r == -EACCES && !s ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        close(fd);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 3)
                skip(); /* no seccomp here */
        assert_int_equal(WEXITSTATUS(status), 0);
#else
        skip();
#endif
}

/* ---- the contract (store-contract.h) with etcd's additions, and its own cases - */

static void test_wrappers(void **state)
{
        struct store *s;

        NEED_ETCD();
        s = open_new();
        assert_ptr_equal(store_ops_of(s), &store_etcd_ops);
        assert_string_equal(store_ops_of(s)->name, "etcd");
        put(s, "k", "v");

        /* The pooled connections to etcd are close-on-exec.  (Not libcurl
         * 7.88's own wakeup socketpair, AF_UNIX, which it makes without
         * SOCK_CLOEXEC and does not let us reach.) */
        {
                DIR *d = opendir("/proc/self/fd");
                struct dirent *de;
                int sockets = 0;

                assert_non_null(d);
                while ((de = readdir(d))) {
                        int fd = atoi(de->d_name), domain = 0;
                        socklen_t len = sizeof(domain);
                        struct stat st;

                        if (de->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) < 0 ||
                            !S_ISSOCK(st.st_mode) ||
                            getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
                            (domain != AF_INET && domain != AF_INET6))
                                continue;
                        sockets++;
                        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
                }
                closedir(d);
                assert_true(sockets >= 1);
        }
        store_close(s);
}


/* The contract's range, then: a neighbouring prefix (another store root)
 * stays out of sight. */
static void test_range(void **state)
{
        struct store *s = *state;

        contract_range(state);
        {
                struct store *n;
                char other[160];
                char loc[1200];

                snprintf(other, sizeof(other), "%.*s0/", (int)strlen(cur_prefix) - 1, cur_prefix);
                snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s", endpoints, other);
                assert_int_equal(store_open(&store_etcd_ops, loc, &n), 0);
                put(n, "a/zz", "neighbour");
                store_close(n);
                /* And someone writes the prefix itself, which is no dkm key. */
                snprintf(other, sizeof(other), "%.*s", (int)strlen(cur_prefix) - 1, cur_prefix);
                snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s", endpoints, other);
                assert_int_equal(store_open(&store_etcd_ops, loc, &n), 0);
                assert_int_equal(put(n, "/", "root"), 12);
                store_close(n);
                assert_string_equal(range(s, ""),
                                    "a=v@4/4;a.=v@8/8;a/=v@6/6;a/x=v@7/7;a/y/z=v@2/2;a/\xc3\xa9=v@9/9;"
                                    "a0=v@5/5;ab=v@3/3;b=v@1/1;\xe2\x82\xac=v@10/10;");
                assert_string_equal(changes(s, "", 9), "\xe2\x82\xac=v@10/10;");
        }
}

/* A key outside dkm's prefix, written last: no event of ours reaches the
 * store's revision, and changes() ends on the quiet timeout instead. */
static void test_changes_foreign_last(void **state)
{
        struct store *s, *foreign;
        char loc[1200];
        uint64_t r0, start;

        NEED_ETCD();
        s = open_new();
        put(s, "a", "1");
        r0 = revision(s);
        del(s, "a");
        put(s, "b", "2");
        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=/not-dkm-%ld/", endpoints, (long)getpid());
        assert_int_equal(store_open(&store_etcd_ops, loc, &foreign), 0);
        put(foreign, "x", "y");
        start = now_mono_usec();
        assert_string_equal(changes(s, "", r0), "a!@2;b=2@3/3;");
        print_message("changes() with a foreign write last: %.2fs\n", elapsed_s(start));
        assert_true(elapsed_s(start) < 3.0);
        store_close(foreign);
        store_close(s);
}


/* The contract's compaction, then: compacting again at or below the
 * horizon is refused. */
static void test_compaction(void **state)
{
        contract_compaction(state);
        assert_int_equal(store_etcd_compact(*state, base + 8), -ERANGE);
        assert_int_equal(store_etcd_compact(NULL, 1), -EINVAL);
}

/* Shredding compacts up to the revision and defragments every endpoint:
 * the history before it is gone, the current state stays, and a second
 * shred of the same revision (compacted already) is fine. */
static void test_shred(void **state)
{
        struct store *s = *state;
        struct walk w = { 0 };
        uint64_t rev;

        backend_require();
        put(s, "k", "wrapped");
        rev = put(s, "k", "destroyed");
        put(s, "other", "x");
        assert_int_equal(store_shred(s, base + rev), 0);
        assert_int_equal(changes_raw(s, "", 0, walk_cb, &w), -ERANGE);
        assert_string_equal(get(s, "k", NULL, NULL), "destroyed");
        assert_int_equal(store_shred(s, base + rev), 0);
        put(s, "after", "y");
        assert_string_equal(range(s, "after"), "after=y@4/4;");
}

/* ---- follow: the held watch ------------------------------------------- */

struct later {
        struct store *s;
        int stop_fd;     /* written after delay_ms, when >= 0 */
        unsigned delay_ms;
        uint64_t wrote_usec;
};

/* After delay_ms: one transaction of two keys (s set), or a stop. */
static void *later_main(void *p)
{
        struct later *l = p;

        usleep(l->delay_ms * 1000);
        if (l->s) {
                struct store_op ops[2] = { { STORE_PUT, "a/live1", "L", 1 }, { STORE_PUT, "a/live2", "M", 1 } };

                l->wrote_usec = now_mono_usec();
                assert_int_equal(store_ops_of(l->s)->txn(l->s, NULL, 0, ops, 2, NULL), 0);
        }
        if (l->stop_fd >= 0)
                assert_int_equal(write(l->stop_fd, "x", 1), 1);
        return NULL;
}

static void test_follow(void **state)
{
        struct follow_rec f = { 0 };
        struct store *s, *w;
        struct later l = { 0 };
        pthread_t th;
        unsigned idle = store_etcd_follow_idle_ms;
        uint64_t start;
        double silent;
        int pfd[2];

        NEED_ETCD();
        s = open_new();
        w = open_again();
        put(w, "a/1", "x");
        put(w, "b/1", "x");
        del(w, "a/1");
        put(w, "a/2", "y");

        /* History first, one call per revision, only under the prefix;
         * then a live transaction of two keys from another handle, as one
         * call, promptly. */
        f.s = s;
        f.stop_at = 4;
        l = (struct later){ .s = w, .stop_fd = -1, .delay_ms = 300 };
        assert_int_equal(pthread_create(&th, NULL, later_main, &l), 0);
        assert_int_equal(store_ops_of(s)->follow(s, "a/", base, -1, follow_cb, &f), 42);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_string_equal(f.buf, "1:a/1=x;3:a/1!;4:a/2=y;5:a/live1=L,a/live2=M;");
        print_message("follow: a change reached the callback %.3f s after its write began\n",
                      (double)(f.last_usec - l.wrote_usec) / 1e6);
        assert_true(f.last_usec - l.wrote_usec < 1000000); /* the write's commit included */

        /* From a later revision: only what came after it. */
        memset(&f, 0, sizeof(f));
        f.stop_at = 1;
        assert_int_equal(store_ops_of(s)->follow(s, "", base + 4, -1, follow_cb, &f), 42);
        assert_string_equal(f.buf, "5:a/live1=L,a/live2=M;");

        /* A quiet stream is held until the stop descriptor is readable. */
        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        memset(&f, 0, sizeof(f));
        l = (struct later){ .stop_fd = pfd[1], .delay_ms = 400 };
        /* Before the thread starts its 400 ms: a main thread preempted
         * after pthread_create would otherwise measure less. */
        start = now_mono_usec();
        assert_int_equal(pthread_create(&th, NULL, later_main, &l), 0);
        assert_int_equal(store_ops_of(s)->follow(s, "", base + 5, pfd[0], follow_cb, &f), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        print_message("follow: stopped %.3f s after it began (stop at 0.4 s)\n", elapsed_s(start));
        assert_true(elapsed_s(start) >= 0.35 && elapsed_s(start) < 1.0);
        assert_int_equal(f.calls, 0);
        /* Still readable: the next follow stops at once. */
        start = now_mono_usec();
        assert_int_equal(store_ops_of(s)->follow(s, "", base + 5, pfd[0], follow_cb, &f), 0);
        assert_true(elapsed_s(start) < 1.0);
        close(pfd[0]);
        close(pfd[1]);

        /* Silence beyond the bound (no event, no progress notification:
         * the test cluster keeps etcd's default interval of 10 minutes)
         * counts as a broken stream.  Against a cluster that sends progress
         * notifications more often the stream stays open: the stop after
         * 3 s makes that a failure rather than a hang. */
        store_etcd_follow_idle_ms = 500;
        assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
        l = (struct later){ .stop_fd = pfd[1], .delay_ms = 3000 };
        assert_int_equal(pthread_create(&th, NULL, later_main, &l), 0);
        start = now_mono_usec();
        assert_int_equal(store_ops_of(s)->follow(s, "", base + 5, pfd[0], follow_cb, &f), -ETIMEDOUT);
        silent = elapsed_s(start);
        store_etcd_follow_idle_ms = idle;
        assert_int_equal(pthread_join(th, NULL), 0);
        close(pfd[0]);
        close(pfd[1]);
        print_message("follow: a silent stream ended after %.3f s\n", silent);
        assert_true(silent >= 0.45 && silent < 2.0);

        /* A compacted start: -ERANGE, nothing handed over. */
        put(w, "a/3", "z");
        assert_int_equal(store_etcd_compact(w, base + 6), 0);
        memset(&f, 0, sizeof(f));
        assert_int_equal(store_ops_of(s)->follow(s, "", base + 2, -1, follow_cb, &f), -ERANGE);
        assert_int_equal(f.calls, 0);
        f.stop_at = 1;
        assert_int_equal(store_ops_of(s)->follow(s, "", base + 5, -1, follow_cb, &f), 42);
        assert_string_equal(f.buf, "6:a/3=z;");

        assert_int_equal(store_ops_of(s)->follow(s, "", INT64_MAX, -1, follow_cb, &f), -EINVAL);
        assert_null(store_sqlite_ops.follow);
        store_close(w);
        store_close(s);
}

/* The contract's limits at etcd's default transaction size, then: two
 * values of 1 MiB in one transaction pass our limits but not etcd's request
 * size (1.5 MiB by default): -E2BIG, nothing written. */
static void test_limits(void **state)
{
        struct store *s = *state;
        uint8_t *value;

        NEED_ETCD();
        assert_int_equal(store_ops_of(s)->max_txn_ops, STORE_TXN_OPS_MAX);
        contract_limits(state);
        value = calloc(1, STORE_VALUE_MAX);
        assert_non_null(value);
        {
                struct store_op two[] = { { STORE_PUT, "big1", value, STORE_VALUE_MAX },
                                          { STORE_PUT, "big2", value, STORE_VALUE_MAX } };
                assert_int_equal(txn(s, NULL, 0, two, 2, NULL), -E2BIG);
                assert_int_equal(revision(s), 2);
        }
        free(value);
}


/* The first endpoint is dead: every operation goes to the next one. */
static void test_failover(void **state)
{
        struct store *s = NULL;
        char loc[1200];
        uint16_t port;
        uint64_t start;
        int fd = dead_port(&port);

        NEED_ETCD();
        snprintf(cur_prefix, sizeof(cur_prefix), "/dkm-test-%ld-%u/", (long)getpid(), ++prefix_serial);
        snprintf(loc, sizeof(loc), "endpoints=http://127.0.0.1:%u,%s;prefix=%s", port, endpoints, cur_prefix);
        start = now_mono_usec();
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), 0);
        base = raw_revision(s);
        assert_int_equal(put(s, "f", "1"), 1);
        assert_string_equal(get(s, "f", NULL, NULL), "1");
        assert_string_equal(range(s, ""), "f=1@1/1;");
        assert_string_equal(changes(s, "", 0), "f=1@1/1;");
        assert_true(elapsed_s(start) < 3.0);
        store_close(s);
        close(fd);
}

/* For the integration test: two of three members stop while we hold a
 * store; reads and writes must fail cleanly and in time. */
static void test_quorum_loss(void **state)
{
        const char *dir = getenv("DKM_ETCD_QUORUM_LOSS");
        char path[512];
        struct store *s;
        struct stat st;
        int fd;

        NEED_ETCD();
        s = open_at("/dkm-it-quorum/");
        for (int i = 0; i < 20; i++) {
                char k[16], v[16];

                snprintf(k, sizeof(k), "k%02d", i);
                snprintf(v, sizeof(v), "v%02d", i);
                put(s, k, v);
        }
        snprintf(path, sizeof(path), "%s/ready", dir);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        snprintf(path, sizeof(path), "%s/go", dir);
        for (int i = 0; stat(path, &st) < 0; i++) {
                assert_true(i < 1200); /* 2 minutes */
                usleep(100000);
        }

        for (int i = 0; i < 3; i++) {
                struct store_op op = { STORE_PUT, "maybe", "x", 1 };
                struct store_kv kv = { 0 };
                uint64_t start = now_mono_usec(), rev;
                int r;

                r = store_ops_of(s)->txn(s, NULL, 0, &op, 1, NULL);
                print_message("write without quorum: %d (%s) after %.2fs\n", r, strerror(-r),
                              elapsed_s(start));
                assert_true(r == -EAGAIN || r == -ETIMEDOUT);
                assert_true(elapsed_s(start) < ETCD_CALL_TIMEOUT_MS / 1000.0 + 0.5);

                start = now_mono_usec();
                r = store_ops_of(s)->get(s, "k00", &kv);
                print_message("read without quorum: %d (%s) after %.2fs\n", r, strerror(-r),
                              elapsed_s(start));
                assert_true(r == -EAGAIN || r == -ETIMEDOUT);
                assert_true(elapsed_s(start) < ETCD_CALL_TIMEOUT_MS / 1000.0 + 0.5);

                r = store_ops_of(s)->revision(s, &rev);
                assert_true(r == -EAGAIN || r == -ETIMEDOUT);
        }
        store_close(s);
}

/* For the integration test: etcd with authentication on, and DKM_ETCD_AUTH
 * = "user:password" for a user who may read and write /dkm-auth/ only.
 * The cluster's token TTL is short (--auth-token-ttl 2), so that a token
 * expires between two calls and must be fetched again. */
static void test_auth(void **state)
{
        const char *auth = getenv("DKM_ETCD_AUTH");
        char user[64], loc[1400], prefix[64];
        const char *password;
        struct store *s = NULL;
        uint64_t r0;

        NEED_ETCD();
        password = strchr(auth, ':');
        assert_non_null(password);
        snprintf(user, sizeof(user), "%.*s", (int)(password - auth), auth);
        password++;
        snprintf(prefix, sizeof(prefix), "/dkm-auth/%ld/", (long)getpid());

        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s;user=%s;password=%s", endpoints, prefix, user,
                 password);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), 0);
        base = raw_revision(s);
        put(s, "k", "v");
        assert_string_equal(get(s, "k", NULL, NULL), "v");
        r0 = revision(s);
        sleep(3); /* the token expires */
        del(s, "k");
        assert_string_equal(changes(s, "", r0), "k!@2;");
        assert_string_equal(range(s, ""), "");
        {
                struct follow_rec f = { .stop_at = 1 };

                sleep(3); /* a held watch, too, after the token expired */
                assert_int_equal(store_ops_of(s)->follow(s, "", r0 + base, -1, follow_cb, &f), 42);
                assert_string_equal(f.buf, "2:k!;");
        }
        store_close(s);
        s = NULL;

        /* A wrong password, no user at all, a prefix the user may not read. */
        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s;user=%s;password=%s-wrong", endpoints,
                 prefix, user, password);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), -EACCES);
        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s", endpoints, prefix);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), -EACCES);
        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=/dkm-other/;user=%s;password=%s", endpoints, user,
                 password);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), -EACCES);
        assert_null(s);
}

/* For the integration test: https members that want a client certificate;
 * DKM_ETCD_TLS names the directory with ca.pem and client.pem/.key. */
static void test_tls(void **state)
{
        const char *dir = getenv("DKM_ETCD_TLS");
        struct store *s = NULL;
        char loc[2048], prefix[64];
        uint64_t r0;

        NEED_ETCD();
        snprintf(prefix, sizeof(prefix), "/dkm-tls-%ld/", (long)getpid());
        snprintf(loc, sizeof(loc),
                 "endpoints=%s;prefix=%s;cacert=%s/ca.pem;cert=%s/client.pem;key=%s/client.key",
                 endpoints, prefix, dir, dir, dir);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), 0);
        base = raw_revision(s);
        put(s, "k", "v");
        r0 = revision(s);
        del(s, "k");
        put(s, "j", "w");
        assert_string_equal(get(s, "j", NULL, NULL), "w");
        assert_string_equal(range(s, ""), "j=w@3/3;");
        assert_string_equal(changes(s, "", r0), "k!@2;j=w@3/3;");
        {
                struct follow_rec f = { .stop_at = 2 };

                assert_int_equal(store_ops_of(s)->follow(s, "", r0 + base, -1, follow_cb, &f), 42);
                assert_string_equal(f.buf, "2:k!;3:j=w;");
        }
        store_close(s);
        s = NULL;

        /* No client certificate: the members refuse the handshake. */
        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=%s;cacert=%s/ca.pem", endpoints, prefix, dir);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), -EPROTO);
        /* A CA that did not sign the members' certificate. */
        snprintf(loc, sizeof(loc),
                 "endpoints=%s;prefix=%s;cacert=%s/client.pem;cert=%s/client.pem;key=%s/client.key",
                 endpoints, prefix, dir, dir, dir);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), -EPROTO);
        /* A key file that is not there. */
        snprintf(loc, sizeof(loc),
                 "endpoints=%s;prefix=%s;cacert=%s/ca.pem;cert=%s/client.pem;key=%s/none.key",
                 endpoints, prefix, dir, dir, dir);
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), -EPROTO);
        assert_null(s);
}

/* ---- leases -------------------------------------------------------------- */

static uint64_t lease_of(struct store *s, const char *key)
{
        struct store_kv kv = { 0 };
        uint64_t l;

        assert_int_equal(store_ops_of(s)->get(s, key, &kv), 0);
        l = kv.lease;
        store_kv_clear(&kv);
        return l;
}

static void test_leases(void **state)
{
        struct store_op ops[2] = { { STORE_PUT, "l/a", "1", 1 }, { STORE_PUT, "l/b", "2", 1 } };
        struct store_kv kv = { 0 };
        uint64_t id = 0, ttl = 0, left = 0, rev = 0, since, t0;
        struct store *s;

        NEED_ETCD();
        s = open_new();
        assert_true(store_has_leases(s));
        assert_int_equal(store_lease_grant(s, 0, &id, NULL), -EINVAL);
        assert_int_equal(store_lease_grant(s, (uint64_t)INT64_MAX + 1, &id, NULL), -EINVAL);
        assert_int_equal(store_lease_revoke(s, 0), -EINVAL);

        /* A put under a lease, one without, in one transaction. */
        assert_int_equal(store_lease_grant(s, 30, &id, &ttl), 0);
        assert_true(id > 0 && id <= INT64_MAX);
        assert_int_equal(ttl, 30);
        {
                uint64_t leases[2] = { id, 0 };

                assert_int_equal(store_txn_leased(s, NULL, 0, ops, 2, leases, &rev), 0);
                assert_int_equal(rev - base, 1);
        }
        assert_int_equal(lease_of(s, "l/a"), id);
        assert_int_equal(lease_of(s, "l/b"), 0);
        assert_int_equal(store_lease_ttl(s, id, &left), 0);
        assert_true(left >= 25 && left <= 30);
        ttl = 0;
        assert_int_equal(store_lease_keepalive(s, id, &ttl), 0);
        assert_int_equal(ttl, 30);
        /* A delete carries no lease. */
        {
                struct store_op d = { .type = STORE_DELETE, .key = "l/b" };
                uint64_t l = id;

                assert_int_equal(store_txn_leased(s, NULL, 0, &d, 1, &l, NULL), -EINVAL);
        }

        /* Revoked: its key goes, in one revision that changes() reports. */
        since = revision(s);
        assert_int_equal(store_lease_revoke(s, id), 0);
        assert_string_equal(get(s, "l/a", NULL, NULL), "");
        assert_string_equal(get(s, "l/b", NULL, NULL), "2");
        assert_string_equal(changes(s, "l/", since), "l/a!@2;");
        assert_int_equal(store_lease_revoke(s, id), -ENOENT);
        assert_int_equal(store_lease_keepalive(s, id, &ttl), -ENOENT);
        assert_int_equal(store_lease_ttl(s, id, &left), -ENOENT);
        /* A put under an ended lease writes nothing. */
        since = revision(s);
        {
                uint64_t leases[2] = { 0, id };

                assert_int_equal(store_txn_leased(s, NULL, 0, ops, 2, leases, NULL), -ENOENT);
        }
        assert_int_equal(revision(s), since);
        assert_string_equal(get(s, "l/b", NULL, NULL), "2");

        /* Expired: etcd deletes the key by itself. */
        assert_int_equal(store_lease_grant(s, 2, &id, &ttl), 0);
        assert_true(ttl >= 2);
        {
                uint64_t l = id;

                assert_int_equal(store_txn_leased(s, NULL, 0, ops, 1, &l, NULL), 0);
        }
        since = revision(s);
        t0 = now_mono_usec();
        while (store_ops_of(s)->get(s, "l/a", &kv) == 0) {
                store_kv_clear(&kv);
                assert_true(elapsed_s(t0) < 10);
                usleep(100000);
        }
        print_message("lease of %llu s: key gone after %.1f s\n", (unsigned long long)ttl, elapsed_s(t0));
        assert_true(elapsed_s(t0) >= 1.0);
        assert_string_equal(changes(s, "l/", since), "l/a!@4;");
        assert_int_equal(store_lease_ttl(s, id, &left), -ENOENT);
        store_close(s);
}

static int group_setup(void **state)
{
        endpoints = getenv("DKM_ETCD_ENDPOINTS");
        if (endpoints && !*endpoints)
                endpoints = NULL;
        n_increments = getenv("DKM_ETCD_QUICK") ? 20 : 100;
        return 0;
}

#define CONTRACT(f) cmocka_unit_test_setup_teardown(f, setup_store, teardown_store)

int main(void)
{
        const struct CMUnitTest all[] = {
                cmocka_unit_test(test_location),
                cmocka_unit_test(test_location_settings),
                cmocka_unit_test(test_codecs),
                cmocka_unit_test(test_bad_replies),
                cmocka_unit_test(test_follow_bad_streams),
                cmocka_unit_test(test_write_timeout),
                cmocka_unit_test(test_unreachable),
                cmocka_unit_test(test_connect_denied),
                cmocka_unit_test(test_wrappers),
                CONTRACT(contract_put_get),
                CONTRACT(test_range),
                CONTRACT(contract_range_pages),
                CONTRACT(contract_revisions),
                CONTRACT(contract_cas),
                CONTRACT(contract_changes),
                CONTRACT(contract_changes_exact),
                cmocka_unit_test(test_changes_foreign_last),
                CONTRACT(test_compaction),
                CONTRACT(test_shred),
                cmocka_unit_test(test_follow),
                CONTRACT(contract_persistence),
                CONTRACT(contract_threads_one_handle),
                CONTRACT(contract_two_handles),
                CONTRACT(contract_two_processes),
                CONTRACT(test_limits),
                cmocka_unit_test(test_failover),
                cmocka_unit_test(test_leases),
        };
        const struct CMUnitTest quick[] = {
                CONTRACT(contract_put_get),
                CONTRACT(test_range),
                CONTRACT(contract_cas),
                CONTRACT(contract_changes),
                cmocka_unit_test(test_follow),
                CONTRACT(contract_two_handles),
                cmocka_unit_test(test_failover),
        };
        const struct CMUnitTest quorum[] = {
                cmocka_unit_test(test_quorum_loss),
        };
        const struct CMUnitTest auth[] = {
                cmocka_unit_test(test_auth),
        };
        const struct CMUnitTest tls[] = {
                cmocka_unit_test(test_tls),
        };

        if (getenv("DKM_ETCD_TLS"))
                return cmocka_run_group_tests_name("store-etcd (TLS)", tls, group_setup, NULL);
        if (getenv("DKM_ETCD_AUTH"))
                return cmocka_run_group_tests_name("store-etcd (auth)", auth, group_setup, NULL);
        if (getenv("DKM_ETCD_QUORUM_LOSS"))
                return cmocka_run_group_tests_name("store-etcd (quorum loss)", quorum, group_setup, NULL);
        if (getenv("DKM_ETCD_QUICK"))
                return cmocka_run_group_tests_name("store-etcd (quick)", quick, group_setup, NULL);
        return cmocka_run_group_tests_name("store-etcd", all, group_setup, NULL);
}
