/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one place where etcd's errors become -errno.  etcd reports an error
 * as a gRPC status (code and message); the gateway passes both on as
 * {"error": MESSAGE, "code": N} (unary calls) or {"error": {"grpc_code": N,
 * "message": MESSAGE}} (streams).  The message decides where etcd has a
 * specific one (etcd 3.4's texts, api/v3rpc/rpctypes/error.go; matched as
 * substrings, so the "etcdserver: " prefix and later suffixes do not
 * matter); the code decides otherwise.  Each also says what the failure
 * means for the request: may the next member be asked, and may a write
 * have been applied.
 *
 *   "no leader", "too many requests",
 *   "unhealthy cluster", "revision of auth store is old"   -EAGAIN, not applied
 *   "leader changed"                                      -EAGAIN, may have applied
 *   "request timed out" (and its "possibly due to ..."
 *   variants), "request cancelled"                        -ETIMEDOUT, may have applied
 *   "required revision has been compacted"                -ERANGE
 *   "required revision is a future revision"              -EINVAL
 *   "request is too large", "too many operations in txn
 *   request", gRPC's "larger than max"                    -E2BIG
 *   "duplicate key given in txn request",
 *   "key is not provided"                                 -EINVAL
 *   "database space exceeded"                             -ENOSPC
 *   "invalid auth token"                                  authenticate again, then -EACCES
 *   "permission denied", "user name is empty",
 *   "authentication failed", "user name not found"        -EACCES
 *   "not capable", "authentication is not enabled"        -ENOTSUP
 *   "corrupt cluster"                                     -EIO
 *   other: gRPC Unavailable -EAGAIN and DeadlineExceeded -ETIMEDOUT (both
 *   "may have applied"), InvalidArgument -EINVAL, PermissionDenied and
 *   Unauthenticated -EACCES, OutOfRange -ERANGE, ..., else -EIO.
 */
#include <errno.h>
#include <string.h>

#include "shared/util.h"
#include "store/etcd-transport.h"

static const struct {
        const char *needle;
        int err;
        enum etcd_outcome outcome;
} etcd_errors[] = {
        { "no leader", -EAGAIN, ETCD_OUT_REJECTED },
        { "too many requests", -EAGAIN, ETCD_OUT_REJECTED },
        { "unhealthy cluster", -EAGAIN, ETCD_OUT_REJECTED },
        { "revision of auth store is old", -EAGAIN, ETCD_OUT_REJECTED },
        { "leader changed", -EAGAIN, ETCD_OUT_UNKNOWN },
        { "request timed out", -ETIMEDOUT, ETCD_OUT_UNKNOWN }, /* also "..., possibly due to ..." */
        { "request cancelled", -ETIMEDOUT, ETCD_OUT_UNKNOWN },
        { "required revision has been compacted", -ERANGE, ETCD_OUT_FINAL },
        { "required revision is a future revision", -EINVAL, ETCD_OUT_FINAL },
        { "request is too large", -E2BIG, ETCD_OUT_FINAL },
        { "too many operations in txn request", -E2BIG, ETCD_OUT_FINAL },
        { "duplicate key given in txn request", -EINVAL, ETCD_OUT_FINAL },
        { "key is not provided", -EINVAL, ETCD_OUT_FINAL },
        { "database space exceeded", -ENOSPC, ETCD_OUT_FINAL },
        { "invalid auth token", -EACCES, ETCD_OUT_TOKEN },
        { "permission denied", -EACCES, ETCD_OUT_FINAL },
        { "user name is empty", -EACCES, ETCD_OUT_FINAL },
        { "authentication failed", -EACCES, ETCD_OUT_FINAL }, /* wrong user or password */
        { "user name not found", -EACCES, ETCD_OUT_FINAL },
        { "not capable", -ENOTSUP, ETCD_OUT_FINAL },
        { "authentication is not enabled", -ENOTSUP, ETCD_OUT_FINAL },
        { "larger than max", -E2BIG, ETCD_OUT_FINAL }, /* gRPC's message size limit */
        { "corrupt cluster", -EIO, ETCD_OUT_FINAL },
};

static int classify_error(const char *message, int grpc_code, enum etcd_outcome *ret_outcome)
{
        if (message)
                for (size_t i = 0; i < ARRAY_SIZE(etcd_errors); i++)
                        if (strstr(message, etcd_errors[i].needle)) {
                                *ret_outcome = etcd_errors[i].outcome;
                                return etcd_errors[i].err;
                        }
        *ret_outcome = ETCD_OUT_FINAL;
        switch (grpc_code) { /* google.golang.org/grpc/codes */
        case 1: /* Canceled */
        case 4: /* DeadlineExceeded */
                *ret_outcome = ETCD_OUT_UNKNOWN;
                return -ETIMEDOUT;
        case 14: /* Unavailable */
                *ret_outcome = ETCD_OUT_UNKNOWN;
                return -EAGAIN;
        case 3: /* InvalidArgument */
        case 9: /* FailedPrecondition */
                return -EINVAL;
        case 5: return -ENOENT;
        case 7: /* PermissionDenied */
        case 16: /* Unauthenticated */
                return -EACCES;
        case 8: return -ENOSPC; /* ResourceExhausted */
        case 11: return -ERANGE; /* OutOfRange */
        case 12: return -ENOTSUP; /* Unimplemented */
        default: return -EIO;
        }
}

int etcd_error_to_errno(const char *message, int grpc_code)
{
        enum etcd_outcome o;

        return classify_error(message, grpc_code, &o);
}

/* An error reply: {"error": "...", "message": "...", "code": N} from unary
 * calls, {"error": {"grpc_code": N, "message": "..."}} inside a stream. */
int etcd_reply_error(struct json_object *o, enum etcd_outcome *ret_outcome)
{
        struct json_object *e, *m = NULL, *code = NULL;

        if (!json_object_object_get_ex(o, "error", &e))
                return -EBADMSG;
        if (json_object_is_type(e, json_type_object)) {
                json_object_object_get_ex(e, "message", &m);
                json_object_object_get_ex(e, "grpc_code", &code);
        } else {
                if (!json_object_object_get_ex(o, "message", &m))
                        m = e;
                json_object_object_get_ex(o, "code", &code);
        }
        return classify_error(m && json_object_is_type(m, json_type_string) ? json_object_get_string(m)
                                                                            : NULL,
                              code ? json_object_get_int(code) : 0, ret_outcome);
}

/* libcurl's failure to -errno, and whether the request may have reached etcd. */
int etcd_curl_error(CURLcode cc, enum etcd_phase phase, bool tls, const char *message,
                    enum etcd_outcome *ret_outcome)
{
        bool broken = cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING;

        *ret_outcome = phase == ETCD_PHASE_SENT ? ETCD_OUT_UNKNOWN : ETCD_OUT_UNSENT;
        /* With TLS 1.3 a member checks our certificate after our side of the
         * handshake is done, and refuses it with an alert and a close: we see
         * the alert on a read, or only a broken connection before we could
         * send.  Either way no request reached etcd. */
        if (tls && broken &&
            ((message && strstr(message, " alert ")) || phase == ETCD_PHASE_CONNECTED)) {
                *ret_outcome = ETCD_OUT_UNSENT;
                return -EPROTO;
        }
        switch (cc) {
        case CURLE_OUT_OF_MEMORY:
                *ret_outcome = ETCD_OUT_FINAL;
                return -ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL:
                *ret_outcome = ETCD_OUT_FINAL;
                return -EPROTONOSUPPORT;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_USE_SSL_FAILED:
                *ret_outcome = ETCD_OUT_UNSENT;
                return -EPROTO;
        case CURLE_OPERATION_TIMEDOUT:
                return phase == ETCD_PHASE_SENT ? -ETIMEDOUT : -EHOSTUNREACH;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
                return -EHOSTUNREACH;
        default:
                /* A reset or a short reply: what was sent is unknown. */
                return phase == ETCD_PHASE_SENT ? -ECONNRESET : -EHOSTUNREACH;
        }
}

/* The error to report when every endpoint failed: what etcd said beats a
 * timeout, which beats a TLS failure, which beats "unreachable". */
int etcd_more_telling(int have, int r)
{
        static const int rank[] = { -EHOSTUNREACH, -EPROTO, -ETIMEDOUT };
        int rh = 3, rr = 3;

        for (int i = 0; i < 3; i++) {
                if (have == rank[i])
                        rh = i;
                if (r == rank[i])
                        rr = i;
        }
        return rr >= rh ? r : have;
}
