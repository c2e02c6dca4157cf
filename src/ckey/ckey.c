/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Customer keys: provider registry, URI dispatch, the common blob format and
 * the hedged unwrap.  Each request runs as a "call" of one or two slots; a
 * slot that runs in a worker thread owns a reference to the call and to its
 * key, so a caller that gave up (hedge won, timeout) can return and free
 * everything it owns while the worker finishes on its own memory.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "ckey/ckey.h"
#include "daemon/wrap.h"
#include "engine/engine.h"
#include "shared/secret.h"
#include "shared/util.h"

#define LABEL_MAX 1024
#define URI_MAX 16384 /* room for a PATH_MAX path, percent-encoded */
#define MSG_SIZE 256
#define AAD_PREFIX "dkm-ckey-v1:"
#define AAD_PREFIX_LEN 12
#define HDR_SIZE 4

struct ckey {
        atomic_int refs;
        const struct ckey_provider *provider;
        void *state;
        char *redacted;
        pthread_mutex_t lock; /* serialises derive() calls for this key */
};

/* --- registry and keys ----------------------------------------------------- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct ckey_provider *providers[8] = { &ckey_file_provider, &ckey_pkcs11_provider };

int ckey_register_provider(const struct ckey_provider *p)
{
        size_t i, free_slot = SIZE_MAX;
        int r = 0;

        if (!p || !p->scheme || !p->open || !p->close || !p->derive || !p->kind)
                return -EINVAL;
        pthread_mutex_lock(&registry_lock);
        for (i = 0; i < ARRAY_SIZE(providers); i++) {
                if (!providers[i]) {
                        if (free_slot == SIZE_MAX)
                                free_slot = i;
                } else if (strcasecmp(providers[i]->scheme, p->scheme) == 0 ||
                           providers[i]->kind == p->kind)
                        r = -EEXIST;
        }
        if (r == 0 && free_slot == SIZE_MAX)
                r = -ENOSPC;
        if (r == 0)
                providers[free_slot] = p;
        pthread_mutex_unlock(&registry_lock);
        return r;
}

static const struct ckey_provider *provider_for(const char *scheme, size_t len)
{
        const struct ckey_provider *found = NULL;
        size_t i;

        pthread_mutex_lock(&registry_lock);
        for (i = 0; i < ARRAY_SIZE(providers) && !found; i++)
                if (providers[i] && strlen(providers[i]->scheme) == len &&
                    strncasecmp(providers[i]->scheme, scheme, len) == 0)
                        found = providers[i];
        pthread_mutex_unlock(&registry_lock);
        return found;
}

int ckey_open(const char *uri, struct ckey **ret, char *err, size_t err_size)
{
        const struct ckey_provider *p;
        struct ckey *k;
        size_t n, len;
        int r;

        if (!ret)
                return -EINVAL;
        if (!uri || !*uri) {
                ckey_err(err, err_size, "empty customer key URI");
                return -EINVAL;
        }
        len = strnlen(uri, URI_MAX + 1);
        if (len > URI_MAX) {
                ckey_err(err, err_size, "customer key URI longer than %d bytes", URI_MAX);
                return -EINVAL;
        }
        /* RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
        n = strspn(uri, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
        if (n == 0 || uri[n] != ':' || n > 32) {
                ckey_err(err, err_size, "customer key URI has no scheme (expected pkcs11: or file:)");
                return -EINVAL;
        }
        p = provider_for(uri, n);
        if (!p) {
                ckey_err(err, err_size, "unknown customer key URI scheme '%.*s:' (expected pkcs11: or file:)",
                         (int)n, uri);
                return -EINVAL;
        }

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        r = p->open(uri, &k->state, &k->redacted, err, err_size);
        if (r < 0) {
                free(k);
                return r;
        }
        atomic_init(&k->refs, 1);
        k->provider = p;
        pthread_mutex_init(&k->lock, NULL);
        *ret = k;
        return 0;
}

static struct ckey *ckey_ref(struct ckey *k)
{
        atomic_fetch_add(&k->refs, 1);
        return k;
}

void ckey_free(struct ckey *k)
{
        if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
                return;
        k->provider->close(k->state);
        pthread_mutex_destroy(&k->lock);
        free(k->redacted);
        free(k);
}

const char *ckey_uri_redacted(const struct ckey *k)
{
        return k ? k->redacted : NULL;
}

int ckey_check(struct ckey *k, char *err, size_t err_size)
{
        if (!k) {
                ckey_err(err, err_size, "missing argument");
                return -EINVAL;
        }
        return k->provider->check ? k->provider->check(k->state, err, err_size) : 0;
}

/* --- classification --------------------------------------------------------- */

enum ckey_failure ckey_classify(int error)
{
        switch (error < 0 ? -error : error) {
        case 0:
                return CKEY_OK;
        case EKEYREVOKED:
        case EKEYEXPIRED:
        case EKEYREJECTED:
        case ENOKEY:
        case EACCES:
        case EPERM:
                return CKEY_REVOKED;
        case EINVAL:
        case EBADMSG:
        case EPROTO:
        case ENOBUFS:
        case EMSGSIZE:
        case EOPNOTSUPP:
        case E2BIG:
        case ERANGE:
                return CKEY_BAD_INPUT;
        default:
                /* ETIMEDOUT, EHOSTUNREACH, ENODEV, ECONNREFUSED, EIO, ... and
                 * anything unforeseen: not an explicit act of the customer. */
                return CKEY_UNAVAILABLE;
        }
}

const char *ckey_failure_name(enum ckey_failure f)
{
        switch (f) {
        case CKEY_OK: return "ok";
        case CKEY_UNAVAILABLE: return "unavailable";
        case CKEY_REVOKED: return "revoked";
        case CKEY_BAD_INPUT: return "bad-input";
        }
        return "unknown";
}

/* Which failure a caller must act on when both keys failed. */
static int severity(int error)
{
        switch (ckey_classify(error)) {
        case CKEY_REVOKED: return 3;
        case CKEY_UNAVAILABLE: return 2;
        case CKEY_BAD_INPUT: return 1;
        default: return 0;
        }
}

/* --- the blob ---------------------------------------------------------------- */

static int blob_aead(bool seal, const uint8_t kek[CKEY_KEY_SIZE],
                     const uint8_t *blob_hdr_nonce, const char *label, const uint8_t *in,
                     size_t in_len, uint8_t *out)
{
        uint8_t aad[AAD_PREFIX_LEN + HDR_SIZE + LABEL_MAX];
        const struct engine_ops *e = crypto_engine() ?: &engine_openssl_ops;
        struct engine_aead *a;
        size_t label_len = strlen(label);
        int r;

        memcpy(aad, AAD_PREFIX, AAD_PREFIX_LEN);
        memcpy(aad + AAD_PREFIX_LEN, blob_hdr_nonce, HDR_SIZE);
        memcpy(aad + AAD_PREFIX_LEN + HDR_SIZE, label, label_len);
        r = e->aead_new(&a);
        if (r < 0)
                return r;
        if (seal)
                r = e->seal(a, kek, blob_hdr_nonce + HDR_SIZE, aad,
                            AAD_PREFIX_LEN + HDR_SIZE + label_len, in, in_len, out);
        else
                r = e->open(a, kek, blob_hdr_nonce + HDR_SIZE, aad,
                            AAD_PREFIX_LEN + HDR_SIZE + label_len, in, in_len, out);
        e->aead_free(a);
        return r;
}

/* Checks what can be checked without the key; the message says what is wrong. */
static int blob_check(const struct ckey_provider *p, const uint8_t *blob, size_t len,
                      char *err, size_t err_size)
{
        if (len != CKEY_BLOB_SIZE) {
                ckey_err(err, err_size, "wrapped key is %zu bytes, expected %d", len, CKEY_BLOB_SIZE);
                return -EBADMSG;
        }
        if (blob[0] != 'D' || blob[1] != 'K') {
                ckey_err(err, err_size, "not a customer-key blob (bad magic)");
                return -EBADMSG;
        }
        if (blob[2] != 1) {
                ckey_err(err, err_size, "customer-key blob version %u is not supported", blob[2]);
                return -EPROTO;
        }
        if (blob[3] != p->kind) {
                ckey_err(err, err_size, "blob was wrapped by another kind of key (kind '%c', this is %s:)",
                         blob[3] >= 0x20 && blob[3] < 0x7f ? blob[3] : '?', p->scheme);
                return -EBADMSG;
        }
        return 0;
}

/* --- calls and slots ---------------------------------------------------------- */

enum { OP_WRAP, OP_UNWRAP };

struct call;

struct slot {
        struct call *call;
        struct ckey *k;        /* a reference, dropped when the call is freed */
        int op;
        uint8_t in[CKEY_BLOB_MAX];
        size_t in_len;
        uint8_t *key;          /* in the secret arena: input of wrap, output of unwrap */
        uint8_t out[CKEY_BLOB_SIZE];
        bool started, done;    /* under call->lock */
        bool abandoned;        /* the caller stopped waiting: msg is the worker's */
        int err;
        uint64_t t_start, t_end;
        char msg[MSG_SIZE];
};

struct call {
        pthread_mutex_t lock;
        pthread_cond_t cond;   /* CLOCK_MONOTONIC */
        int refs;              /* the caller plus one per worker thread */
        uint64_t deadline;     /* absolute, monotonic; 0 = none */
        char *label;
        uint8_t *keys;         /* secret arena, 2 * CKEY_KEY_SIZE */
        struct slot s[2];
};

static atomic_int workers;

static void call_free(struct call *c)
{
        size_t i;

        for (i = 0; i < 2; i++)
                ckey_free(c->s[i].k);
        secret_free(c->keys); /* wipes a result nobody collected */
        free(c->label);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

static void call_unref(struct call *c)
{
        bool last;

        pthread_mutex_lock(&c->lock);
        last = --c->refs == 0;
        pthread_mutex_unlock(&c->lock);
        if (last)
                call_free(c);
}

static int call_new(const char *label, uint64_t timeout_usec, struct call **ret)
{
        pthread_condattr_t attr;
        struct call *c;

        if (!label || strnlen(label, LABEL_MAX + 1) > LABEL_MAX)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->label = strdup(label);
        c->keys = secret_alloc(2 * CKEY_KEY_SIZE);
        if (!c->label || !c->keys) {
                free(c->label);
                secret_free(c->keys);
                free(c);
                return -ENOMEM;
        }
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cond, &attr);
        pthread_condattr_destroy(&attr);
        c->refs = 1;
        c->s[0].key = c->keys;
        c->s[1].key = c->keys + CKEY_KEY_SIZE;
        /* Absurd timeouts mean none (and must not wrap around). */
        c->deadline = timeout_usec && timeout_usec < UINT64_MAX / 4 ? now_mono_usec() + timeout_usec : 0;
        *ret = c;
        return 0;
}

static int slot_set(struct call *c, int i, struct ckey *k, int op, const uint8_t *in, size_t in_len)
{
        struct slot *s = &c->s[i];

        if (!k || (in_len && !in))
                return -EINVAL;
        if (in_len > sizeof(s->in))
                return -EBADMSG;
        s->call = c;
        s->k = ckey_ref(k);
        s->op = op;
        if (in_len)
                memcpy(s->in, in, in_len);
        s->in_len = in_len;
        return 0;
}

static struct timespec mono_ts(uint64_t usec)
{
        return (struct timespec){ .tv_sec = usec / 1000000, .tv_nsec = (usec % 1000000) * 1000 };
}

/* Runs one slot's operation in the current thread; fills s->msg on error. */
static int slot_run(struct slot *s, const char *label, uint64_t deadline)
{
        const struct ckey_provider *p = s->k->provider;
        uint8_t kek[CKEY_KEY_SIZE], hdr[HDR_SIZE + CKEY_NONCE_SIZE];
        int r;

        if (s->op == OP_UNWRAP) {
                r = blob_check(p, s->in, s->in_len, s->msg, sizeof(s->msg));
                if (r < 0)
                        return r;
                memcpy(hdr, s->in, sizeof(hdr));
        } else {
                hdr[0] = 'D', hdr[1] = 'K', hdr[2] = 1, hdr[3] = (uint8_t)p->kind;
                r = engine_random(hdr + HDR_SIZE, CKEY_NONCE_SIZE);
                if (r < 0) {
                        ckey_err(s->msg, sizeof(s->msg), "no random bytes: %s", strerror(-r));
                        return r;
                }
        }

        if (deadline) {
                struct timespec ts = mono_ts(deadline);

                r = -pthread_mutex_clocklock(&s->k->lock, CLOCK_MONOTONIC, &ts);
        } else
                r = -pthread_mutex_lock(&s->k->lock);
        if (r < 0) {
                ckey_err(s->msg, sizeof(s->msg), "key is still busy with an earlier request");
                return r;
        }
        r = p->derive(s->k->state, hdr + HDR_SIZE, kek, s->msg, sizeof(s->msg));
        pthread_mutex_unlock(&s->k->lock);
        if (r >= 0) {
                if (s->op == OP_WRAP) {
                        memcpy(s->out, hdr, sizeof(hdr));
                        r = blob_aead(true, kek, hdr, label, s->key, CKEY_KEY_SIZE,
                                      s->out + sizeof(hdr));
                } else {
                        r = blob_aead(false, kek, hdr, label, s->in + sizeof(hdr),
                                      CKEY_KEY_SIZE + ENGINE_TAG_SIZE, s->key);
                        if (r == -EBADMSG)
                                ckey_err(s->msg, sizeof(s->msg),
                                         "wrapped key does not authenticate (altered, other label or other key)");
                }
        }
        secure_wipe(kek, sizeof(kek));
        if (r < 0 && !s->msg[0])
                ckey_err(s->msg, sizeof(s->msg), "%s", strerror(-r));
        return r < 0 ? r : 0;
}

static void *worker(void *arg)
{
        struct slot *s = arg;
        struct call *c = s->call;
        int r;

        r = slot_run(s, c->label, c->deadline);
        pthread_mutex_lock(&c->lock);
        s->err = r;
        s->t_end = now_mono_usec();
        s->done = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
        call_unref(c);
        atomic_fetch_sub(&workers, 1);
        return NULL;
}

/* Called with c->lock held. */
static void slot_start(struct call *c, int i)
{
        struct slot *s = &c->s[i];
        pthread_attr_t attr;
        pthread_t t;
        int r;

        s->started = true;
        s->t_start = now_mono_usec();
        c->refs++;
        atomic_fetch_add(&workers, 1);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&t, &attr, worker, s);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                c->refs--;
                atomic_fetch_sub(&workers, 1);
                s->err = -r;
                s->t_end = s->t_start;
                s->done = true;
                ckey_err(s->msg, sizeof(s->msg), "cannot start a worker thread: %s", strerror(r));
        }
}

/* Waits on c->cond (held) until `until` (0 = no limit); false once it passed. */
static bool call_wait(struct call *c, uint64_t until)
{
        struct timespec ts;

        if (!until) {
                pthread_cond_wait(&c->cond, &c->lock);
                return true;
        }
        if (now_mono_usec() >= until)
                return false;
        ts = mono_ts(until);
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        return now_mono_usec() < until;
}

static bool slot_won(const struct slot *s)
{
        return s->started && s->done && s->err == 0;
}

/* Runs slot 0, and slot 1 (when set) after hedge_usec or slot 0's failure,
 * until one succeeds, all fail, or the deadline; fills res.  Returns the
 * winner or -1. */
static int call_run(struct call *c, uint64_t hedge_usec, struct ckey_hedge_result *res)
{
        bool two = c->s[1].k != NULL;
        uint64_t now, hedge_at;
        int winner = -1, i;

        pthread_mutex_lock(&c->lock);
        slot_start(c, 0);
        hedge_at = hedge_usec < UINT64_MAX / 4 ? c->s[0].t_start + hedge_usec : 0; /* 0: never */
        if (c->deadline && (!hedge_at || hedge_at > c->deadline))
                hedge_at = c->deadline;
        while (!c->s[0].done && call_wait(c, hedge_at))
                ;
        if (slot_won(&c->s[0]))
                winner = 0;
        else if (two && (!c->deadline || now_mono_usec() < c->deadline))
                slot_start(c, 1);

        while (winner < 0) {
                for (i = 0; i < 2 && winner < 0; i++)
                        if (slot_won(&c->s[i]))
                                winner = i;
                if (winner >= 0 || ((c->s[0].done || !c->s[0].started) &&
                                    (c->s[1].done || !c->s[1].started)))
                        break;
                if (!call_wait(c, c->deadline))
                        break;
        }

        now = now_mono_usec();
        for (i = 0; i < 2; i++) {
                struct slot *s = &c->s[i];

                res->asked[i] = s->started;
                if (!s->started) {
                        res->err[i] = 0;
                        res->latency_usec[i] = 0;
                } else if (s->done) {
                        res->err[i] = s->err;
                        res->latency_usec[i] = s->t_end - s->t_start;
                } else {
                        s->abandoned = true;
                        res->err[i] = -ETIMEDOUT;
                        res->latency_usec[i] = now - s->t_start;
                }
        }
        res->winner = winner;
        /* A winner's slot is done: its worker no longer writes to it. */
        pthread_mutex_unlock(&c->lock);
        return winner;
}

/* Joins the failing slots' messages; only for slots that are done. */
static int call_failure(struct call *c, const struct ckey_hedge_result *res, char *err,
                        size_t err_size)
{
        char buf[2 * MSG_SIZE + 256] = "";
        int worst = 0, i;
        size_t n = 0;

        pthread_mutex_lock(&c->lock);
        for (i = 0; i < 2; i++) {
                if (!res->asked[i])
                        continue;
                if (!worst || severity(res->err[i]) > severity(worst))
                        worst = res->err[i];
                if (n < sizeof(buf))
                        n += snprintf(buf + n, sizeof(buf) - n, "%s%s: %s", n ? "; " : "",
                                      c->s[i].k->redacted,
                                      c->s[i].abandoned ? "no answer in time" :
                                      c->s[i].msg[0] ? c->s[i].msg : strerror(-res->err[i]));
        }
        pthread_mutex_unlock(&c->lock);
        ckey_err(err, err_size, "%s", buf);
        return worst < 0 ? worst : -EIO;
}

/* --- the API ------------------------------------------------------------------- */

/* One request: unwrap (in = blobs, out = key) or wrap (key_in, out = blob).
 * Without a timeout or a second key it runs in the calling thread. */
static int request(int op, struct ckey *a, const uint8_t *in_a, size_t len_a, struct ckey *b,
                   const uint8_t *in_b, size_t len_b, const char *label, const uint8_t *key_in,
                   uint64_t hedge_usec, uint64_t timeout_usec, uint8_t *out,
                   struct ckey_hedge_result *res, char *err, size_t err_size)
{
        struct ckey_hedge_result local;
        struct call *c;
        int r, winner;

        if (!res)
                res = &local;
        *res = (struct ckey_hedge_result){ .winner = -1 };
        if (!a || !out || !label) {
                ckey_err(err, err_size, "missing argument");
                return -EINVAL;
        }
        r = call_new(label, timeout_usec, &c);
        if (r < 0) {
                ckey_err(err, err_size, r == -EINVAL ? "label missing or longer than %d bytes" :
                         "out of memory", LABEL_MAX);
                return r;
        }
        r = slot_set(c, 0, a, op, in_a, len_a);
        if (r >= 0 && b)
                r = slot_set(c, 1, b, op, in_b, len_b);
        if (r < 0) {
                call_unref(c);
                ckey_err(err, err_size, "wrapped key missing or larger than %d bytes", CKEY_BLOB_MAX);
                return r;
        }
        if (key_in)
                memcpy(c->s[0].key, key_in, CKEY_KEY_SIZE);

        if (timeout_usec || b)
                winner = call_run(c, hedge_usec, res);
        else {
                struct slot *s = &c->s[0];

                s->started = true;
                s->t_start = now_mono_usec();
                s->err = slot_run(s, c->label, 0);
                s->t_end = now_mono_usec();
                s->done = true;
                *res = (struct ckey_hedge_result){ .winner = s->err == 0 ? 0 : -1, .asked = { 1, 0 },
                                                   .err = { s->err, 0 },
                                                   .latency_usec = { s->t_end - s->t_start, 0 } };
                winner = res->winner;
        }
        if (winner >= 0) {
                if (op == OP_UNWRAP)
                        memcpy(out, c->s[winner].key, CKEY_KEY_SIZE);
                else
                        memcpy(out, c->s[winner].out, CKEY_BLOB_SIZE);
                ckey_err(err, err_size, "%s", "");
                r = 0;
        } else
                r = call_failure(c, res, err, err_size);
        call_unref(c);
        return r;
}

int ckey_unwrap_hedged(struct ckey *a, const uint8_t *blob_a, size_t len_a,
                       struct ckey *b, const uint8_t *blob_b, size_t len_b,
                       const char *label, uint64_t hedge_usec, uint64_t timeout_usec,
                       uint8_t ret_key[CKEY_KEY_SIZE], struct ckey_hedge_result *res,
                       char *err, size_t err_size)
{
        return request(OP_UNWRAP, a, blob_a, len_a, b, blob_b, len_b, label, NULL, hedge_usec,
                       timeout_usec, ret_key, res, err, err_size);
}

int ckey_unwrap(struct ckey *k, const uint8_t *blob, size_t len, const char *label,
                uint64_t timeout_usec, uint8_t ret_key[CKEY_KEY_SIZE], char *err, size_t err_size)
{
        return request(OP_UNWRAP, k, blob, len, NULL, NULL, 0, label, NULL, 0, timeout_usec,
                       ret_key, NULL, err, err_size);
}

int ckey_wrap(struct ckey *k, const uint8_t key[CKEY_KEY_SIZE], const char *label,
              uint64_t timeout_usec, uint8_t *out, size_t *out_len, char *err, size_t err_size)
{
        int r;

        if (!key || !out_len) {
                ckey_err(err, err_size, "missing argument");
                return -EINVAL;
        }
        if (*out_len < CKEY_BLOB_SIZE) {
                ckey_err(err, err_size, "output buffer holds %zu bytes, need %d", *out_len, CKEY_BLOB_SIZE);
                return -ENOBUFS;
        }
        r = request(OP_WRAP, k, NULL, 0, NULL, NULL, 0, label, key, 0, timeout_usec, out, NULL,
                    err, err_size);
        if (r == 0)
                *out_len = CKEY_BLOB_SIZE;
        return r;
}

int ckey_wait_idle(uint64_t timeout_usec)
{
        uint64_t until = now_mono_usec() + timeout_usec;

        while (atomic_load(&workers) > 0) {
                if (now_mono_usec() >= until)
                        return -ETIMEDOUT;
                usleep(5000);
        }
        return 0;
}
