/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * etcd watch streams through the gateway: POST /v3/watch with one
 * WatchRequest as the body; the reply is a chunked stream of JSON objects,
 * {"result": WatchResponse} or {"error": ...}, that never ends by itself.
 * The curl multi interface lets us stop reading on our own terms: when the
 * caller has what it wants, when the stream has been quiet for a while, or
 * at a deadline.  The stream is read by a curl write callback that cuts it
 * into objects with json-c's incremental tokener.
 *
 * Failover as for unary calls (etcd-http.c), but only until the watch is
 * created: after that the caller has seen events, and a new stream from
 * elsewhere would repeat them; the caller decides whether to start over.
 *
 * A held watch (etcd_watch_held()) has no deadline and no quiet end: it
 * reads until the caller's stop descriptor becomes readable (polled with
 * the stream, so a stop is seen at once), the callback stops it, or the
 * stream breaks.  A member that dies closes the connection; one that loses
 * its leader cancels the stream (we send "hasleader" with every request);
 * TCP keep-alives find a peer that vanished; and silence longer than
 * idle_ms (no event and no progress notification) counts as broken too.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shared/secret.h"
#include "shared/util.h"
#include "store/etcd-reply.h"
#include "store/etcd-transport.h"

#define WATCH_POLL_MS 20
/* TCP keep-alive of a held stream: probes after 5 s idle, every 2 s. */
#define HELD_KEEPIDLE_S 5L
#define HELD_KEEPINTVL_S 2L

/* How one stream ends on our terms. */
struct watch_limits {
        unsigned quiet_ms; /* quiet this long after created: done (0: never) */
        uint64_t deadline; /* monotonic; 0: none */
        unsigned idle_ms;  /* silent this long: -ETIMEDOUT (0: never) */
        int stop_fd;       /* readable: stop (-1: none) */
};

struct watch_state {
        int (*cb)(struct json_object *result, void *userdata);
        void *userdata;
        bool created;
        bool has_user; /* authenticated: a refusal may be an expired token */
        int err;
        enum etcd_outcome outcome;
};

static int on_watch_object(struct json_object *o, void *userdata)
{
        struct watch_state *w = userdata;
        struct json_object *result;
        int r;

        if (!json_object_object_get_ex(o, "result", &result)) {
                w->err = etcd_reply_error(o, &w->outcome);
                return w->err;
        }
        if (!json_object_is_type(result, json_type_object))
                return w->err = -EBADMSG;
        if (!w->created) {
                r = etcd_reply_watch_created(result);
                if (r < 0) {
                        /* Refused at creation: an expired token is refused
                         * with "permission denied", so authenticate again,
                         * once. */
                        w->err = r;
                        w->outcome = r == -EACCES && w->has_user ? ETCD_OUT_TOKEN : ETCD_OUT_FINAL;
                        return r;
                }
                if (r > 0) {
                        w->created = true;
                        return 0;
                }
        }
        return w->cb(result, w->userdata);
}

/* Streams one watch from one endpoint until cb says stop, quiet, a limit
 * or the stop descriptor. */
static int watch_attempt(struct etcd_client *c, size_t idx, const char *body, const char *token,
                         struct watch_state *w, const struct watch_limits *lim, bool *ret_quiet,
                         enum etcd_outcome *ret_outcome)
{
        struct curl_waitfd stop = { .fd = lim->stop_fd, .events = CURL_WAIT_POLLIN };
        struct etcd_body out = { .on_object = on_watch_object, .userdata = w };
        struct curl_slist *hd = NULL;
        CURLM *m = NULL;
        CURL *h = NULL;
        char *url = NULL;
        const char *api;
        bool quiet = false, stopped = false;
        int r, running = 1;
        CURLcode cc = CURLE_OK;

        *ret_outcome = ETCD_OUT_FINAL;
        pthread_mutex_lock(&c->lock);
        api = c->api;
        pthread_mutex_unlock(&c->lock);
        if (asprintf(&url, "%s%swatch", c->endpoints[idx], api) < 0)
                return -ENOMEM;
        out.tok = json_tokener_new();
        h = curl_easy_init();
        m = curl_multi_init();
        r = out.tok && h && m ? 0 : -ENOMEM;
        if (r == 0) {
                uint64_t now = now_mono_usec(), deadline = lim->deadline;

                r = etcd_setup_post(c, h, url, body, strlen(body), token,
                                    !deadline ? 0 : now < deadline ? (long)((deadline - now) / 1000) + 1 : 1,
                                    &out, &hd);
        }
        if (r == 0 && !lim->deadline &&
            (curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK ||
             curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, HELD_KEEPIDLE_S) != CURLE_OK ||
             curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, HELD_KEEPINTVL_S) != CURLE_OK))
                r = -ENOMEM;
        if (r == 0 && curl_multi_add_handle(m, h) != CURLM_OK)
                r = -ENOMEM;
        if (r < 0)
                goto finish;

        out.last_usec = now_mono_usec();
        while (running) {
                CURLMsg *msg;
                int left;

                if (curl_multi_perform(m, &running) != CURLM_OK) {
                        r = -EIO;
                        break;
                }
                while ((msg = curl_multi_info_read(m, &left)))
                        if (msg->msg == CURLMSG_DONE)
                                cc = msg->data.result;
                if (!running)
                        break;
                if (lim->quiet_ms && w->created &&
                    now_mono_usec() - out.last_usec >= lim->quiet_ms * UINT64_C(1000)) {
                        quiet = true;
                        break;
                }
                if (lim->idle_ms && now_mono_usec() - out.last_usec >= lim->idle_ms * UINT64_C(1000)) {
                        /* Not even a progress notification: take it as dead. */
                        r = -ETIMEDOUT;
                        *ret_outcome = ETCD_OUT_UNKNOWN;
                        break;
                }
                stop.revents = 0;
                if (curl_multi_poll(m, lim->stop_fd >= 0 ? &stop : NULL, lim->stop_fd >= 0,
                                    WATCH_POLL_MS, NULL) != CURLM_OK) {
                        r = -EIO;
                        break;
                }
                if (stop.revents) {
                        stopped = true;
                        break;
                }
        }
        if (r == 0 && !quiet && !stopped) {
                if (out.stop || w->err)
                        r = w->err < 0 ? w->err : out.err;
                else if (out.err)
                        r = out.err;
                else if (cc != CURLE_OK)
                        r = etcd_curl_error(cc, w->created ? ETCD_PHASE_SENT : etcd_transfer_phase(h),
                                            strncmp(url, "https:", 6) == 0, out.error, ret_outcome);
                else {
                        /* The stream ended without an error object: an HTTP
                         * error, or the member went away. */
                        long status = 0;

                        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
                        r = status == 404 ? -EPROTONOSUPPORT : w->created ? -ECONNRESET : -EBADMSG;
                        *ret_outcome = w->created ? ETCD_OUT_UNKNOWN : ETCD_OUT_FINAL;
                }
                if (w->err < 0)
                        *ret_outcome = w->outcome;
        }
        if (w->created)
                etcd_endpoint_answered(c, idx);
        *ret_quiet = quiet;

finish:
        if (m && h)
                curl_multi_remove_handle(m, h);
        etcd_headers_free(hd);
        curl_easy_cleanup(h);
        curl_multi_cleanup(m);
        if (out.tok)
                json_tokener_free(out.tok);
        free(url);
        return r;
}

static int watch_run(struct etcd_client *c, struct json_object *req,
                     int (*cb)(struct json_object *result, void *userdata), void *userdata,
                     const struct watch_limits *lim, bool *ret_quiet)
{
        /* Authentication is a unary call: it gets a deadline of its own. */
        uint64_t deadline = lim->deadline ? lim->deadline :
                            now_mono_usec() + ETCD_CALL_TIMEOUT_MS * UINT64_C(1000);
        bool reauthed = false, oom = false, quiet = false;
        int best = -EHOSTUNREACH, r;
        const char *body;
        size_t start;

        if (!c || !req || !cb)
                return -EINVAL;
        r = etcd_request_body(c, req, deadline, &body);
        if (r < 0)
                return r;
        start = etcd_endpoint_preferred(c);

        for (size_t i = 0; i < c->n_endpoints; i++) {
                size_t idx = (start + i) % c->n_endpoints;
                struct watch_state w = { .cb = cb, .userdata = userdata, .has_user = c->user != NULL };
                enum etcd_outcome out;
                char *token;

                if (lim->deadline && now_mono_usec() >= lim->deadline)
                        return etcd_more_telling(best, -ETIMEDOUT);
                token = c->user ? etcd_token_copy(c, &oom) : NULL;
                if (oom)
                        return -ENOMEM;
                r = watch_attempt(c, idx, body, token, &w, lim, &quiet, &out);
                secret_free(token);
                if (r == 0) {
                        if (ret_quiet)
                                *ret_quiet = quiet;
                        return 0;
                }
                /* Once events were handed to cb, starting over elsewhere
                 * would hand them again. */
                if (w.created)
                        return r;
                if (out == ETCD_OUT_TOKEN && !reauthed) {
                        reauthed = true;
                        if (!lim->deadline)
                                deadline = now_mono_usec() + ETCD_CALL_TIMEOUT_MS * UINT64_C(1000);
                        r = etcd_authenticate(c, deadline);
                        if (r < 0)
                                return r;
                        i--;
                        continue;
                }
                if (out == ETCD_OUT_UNSENT || out == ETCD_OUT_REJECTED || out == ETCD_OUT_UNKNOWN) {
                        best = etcd_more_telling(best, r);
                        continue;
                }
                return r;
        }
        return best;
}

int etcd_watch(struct etcd_client *c, struct json_object *req,
               int (*cb)(struct json_object *result, void *userdata), void *userdata,
               unsigned quiet_ms, unsigned limit_ms, bool *ret_quiet)
{
        struct watch_limits lim = {
                .quiet_ms = quiet_ms,
                .deadline = now_mono_usec() + limit_ms * UINT64_C(1000),
                .stop_fd = -1,
        };

        return watch_run(c, req, cb, userdata, &lim, ret_quiet);
}

int etcd_watch_held(struct etcd_client *c, struct json_object *req,
                    int (*cb)(struct json_object *result, void *userdata), void *userdata,
                    unsigned idle_ms, int stop_fd)
{
        struct watch_limits lim = { .idle_ms = idle_ms, .stop_fd = stop_fd };

        if (idle_ms == 0)
                return -EINVAL;
        return watch_run(c, req, cb, userdata, &lim, NULL);
}
