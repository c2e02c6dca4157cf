/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * etcd's gateway replies through everything that reads them: the input is
 * parsed by json-c as etcd-http.c parses a unary reply (one object) and
 * handed to every reader of etcd-reply.c and to the error mapping; then the
 * same bytes go, in two chunks, through the watch stream's cutter
 * (etcd_write_body()) into what etcd-watch.c and follow() do with each
 * streamed object.  json-c itself is not the target: what we make of the
 * objects it yields is.  Besides the sanitizers, abort() on anything a
 * caller relies on: keys inside the root and the watched prefix, int64
 * fields in range, events in revision order, errors negative.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/etcd-reply.h"
#include "store/etcd-transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ROOT "/dkm/"
#define ROOT_LEN (sizeof(ROOT) - 1)
#define PREFIX "key/" /* a watched prefix, without the root */

static void check_error(int r)
{
        if (r > 0 || r < -4095)
                abort();
}

static void check_kv(const struct store_kv *kv, bool deleted)
{
        if (!kv->key || !*kv->key || (!deleted && !kv->value) || kv->mod_revision > INT64_MAX ||
            kv->create_revision > INT64_MAX || kv->lease > INT64_MAX)
                abort();
}

/* As etcd-http.c's parse_object(): one object, blanks after it. */
static struct json_object *parse_unary(const uint8_t *data, size_t size)
{
        json_tokener *tok = json_tokener_new();
        struct json_object *o;
        size_t end;

        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
        end = o ? json_tokener_get_parse_end(tok) : 0;
        json_tokener_free(tok);
        while (o && end < size && strchr(" \n\r\t", data[end]) && data[end])
                end++;
        if (o && (end != size || !json_object_is_type(o, json_type_object))) {
                json_object_put(o);
                o = NULL;
        }
        return o;
}

/* A WatchResponse, as changes() and follow() take it (after creation). */
static void run_events(struct json_object *result, const char *prefix)
{
        struct store_kv_list l = { 0 };
        uint64_t last = 0;
        int r;

        r = etcd_reply_events(ROOT, ROOT_LEN, result, prefix, strlen(prefix), &l, &last);
        check_error(r);
        if (r == 0)
                for (size_t i = 0; i < l.n; i++) {
                        check_kv(&l.v[i], true);
                        if (strncmp(l.v[i].key, prefix, strlen(prefix)) != 0 || l.v[i].mod_revision > last ||
                            (i > 0 && l.v[i].mod_revision < l.v[i - 1].mod_revision))
                                abort();
                }
        store_kv_list_free(&l);
}

static void run_unary(struct json_object *o)
{
        struct store_kv_list l = { 0 };
        struct json_object *result;
        enum etcd_outcome out = ETCD_OUT_OK;
        uint64_t rev = 0, id = 0, ttl = 0;
        bool more = false;
        int r;

        check_error(etcd_json_header_revision(o, &rev));
        r = etcd_reply_txn(o, &rev);
        check_error(r);
        if (r == 0 && rev > INT64_MAX)
                abort();

        /* A range page, appended to what earlier pages gave. */
        for (int page = 0; page < 2; page++) {
                r = etcd_reply_kvs(ROOT, ROOT_LEN, o, &l, &more);
                check_error(r);
                if (r < 0)
                        break;
        }
        for (size_t i = 0; i < l.n; i++)
                check_kv(&l.v[i], false);
        store_kv_list_free(&l);

        r = etcd_reply_lease_grant(o, &id, &ttl);
        check_error(r);
        if (r == 0 && (id == 0 || id > INT64_MAX || ttl == 0 || ttl > INT64_MAX))
                abort();
        /* Keep-alive for the lease the reply names, so that its TTL is read too. */
        if (!json_object_object_get_ex(o, "result", &result) || etcd_json_u64(result, "ID", &id) < 0)
                id = 1;
        r = etcd_reply_lease_keepalive(o, id, &ttl);
        check_error(r);
        if (r == 0 && (ttl == 0 || ttl > INT64_MAX))
                abort();
        r = etcd_reply_lease_ttl(o, &ttl);
        check_error(r);
        if (r == 0 && (ttl == 0 || ttl > INT64_MAX))
                abort();

        r = etcd_reply_error(o, &out);
        if (r >= 0 || r < -4095 || out < ETCD_OUT_OK || out > ETCD_OUT_FINAL)
                abort();

        /* A bare WatchResponse, for the readers that never see the wrapper. */
        check_error(etcd_reply_watch_canceled(o));
        r = etcd_reply_watch_created(o);
        if (r < -4095 || r > 1)
                abort();
        run_events(o, "");
        run_events(o, PREFIX);
}

struct stream {
        bool created;
};

/* What etcd-watch.c's on_watch_object() and then follow()'s callback do. */
static int on_stream_object(struct json_object *o, void *userdata)
{
        struct stream *st = userdata;
        struct json_object *result;
        enum etcd_outcome out = ETCD_OUT_OK;
        int r;

        if (!json_object_object_get_ex(o, "result", &result)) {
                r = etcd_reply_error(o, &out);
                if (r >= 0 || r < -4095 || out < ETCD_OUT_OK || out > ETCD_OUT_FINAL)
                        abort();
                return r;
        }
        if (!json_object_is_type(result, json_type_object))
                return -EBADMSG;
        if (!st->created) {
                r = etcd_reply_watch_created(result);
                if (r < -4095 || r > 1)
                        abort();
                if (r < 0)
                        return r;
                if (r > 0) {
                        st->created = true;
                        return 0;
                }
        }
        run_events(result, PREFIX);
        return 0;
}

static void run_stream(const uint8_t *data, size_t size)
{
        struct stream st = { 0 };
        struct etcd_body b = { .on_object = on_stream_object, .userdata = &st };
        size_t half = size / 2;

        b.tok = json_tokener_new();
        if (!b.tok)
                return;
        /* A chunk boundary inside an object, as the network may cut it. */
        if (etcd_write_body((char *)data, 1, half, &b) == half)
                etcd_write_body((char *)data + half, 1, size - half, &b);
        check_error(b.err);
        json_tokener_free(b.tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct json_object *o;

        if (size > 64 * 1024)
                return 0;
        o = parse_unary(data, size);
        if (o) {
                run_unary(o);
                json_object_put(o);
        }
        run_stream(data, size);
        return 0;
}
