/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * etcd v3 through its JSON gRPC gateway (POST /v3/<service>/<method>, JSON
 * bodies, bytes as base64, int64 as strings), with libcurl and json-c.
 *
 * Gateway path: etcd 3.4 (Debian 12) serves both /v3/ and /v3beta/; 3.3
 * only /v3beta/, 3.5 only /v3/.  We ask /v3/ and switch a client to
 * /v3beta/ for good when an endpoint answers a plain-text 404.
 *
 * Every request carries the gRPC metadata "hasleader: true" (the gateway
 * turns "Grpc-Metadata-*" headers into metadata): etcd then refuses at once
 * with "no leader" on a member that has lost its leader, instead of queueing
 * the request until etcd's own 7 s timeout.  A member that has not noticed
 * yet (within one election timeout) still accepts a write and holds it: our
 * request timeout ends that with -ETIMEDOUT.
 *
 * Failover: endpoints are tried in order, starting with the one that last
 * answered.  Moving to the next is always safe when nothing was sent
 * (connection refused or timed out, TLS failure) or etcd rejected the
 * request before proposing it ("no leader", "too many requests"); after a
 * timeout or a broken connection only reads (ETCD_IDEMPOTENT) move on, since
 * a write may have been applied.
 *
 * Threads: one handle pool per client under its mutex (connections are
 * reused), curl_global_init once.  Connections to etcd are opened with
 * SOCK_CLOEXEC (libcurl 7.88 makes its internal wakeup socketpair without
 * it, out of our reach).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "shared/secret.h"
#include "shared/util.h"
#include "store/etcd-transport.h"

#define BODY_MAX (256u << 20) /* a range page of large values fits */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- the client --------------------------------------------------------- */

char *etcd_secret_strdup(const char *s)
{
        size_t n = strlen(s) + 1;
        char *p = secret_alloc(n);

        if (p)
                memcpy(p, s, n);
        return p;
}

void etcd_client_free(struct etcd_client *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n_pool; i++)
                curl_easy_cleanup(c->pool[i]);
        for (size_t i = 0; i < c->n_endpoints; i++)
                free(c->endpoints[i]);
        free(c->cacert);
        free(c->cert);
        free(c->key);
        free(c->user);
        secret_free(c->password);
        secret_free(c->token);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static char *strdup_or_null(const char *s, bool *oom)
{
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

int etcd_client_new(const struct etcd_location *loc, struct etcd_client **ret)
{
        struct etcd_client *c;
        bool oom = false;

        if (!loc || !ret || loc->n_endpoints == 0 || loc->n_endpoints > STORE_ETCD_ENDPOINTS_MAX)
                return -EINVAL;
        pthread_once(&curl_once, curl_init);
        if (curl_init_result != CURLE_OK)
                return curl_init_result == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EIO;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (pthread_mutex_init(&c->lock, NULL) != 0) {
                free(c);
                return -ENOMEM;
        }
        c->api = "/v3/";
        c->n_endpoints = loc->n_endpoints; /* a NULL among them frees fine */
        for (size_t i = 0; i < loc->n_endpoints; i++)
                c->endpoints[i] = strdup_or_null(loc->endpoints[i], &oom);
        c->cacert = strdup_or_null(loc->cacert, &oom);
        c->cert = strdup_or_null(loc->cert, &oom);
        c->key = strdup_or_null(loc->key, &oom);
        c->user = strdup_or_null(loc->user, &oom);
        if (loc->password) {
                c->password = etcd_secret_strdup(loc->password);
                oom = oom || !c->password;
        }
        if (oom) {
                etcd_client_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

static CURL *handle_get(struct etcd_client *c)
{
        CURL *h = NULL;

        pthread_mutex_lock(&c->lock);
        if (c->n_pool > 0)
                h = c->pool[--c->n_pool];
        pthread_mutex_unlock(&c->lock);
        return h ? h : curl_easy_init();
}

static void handle_put(struct etcd_client *c, CURL *h)
{
        if (!h)
                return;
        pthread_mutex_lock(&c->lock);
        if (c->n_pool < ETCD_POOL_MAX) {
                c->pool[c->n_pool++] = h;
                h = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        if (h)
                curl_easy_cleanup(h);
}

static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *a)
{
        int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);

        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

size_t etcd_write_body(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct etcd_body *b = userdata;
        size_t n = size * nmemb;

        if (b->tok) {
                size_t off = 0;

                b->last_usec = now_mono_usec();
                while (off < n) {
                        struct json_object *o = json_tokener_parse_ex(b->tok, data + off, (int)(n - off));
                        enum json_tokener_error e = json_tokener_get_error(b->tok);
                        int r;

                        if (!o) {
                                if (e == json_tokener_continue)
                                        return n;
                                b->err = -EBADMSG;
                                return 0;
                        }
                        off += json_tokener_get_parse_end(b->tok);
                        json_tokener_reset(b->tok);
                        r = b->on_object(o, b->userdata);
                        json_object_put(o);
                        if (r != 0) {
                                b->err = r < 0 ? r : 0;
                                b->stop = true;
                                return 0;
                        }
                }
                return n;
        }

        if (n > BODY_MAX - b->n) {
                b->err = -EBADMSG;
                return 0;
        }
        if (b->n + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *p;

                while (cap < b->n + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p) {
                        b->err = -ENOMEM;
                        return 0;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->n, data, n);
        b->n += n;
        b->p[b->n] = 0;
        return n;
}

void etcd_headers_free(struct curl_slist *l)
{
        /* One of them carries the auth token. */
        for (struct curl_slist *i = l; i; i = i->next)
                secure_wipe(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

/* Sets h up for one POST of body to url; *ret_headers must be freed after
 * the transfer. */
int etcd_setup_post(struct etcd_client *c, CURL *h, const char *url, const char *body, size_t body_len,
                    const char *token, long timeout_ms, struct etcd_body *out,
                    struct curl_slist **ret_headers)
{
        struct curl_slist *hd = NULL, *t;
        bool ok = true;
        char *auth = NULL;

        static const char *const fixed[] = {
                "Content-Type: application/json",
                "Expect:", /* no 100-continue round trip for large bodies */
                "Grpc-Metadata-hasleader: true",
        };
        for (size_t i = 0; i < ARRAY_SIZE(fixed) && ok; i++) {
                t = curl_slist_append(hd, fixed[i]);
                ok = t != NULL;
                hd = t ? t : hd;
        }
        if (ok && token && *token) {
                if (asprintf(&auth, "Authorization: %s", token) < 0)
                        auth = NULL, ok = false;
                else {
                        t = curl_slist_append(hd, auth);
                        ok = t != NULL;
                        hd = t ? t : hd;
                        secure_wipe(auth, strlen(auth));
                        free(auth);
                }
        }
        if (!ok) {
                etcd_headers_free(hd);
                return -ENOMEM;
        }

        curl_easy_reset(h);
#define SET(opt, val) ok = ok && curl_easy_setopt(h, opt, val) == CURLE_OK
        SET(CURLOPT_URL, url);
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        SET(CURLOPT_HTTPHEADER, hd);
        SET(CURLOPT_WRITEFUNCTION, etcd_write_body);
        SET(CURLOPT_WRITEDATA, out);
        SET(CURLOPT_ERRORBUFFER, out->error);
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CONNECT_TIMEOUT_MS);
        SET(CURLOPT_TIMEOUT_MS, timeout_ms);
        SET(CURLOPT_PROXY, ""); /* never an http_proxy from the environment */
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
#ifdef CURLOPT_PROTOCOLS_STR
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
        if (c->cacert)
                SET(CURLOPT_CAINFO, c->cacert);
        if (c->cert) {
                SET(CURLOPT_SSLCERT, c->cert);
                SET(CURLOPT_SSLKEY, c->key);
        }
#undef SET
        if (!ok) {
                etcd_headers_free(hd);
                return -ENOMEM;
        }
        *ret_headers = hd;
        return 0;
}

enum etcd_phase etcd_transfer_phase(CURL *h)
{
        curl_off_t connect = 0, pretransfer = 0;

        if (curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer) == CURLE_OK && pretransfer > 0)
                return ETCD_PHASE_SENT;
        if (curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connect) == CURLE_OK && connect > 0)
                return ETCD_PHASE_CONNECTED;
        return ETCD_PHASE_NONE;
}

/* Parses a whole reply body as one JSON object. */
static int parse_object(const char *p, size_t n, struct json_object **ret)
{
        json_tokener *tok;
        struct json_object *o;
        size_t end;

        if (n > INT32_MAX)
                return -EBADMSG;
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, p, (int)n);
        end = o ? json_tokener_get_parse_end(tok) : 0;
        json_tokener_free(tok);
        if (!o)
                return -EBADMSG;
        while (end < n && (p[end] == ' ' || p[end] == '\n' || p[end] == '\r' || p[end] == '\t'))
                end++;
        if (end != n || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }
        *ret = o;
        return 0;
}

char *etcd_token_copy(struct etcd_client *c, bool *oom)
{
        char *t = NULL;

        pthread_mutex_lock(&c->lock);
        if (c->token) {
                t = etcd_secret_strdup(c->token);
                *oom = !t;
        }
        pthread_mutex_unlock(&c->lock);
        return t;
}

void etcd_endpoint_answered(struct etcd_client *c, size_t idx)
{
        pthread_mutex_lock(&c->lock);
        c->preferred = idx;
        pthread_mutex_unlock(&c->lock);
}

size_t etcd_endpoint_preferred(struct etcd_client *c)
{
        size_t idx;

        pthread_mutex_lock(&c->lock);
        idx = c->preferred;
        pthread_mutex_unlock(&c->lock);
        return idx;
}

/* A connect this host refused (SELinux, seccomp, systemd's IPAddressDeny= or
 * RestrictAddressFamilies=) looks like an unreachable member to the rest of
 * the store; remember it so that start-up can say what really happened. */
static void note_connect_failure(struct etcd_client *c, CURL *h)
{
        long os_errno = 0;

        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
        pthread_mutex_lock(&c->lock);
        c->connect_refused = os_errno == EACCES || os_errno == EPERM || os_errno == EAFNOSUPPORT
                                     ? (int)os_errno
                                     : 0;
        pthread_mutex_unlock(&c->lock);
}

int etcd_client_connect_refused(struct etcd_client *c)
{
        int e;

        pthread_mutex_lock(&c->lock);
        e = c->connect_refused;
        pthread_mutex_unlock(&c->lock);
        return e;
}

/* One POST to one endpoint. */
static int attempt(struct etcd_client *c, size_t idx, const char *method, const char *body,
                   size_t body_len, const char *token, long timeout_ms, struct json_object **ret,
                   enum etcd_outcome *ret_outcome)
{
        for (int api_try = 0; api_try < 2; api_try++) {
                struct curl_slist *hd = NULL;
                struct etcd_body out = { 0 };
                const char *api;
                char *url = NULL;
                long status = 0;
                CURLcode cc;
                CURL *h;
                int r;

                pthread_mutex_lock(&c->lock);
                api = c->api;
                pthread_mutex_unlock(&c->lock);
                if (asprintf(&url, "%s%s%s", c->endpoints[idx], api, method) < 0)
                        return *ret_outcome = ETCD_OUT_FINAL, -ENOMEM;
                h = handle_get(c);
                r = h ? etcd_setup_post(c, h, url, body, body_len, token, timeout_ms, &out, &hd) : -ENOMEM;
                if (r < 0) {
                        free(url);
                        handle_put(c, h);
                        return *ret_outcome = ETCD_OUT_FINAL, r;
                }
                cc = curl_easy_perform(h);
                if (cc == CURLE_OK)
                        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
                else if (out.err)
                        r = out.err, *ret_outcome = ETCD_OUT_FINAL;
                else {
                        r = etcd_curl_error(cc, etcd_transfer_phase(h), strncmp(url, "https:", 6) == 0,
                                            out.error, ret_outcome);
                        if (cc == CURLE_COULDNT_CONNECT)
                                note_connect_failure(c, h);
                }
                etcd_headers_free(hd);
                handle_put(c, h);
                free(url);
                if (r < 0) {
                        free(out.p);
                        return r;
                }

                etcd_endpoint_answered(c, idx);
                if (status == 404 && (out.n == 0 || out.p[0] != '{')) {
                        free(out.p);
                        if (strcmp(api, "/v3/") != 0)
                                break;
                        /* An etcd older than 3.4: its gateway lives under /v3beta/. */
                        pthread_mutex_lock(&c->lock);
                        c->api = "/v3beta/";
                        pthread_mutex_unlock(&c->lock);
                        continue;
                }
                r = parse_object(out.p ? out.p : "", out.n, ret);
                /* An authenticate reply carries a token. */
                if (out.p)
                        secure_wipe(out.p, out.n);
                free(out.p);
                if (r < 0)
                        return *ret_outcome = ETCD_OUT_FINAL, r;
                if (status == 200) {
                        *ret_outcome = ETCD_OUT_OK;
                        return 0;
                }
                r = etcd_reply_error(*ret, ret_outcome);
                json_object_put(*ret);
                *ret = NULL;
                return r;
        }
        *ret_outcome = ETCD_OUT_FINAL;
        return -EPROTONOSUPPORT; /* neither /v3/ nor /v3beta/ */
}

static int call_loop(struct etcd_client *c, const char *method, const char *body, size_t body_len,
                     unsigned flags, bool with_token, uint64_t deadline, struct json_object **ret)
{
        bool reauthed = false, oom = false;
        int best = -EHOSTUNREACH;
        size_t start = etcd_endpoint_preferred(c);

        for (size_t i = 0; i < c->n_endpoints; i++) {
                size_t idx = (start + i) % c->n_endpoints;
                uint64_t now = now_mono_usec();
                long left = now < deadline ? (long)((deadline - now) / 1000) : 0;
                struct json_object *o = NULL;
                enum etcd_outcome out;
                char *token;
                int r;

                if (left <= 0)
                        return etcd_more_telling(best, -ETIMEDOUT);
                token = with_token ? etcd_token_copy(c, &oom) : NULL;
                if (oom)
                        return -ENOMEM;
                r = attempt(c, idx, method, body, body_len, token,
                            left < ETCD_REQUEST_TIMEOUT_MS ? left : ETCD_REQUEST_TIMEOUT_MS, &o, &out);
                secret_free(token);
                switch (out) {
                case ETCD_OUT_OK:
                        *ret = o;
                        return 0;
                case ETCD_OUT_TOKEN:
                        if (reauthed || !with_token)
                                return r;
                        reauthed = true;
                        r = etcd_authenticate(c, deadline);
                        if (r < 0)
                                return r;
                        i--; /* the same endpoint again */
                        continue;
                case ETCD_OUT_UNSENT:
                case ETCD_OUT_REJECTED:
                        best = etcd_more_telling(best, r);
                        continue;
                case ETCD_OUT_UNKNOWN:
                        if (!(flags & ETCD_IDEMPOTENT))
                                return r == -ECONNRESET ? r : -ETIMEDOUT;
                        best = etcd_more_telling(best, r);
                        continue;
                case ETCD_OUT_FINAL:
                        return r;
                }
        }
        return best;
}

int etcd_call_each(struct etcd_client *c, const char *method, struct json_object *req,
                   size_t *ret_done)
{
        /* Each member gets a whole call's time: a defragmentation holds
         * the member while it rewrites its file. */
        uint64_t deadline = now_mono_usec() + ETCD_CALL_TIMEOUT_MS * UINT64_C(1000) * c->n_endpoints;
        const char *body;
        size_t done = 0;
        int best = 0, r;

        if (!c || !method || !req || !ret_done)
                return -EINVAL;
        r = etcd_request_body(c, req, deadline, &body);
        if (r < 0)
                return r;
        for (size_t idx = 0; idx < c->n_endpoints; idx++) {
                bool reauthed = false;

                for (;;) {
                        struct json_object *o = NULL;
                        enum etcd_outcome out;
                        bool oom = false;
                        char *token = c->user ? etcd_token_copy(c, &oom) : NULL;

                        if (oom)
                                return -ENOMEM;
                        r = attempt(c, idx, method, body, strlen(body), token, ETCD_REQUEST_TIMEOUT_MS, &o,
                                    &out);
                        secret_free(token);
                        json_object_put(o);
                        if (out == ETCD_OUT_TOKEN && c->user && !reauthed) {
                                reauthed = true;
                                r = etcd_authenticate(c, deadline);
                                if (r == 0)
                                        continue;
                        }
                        break;
                }
                if (r == 0)
                        done++;
                else
                        best = best ? etcd_more_telling(best, r) : r;
        }
        *ret_done = done;
        return best;
}

/* Gets a token for user/password (etcd's Authenticate), or notes that etcd
 * has authentication disabled. */
int etcd_authenticate(struct etcd_client *c, uint64_t deadline)
{
        struct json_object *req, *reply = NULL, *tok;
        const char *body;
        char *t;
        int r;

        req = json_object_new_object();
        if (!req)
                return -ENOMEM;
        if (etcd_json_add_object(req, "name", json_object_new_string(c->user)) < 0 ||
            etcd_json_add_object(req, "password", json_object_new_string(c->password)) < 0) {
                json_object_put(req);
                return -ENOMEM;
        }
        body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
        r = body ? call_loop(c, "auth/authenticate", body, strlen(body), ETCD_IDEMPOTENT, false, deadline,
                             &reply)
                 : -ENOMEM;
        /* json-c keeps the serialised body and a copy of the password (and
         * libcurl's own request buffer is beyond our reach). */
        if (body)
                secure_wipe((char *)body, strlen(body));
        if (json_object_object_get_ex(req, "password", &tok))
                secure_wipe((char *)json_object_get_string(tok), (size_t)json_object_get_string_len(tok));
        json_object_put(req);

        if (r == -ENOTSUP) {
                /* "authentication is not enabled": etcd takes requests
                 * without a token. */
                t = etcd_secret_strdup("");
        } else if (r < 0)
                return r;
        else {
                if (!json_object_object_get_ex(reply, "token", &tok) ||
                    !json_object_is_type(tok, json_type_string)) {
                        json_object_put(reply);
                        return -EBADMSG;
                }
                t = etcd_secret_strdup(json_object_get_string(tok));
                secure_wipe((char *)json_object_get_string(tok), (size_t)json_object_get_string_len(tok));
                json_object_put(reply);
        }
        if (!t)
                return -ENOMEM;
        pthread_mutex_lock(&c->lock);
        secret_free(c->token);
        c->token = t;
        pthread_mutex_unlock(&c->lock);
        return 0;
}

int etcd_ensure_token(struct etcd_client *c, uint64_t deadline)
{
        bool have;

        if (!c->user)
                return 0;
        pthread_mutex_lock(&c->lock);
        have = c->token != NULL;
        pthread_mutex_unlock(&c->lock);
        return have ? 0 : etcd_authenticate(c, deadline);
}

int etcd_request_body(struct etcd_client *c, struct json_object *req, uint64_t deadline,
                      const char **ret_body)
{
        const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
        int r;

        if (!body)
                return -ENOMEM;
        r = etcd_ensure_token(c, deadline);
        if (r < 0)
                return r;
        *ret_body = body;
        return 0;
}

int etcd_call(struct etcd_client *c, const char *method, struct json_object *req, unsigned flags,
              struct json_object **ret)
{
        uint64_t deadline = now_mono_usec() + ETCD_CALL_TIMEOUT_MS * UINT64_C(1000);
        struct json_object *o = NULL;
        const char *body;
        int r;

        if (!c || !method || !req || !ret)
                return -EINVAL;
        r = etcd_request_body(c, req, deadline, &body);
        if (r < 0)
                return r;
        r = call_loop(c, method, body, strlen(body), flags, c->user != NULL, deadline, &o);
        if (r < 0)
                return r;
        *ret = o;
        return 0;
}
