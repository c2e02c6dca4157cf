/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * etcd's replies into store.h's terms (see etcd-reply.h).  What comes from
 * etcd is trusted no more than any input: a key outside the root, a
 * malformed base64 or int64 field, events out of revision order are all
 * -EBADMSG rather than something the backend would act on.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/etcd-http.h"
#include "store/etcd-reply.h"

/* The root itself is no dkm key (keys are not empty), but someone else may
 * have written it: 1, skipped by the callers. */
int etcd_reply_kv(const char *root, size_t root_len, struct json_object *o, bool deleted,
                  struct store_kv *ret)
{
        struct store_kv kv = { 0 };
        uint8_t *k = NULL;
        size_t klen;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        r = etcd_json_get_bytes(o, "key", true, &k, &klen);
        if (r < 0)
                return r;
        /* A key with a NUL could not be a C string: never a dkm key. */
        if (klen < root_len || memcmp(k, root, root_len) != 0 || memchr(k, 0, klen)) {
                free(k);
                return -EBADMSG;
        }
        if (klen == root_len) {
                free(k);
                return 1;
        }
        kv.key = strndup((const char *)k + root_len, klen - root_len);
        free(k);
        if (!kv.key)
                return -ENOMEM;
        if (!deleted)
                r = etcd_json_get_bytes(o, "value", false, &kv.value, &kv.value_len);
        if (r == 0)
                r = etcd_json_u64(o, "mod_revision", &kv.mod_revision);
        if (r == 0 && !deleted)
                r = etcd_json_u64(o, "create_revision", &kv.create_revision);
        if (r == 0 && !deleted)
                r = etcd_json_u64(o, "lease", &kv.lease);
        if (r < 0) {
                store_kv_clear(&kv);
                return r;
        }
        *ret = kv;
        return 0;
}

int etcd_reply_kvs(const char *root, size_t root_len, struct json_object *reply, struct store_kv_list *l,
                   bool *ret_more)
{
        struct json_object *kvs, *more;
        size_t n;

        /* The gateway leaves an empty kvs out, and "more": false too. */
        if (json_object_object_get_ex(reply, "kvs", &kvs)) {
                if (!json_object_is_type(kvs, json_type_array))
                        return -EBADMSG;
                n = json_object_array_length(kvs);
                for (size_t i = 0; i < n; i++) {
                        struct store_kv *kv = store_kv_list_add(l);
                        int r;

                        if (!kv)
                                return -ENOMEM;
                        r = etcd_reply_kv(root, root_len, json_object_array_get_idx(kvs, i), false, kv);
                        if (r < 0)
                                return r;
                        l->n += r == 0;
                }
        }
        if (ret_more)
                *ret_more = json_object_object_get_ex(reply, "more", &more) && json_object_get_boolean(more);
        return 0;
}

int etcd_reply_txn(struct json_object *reply, uint64_t *ret_revision)
{
        struct json_object *ok;
        uint64_t rev = 0;
        int r;

        r = etcd_json_header_revision(reply, &rev);
        if (r < 0)
                return r;
        /* The gateway leaves "succeeded": false out. */
        if (!(json_object_object_get_ex(reply, "succeeded", &ok) && json_object_get_boolean(ok)))
                return -ESTALE;
        *ret_revision = rev;
        return 0;
}

int etcd_reply_watch_canceled(struct json_object *result)
{
        struct json_object *v;

        if (!json_object_object_get_ex(result, "canceled", &v) || !json_object_get_boolean(v))
                return 0;
        if (json_object_object_get_ex(result, "cancel_reason", &v) &&
            json_object_is_type(v, json_type_string))
                return etcd_error_to_errno(json_object_get_string(v), 0);
        return -ECANCELED;
}

int etcd_reply_watch_created(struct json_object *result)
{
        struct json_object *created;
        int r;

        if (!json_object_object_get_ex(result, "created", &created) || !json_object_get_boolean(created))
                return 0;
        /* Refused at creation (etcd refuses an expired token so, with
         * "permission denied"): nothing was handed over. */
        r = etcd_reply_watch_canceled(result);
        return r < 0 ? r : 1;
}

int etcd_reply_events(const char *root, size_t root_len, struct json_object *result, const char *prefix,
                      size_t prefix_len, struct store_kv_list *l, uint64_t *ret_last)
{
        struct json_object *events;
        uint64_t compacted = 0, last = 0, rev;
        size_t n;
        int r;

        r = etcd_json_u64(result, "compact_revision", &compacted);
        if (r < 0)
                return r;
        if (compacted > 0)
                return -ERANGE;
        r = etcd_reply_watch_canceled(result);
        if (r < 0)
                return r;
        *ret_last = 0;
        if (!json_object_object_get_ex(result, "events", &events))
                return 0; /* a progress notification */
        if (!json_object_is_type(events, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(events);
        for (size_t i = 0; i < n; i++) {
                struct json_object *ev = json_object_array_get_idx(events, i), *type, *kvo;
                bool deleted = false;
                struct store_kv kv;

                if (!json_object_is_type(ev, json_type_object) || !json_object_object_get_ex(ev, "kv", &kvo))
                        return -EBADMSG;
                /* The gateway leaves the type out for PUT, its zero value. */
                if (json_object_object_get_ex(ev, "type", &type)) {
                        const char *t = json_object_get_string(type);

                        if (t && strcmp(t, "DELETE") == 0)
                                deleted = true;
                        else if (!t || strcmp(t, "PUT") != 0)
                                return -EBADMSG;
                }
                r = etcd_json_u64(kvo, "mod_revision", &rev);
                if (r < 0)
                        return r;
                if (rev < last)
                        return -EBADMSG; /* etcd sends history in order */
                last = rev;
                *ret_last = last;
                r = etcd_reply_kv(root, root_len, kvo, deleted, &kv);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                /* The watch may cover more than the prefix (changes() watches
                 * the whole root). */
                if (strncmp(kv.key, prefix, prefix_len) != 0) {
                        store_kv_clear(&kv);
                        continue;
                }
                if (!store_kv_list_add(l)) {
                        store_kv_clear(&kv);
                        return -ENOMEM;
                }
                l->v[l->n++] = kv;
        }
        return 0;
}

/* ---- leases ------------------------------------------------------------ */

/* A lease's TTL in a reply: a count of seconds (int64 as a string), 0 or
 * absent for a keep-alive of a lease that has ended, "-1" from TimeToLive
 * for one that has: -ENOENT for those two. */
static int lease_ttl(struct json_object *o, uint64_t *ret)
{
        struct json_object *v;
        uint64_t ttl;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        if (json_object_object_get_ex(o, "TTL", &v) && json_object_is_type(v, json_type_string) &&
            strcmp(json_object_get_string(v), "-1") == 0)
                return -ENOENT;
        r = etcd_json_u64(o, "TTL", &ttl);
        if (r < 0)
                return r;
        if (ttl == 0)
                return -ENOENT;
        *ret = ttl;
        return 0;
}

int etcd_reply_lease_grant(struct json_object *reply, uint64_t *ret_id, uint64_t *ret_ttl)
{
        uint64_t id = 0, ttl = 0;
        int r;

        r = etcd_json_u64(reply, "ID", &id);
        if (r == 0)
                r = lease_ttl(reply, &ttl);
        if (r == 0 && id == 0)
                r = -EBADMSG;
        if (r == -ENOENT)
                r = -EBADMSG; /* a new lease without a TTL */
        if (r < 0)
                return r;
        *ret_id = id;
        *ret_ttl = ttl;
        return 0;
}

int etcd_reply_lease_keepalive(struct json_object *reply, uint64_t id, uint64_t *ret_ttl)
{
        struct json_object *result;
        uint64_t got = 0;

        /* One request on the keep-alive stream: the gateway answers
         * {"result": ...} and closes it. */
        if (!json_object_object_get_ex(reply, "result", &result))
                return -EBADMSG;
        if (etcd_json_u64(result, "ID", &got) < 0 || got != id)
                return -EBADMSG;
        return lease_ttl(result, ret_ttl);
}

int etcd_reply_lease_ttl(struct json_object *reply, uint64_t *ret_left)
{
        return lease_ttl(reply, ret_left);
}
