/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The etcd backend's transport: etcd v3's JSON gRPC gateway over libcurl,
 * with endpoint failover and optional user authentication (etcd-http.c),
 * watch streams (etcd-watch.c), the one mapping of etcd's errors to -errno
 * (etcd-errors.c) and the gateway's JSON encoding (etcd-json.c).  Private
 * to src/store.
 */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store-etcd.h"

struct etcd_client;

/* Timeouts, in milliseconds: connecting to one endpoint, one request, and
 * one call over all endpoints (so that a dead cluster never holds a caller
 * for longer). */
#define ETCD_CONNECT_TIMEOUT_MS 1000
#define ETCD_REQUEST_TIMEOUT_MS 5000
#define ETCD_CALL_TIMEOUT_MS 6000

/* Copies what it needs of loc (the password into locked memory). */
int etcd_client_new(const struct etcd_location *loc, struct etcd_client **ret);
void etcd_client_free(struct etcd_client *c);
/* The errno (positive) with which this host itself refused the last failed
 * connect: EACCES (SELinux), EPERM (seccomp, IPAddressDeny=), EAFNOSUPPORT
 * (RestrictAddressFamilies=); 0 when it was the network or the member.  The
 * calls below report any failed connect as -EHOSTUNREACH. */
int etcd_client_connect_refused(struct etcd_client *c);

enum {
        /* A read: after a timeout or a broken connection it is safe to ask
         * the next endpoint.  Without it (a write) such a failure ends the
         * call with -ETIMEDOUT or -ECONNRESET: the write may have been
         * applied. */
        ETCD_IDEMPOTENT = 1 << 0,
};

/* POSTs req (not consumed) to the gateway's method (e.g. "kv/range") and
 * returns the parsed reply.  Errors:
 *   -EHOSTUNREACH  no endpoint could be connected to (refused, unreachable,
 *                  connect timed out): nothing was sent
 *   -ETIMEDOUT     an endpoint accepted the connection but did not answer in
 *                  time, or etcd said "request timed out" (a write's outcome
 *                  is then unknown)
 *   -ECONNRESET    a write's connection broke after it was sent (outcome unknown)
 *   -EAGAIN        etcd has no leader / lost quorum, on every endpoint
 *   -EACCES        authentication failed, permission denied
 *   -EPROTO        TLS failed: handshake, certificate verification, a member
 *                  refusing our certificate, an unreadable certificate or key
 *   -EBADMSG       the reply was not the JSON we expect
 *   and the mapping of etcd's other errors in etcd_error_to_errno(). */
int etcd_call(struct etcd_client *c, const char *method, struct json_object *req, unsigned flags,
              struct json_object **ret);

/* POSTs req (not consumed) to method on every endpoint in turn, for the
 * calls that act on one member only (maintenance/defragment); the replies
 * are dropped.  *ret_done is how many members answered with success.
 * Returns 0 when all did, else the most telling error of those that did
 * not (the errors of etcd_call()). */
int etcd_call_each(struct etcd_client *c, const char *method, struct json_object *req,
                   size_t *ret_done);

/* Opens a watch stream with req (a WatchRequest, not consumed) and hands
 * every WatchResponse ("result") to cb: cb returns 0 for more, 1 to stop, or
 * -errno.  Without a message for quiet_ms after the watch was created the
 * stream ends with 0 and *ret_quiet set; after limit_ms in all it ends with
 * -ETIMEDOUT. */
int etcd_watch(struct etcd_client *c, struct json_object *req,
               int (*cb)(struct json_object *result, void *userdata), void *userdata,
               unsigned quiet_ms, unsigned limit_ms, bool *ret_quiet);
/* The same stream held open: no quiet end and no deadline.  Ends with 0
 * when stop_fd (if >= 0) becomes readable or cb returns 1; -ETIMEDOUT after
 * idle_ms without a message (event or progress notification); -ECONNRESET
 * (or another transport error) when the stream breaks after it was created;
 * before that it fails over like etcd_watch(). */
int etcd_watch_held(struct etcd_client *c, struct json_object *req,
                    int (*cb)(struct json_object *result, void *userdata), void *userdata,
                    unsigned idle_ms, int stop_fd);

/* etcd's error message (the gateway's "error"/"message") and gRPC code to -errno. */
int etcd_error_to_errno(const char *message, int grpc_code);

/* Base64 for keys and values in the gateway's JSON.  Decoding is strict
 * (-EBADMSG); an empty string decodes to a non-NULL empty buffer. */
int etcd_b64_encode(const void *p, size_t n, char **ret);
int etcd_b64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len);

/* The gateway writes int64 fields as strings; absent means 0.  -EBADMSG for
 * anything but a non-negative integer. */
int etcd_json_u64(struct json_object *o, const char *field, uint64_t *ret);
/* A bytes field, absent meaning empty unless required (-EBADMSG). */
int etcd_json_get_bytes(struct json_object *o, const char *field, bool required, uint8_t **ret,
                        size_t *ret_len);
/* The reply's header.revision. */
int etcd_json_header_revision(struct json_object *reply, uint64_t *ret);

/* Building requests: each adds field (or an array element) to o, taking
 * ownership of v even when it fails (-ENOMEM); v may be NULL (a failed
 * json_object_new_*()). */
int etcd_json_add_bytes(struct json_object *o, const char *field, const void *p, size_t n);
int etcd_json_add_u64(struct json_object *o, const char *field, uint64_t v);
int etcd_json_add_bool(struct json_object *o, const char *field); /* true */
int etcd_json_add_object(struct json_object *o, const char *field, struct json_object *v);
int etcd_json_add_to_array(struct json_object *a, struct json_object *v);

