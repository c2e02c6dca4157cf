/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* For unit tests: a shared store that can lose quorum.  SQLite underneath;
 * while flaky_down every call fails as etcd without quorum does (-EAGAIN,
 * "no leader").  Its table says it can be out of reach, so dkmd treats it
 * as a fleet's store.  Include once per test program. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "store/store.h"

static bool flaky_down;
/* Non-zero: every write fails with it (-ENOSPC: a full disk), reads work. */
static int flaky_write_error;

struct flaky {
        struct store_base base;
        struct store *inner;
};

static struct store *inner(struct store *s)
{
        return ((struct flaky *)s)->inner;
}

static int flaky_open(const char *location, struct store **ret)
{
        struct flaky *f = calloc(1, sizeof(*f));
        int r;

        if (!f)
                return -ENOMEM;
        r = store_open(&store_sqlite_ops, location, &f->inner);
        if (r < 0) {
                free(f);
                return r;
        }
        *ret = (struct store *)f;
        return 0;
}

static void flaky_close(struct store *s)
{
        store_close(inner(s));
        free(s);
}

static int flaky_get(struct store *s, const char *key, struct store_kv *ret)
{
        return flaky_down ? -EAGAIN : store_sqlite_ops.get(inner(s), key, ret);
}

static int flaky_range(struct store *s, const char *prefix,
                       int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        return flaky_down ? -EAGAIN : store_sqlite_ops.range(inner(s), prefix, cb, userdata);
}

static int flaky_txn(struct store *s, const struct store_cmp *cmps, size_t n_cmps,
                     const struct store_op *ops, size_t n_ops, uint64_t *ret_revision)
{
        if (flaky_write_error)
                return flaky_write_error;
        return flaky_down ? -EAGAIN :
                            store_sqlite_ops.txn(inner(s), cmps, n_cmps, ops, n_ops, ret_revision);
}

static int flaky_revision(struct store *s, uint64_t *ret)
{
        return flaky_down ? -EAGAIN : store_sqlite_ops.revision(inner(s), ret);
}

static int flaky_changes(struct store *s, const char *prefix, uint64_t since,
                         int (*cb)(const struct store_kv *kv, void *userdata), void *userdata)
{
        return flaky_down ? -EAGAIN : store_sqlite_ops.changes(inner(s), prefix, since, cb, userdata);
}

static int flaky_shred(struct store *s, uint64_t revision)
{
        return flaky_down ? -EAGAIN : store_sqlite_ops.shred(inner(s), revision);
}

/* As etcd's: the errors of a lost quorum or connection. */
static bool flaky_unavailable(struct store *s, int r)
{
        return r == -EAGAIN || r == -ETIMEDOUT || r == -EHOSTUNREACH || r == -ECONNREFUSED ||
               r == -ECONNRESET || r == -ENOTCONN;
}

static const struct store_ops flaky_ops = {
        .name = "flaky",
        .max_txn_ops = STORE_TXN_OPS_MAX,
        .open = flaky_open,
        .close = flaky_close,
        .get = flaky_get,
        .range = flaky_range,
        .txn = flaky_txn,
        .revision = flaky_revision,
        .changes = flaky_changes,
        .shred = flaky_shred,
        .unavailable = flaky_unavailable,
};

