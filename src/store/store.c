/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The backend-independent part of the store: thin wrappers over the ops table. */
#include <errno.h>
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
