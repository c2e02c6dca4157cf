/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The backend-independent part of the store: thin wrappers over the ops
 * table, and what every backend shares (argument checks, key-value lists). */
#include <stdbool.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "store/store.h"

void store_kv_clear(struct store_kv *kv)
{
        if (!kv)
                return;
        free(kv->key);
        free(kv->value);
        *kv = (struct store_kv){ 0 };
}

void store_kv_list_free(struct store_kv_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                store_kv_clear(&l->v[i]);
        free(l->v);
        *l = (struct store_kv_list){ 0 };
}

struct store_kv *store_kv_list_add(struct store_kv_list *l)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                struct store_kv *v = reallocarray(l->v, cap, sizeof(*v));

                if (!v)
                        return NULL;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n] = (struct store_kv){ 0 };
        return &l->v[l->n];
}

int store_kv_list_walk(const struct store_kv_list *l, int (*cb)(const struct store_kv *kv, void *userdata),
                       void *userdata)
{
        for (size_t i = 0; i < l->n; i++) {
                int r = cb(&l->v[i], userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

int store_open(const struct store_ops *ops, const char *location, struct store **ret)
{
        struct store *s = NULL;
        int r;

        if (!ops || !ops->open || !location || !ret)
                return -EINVAL;
        r = ops->open(location, &s);
        if (r < 0)
                return r;
        /* Every backend's struct store begins with struct store_base; make
         * sure it names the table it was opened through. */
        ((struct store_base *)s)->ops = ops;
        *ret = s;
        return 0;
}

void store_close(struct store *s)
{
        const struct store_ops *ops;

        if (!s)
                return;
        ops = store_ops_of(s);
        if (ops && ops->close)
                ops->close(s);
}

const struct store_ops *store_ops_of(struct store *s)
{
        return s ? ((const struct store_base *)s)->ops : NULL;
}

const char *store_strerror(struct store *s, int r)
{
        const struct store_ops *ops = store_ops_of(s);
        const char *text = ops && ops->strerror ? ops->strerror(s, r) : NULL;

        if (text)
                return text;
        if (r == -ESTALE)
                return "the record changed concurrently, retry";
        return strerror(-r);
}

bool store_unavailable(struct store *s, int r)
{
        const struct store_ops *ops = store_ops_of(s);

        return ops && ops->unavailable && ops->unavailable(s, r);
}

bool store_has_leases(struct store *s)
{
        const struct store_ops *ops = store_ops_of(s);

        return ops && ops->lease_grant && ops->lease_keepalive && ops->lease_revoke && ops->lease_ttl &&
               ops->txn_leased;
}

int store_lease_grant(struct store *s, uint64_t ttl_sec, uint64_t *ret_id, uint64_t *ret_ttl)
{
        if (!s || !ret_id || ttl_sec == 0 || ttl_sec > INT64_MAX)
                return -EINVAL;
        if (!store_has_leases(s))
                return -EOPNOTSUPP;
        return store_ops_of(s)->lease_grant(s, ttl_sec, ret_id, ret_ttl);
}

int store_lease_keepalive(struct store *s, uint64_t id, uint64_t *ret_ttl)
{
        if (!s || id == 0 || id > INT64_MAX)
                return -EINVAL;
        if (!store_has_leases(s))
                return -EOPNOTSUPP;
        return store_ops_of(s)->lease_keepalive(s, id, ret_ttl);
}

int store_lease_revoke(struct store *s, uint64_t id)
{
        if (!s || id == 0 || id > INT64_MAX)
                return -EINVAL;
        if (!store_has_leases(s))
                return -EOPNOTSUPP;
        return store_ops_of(s)->lease_revoke(s, id);
}

int store_lease_ttl(struct store *s, uint64_t id, uint64_t *ret_left)
{
        if (!s || !ret_left || id == 0 || id > INT64_MAX)
                return -EINVAL;
        if (!store_has_leases(s))
                return -EOPNOTSUPP;
        return store_ops_of(s)->lease_ttl(s, id, ret_left);
}

int store_txn_leased(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                     const struct store_op *ops, size_t n_ops, const uint64_t *leases,
                     uint64_t *ret_revision)
{
        if (!s || (n_ops && !leases))
                return -EINVAL;
        for (size_t i = 0; i < n_ops; i++)
                if (leases[i] > INT64_MAX || (leases[i] && ops && ops[i].type != STORE_PUT))
                        return -EINVAL;
        if (!store_has_leases(s))
                return -EOPNOTSUPP;
        return store_ops_of(s)->txn_leased(s, cmps, n_cmps, ops, n_ops, leases, ret_revision);
}

int store_shred(struct store *s, uint64_t revision)
{
        if (!s)
                return -EINVAL;
        if (!store_ops_of(s)->shred)
                return -EOPNOTSUPP;
        return store_ops_of(s)->shred(s, revision);
}

int store_checkpoint(struct store *s)
{
        if (!s)
                return -EINVAL;
        if (!store_ops_of(s)->checkpoint)
                return 0;
        return store_ops_of(s)->checkpoint(s);
}

bool store_utf8_valid(const unsigned char *p, size_t n)
{
        size_t i = 0;

        while (i < n) {
                unsigned c = p[i];
                uint32_t cp, min;
                size_t len;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0)
                        len = 2, cp = c & 0x1f, min = 0x80;
                else if ((c & 0xf0) == 0xe0)
                        len = 3, cp = c & 0x0f, min = 0x800;
                else if ((c & 0xf8) == 0xf0)
                        len = 4, cp = c & 0x07, min = 0x10000;
                else
                        return false;
                if (n - i < len)
                        return false;
                for (size_t j = 1; j < len; j++) {
                        if ((p[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + j] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += len;
        }
        return true;
}

int store_check_key(const char *k, bool allow_empty, size_t *ret_len)
{
        size_t n;

        if (!k)
                return -EINVAL;
        n = strnlen(k, STORE_KEY_MAX + 1);
        if (n > STORE_KEY_MAX)
                return -E2BIG;
        if ((n == 0 && !allow_empty) || !store_utf8_valid((const unsigned char *)k, n))
                return -EINVAL;
        *ret_len = n;
        return 0;
}

int store_check_txn(const struct store_cmp *cmps, size_t n_cmps, const struct store_op *ops,
                    size_t n_ops, size_t max_ops)
{
        size_t len;
        int r;

        if ((n_cmps && !cmps) || (n_ops && !ops))
                return -EINVAL;
        if (n_cmps > max_ops || n_ops > max_ops)
                return -E2BIG;
        for (size_t i = 0; i < n_cmps; i++) {
                r = store_check_key(cmps[i].key, false, &len);
                if (r < 0)
                        return r;
                if (cmps[i].mod_revision > INT64_MAX)
                        return -EINVAL;
        }
        for (size_t i = 0; i < n_ops; i++) {
                r = store_check_key(ops[i].key, false, &len);
                if (r < 0)
                        return r;
                if (ops[i].type == STORE_PUT) {
                        if (ops[i].value_len > STORE_VALUE_MAX)
                                return -E2BIG;
                        if (!ops[i].value && ops[i].value_len)
                                return -EINVAL;
                } else if (ops[i].type != STORE_DELETE)
                        return -EINVAL;
                /* etcd refuses a key twice in one transaction; every backend does. */
                for (size_t j = 0; j < i; j++)
                        if (strcmp(ops[i].key, ops[j].key) == 0)
                                return -EINVAL;
        }
        return 0;
}
