/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authenticated records (store-auth.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "store/store-auth.h"

#define FIELD "\"dkm_auth\":\"1."
#define FIELD_LEN (sizeof(FIELD) - 1)
#define SEQ_DIGITS_MAX 20
#define MAC_HEX (2 * ENGINE_HMAC_SIZE)
/* What the MAC covers starts with this, then the kind, so that a MAC made
 * here can never be taken for any other MAC of a key from the master key. */
#define MAC_LABEL "dkm-store-record\0"

enum kind {
        KIND_JSON = 'j', /* the field is the object's last member */
        KIND_RAW = 'r',  /* the field follows a newline */
};

struct seen {
        char *key;
        uint64_t seq;         /* highest accepted, or the revision that deleted it */
        uint64_t refused_rev; /* the last mod revision refused (told once) */
        bool lost;            /* seen in a newer store than the one accepted (--accept-older-store) */
};

struct store_auth {
        struct store_base base;
        struct store_ops ops; /* one of the tables below, with the backend's limits */
        struct store *inner;
        uint8_t *key; /* locked memory */
        store_auth_refused_fn refused;
        void *userdata;
        char *seen_path;
        pthread_mutex_t lock; /* for what follows */
        struct seen *seen;    /* sorted by key */
        size_t n_seen;
        uint64_t high;        /* the highest store revision this node has seen */
        bool dirty;
        bool authenticated;   /* the format record is there: unauthenticated records are refused */
};

static const struct store_ops auth_ops, auth_ops_leased;

static struct store_auth *A(struct store *s)
{
        return (struct store_auth *)s;
}

static const struct store_ops *inner_ops(struct store_auth *a)
{
        return store_ops_of(a->inner);
}

static int auth_open(const char *location, struct store **ret);

static bool is_auth(const struct store_ops *ops)
{
        return ops && ops->open == auth_open;
}

const struct store_ops *store_backend_ops(struct store *s)
{
        const struct store_ops *ops = store_ops_of(s);

        while (is_auth(ops)) {
                s = A(s)->inner;
                ops = store_ops_of(s);
        }
        return ops;
}

struct store *store_backend(struct store *s)
{
        while (is_auth(store_ops_of(s)))
                s = A(s)->inner;
        return s;
}

/* --- the envelope ---------------------------------------------------------- */

static int mac(const uint8_t *key, const char *name, enum kind kind, uint64_t seq, const uint8_t *value,
               size_t len, uint8_t out[ENGINE_HMAC_SIZE])
{
        size_t nl = strlen(name), n = sizeof(MAC_LABEL) - 1 + 1 + 8 + 4 + nl + len;
        _cleanup_free_ uint8_t *buf = NULL;
        uint8_t *p;
        int r;

        if (nl > STORE_KEY_MAX || len > STORE_VALUE_MAX)
                return -E2BIG;
        buf = malloc(n);
        if (!buf)
                return -ENOMEM;
        p = buf;
        memcpy(p, MAC_LABEL, sizeof(MAC_LABEL) - 1);
        p += sizeof(MAC_LABEL) - 1;
        *p++ = (uint8_t)kind;
        for (int i = 0; i < 8; i++)
                *p++ = (uint8_t)(seq >> (8 * i));
        for (int i = 0; i < 4; i++)
                *p++ = (uint8_t)(nl >> (8 * i));
        memcpy(p, name, nl);
        p += nl;
        if (len)
                memcpy(p, value, len);
        r = engine_hmac_sha256(key, STORE_AUTH_KEY_SIZE, buf, n, out);
        secure_wipe(buf, n); /* records hold wrapped keys */
        return r;
}

static bool is_json_object(const uint8_t *v, size_t len)
{
        return len >= 2 && v[0] == '{' && v[len - 1] == '}';
}

int store_auth_seal(const uint8_t key[STORE_AUTH_KEY_SIZE], const char *name, const uint8_t *value,
                    size_t len, uint64_t seq, uint8_t **ret, size_t *ret_len)
{
        enum kind kind = is_json_object(value, len) ? KIND_JSON : KIND_RAW;
        uint8_t m[ENGINE_HMAC_SIZE];
        char field[FIELD_LEN + SEQ_DIGITS_MAX + 1 + MAC_HEX + 2];
        size_t fl, n;
        uint8_t *out, *p;
        int r;

        if (!key || !name || (!value && len) || !ret || !ret_len)
                return -EINVAL;
        r = mac(key, name, kind, seq, value, len, m);
        if (r < 0)
                return r;
        fl = (size_t)snprintf(field, sizeof(field), FIELD "%" PRIu64 ".", seq);
        for (size_t i = 0; i < ENGINE_HMAC_SIZE; i++)
                fl += (size_t)snprintf(field + fl, sizeof(field) - fl, "%02x", m[i]);
        field[fl++] = '"';
        n = len + 1 + fl + 1;
        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        p = out;
        if (kind == KIND_JSON) {
                /* {...} becomes {...,"dkm_auth":"..."}; {} becomes {"dkm_auth":"..."} */
                memcpy(p, value, len - 1);
                p += len - 1;
                if (len > 2)
                        *p++ = ',';
                memcpy(p, field, fl);
                p += fl;
                *p++ = '}';
        } else {
                if (len)
                        memcpy(p, value, len);
                p += len;
                *p++ = '\n';
                memcpy(p, field, fl);
                p += fl;
        }
        *p = 0;
        *ret = out;
        *ret_len = (size_t)(p - out);
        return 0;
}

static int unhex(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int store_auth_unseal(const uint8_t key[STORE_AUTH_KEY_SIZE], const char *name, const uint8_t *buf,
                      size_t len, uint8_t **ret, size_t *ret_len, uint64_t *ret_seq)
{
        uint8_t want[ENGINE_HMAC_SIZE], got[ENGINE_HMAC_SIZE];
        const uint8_t *f = NULL, *p, *end;
        enum kind kind;
        uint64_t seq = 0;
        size_t digits = 0, olen;
        uint8_t *out;
        unsigned diff = 0;
        int r;

        if (!key || !name || (!buf && len) || !ret || !ret_len || !ret_seq)
                return -EINVAL;
        /* The last occurrence of the field: the one this file appended. */
        for (size_t i = len >= FIELD_LEN ? len - FIELD_LEN + 1 : 0; i-- > 0;)
                if (memcmp(buf + i, FIELD, FIELD_LEN) == 0) {
                        f = buf + i;
                        break;
                }
        if (!f)
                return -ENODATA;
        /* As store_auth_seal() writes it, and only so: "{" FIELD, "{...," FIELD
         * (something before the comma), or anything, newline, FIELD. */
        if (f > buf && f[-1] == '\n')
                kind = KIND_RAW;
        else if (buf[0] == '{' && (f == buf + 1 || (f > buf + 2 && f[-1] == ',')))
                kind = KIND_JSON;
        else
                return -EBADMSG;
        p = f + FIELD_LEN;
        end = buf + len;
        while (p < end && *p >= '0' && *p <= '9') {
                if (digits == SEQ_DIGITS_MAX - 1 || (digits > 0 && seq == 0) ||
                    seq > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
                        return -EBADMSG;
                seq = seq * 10 + (uint64_t)(*p - '0');
                digits++;
                p++;
        }
        if (digits == 0 || p >= end || *p++ != '.' || (size_t)(end - p) != MAC_HEX + 1 + (kind == KIND_JSON))
                return -EBADMSG;
        for (size_t i = 0; i < ENGINE_HMAC_SIZE; i++) {
                int hi = unhex((char)p[2 * i]), lo = unhex((char)p[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                got[i] = (uint8_t)(hi << 4 | lo);
        }
        p += MAC_HEX;
        if (*p != '"' || (kind == KIND_JSON && p[1] != '}'))
                return -EBADMSG;
        /* The value as it was written. */
        olen = kind == KIND_JSON ? (size_t)(f - buf) : (size_t)(f - buf) - 1;
        out = malloc(olen + 2);
        if (!out)
                return -ENOMEM;
        if (kind == KIND_JSON) {
                /* "{...," less the comma, or "{", then the closing brace. */
                olen = f == buf + 1 ? 1 : olen - 1;
                memcpy(out, buf, olen);
                out[olen++] = '}';
        } else if (olen)
                memcpy(out, buf, olen);
        out[olen] = 0;
        r = mac(key, name, kind, seq, out, olen, want);
        for (size_t i = 0; r >= 0 && i < ENGINE_HMAC_SIZE; i++)
                diff |= (unsigned)(want[i] ^ got[i]);
        if (r >= 0 && diff)
                r = -EKEYREJECTED;
        if (r < 0) {
                secure_wipe(out, olen);
                free(out);
                return r;
        }
        *ret = out;
        *ret_len = olen;
        *ret_seq = seq;
        return 0;
}

/* --- what this node has seen -------------------------------------------------- */

static int seen_cmp(const void *a, const void *b)
{
        return strcmp(((const struct seen *)a)->key, ((const struct seen *)b)->key);
}

/* The entry of key, added (seq 0) if new; NULL when out of memory.  With
 * the lock held. */
static struct seen *seen_get(struct store_auth *a, const char *key)
{
        struct seen k = { .key = (char *)key }, *e, *v;
        size_t lo = 0, hi = a->n_seen;

        /* bsearch() of an empty (NULL) array is undefined behaviour. */
        e = a->n_seen ? bsearch(&k, a->seen, a->n_seen, sizeof(*a->seen), seen_cmp) : NULL;
        if (e)
                return e;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (strcmp(a->seen[mid].key, key) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        v = reallocarray(a->seen, a->n_seen + 1, sizeof(*v));
        if (!v)
                return NULL;
        a->seen = v;
        k.key = strdup(key);
        if (!k.key)
                return NULL;
        memmove(v + lo + 1, v + lo, (a->n_seen - lo) * sizeof(*v));
        v[lo] = k;
        a->n_seen++;
        return &v[lo];
}

/* With the lock held. */
static void high_raise_locked(struct store_auth *a, uint64_t rev)
{
        if (rev > a->high) {
                a->high = rev;
                a->dirty = true;
        }
}

static void high_raise(struct store_auth *a, uint64_t rev)
{
        pthread_mutex_lock(&a->lock);
        high_raise_locked(a, rev);
        pthread_mutex_unlock(&a->lock);
}

static void seen_raise(struct store_auth *a, const char *key, uint64_t seq)
{
        struct seen *e;

        pthread_mutex_lock(&a->lock);
        e = seen_get(a, key);
        if (e && seq > e->seq) {
                e->seq = seq;
                a->dirty = true;
        }
        pthread_mutex_unlock(&a->lock);
}

/* "<seq> <key>" a line; keys with a newline are not kept (dkm writes none).
 * "revision <n>" keeps the high-water mark and "lost <seq> <key>" a key of
 * a newer store given up with --accept-older-store; an older dkmd skips
 * both (their first word is no number). */
static void seen_load(struct store_auth *a)
{
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        FILE *f;

        if (!a->seen_path || !(f = fopen(a->seen_path, "re")))
                return;
        while ((n = getline(&line, &cap, f)) > 0) {
                char *sp, *end;
                uint64_t seq;
                struct seen *e;
                bool lost = false;

                if (line[n - 1] == '\n')
                        line[--n] = 0;
                if (strncmp(line, "revision ", 9) == 0) {
                        errno = 0;
                        seq = strtoull(line + 9, &end, 10);
                        if (!errno && !*end && end != line + 9 && seq > a->high)
                                a->high = seq;
                        continue;
                }
                if (strncmp(line, "lost ", 5) == 0) {
                        lost = true;
                        memmove(line, line + 5, (size_t)n - 4);
                }
                sp = strchr(line, ' ');
                if (!sp || sp == line)
                        continue;
                *sp = 0;
                errno = 0;
                seq = strtoull(line, &end, 10);
                if (errno || *end || !sp[1])
                        continue;
                e = seen_get(a, sp + 1);
                if (e && seq > e->seq)
                        e->seq = seq;
                if (e && lost)
                        e->lost = true;
        }
        fclose(f);
}

/* Written whole, through a temporary file and rename: a crash leaves the
 * old file or the new one. */
static void seen_save(struct store_auth *a)
{
        char tmp[4200];
        FILE *f;
        int fd;
        bool ok = true;

        pthread_mutex_lock(&a->lock);
        if (!a->dirty || !a->seen_path) {
                pthread_mutex_unlock(&a->lock);
                return;
        }
        snprintf(tmp, sizeof(tmp), "%s.tmp", a->seen_path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f) {
                if (fd >= 0)
                        close(fd);
                pthread_mutex_unlock(&a->lock);
                return;
        }
        if (a->high)
                ok = fprintf(f, "revision %" PRIu64 "\n", a->high) > 0;
        for (size_t i = 0; i < a->n_seen && ok; i++)
                if (a->seen[i].seq && !strchr(a->seen[i].key, '\n'))
                        ok = fprintf(f, "%s%" PRIu64 " %s\n", a->seen[i].lost ? "lost " : "",
                                     a->seen[i].seq, a->seen[i].key) > 0;
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
        if (ok && rename(tmp, a->seen_path) == 0)
                a->dirty = false;
        else
                unlink(tmp);
        pthread_mutex_unlock(&a->lock);
}

/* --- checking what is read --------------------------------------------------- */

struct verdict {
        uint8_t *value; /* the value as written; NULL for a deletion */
        size_t len;
        char why[160];  /* when refused */
};

static void tell(struct store_auth *a, const struct store_kv *kv, const char *why)
{
        bool first;
        struct seen *e;

        pthread_mutex_lock(&a->lock);
        e = seen_get(a, kv->key);
        first = !e || e->refused_rev != kv->mod_revision;
        if (e)
                e->refused_rev = kv->mod_revision;
        pthread_mutex_unlock(&a->lock);
        if (first && a->refused)
                a->refused(kv->key, kv->mod_revision, why, a->userdata);
}

/* 0: accepted (v filled in); -EBADMSG: refused (told); other: error. */
static int check(struct store_auth *a, const struct store_kv *kv, struct verdict *v)
{
        uint64_t seq;
        struct seen *e;
        int r;

        *v = (struct verdict){ 0 };
        if (!kv->value) {
                /* A deletion: an earlier value put back later is a replay. */
                seen_raise(a, kv->key, kv->mod_revision);
                return 0;
        }
        r = store_auth_unseal(a->key, kv->key, kv->value, kv->value_len, &v->value, &v->len, &seq);
        if (r == -ENODATA && !a->authenticated) {
                /* Before the migration (store_auth_migrate) only. */
                v->value = malloc(kv->value_len + 1);
                if (!v->value)
                        return -ENOMEM;
                memcpy(v->value, kv->value, kv->value_len);
                v->value[kv->value_len] = 0;
                v->len = kv->value_len;
                return 0;
        }
        if (r == -ENOMEM)
                return r;
        if (r == -ENODATA)
                snprintf(v->why, sizeof(v->why), "not authenticated (written without the master key)");
        else if (r == -EKEYREJECTED)
                snprintf(v->why, sizeof(v->why), "its MAC does not match (forged, altered or moved)");
        else if (r < 0)
                snprintf(v->why, sizeof(v->why), "its authentication is malformed");
        else if (kv->mod_revision && seq > kv->mod_revision)
                snprintf(v->why, sizeof(v->why),
                         "its sequence %" PRIu64 " is above its revision %" PRIu64, seq, kv->mod_revision);
        else {
                pthread_mutex_lock(&a->lock);
                e = seen_get(a, kv->key);
                if (!e)
                        r = -ENOMEM;
                else if (e->lost) {
                        /* The older store was accepted: its record stands. */
                        e->lost = false;
                        e->seq = seq;
                        a->dirty = true;
                } else if (seq < e->seq)
                        snprintf(v->why, sizeof(v->why),
                                 "replayed: its sequence %" PRIu64 " is below %" PRIu64 ", seen before", seq,
                                 e->seq);
                else if (seq > e->seq) {
                        e->seq = seq;
                        a->dirty = true;
                }
                high_raise_locked(a, kv->mod_revision);
                pthread_mutex_unlock(&a->lock);
                if (r == -ENOMEM) {
                        free(v->value);
                        return r;
                }
                if (!v->why[0])
                        return 0;
        }
        if (v->value) {
                secure_wipe(v->value, v->len);
                free(v->value);
                v->value = NULL;
        }
        tell(a, kv, v->why);
        return -EBADMSG;
}

static void verdict_clear(struct verdict *v)
{
        if (v->value) {
                secure_wipe(v->value, v->len);
                free(v->value);
        }
        v->value = NULL;
}

/* --- the ops ------------------------------------------------------------------- */

static int auth_open(const char *location, struct store **ret)
{
        (void)location;
        (void)ret;
        return -EOPNOTSUPP; /* made by store_auth_open() */
}

static void auth_close(struct store *s)
{
        struct store_auth *a = A(s);

        seen_save(a);
        store_close(a->inner);
        for (size_t i = 0; i < a->n_seen; i++)
                free(a->seen[i].key);
        free(a->seen);
        free(a->seen_path);
        secret_free(a->key);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

static int auth_get(struct store *s, const char *key, struct store_kv *ret)
{
        struct store_auth *a = A(s);
        struct store_kv kv = { 0 };
        struct verdict v;
        int r;

        r = inner_ops(a)->get(a->inner, key, &kv);
        if (r < 0)
                return r;
        r = check(a, &kv, &v);
        if (r >= 0) {
                secure_wipe(kv.value, kv.value_len);
                free(kv.value);
                kv.value = v.value;
                kv.value_len = v.len;
                *ret = kv;
        } else
                store_kv_clear(&kv);
        seen_save(a);
        return r;
}

struct walk {
        struct store_auth *a;
        int (*cb)(const struct store_kv *kv, void *userdata);
        void *userdata;
};

static int walk_one(const struct store_kv *kv, void *userdata)
{
        struct walk *w = userdata;
        struct store_kv c = *kv;
        struct verdict v;
        int r;

        r = check(w->a, kv, &v);
        if (r == -EBADMSG)
                return 0; /* refused: left out */
        if (r < 0)
                return r;
        c.value = v.value;
        c.value_len = v.len;
        r = w->cb(&c, w->userdata);
        verdict_clear(&v);
        return r;
}

static int auth_range(struct store *s, const char *prefix,
                      int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        struct walk w = { A(s), cb, userdata };
        int r = inner_ops(A(s))->range(A(s)->inner, prefix, walk_one, &w);

        seen_save(A(s));
        return r;
}

static int auth_changes(struct store *s, const char *prefix, uint64_t since,
                        int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        struct walk w = { A(s), cb, userdata };
        int r = inner_ops(A(s))->changes(A(s)->inner, prefix, since, walk_one, &w);

        seen_save(A(s));
        return r;
}

struct follow {
        struct store_auth *a;
        int (*cb)(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata);
        void *userdata;
};

static int follow_one(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata)
{
        struct follow *f = userdata;
        struct store_kv *out = calloc(n ? n : 1, sizeof(*out));
        struct verdict *v = calloc(n ? n : 1, sizeof(*v));
        size_t m = 0;
        int r = 0;

        if (!out || !v) {
                free(out);
                free(v);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n && r >= 0; i++) {
                r = check(f->a, &kvs[i], &v[m]);
                if (r == -EBADMSG) {
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                out[m] = kvs[i];
                out[m].value = v[m].value;
                out[m].value_len = v[m].len;
                m++;
        }
        high_raise(f->a, revision);
        seen_save(f->a);
        /* Even with everything refused the revision is handed on: the
         * caller's applied revision moves past what it must not apply. */
        if (r >= 0)
                r = f->cb(out, m, revision, f->userdata);
        for (size_t i = 0; i < m; i++)
                verdict_clear(&v[i]);
        free(out);
        free(v);
        return r;
}

static int auth_follow(struct store *s, const char *prefix, uint64_t since, int stop_fd,
                       int (*cb)(const struct store_kv *kvs, size_t n, uint64_t revision, void *userdata),
                       void *userdata)
{
        struct follow f = { A(s), cb, userdata };

        return inner_ops(A(s))->follow(A(s)->inner, prefix, since, stop_fd, follow_one, &f);
}

static int auth_revision(struct store *s, uint64_t *ret)
{
        int r = inner_ops(A(s))->revision(A(s)->inner, ret);

        if (r >= 0)
                high_raise(A(s), *ret);
        return r;
}

static int auth_txn_leased(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                           const struct store_op *ops, size_t n_ops, const uint64_t *leases,
                           uint64_t *ret_revision)
{
        struct store_auth *a = A(s);
        struct store_op *sealed = calloc(n_ops ? n_ops : 1, sizeof(*sealed));
        uint8_t **bufs = calloc(n_ops ? n_ops : 1, sizeof(*bufs));
        uint64_t seq, rev = 0;
        int r;

        if (!sealed || !bufs) {
                r = -ENOMEM;
                goto out;
        }
        /* The sequence: one above the revision before this write, so at
         * most the one it gets and above that of every write it follows
         * (never 0). */
        r = inner_ops(a)->revision(a->inner, &seq);
        seq++;
        for (size_t i = 0; i < n_ops && r >= 0; i++) {
                sealed[i] = ops[i];
                if (ops[i].type != STORE_PUT)
                        continue;
                r = store_auth_seal(a->key, ops[i].key, ops[i].value, ops[i].value_len, seq, &bufs[i],
                                    &sealed[i].value_len);
                sealed[i].value = bufs[i];
        }
        if (r < 0)
                goto out;
        if (leases)
                r = inner_ops(a)->txn_leased(a->inner, cmps, n_cmps, sealed, n_ops, leases, &rev);
        else
                r = inner_ops(a)->txn(a->inner, cmps, n_cmps, sealed, n_ops, &rev);
        if (r >= 0) {
                /* What this node wrote it has seen: after a rollback it
                 * knows which keys the newer store held (store_auth_lost). */
                for (size_t i = 0; i < n_ops; i++)
                        seen_raise(a, ops[i].key, ops[i].type == STORE_DELETE ? rev : seq);
                high_raise(a, rev);
                seen_save(a);
                if (ret_revision)
                        *ret_revision = rev;
        }
out:
        for (size_t i = 0; bufs && i < n_ops; i++)
                if (bufs[i]) {
                        secure_wipe(bufs[i], sealed[i].value_len);
                        free(bufs[i]);
                }
        free(bufs);
        free(sealed);
        return r;
}

static int auth_txn(struct store *s, const struct store_cmp *cmps, size_t n_cmps, const struct store_op *ops,
                    size_t n_ops, uint64_t *ret_revision)
{
        return auth_txn_leased(s, cmps, n_cmps, ops, n_ops, NULL, ret_revision);
}

static int auth_lease_grant(struct store *s, uint64_t ttl, uint64_t *ret_id, uint64_t *ret_ttl)
{
        return store_lease_grant(A(s)->inner, ttl, ret_id, ret_ttl);
}

static int auth_lease_keepalive(struct store *s, uint64_t id, uint64_t *ret_ttl)
{
        return store_lease_keepalive(A(s)->inner, id, ret_ttl);
}

static int auth_lease_revoke(struct store *s, uint64_t id)
{
        return store_lease_revoke(A(s)->inner, id);
}

static int auth_lease_ttl(struct store *s, uint64_t id, uint64_t *ret_left)
{
        return store_lease_ttl(A(s)->inner, id, ret_left);
}

/* Shredding forgets the backend's own copies; the seen-sequence file holds
 * no values, so there is nothing of this layer's to forget. */
static int auth_shred(struct store *s, uint64_t revision)
{
        return store_shred(A(s)->inner, revision);
}

static int auth_checkpoint(struct store *s)
{
        return store_checkpoint(A(s)->inner);
}

/* Errors are the backend's: the wrapper adds only -EBADMSG and the like,
 * which strerror() words well enough. */
static const char *auth_strerror(struct store *s, int r)
{
        return store_strerror(A(s)->inner, r);
}

static bool auth_unavailable(struct store *s, int r)
{
        return store_unavailable(A(s)->inner, r);
}

static const struct store_ops auth_ops = {
        .name = "authenticated",
        .open = auth_open,
        .close = auth_close,
        .get = auth_get,
        .range = auth_range,
        .txn = auth_txn,
        .revision = auth_revision,
        .changes = auth_changes,
        .shred = auth_shred,
        .checkpoint = auth_checkpoint,
        .strerror = auth_strerror,
        .unavailable = auth_unavailable,
};

/* Over a backend with a watch and leases (etcd). */
static const struct store_ops auth_ops_leased = {
        .name = "authenticated",
        .open = auth_open,
        .close = auth_close,
        .get = auth_get,
        .range = auth_range,
        .txn = auth_txn,
        .revision = auth_revision,
        .changes = auth_changes,
        .follow = auth_follow,
        .lease_grant = auth_lease_grant,
        .lease_keepalive = auth_lease_keepalive,
        .lease_revoke = auth_lease_revoke,
        .lease_ttl = auth_lease_ttl,
        .txn_leased = auth_txn_leased,
        .shred = auth_shred,
        .checkpoint = auth_checkpoint,
        .strerror = auth_strerror,
        .unavailable = auth_unavailable,
};

int store_auth_open(struct store *inner, const uint8_t key[STORE_AUTH_KEY_SIZE], const char *seen_path,
                    store_auth_refused_fn refused, void *userdata, struct store **ret)
{
        struct store_auth *a;

        if (!inner || !key || !ret) {
                store_close(inner);
                return -EINVAL;
        }
        if (!!store_ops_of(inner)->follow != store_has_leases(inner)) {
                /* A backend with one and not the other: none today. */
                store_close(inner);
                return -EOPNOTSUPP;
        }
        a = calloc(1, sizeof(*a));
        if (!a || !(a->key = secret_alloc(STORE_AUTH_KEY_SIZE)) ||
            (seen_path && !(a->seen_path = strdup(seen_path)))) {
                if (a) {
                        secret_free(a->key);
                        free(a);
                }
                store_close(inner);
                return -ENOMEM;
        }
        /* Callers size their transactions by the table's limit: the
         * backend's, since every operation goes through to it as it is. */
        a->ops = store_has_leases(inner) ? auth_ops_leased : auth_ops;
        a->ops.max_txn_ops = store_ops_of(inner)->max_txn_ops;
        a->base.ops = &a->ops;
        a->inner = inner;
        memcpy(a->key, key, STORE_AUTH_KEY_SIZE);
        a->refused = refused;
        a->userdata = userdata;
        pthread_mutex_init(&a->lock, NULL);
        seen_load(a);
        *ret = (struct store *)a;
        return 0;
}

/* --- a store older than one seen ---------------------------------------------- */

int store_auth_check_revision(struct store *s, bool accept_older, uint64_t *ret_revision,
                              uint64_t *ret_high, char *err, size_t err_size)
{
        struct store_auth *a = A(s);
        uint64_t cur = 0, high;
        int r;

        if (!is_auth(store_ops_of(s)))
                return -EINVAL;
        /* The backend's own: auth_revision() would raise the mark to it. */
        r = inner_ops(a)->revision(a->inner, &cur);
        if (r < 0) {
                snprintf(err, err_size, "cannot read the store's revision: %s", strerror(-r));
                return r;
        }
        pthread_mutex_lock(&a->lock);
        high = a->high;
        if (cur < high && accept_older) {
                /* What the newer store held is gone: its keys are kept,
                 * marked lost, so that the older store's records are
                 * accepted and no number seen there is issued again
                 * (store_auth_lost). */
                for (size_t i = 0; i < a->n_seen; i++)
                        if (a->seen[i].seq > cur)
                                a->seen[i].lost = true;
                a->high = cur;
                a->dirty = true;
        }
        pthread_mutex_unlock(&a->lock);
        if (cur < high && !accept_older) {
                snprintf(err, err_size,
                         "the store is at revision %" PRIu64 ", older than revision %" PRIu64 " that this "
                         "node has already served (%s): it was rolled back, damaged or replaced, and "
                         "what was written since is lost; restore the newer store, or start once with "
                         "dkmd --accept-older-store to serve this one deliberately",
                         cur, high, a->seen_path ? a->seen_path : "in memory");
                return -ESTALE;
        }
        seen_save(a);
        *ret_revision = cur;
        *ret_high = high;
        return 0;
}

bool store_auth_lost(struct store *s, const char *key)
{
        struct store_auth *a = A(s);
        struct seen k = { .key = (char *)key }, *e;
        bool lost;

        if (!is_auth(store_ops_of(s)))
                return false;
        pthread_mutex_lock(&a->lock);
        /* bsearch() of an empty (NULL) array is undefined behaviour. */
        e = a->n_seen ? bsearch(&k, a->seen, a->n_seen, sizeof(*a->seen), seen_cmp) : NULL;
        lost = e && e->lost;
        pthread_mutex_unlock(&a->lock);
        return lost;
}

/* --- the migration ------------------------------------------------------------- */

static int collect(const struct store_kv *kv, void *userdata)
{
        struct store_kv_list *l = userdata;
        struct store_kv *slot = store_kv_list_add(l);

        if (!slot)
                return -ENOMEM;
        slot->key = strdup(kv->key);
        slot->value = malloc(kv->value_len + 1);
        if (!slot->key || !slot->value) {
                store_kv_clear(slot);
                return -ENOMEM;
        }
        memcpy(slot->value, kv->value, kv->value_len);
        slot->value_len = kv->value_len;
        slot->mod_revision = kv->mod_revision;
        slot->lease = kv->lease;
        l->n++;
        return 0;
}

static void list_free(struct store_kv_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].value)
                        secure_wipe(l->v[i].value, l->v[i].value_len);
        store_kv_list_free(l);
}

/* One pass: every unauthenticated record, authenticated where it still is
 * as read (compare-and-swap); -ESTALE when one changed meanwhile. */
static int migrate_pass(struct store_auth *a, size_t *ret_n)
{
        const struct store_ops *in = inner_ops(a);
        size_t batch = (in->max_txn_ops ? in->max_txn_ops : STORE_TXN_OPS_MAX) / 2, n = 0;
        struct store_kv_list l = { 0 };
        struct store_cmp *cmps = NULL;
        struct store_op *ops = NULL;
        uint64_t *leases = NULL;
        int r;

        r = in->range(a->inner, "", collect, &l);
        if (r >= 0 && (!(cmps = calloc(batch, sizeof(*cmps))) || !(ops = calloc(batch, sizeof(*ops))) ||
                       !(leases = calloc(batch, sizeof(*leases)))))
                r = -ENOMEM;
        for (size_t i = 0; i < l.n && r >= 0;) {
                size_t m = 0;

                for (; i < l.n && m < batch; i++) {
                        uint8_t *v;
                        size_t vl;
                        uint64_t seq;

                        if (strcmp(l.v[i].key, STORE_AUTH_FORMAT_KEY) == 0)
                                continue;
                        r = store_auth_unseal(a->key, l.v[i].key, l.v[i].value, l.v[i].value_len, &v, &vl, &seq);
                        if (r == 0) {
                                free(v);
                                continue; /* done by an earlier, interrupted pass */
                        }
                        if (r != -ENODATA) {
                                /* Carries a MAC that does not verify: not ours to bless. */
                                r = 0;
                                continue;
                        }
                        r = 0;
                        cmps[m] = (struct store_cmp){ l.v[i].key, l.v[i].mod_revision };
                        ops[m] = (struct store_op){ STORE_PUT, l.v[i].key, l.v[i].value, l.v[i].value_len };
                        leases[m] = l.v[i].lease;
                        m++;
                }
                if (m == 0)
                        continue;
                r = auth_txn_leased((struct store *)a, cmps, m, ops, m,
                                    store_has_leases(a->inner) ? leases : NULL, NULL);
                if (r == -ENOENT)
                        r = -ESTALE; /* a lease ended meanwhile: read again */
                n += m;
        }
        list_free(&l);
        free(cmps);
        free(ops);
        free(leases);
        if (r >= 0)
                *ret_n = n;
        return r;
}

int store_auth_migrate(struct store *s, size_t *ret_migrated, char *err, size_t err_size)
{
        static const char format[] = "{\"format\":1}";
        struct store_auth *a = A(s);
        struct store_kv kv = { 0 };
        struct seen *e;
        bool seen_before;
        size_t n = 0, total = 0;
        int r;

        if (!is_auth(store_ops_of(s)))
                return -EINVAL;
        *ret_migrated = 0;
        pthread_mutex_lock(&a->lock);
        e = seen_get(a, STORE_AUTH_FORMAT_KEY);
        seen_before = e && e->seq > 0;
        pthread_mutex_unlock(&a->lock);
        a->authenticated = true; /* the format record itself must be authentic */
        r = auth_get(s, STORE_AUTH_FORMAT_KEY, &kv);
        store_kv_clear(&kv);
        if (r == 0)
                return 0;
        if (r != -ENOENT) {
                /* Every record is sealed under a key derived from the master
                 * key: the usual reason is the master key, not a forger. */
                snprintf(err, err_size,
                         "the store's format record (%s) does not verify: wrong master key (is this the "
                         "key the store was made with?) or an altered store; dkmd will not serve from it",
                         STORE_AUTH_FORMAT_KEY);
                return -EKEYREJECTED;
        }
        if (seen_before) {
                snprintf(err, err_size,
                         "the store's format record (%s) is %s, yet this node has seen the store with "
                         "authenticated records: someone who can write to the store removed or altered "
                         "it; dkmd will not authenticate what is there now",
                         STORE_AUTH_FORMAT_KEY, "missing");
                return -EKEYREJECTED;
        }
        /* A store from before authenticated records: take it over. */
        a->authenticated = false;
        for (int tries = 0; tries < 5; tries++) {
                r = migrate_pass(a, &n);
                total += r >= 0 ? n : 0;
                if (r != -ESTALE)
                        break;
        }
        if (r >= 0) {
                const struct store_cmp cmp = { STORE_AUTH_FORMAT_KEY, 0 };
                const struct store_op op = { STORE_PUT, STORE_AUTH_FORMAT_KEY, format, sizeof(format) - 1 };

                r = auth_txn(s, &cmp, 1, &op, 1, NULL);
                if (r == -ESTALE)
                        r = 0; /* another node finished the migration first */
        }
        if (r < 0) {
                snprintf(err, err_size, "cannot authenticate the store's records: %s", strerror(-r));
                return r;
        }
        a->authenticated = true;
        /* Read back: the format record must verify, and is remembered. */
        r = auth_get(s, STORE_AUTH_FORMAT_KEY, &kv);
        store_kv_clear(&kv);
        if (r < 0) {
                snprintf(err, err_size, "the store's format record does not verify after the migration: %s",
                         strerror(-r));
                return r;
        }
        *ret_migrated = total;
        return 0;
}

int store_auth_adopt(struct store *s, size_t *ret_n, char *err, size_t err_size)
{
        size_t n = 0;
        int r = -ESTALE;

        if (!is_auth(store_ops_of(s)))
                return -EINVAL;
        for (int tries = 0; tries < 5 && r == -ESTALE; tries++)
                r = migrate_pass(A(s), &n);
        if (r < 0) {
                snprintf(err, err_size, "cannot authenticate the store's records: %s", strerror(-r));
                return r;
        }
        *ret_n = n;
        return 0;
}
