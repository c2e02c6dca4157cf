/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>

#include "dkm/dkm.h"
#include "shared/format.h"
#include "shared/util.h"
#include "shared/wire.h"

struct dkm_client {
        int fd;
        pthread_mutex_t lock;
        struct sockaddr_un sa; /* to connect again after dkmd closed an idle connection */
        char error[512];
};

static struct {
        pthread_mutex_t lock;
        dkm_log_fn fn;
        void *userdata;
} logger = { .lock = PTHREAD_MUTEX_INITIALIZER };

_public_ void dkm_set_log_callback(dkm_log_fn fn, void *userdata)
{
        pthread_mutex_lock(&logger.lock);
        logger.fn = fn;
        logger.userdata = userdata;
        pthread_mutex_unlock(&logger.lock);
}

static void lib_log(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void lib_log(int priority, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        pthread_mutex_lock(&logger.lock);
        if (logger.fn) {
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
                logger.fn(priority, msg, logger.userdata);
        }
        pthread_mutex_unlock(&logger.lock);
}

static int set_error(dkm_client *c, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_error(dkm_client *c, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
        lib_log(LOG_DEBUG, "%s", c->error);
        return r;
}

_public_ const char *dkm_last_error(dkm_client *c)
{
        return c ? c->error : "no client";
}

_public_ int dkm_connect(const char *socket_path, dkm_client **ret)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        dkm_client *c;
        int r;

        if (!ret)
                return -EINVAL;
        if (!socket_path)
                socket_path = getenv("DKM_SOCKET");
        if (!socket_path || !*socket_path)
                socket_path = "/run/dkm/dkmd.sock";
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, socket_path);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        c->sa = sa;
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                r = negative_errno();
                lib_log(LOG_DEBUG, "cannot connect to %s: %s", socket_path, strerror(-r));
                if (c->fd >= 0)
                        close(c->fd);
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

_public_ void dkm_disconnect(dkm_client *c)
{
        if (!c)
                return;
        close(c->fd);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

_public_ void dkm_free_secret(void *p, size_t len)
{
        if (p) {
                secure_wipe(p, len);
                free(p);
        }
}

/* A reply from dkmd: the raw buffer and the message that points into it. */
struct reply {
        uint8_t *buf;
        size_t len;
        struct wire_msg *msg;
};

static void reply_free(struct reply *rp)
{
        wire_free_buf(rp->buf, rp->len);
        free(rp->msg);
        *rp = (struct reply){ 0 };
}

/* Sends a request (consuming the builder) and waits for its reply.  Error
 * replies become -errno with c->error set. */
/* dkmd closes a connection that sat idle for [daemon] idle_timeout.  Between
 * requests nothing may arrive but that end, so a connection that reads as
 * ready now was closed: connect again before sending, so no request is
 * ever sent twice.  Called with c->lock held. */
static void reconnect_if_closed(dkm_client *c)
{
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int fd;

        if (poll(&p, 1, 0) <= 0)
                return;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        if (connect(fd, (struct sockaddr *)&c->sa, sizeof(c->sa)) < 0) {
                close(fd);
                return; /* the send on the old one reports the loss */
        }
        lib_log(LOG_DEBUG, "dkmd had closed the idle connection; connected again");
        dup3(fd, c->fd, O_CLOEXEC);
        close(fd);
}

static int call_fds(dkm_client *c, struct wire_builder *req, const int *fds, size_t n_fds,
                    struct reply *ret)
{
        struct reply rp = { 0 };
        const char *why;
        int r;

        r = wire_finish(req);
        if (r < 0) {
                wire_builder_free(req);
                return set_error(c, r, "request too large (the limit is %d bytes of data)",
                                 WIRE_MAX_DATA);
        }
        rp.msg = malloc(sizeof(*rp.msg));
        if (!rp.msg) {
                wire_builder_free(req);
                return -ENOMEM;
        }
        pthread_mutex_lock(&c->lock);
        reconnect_if_closed(c);
        r = wire_send_fds(c->fd, req->buf, req->len, fds, n_fds);
        if (r >= 0)
                r = wire_recv(c->fd, &rp.buf, &rp.len);
        pthread_mutex_unlock(&c->lock);
        wire_builder_free(req);
        if (r < 0) {
                reply_free(&rp);
                return set_error(c, r, "lost the connection to dkmd: %s", strerror(-r));
        }
        r = wire_parse(rp.buf, rp.len, rp.msg, &why);
        if (r < 0) {
                reply_free(&rp);
                return set_error(c, r, "malformed reply from dkmd: %s", why);
        }
        if (rp.msg->type == WIRE_REPLY_ERROR) {
                uint32_t e = EIO;
                char msg[512] = "";

                wire_get_u32(rp.msg, WIRE_TAG_ERRNO, &e);
                if (wire_get_string(rp.msg, WIRE_TAG_MESSAGE, msg, sizeof(msg)) < 0)
                        snprintf(msg, sizeof(msg), "%s", strerror((int)e));
                reply_free(&rp);
                return set_error(c, e == 0 ? -EIO : -(int)e, "%s", msg);
        }
        if (rp.msg->type != WIRE_REPLY_OK) {
                reply_free(&rp);
                return set_error(c, -EBADMSG, "unexpected reply type from dkmd");
        }
        c->error[0] = 0;
        *ret = rp;
        return 0;
}

static int call(dkm_client *c, struct wire_builder *req, struct reply *ret)
{
        return call_fds(c, req, NULL, 0, ret);
}

/* A copy of a reply field (at least one byte allocated, so an empty one is
 * not NULL). */
static int field_copy(const struct wire_field *f, uint8_t **ret, size_t *ret_len)
{
        uint8_t *out = malloc(f->len ? f->len : 1);

        if (!out)
                return -ENOMEM;
        memcpy(out, f->value, f->len);
        *ret = out;
        *ret_len = f->len;
        return 0;
}

static int add_context(dkm_client *c, struct wire_builder *b, const dkm_context_pair *ctx,
                       size_t n)
{
        char field[CONTEXT_MAX_KEY + 1 + CONTEXT_MAX_VALUE];

        if (n > CONTEXT_MAX_PAIRS)
                return set_error(c, -EINVAL, "too many context pairs (at most %d)", CONTEXT_MAX_PAIRS);
        for (size_t i = 0; i < n; i++) {
                size_t kl, vl;

                if (!ctx[i].key || !ctx[i].value)
                        return set_error(c, -EINVAL, "context pair %zu is incomplete", i);
                kl = strlen(ctx[i].key);
                vl = strlen(ctx[i].value);
                if (kl == 0 || kl > CONTEXT_MAX_KEY || vl > CONTEXT_MAX_VALUE)
                        return set_error(c, -EINVAL, "context key or value too long or empty");
                memcpy(field, ctx[i].key, kl);
                field[kl] = 0;
                memcpy(field + kl + 1, ctx[i].value, vl);
                wire_add(b, WIRE_TAG_CONTEXT, field, kl + 1 + vl);
        }
        return 0;
}

/* Starts a request of type with its policy, when given, and context pairs;
 * on failure the builder is freed. */
static int request_begin(dkm_client *c, struct wire_builder *b, uint16_t type, const char *policy,
                         const dkm_context_pair *ctx, size_t n_ctx)
{
        int r;

        wire_begin(b, type);
        if (policy)
                wire_add_string(b, WIRE_TAG_POLICY, policy);
        r = add_context(c, b, ctx, n_ctx);
        if (r < 0)
                wire_builder_free(b);
        return r;
}

/* A request whose reply carries DATA. */
static int data_call(dkm_client *c, uint16_t type, const char *policy,
                     const dkm_context_pair *ctx, size_t n_ctx, const void *in, size_t len,
                     uint8_t **ret, size_t *ret_len)
{
        struct wire_builder b;
        const struct wire_field *f;
        struct reply rp;
        int r;

        if (!c || !ret || !ret_len || (!in && len))
                return -EINVAL;
        r = request_begin(c, &b, type, policy, ctx, n_ctx);
        if (r < 0)
                return r;
        wire_add(&b, WIRE_TAG_DATA, in, len);
        r = call(c, &b, &rp);
        if (r < 0)
                return r;
        f = wire_get(rp.msg, WIRE_TAG_DATA);
        r = f ? field_copy(f, ret, ret_len) : set_error(c, -EBADMSG, "reply from dkmd carries no data");
        reply_free(&rp);
        return r;
}

_public_ int dkm_datakey(dkm_client *c, const char *policy, const dkm_context_pair *ctx, size_t n_ctx,
                         uint8_t ret_key[32], uint8_t **ret_wrapped, size_t *ret_len)
{
        struct wire_builder b;
        const struct wire_field *w, *k;
        struct reply rp;
        int r;

        if (!c || !ret_key || !ret_wrapped || !ret_len)
                return -EINVAL;
        r = request_begin(c, &b, WIRE_DATAKEY, policy, ctx, n_ctx);
        if (r < 0)
                return r;
        r = call(c, &b, &rp);
        if (r < 0)
                return r;
        w = wire_get(rp.msg, WIRE_TAG_DATA);
        k = wire_get(rp.msg, WIRE_TAG_KEY);
        if (!w || !k || k->len != 32)
                r = set_error(c, -EBADMSG, "malformed data key reply from dkmd");
        else
                r = field_copy(w, ret_wrapped, ret_len);
        if (r >= 0)
                memcpy(ret_key, k->value, 32);
        reply_free(&rp);
        return r;
}

_public_ int dkm_unwrap_datakey(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx,
                                const void *wrapped, size_t len, uint8_t ret_key[32])
{
        uint8_t *key;
        size_t n;
        int r;

        if (!ret_key)
                return -EINVAL;
        r = dkm_decrypt(c, ctx, n_ctx, wrapped, len, &key, &n);
        if (r < 0)
                return r;
        if (n != 32) {
                dkm_free_secret(key, n);
                return set_error(c, -EBADMSG, "not a wrapped data key (%zu bytes inside)", n);
        }
        memcpy(ret_key, key, 32);
        dkm_free_secret(key, n);
        return 0;
}

/* Builds one batch item as an inner message. */
static int batch_item(dkm_client *c, const dkm_batch_item *it, struct wire_builder *ib)
{
        int r;

        if (it->op != DKM_BATCH_ENCRYPT && it->op != DKM_BATCH_DECRYPT)
                return set_error(c, -EINVAL, "batch item with an unknown operation");
        wire_begin(ib, it->op == DKM_BATCH_ENCRYPT ? WIRE_ENCRYPT : WIRE_DECRYPT);
        if (it->policy && it->op == DKM_BATCH_ENCRYPT)
                wire_add_string(ib, WIRE_TAG_POLICY, it->policy);
        r = add_context(c, ib, it->ctx, it->n_ctx);
        if (r < 0)
                return r;
        wire_add(ib, WIRE_TAG_DATA, it->in, it->in_len);
        return wire_finish(ib);
}

/* Sends items [from, to) as one request and fills in their results. */
static int batch_send(dkm_client *c, dkm_batch_item *items, size_t from, size_t to,
                      struct wire_builder *b)
{
        struct reply rp;
        struct wire_msg *m;
        size_t k = from;
        int r;

        r = call(c, b, &rp);
        if (r < 0)
                return r;
        m = rp.msg;
        for (size_t i = 0; i < m->n_fields && k < to; i++) {
                struct wire_msg inner;
                const struct wire_field *d;
                const char *why;
                dkm_batch_item *it = &items[k++];

                if (m->fields[i].tag != WIRE_TAG_ITEM)
                        continue;
                if (wire_parse(m->fields[i].value, m->fields[i].len, &inner, &why) < 0) {
                        it->error = -EBADMSG;
                        continue;
                }
                if (inner.type == WIRE_REPLY_ERROR) {
                        uint32_t e = EIO;
                        wire_get_u32(&inner, WIRE_TAG_ERRNO, &e);
                        it->error = -(int)e;
                        wire_get_string(&inner, WIRE_TAG_MESSAGE, it->message, sizeof(it->message));
                        continue;
                }
                d = wire_get(&inner, WIRE_TAG_DATA);
                it->error = d ? field_copy(d, &it->out, &it->out_len) : -EBADMSG;
        }
        for (; k < to; k++)
                items[k].error = -EBADMSG; /* the reply was short */
        reply_free(&rp);
        return 0;
}

_public_ int dkm_batch(dkm_client *c, dkm_batch_item *items, size_t n)
{
        struct wire_builder b;
        size_t from = 0, bytes = 0;
        int r;

        if (!c || (!items && n))
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                items[i].error = -EINPROGRESS;
                items[i].out = NULL;
                items[i].out_len = 0;
                items[i].message[0] = 0;
        }
        wire_begin(&b, WIRE_BATCH);
        for (size_t i = 0; i < n; i++) {
                struct wire_builder ib;

                r = batch_item(c, &items[i], &ib);
                if (r < 0 || ib.len > WIRE_MAX_ITEM) {
                        items[i].error = r < 0 ? r : -E2BIG;
                        snprintf(items[i].message, sizeof(items[i].message), "%.150s",
                                 r < 0 ? dkm_last_error(c) : "item too large for a batch");
                        wire_builder_free(&ib);
                        continue;
                }
                /* Keep each request (and its reply) well inside the message
                 * limit: replies grow by the ciphertext overhead. */
                if (i > from && (i - from >= WIRE_MAX_BATCH || bytes + ib.len > WIRE_MAX_DATA / 2)) {
                        r = batch_send(c, items, from, i, &b);
                        if (r < 0) {
                                wire_builder_free(&ib);
                                return r;
                        }
                        wire_begin(&b, WIRE_BATCH);
                        from = i;
                        bytes = 0;
                }
                wire_add(&b, WIRE_TAG_ITEM, ib.buf, ib.len);
                bytes += ib.len;
                wire_builder_free(&ib);
        }
        r = batch_send(c, items, from, n, &b);
        return r < 0 ? r : 0;
}

/* dkmd streams between the two descriptors itself: the data never crosses
 * this socket. */
static int stream_call(dkm_client *c, uint16_t type, const char *policy, const dkm_context_pair *ctx,
                       size_t n_ctx, uint32_t segment_size, int in_fd, int out_fd, uint64_t *ret_bytes)
{
        _cleanup_free_ char *json = NULL;
        struct wire_builder b;
        const struct wire_field *f;
        const int fds[2] = { in_fd, out_fd };
        struct reply rp;
        int r;

        if (!c || in_fd < 0 || out_fd < 0)
                return -EINVAL;
        r = request_begin(c, &b, type, policy, ctx, n_ctx);
        if (r < 0)
                return r;
        if (segment_size)
                wire_add_u32(&b, WIRE_TAG_SEGMENT, segment_size);
        r = call_fds(c, &b, fds, 2, &rp);
        if (r < 0)
                return r;
        f = wire_get(rp.msg, WIRE_TAG_JSON);
        if (f && ret_bytes) {
                json = strndup((const char *)f->value, f->len);
                if (!json || sscanf(json, "{\"bytes\":%" SCNu64 "}", ret_bytes) != 1)
                        r = set_error(c, -EBADMSG, "malformed stream reply from dkmd");
        }
        reply_free(&rp);
        return r;
}

_public_ int dkm_encrypt_fd(dkm_client *c, const char *policy, const dkm_context_pair *ctx,
                            size_t n_ctx, int in_fd, int out_fd, uint64_t *ret_bytes)
{
        return stream_call(c, WIRE_ENCRYPT_FD, policy, ctx, n_ctx, 0, in_fd, out_fd, ret_bytes);
}

_public_ int dkm_decrypt_fd(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx, int in_fd,
                            int out_fd, uint64_t *ret_bytes)
{
        return stream_call(c, WIRE_DECRYPT_FD, NULL, ctx, n_ctx, 0, in_fd, out_fd, ret_bytes);
}

_public_ int dkm_encrypt(dkm_client *c, const char *policy, const dkm_context_pair *ctx,
                         size_t n_ctx, const void *plaintext, size_t len, uint8_t **ret,
                         size_t *ret_len)
{
        return data_call(c, WIRE_ENCRYPT, policy, ctx, n_ctx, plaintext, len, ret, ret_len);
}

_public_ int dkm_decrypt(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx,
                         const void *ciphertext, size_t len, uint8_t **ret, size_t *ret_len)
{
        return data_call(c, WIRE_DECRYPT, NULL, ctx, n_ctx, ciphertext, len, ret, ret_len);
}

_public_ int dkm_rewrap(dkm_client *c, const dkm_context_pair *ctx, size_t n_ctx,
                        const void *ciphertext, size_t len, uint8_t **ret, size_t *ret_len)
{
        return data_call(c, WIRE_REWRAP, NULL, ctx, n_ctx, ciphertext, len, ret, ret_len);
}

/* Sends b and returns the reply's JSON text (malloc'd) in *ret, if ret. */
static int json_request(dkm_client *c, struct wire_builder *b, char **ret)
{
        const struct wire_field *f;
        struct reply rp;
        char *s;
        int r;

        r = call(c, b, &rp);
        if (r < 0)
                return r;
        f = wire_get(rp.msg, WIRE_TAG_JSON);
        if (!f)
                r = set_error(c, -EBADMSG, "reply from dkmd carries no JSON");
        else if (ret) {
                s = strndup((const char *)f->value, f->len);
                if (!s)
                        r = -ENOMEM;
                else
                        *ret = s;
        }
        reply_free(&rp);
        return r;
}

/* A request whose reply carries JSON text. */
static int json_call(dkm_client *c, uint16_t type, const char *policy, const void *data,
                     size_t len, const uint32_t *generation, char **ret)
{
        struct wire_builder b;

        if (!c)
                return -EINVAL;
        wire_begin(&b, type);
        if (policy)
                wire_add_string(&b, WIRE_TAG_POLICY, policy);
        if (data)
                wire_add(&b, WIRE_TAG_DATA, data, len);
        if (generation)
                wire_add_u32(&b, WIRE_TAG_GENERATION, *generation);
        return json_request(c, &b, ret);
}

_public_ int dkm_backup_fd(dkm_client *c, int out_fd, char **ret)
{
        struct wire_builder b;
        const struct wire_field *f;
        struct reply rp;
        int r;

        if (!c || out_fd < 0)
                return -EINVAL;
        wire_begin(&b, WIRE_BACKUP);
        r = call_fds(c, &b, &out_fd, 1, &rp);
        if (r < 0)
                return r;
        f = wire_get(rp.msg, WIRE_TAG_JSON);
        if (!f)
                r = set_error(c, -EBADMSG, "reply from dkmd carries no JSON");
        else if (ret && !(*ret = strndup((const char *)f->value, f->len)))
                r = -ENOMEM;
        reply_free(&rp);
        return r;
}

_public_ int dkm_store_verify_json(dkm_client *c, char **ret)
{
        return json_call(c, WIRE_STORE_VERIFY, NULL, NULL, 0, NULL, ret);
}

/* Passes on the error r of a JSON request, or reads an unsigned field of
 * its flat reply into *ret (when ret). */
static int reply_u32(dkm_client *c, int r, const char *json, const char *key, uint32_t *ret)
{
        json_object *o, *v;
        int64_t n;

        if (r < 0)
                return r;
        o = json_tokener_parse(json);
        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int)) {
                json_object_put(o);
                return set_error(c, -EBADMSG, "malformed reply from dkmd");
        }
        n = json_object_get_int64(v);
        json_object_put(o);
        if (n < 0 || n > UINT32_MAX)
                return set_error(c, -EBADMSG, "malformed reply from dkmd");
        if (ret)
                *ret = (uint32_t)n;
        return 0;
}

_public_ int dkm_access_request(dkm_client *c, const char *reason, const char *duration,
                                const char *scope, const char *policy, uint32_t *ret_id)
{
        _cleanup_free_ char *json = NULL;
        struct wire_builder b;
        int r;

        if (!c)
                return -EINVAL;
        wire_begin(&b, WIRE_ACCESS_REQUEST);
        if (reason)
                wire_add_string(&b, WIRE_TAG_REASON, reason);
        if (duration)
                wire_add_string(&b, WIRE_TAG_DURATION, duration);
        if (scope)
                wire_add_string(&b, WIRE_TAG_SCOPE, scope);
        if (policy)
                wire_add_string(&b, WIRE_TAG_POLICY, policy);
        r = json_request(c, &b, &json);
        return reply_u32(c, r, json, "request", ret_id);
}

static int id_call(dkm_client *c, uint16_t type, uint32_t id, const char *reason, char **ret)
{
        struct wire_builder b;

        if (!c)
                return -EINVAL;
        wire_begin(&b, type);
        wire_add_u32(&b, WIRE_TAG_REQUEST, id);
        if (reason)
                wire_add_string(&b, WIRE_TAG_REASON, reason);
        return json_request(c, &b, ret);
}

_public_ int dkm_access_approve(dkm_client *c, uint32_t id, char **ret_state)
{
        _cleanup_free_ char *json = NULL;
        json_object *o, *v;
        char *state;
        int r;

        r = id_call(c, WIRE_ACCESS_APPROVE, id, NULL, &json);
        if (r < 0)
                return r;
        o = json_tokener_parse(json);
        if (!o || !json_object_object_get_ex(o, "state", &v)) {
                json_object_put(o);
                return set_error(c, -EBADMSG, "malformed reply from dkmd");
        }
        state = strdup(json_object_get_string(v));
        json_object_put(o);
        if (!state)
                return -ENOMEM;
        if (ret_state)
                *ret_state = state;
        else
                free(state);
        return 0;
}

_public_ int dkm_access_deny(dkm_client *c, uint32_t id, const char *reason)
{
        return id_call(c, WIRE_ACCESS_DENY, id, reason, NULL);
}

_public_ int dkm_access_revoke(dkm_client *c, uint32_t id)
{
        return id_call(c, WIRE_ACCESS_REVOKE, id, NULL, NULL);
}

_public_ int dkm_access_list_json(dkm_client *c, char **ret)
{
        return json_call(c, WIRE_ACCESS_LIST, NULL, NULL, 0, NULL, ret);
}

_public_ int dkm_key_destroy(dkm_client *c, const char *policy, uint32_t generation,
                             const char *reason, uint32_t *ret_request)
{
        _cleanup_free_ char *json = NULL;
        struct wire_builder b;
        int r;

        if (!c)
                return -EINVAL;
        wire_begin(&b, WIRE_KEY_DESTROY);
        if (policy)
                wire_add_string(&b, WIRE_TAG_POLICY, policy);
        wire_add_u32(&b, WIRE_TAG_GENERATION, generation);
        if (reason)
                wire_add_string(&b, WIRE_TAG_REASON, reason);
        r = json_request(c, &b, &json);
        return reply_u32(c, r, json, "request", ret_request);
}

static int policy_call(dkm_client *c, uint16_t type, const char *name, const char *key_a,
                       const char *key_b, uint32_t flags, const char *reason, char **ret)
{
        struct wire_builder b;

        if (!c)
                return -EINVAL;
        wire_begin(&b, type);
        if (name)
                wire_add_string(&b, WIRE_TAG_POLICY, name);
        if (key_a)
                wire_add_string(&b, WIRE_TAG_CUSTOMER_KEY, key_a);
        if (key_b)
                wire_add_string(&b, WIRE_TAG_CUSTOMER_KEY, key_b);
        if (flags)
                wire_add_u32(&b, WIRE_TAG_FLAGS, flags);
        if (reason)
                wire_add_string(&b, WIRE_TAG_REASON, reason);
        return json_request(c, &b, ret);
}

_public_ int dkm_policy_create(dkm_client *c, const char *name, const char *key_a, const char *key_b)
{
        if (!name)
                return -EINVAL;
        return policy_call(c, WIRE_POLICY_CREATE, name, key_a, key_b, 0, NULL, NULL);
}

_public_ int dkm_policy_list_json(dkm_client *c, char **ret)
{
        return policy_call(c, WIRE_POLICY_LIST, NULL, NULL, NULL, 0, NULL, ret);
}

_public_ int dkm_policy_show_json(dkm_client *c, const char *name, char **ret)
{
        if (!name)
                return -EINVAL;
        return policy_call(c, WIRE_POLICY_SHOW, name, NULL, NULL, 0, NULL, ret);
}

_public_ int dkm_policy_assign(dkm_client *c, const char *name, int by_gid, uint32_t id)
{
        struct wire_builder b;

        if (!c || !name)
                return -EINVAL;
        wire_begin(&b, WIRE_POLICY_ASSIGN);
        wire_add_string(&b, WIRE_TAG_POLICY, name);
        wire_add_u32(&b, by_gid ? WIRE_TAG_GID : WIRE_TAG_UID, id);
        return json_request(c, &b, NULL);
}

_public_ int dkm_policy_rekey(dkm_client *c, const char *name, const char *key_a, const char *key_b,
                              int new_policy_key)
{
        if (!name)
                return -EINVAL;
        return policy_call(c, WIRE_POLICY_REKEY, name, key_a, key_b,
                           new_policy_key ? WIRE_FLAG_NEW_POLICY_KEY : 0, NULL, NULL);
}

_public_ int dkm_policy_purge(dkm_client *c, const char *name, const char *reason,
                              uint32_t *ret_request)
{
        _cleanup_free_ char *json = NULL;
        int r;

        if (!name)
                return -EINVAL;
        r = policy_call(c, WIRE_POLICY_PURGE, name, NULL, NULL, 0, reason, &json);
        return reply_u32(c, r, json, "request", ret_request);
}

_public_ int dkm_recovery_reshare(dkm_client *c, const char *reason, uint32_t *ret_request)
{
        _cleanup_free_ char *json = NULL;
        int r;

        r = policy_call(c, WIRE_RECOVERY_RESHARE, NULL, NULL, NULL, 0, reason, &json);
        return reply_u32(c, r, json, "request", ret_request);
}

_public_ int dkm_status_json(dkm_client *c, char **ret)
{
        return json_call(c, WIRE_STATUS, NULL, NULL, 0, NULL, ret);
}

_public_ int dkm_key_list_json(dkm_client *c, const char *policy, char **ret)
{
        return json_call(c, WIRE_KEY_LIST, policy, NULL, 0, NULL, ret);
}

_public_ int dkm_key_rotate(dkm_client *c, const char *policy, uint32_t *ret_generation)
{
        _cleanup_free_ char *json = NULL;
        int r;

        r = json_call(c, WIRE_KEY_ROTATE, policy, NULL, 0, NULL, &json);
        return reply_u32(c, r, json, "generation", ret_generation);
}

_public_ int dkm_key_retire(dkm_client *c, const char *policy, uint32_t generation)
{
        return json_call(c, WIRE_KEY_RETIRE, policy, NULL, 0, &generation, NULL);
}

_public_ int dkm_inspect(dkm_client *c, const void *ciphertext, size_t len, dkm_inspect_info *ret)
{
        _cleanup_free_ char *json = NULL;
        struct format_header h;
        dkm_inspect_info info = { 0 };
        const char *why;
        int r;

        if (!c || !ret || !ciphertext)
                return -EINVAL;
        /* Parse locally first: a malformed input gets the same clear error
         * without a round trip. */
        r = format_parse(ciphertext, len, &h, &why);
        if (r < 0)
                return set_error(c, r, "%s", why);
        r = json_call(c, WIRE_INSPECT, NULL, ciphertext, len, NULL, &json);
        if (r < 0)
                return r;
        info.version = h.version;
        uuid_to_string(h.policy_id, info.policy_id);
        info.generation = h.generation;
        snprintf(info.algorithm, sizeof(info.algorithm), "AES-256-GCM");
        info.payload_len = len - FORMAT_OVERHEAD;
        {
                json_object *o = json_tokener_parse(json), *v;

                if (!o)
                        return set_error(c, -EBADMSG, "malformed inspect reply from dkmd");
                if (json_object_object_get_ex(o, "policy", &v) && json_object_is_type(v, json_type_string))
                        snprintf(info.policy_name, sizeof(info.policy_name), "%s", json_object_get_string(v));
                if (json_object_object_get_ex(o, "state", &v) && json_object_is_type(v, json_type_string))
                        snprintf(info.state, sizeof(info.state), "%s", json_object_get_string(v));
                info.decryptable = json_object_object_get_ex(o, "decryptable", &v) &&
                                   json_object_get_boolean(v);
                json_object_put(o);
        }
        *ret = info;
        return 0;
}
