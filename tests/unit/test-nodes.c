/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Node heartbeats (daemon/nodes.c): the record's round trip and damage, a
 * single node on SQLite (nothing written, status lists itself), and with
 * DKM_ETCD_ENDPOINTS set (tests/integration/test-store-etcd.sh starts a
 * cluster) the heartbeat under a lease: the record appears with a lease,
 * status lists it, and a stop removes it at once.  Without etcd that case is
 * skipped, saying why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/nodes.h"
#include "shared/util.h"
#include "store/store.h"

static void test_record_roundtrip(void **state)
{
        struct node_record r = { .applied_revision = 42, .started_usec = 1700000000123456ULL,
                                 .heartbeat_usec = 1700000001000000ULL, .ttl_sec = 10 },
                           back;
        char *json = NULL;

        (void)state;
        strcpy(r.name, "node-1.b_c");
        strcpy(r.version, "0.1.0");
        strcpy(r.engine, "kernel");
        assert_int_equal(node_record_encode(&r, &json), 0);
        assert_int_equal(node_record_decode((const uint8_t *)json, strlen(json), &back), 0);
        assert_memory_equal(&back, &r, sizeof(r));
        free(json);
}

static void test_record_damage(void **state)
{
        static const char *const bad[] = {
                "",
                "[]",
                "{}",
                "{\"name\":\"a\"}",
                /* a name no node may have */
                "{\"name\":\"a/b\",\"version\":\"1\",\"engine\":\"kernel\",\"applied_revision\":1,"
                "\"started\":1,\"heartbeat\":1,\"ttl\":10}",
                "{\"name\":\"\",\"version\":\"1\",\"engine\":\"kernel\",\"applied_revision\":1,"
                "\"started\":1,\"heartbeat\":1,\"ttl\":10}",
                /* a negative number, a string for a number */
                "{\"name\":\"a\",\"version\":\"1\",\"engine\":\"kernel\",\"applied_revision\":-1,"
                "\"started\":1,\"heartbeat\":1,\"ttl\":10}",
                "{\"name\":\"a\",\"version\":\"1\",\"engine\":\"kernel\",\"applied_revision\":\"1\","
                "\"started\":1,\"heartbeat\":1,\"ttl\":10}",
                /* too long a field */
                "{\"name\":\"a\",\"version\":\"1234567890123456789012345678901234567890123456789012345678901234\","
                "\"engine\":\"kernel\",\"applied_revision\":1,\"started\":1,\"heartbeat\":1,\"ttl\":10}",
                /* trailing bytes */
                "{\"name\":\"a\",\"version\":\"1\",\"engine\":\"kernel\",\"applied_revision\":1,"
                "\"started\":1,\"heartbeat\":1,\"ttl\":10}x",
        };
        static const char good[] = "{\"name\":\"a\",\"version\":\"1\",\"engine\":\"kernel\",\"applied_revision\":1,"
                                   "\"started\":1,\"heartbeat\":1,\"ttl\":10,\"extra\":true}";
        struct node_record r;

        (void)state;
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
                if (node_record_decode((const uint8_t *)bad[i], strlen(bad[i]), &r) != -EBADMSG)
                        fail_msg("case %zu decoded: %s", i, bad[i]);
        assert_int_equal(node_record_decode(NULL, 0, &r), -EBADMSG);
        /* Fields a later version adds are ignored. */
        assert_int_equal(node_record_decode((const uint8_t *)good, strlen(good), &r), 0);
        assert_string_equal(r.name, "a");
}

/* status's "nodes" as "name:self:revision;..." */
static char *nodes_text(struct nodes *n)
{
        static char buf[1024];
        json_object *o = json_object_new_object(), *arr;

        buf[0] = 0;
        nodes_status(n, o);
        if (json_object_object_get_ex(o, "nodes", &arr))
                for (size_t i = 0; i < json_object_array_length(arr); i++) {
                        json_object *e = json_object_array_get_idx(arr, i), *v;
                        size_t len = strlen(buf);

                        json_object_object_get_ex(e, "name", &v);
                        snprintf(buf + len, sizeof(buf) - len, "%s:", json_object_get_string(v));
                        len = strlen(buf);
                        json_object_object_get_ex(e, "self", &v);
                        snprintf(buf + len, sizeof(buf) - len, "%s;", json_object_get_boolean(v) ? "self" : "other");
                }
        else
                snprintf(buf, sizeof(buf), "error");
        json_object_put(o);
        return buf;
}

static void test_sqlite_single(void **state)
{
        struct dkm_config cfg;
        struct store *s = NULL;
        struct nodes *n = NULL;
        char err[NODES_ERR_MAX] = "";

        (void)state;
        config_init_defaults(&cfg);
        cfg.node_name = strdup("solo");
        assert_int_equal(store_open(&store_sqlite_ops, ":memory:", &s), 0);
        assert_int_equal(nodes_new(&cfg, s, NULL, "openssl", &n, err), 0);
        assert_int_equal(nodes_start(n, err), 0);
        assert_string_equal(nodes_name(n), "solo");
        assert_string_equal(nodes_text(n), "solo:self;");
        {
                struct store_kv kv = { 0 };

                assert_int_equal(store_ops_of(s)->get(s, "nodes/solo", &kv), -ENOENT);
        }
        nodes_free(n);
        /* Without node_name: the host name (or "localhost" when it does not
         * make a node name: a single node needs none). */
        free(cfg.node_name);
        cfg.node_name = NULL;
        assert_int_equal(nodes_new(&cfg, s, NULL, "kernel", &n, err), 0);
        assert_true(config_node_name_valid(nodes_name(n)));
        nodes_free(n);
        store_close(s);
        config_free(&cfg);
}

static void test_etcd_heartbeat(void **state)
{
        const char *ep = getenv("DKM_ETCD_ENDPOINTS");
        struct dkm_config cfg;
        struct store *s = NULL, *other = NULL;
        struct nodes *n = NULL;
        struct store_kv kv = { 0 };
        char loc[1024], err[NODES_ERR_MAX] = "";
        uint64_t t0, left = 0, lease = 0;

        (void)state;
        if (!ep || !*ep) {
                print_message("SKIPPED: DKM_ETCD_ENDPOINTS is not set (no etcd cluster; "
                              "tests/integration/test-store-etcd.sh starts one)\n");
                skip();
        }
        snprintf(loc, sizeof(loc), "endpoints=%s;prefix=/dkm-nodes-test-%ld/", ep, (long)getpid());
        assert_int_equal(store_open(&store_etcd_ops, loc, &s), 0);
        assert_int_equal(store_open(&store_etcd_ops, loc, &other), 0);
        config_init_defaults(&cfg);
        cfg.node_name = strdup("beat");
        cfg.node_ttl_usec = 3000000;
        /* Another node, registered by hand. */
        {
                struct node_record r = { .applied_revision = 7, .heartbeat_usec = now_real_usec(), .ttl_sec = 3 };
                struct store_op op = { STORE_PUT, "nodes/zed", NULL, 0 };
                char *json;

                strcpy(r.name, "zed");
                strcpy(r.version, "9");
                strcpy(r.engine, "kernel");
                assert_int_equal(node_record_encode(&r, &json), 0);
                op.value = json;
                op.value_len = strlen(json);
                assert_int_equal(store_lease_grant(other, 30, &lease, NULL), 0);
                assert_int_equal(store_txn_leased(other, NULL, 0, &op, 1, &lease, NULL), 0);
                free(json);
        }
        assert_int_equal(nodes_new(&cfg, s, NULL, "openssl", &n, err), 0);
        assert_int_equal(nodes_start(n, err), 0);
        t0 = now_mono_usec();
        while (store_ops_of(other)->get(other, "nodes/beat", &kv) == -ENOENT) {
                assert_true(now_mono_usec() - t0 < 5000000);
                usleep(50000);
        }
        assert_true(kv.lease > 0);
        assert_int_equal(store_lease_ttl(other, kv.lease, &left), 0);
        assert_true(left >= 1 && left <= 3);
        store_kv_clear(&kv);
        assert_string_equal(nodes_text(n), "beat:self;zed:other;");
        /* Beats go on past the TTL: the lease is kept alive. */
        sleep(4);
        assert_int_equal(store_ops_of(other)->get(other, "nodes/beat", &kv), 0);
        store_kv_clear(&kv);
        /* A stop revokes it: gone at once. */
        nodes_stop(n);
        assert_int_equal(store_ops_of(other)->get(other, "nodes/beat", &kv), -ENOENT);
        nodes_free(n);
        /* Leave nothing behind that would expire later. */
        assert_int_equal(store_lease_revoke(other, lease), 0);
        assert_int_equal(store_ops_of(other)->get(other, "nodes/zed", &kv), -ENOENT);
        config_free(&cfg);
        store_close(s);
        store_close(other);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record_roundtrip),
                cmocka_unit_test(test_record_damage),
                cmocka_unit_test(test_sqlite_single),
                cmocka_unit_test(test_etcd_heartbeat),
        };

        return cmocka_run_group_tests_name("nodes", tests, NULL, NULL);
}
