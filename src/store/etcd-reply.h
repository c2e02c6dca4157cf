/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading etcd's replies (the gateway's JSON, already parsed by json-c)
 * into store.h's terms.  Pure functions of the reply and the store's root
 * prefix, with no transport and no struct store, so that a fuzz target
 * (tests/fuzz/fuzz-etcd-reply.c) can drive every one of them.  Anything
 * that is not what etcd sends is -EBADMSG.  Private to src/store.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* A mvccpb.KeyValue to a store_kv with the root cut off; a deletion gets
 * no value.  1 (and nothing in *ret) for the root itself. */
int etcd_reply_kv(const char *root, size_t root_len, struct json_object *o, bool deleted,
                  struct store_kv *ret);
/* Appends a RangeResponse's kvs to l (kept to be handed to callbacks after
 * all replies are read); *ret_more (if non-NULL): its "more". */
int etcd_reply_kvs(const char *root, size_t root_len, struct json_object *reply, struct store_kv_list *l,
                   bool *ret_more);
/* A TxnResponse: its header revision, or -ESTALE when it did not succeed. */
int etcd_reply_txn(struct json_object *reply, uint64_t *ret_revision);

/* A WatchResponse that cancels the watch: 0 when it does not, else why
 * (its cancel_reason mapped to -errno, -ECANCELED without one). */
int etcd_reply_watch_canceled(struct json_object *result);
/* The first WatchResponse of a stream: 1 when result says the watch was
 * created, 0 when it is something else, -errno when creation was refused. */
int etcd_reply_watch_created(struct json_object *result);
/* Appends the events of one WatchResponse under prefix (without the root)
 * to l; *ret_last: the highest revision among all its events (0 for a
 * progress notification).  A compacted start is -ERANGE, a cancelled watch
 * etcd_reply_watch_canceled()'s answer. */
int etcd_reply_events(const char *root, size_t root_len, struct json_object *result, const char *prefix,
                      size_t prefix_len, struct store_kv_list *l, uint64_t *ret_last);

/* LeaseGrantResponse: the new lease's ID and TTL. */
int etcd_reply_lease_grant(struct json_object *reply, uint64_t *ret_id, uint64_t *ret_ttl);
/* The gateway's {"result": LeaseKeepAliveResponse} for lease id: its TTL,
 * -ENOENT when the lease has ended. */
int etcd_reply_lease_keepalive(struct json_object *reply, uint64_t id, uint64_t *ret_ttl);
/* LeaseTimeToLiveResponse: the seconds left, -ENOENT when the lease has ended. */
int etcd_reply_lease_ttl(struct json_object *reply, uint64_t *ret_left);
