/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The transaction builder (store.h): one list of operations that owns its
 * keys and values, so that a caller keeps no arrays beside it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
        size_t c = *cap ? 2 * *cap : 8;
        void *p;

        if (n < *cap)
                return 0;
        p = reallocarray(*v, c, size);
        if (!p)
                return -ENOMEM;
        *v = p;
        *cap = c;
        return 0;
}

static int add_op(struct store_txn *t, enum store_op_type type, const char *key, char *value,
                  size_t value_len)
{
        char *k = key ? strdup(key) : NULL;

        if (!t || !k || grow((void **)&t->ops, &t->cap_ops, t->n_ops, sizeof(*t->ops)) < 0) {
                free(k);
                free(value);
                return !t || !key ? -EINVAL : -ENOMEM;
        }
        t->ops[t->n_ops++] = (struct store_op){ type, k, value, value_len };
        return 0;
}

int store_txn_put_owned(struct store_txn *t, const char *key, char *value, size_t value_len)
{
        if (!value)
                return -EINVAL;
        return add_op(t, STORE_PUT, key, value, value_len);
}

int store_txn_delete(struct store_txn *t, const char *key)
{
        return add_op(t, STORE_DELETE, key, NULL, 0);
}

int store_txn_compare(struct store_txn *t, const char *key, uint64_t mod_revision)
{
        char *k;

        if (!t || !key)
                return -EINVAL;
        k = strdup(key);
        if (!k || grow((void **)&t->cmps, &t->cap_cmps, t->n_cmps, sizeof(*t->cmps)) < 0) {
                free(k);
                return -ENOMEM;
        }
        t->cmps[t->n_cmps++] = (struct store_cmp){ k, mod_revision };
        return 0;
}

int store_txn_commit(struct store *s, const struct store_txn *t, uint64_t *ret_revision)
{
        if (!s || !t)
                return -EINVAL;
        return store_ops_of(s)->txn(s, t->cmps, t->n_cmps, t->ops, t->n_ops, ret_revision);
}

void store_txn_free(struct store_txn *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_ops; i++) {
                free((char *)t->ops[i].key);
                free((void *)t->ops[i].value);
        }
        for (size_t i = 0; i < t->n_cmps; i++)
                free((char *)t->cmps[i].key);
        free(t->ops);
        free(t->cmps);
        *t = (struct store_txn){ 0 };
}
