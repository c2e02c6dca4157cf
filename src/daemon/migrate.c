/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copying a store into another, empty one (migrate.h). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"
#include "records.h"
#include "shared/format.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "store/store-etcd.h"
#include "store/store.h"
#include "wrap.h"

static bool is_etcd(const struct dkm_config *c)
{
        return c->store_backend && strcmp(c->store_backend, "etcd") == 0;
}

/* Whether the comma-separated lists a and b share an entry. */
static bool lists_meet(const char *a, const char *b)
{
        for (const char *p = a; p && *p;) {
                size_t n = strcspn(p, ",");

                for (const char *q = b; q && *q;) {
                        size_t m = strcspn(q, ",");

                        if (n == m && n > 0 && strncmp(p, q, n) == 0)
                                return true;
                        q += m + (q[m] == ',');
                }
                p += n + (p[n] == ',');
        }
        return false;
}

bool migrate_same_store(const struct dkm_config *a, const struct dkm_config *b)
{
        if (is_etcd(a) != is_etcd(b))
                return false;
        if (is_etcd(a)) {
                const char *pa = a->store_prefix ? a->store_prefix : STORE_ETCD_DEFAULT_PREFIX;
                const char *pb = b->store_prefix ? b->store_prefix : STORE_ETCD_DEFAULT_PREFIX;

                return strcmp(pa, pb) == 0 && lists_meet(a->store_endpoints, b->store_endpoints);
        }
        {
                char ra[PATH_MAX], rb[PATH_MAX];

                /* One missing directory cannot be the other, existing one. */
                if (!realpath(a->state_dir, ra) || !realpath(b->state_dir, rb))
                        return strcmp(a->state_dir, b->state_dir) == 0;
                return strcmp(ra, rb) == 0;
        }
}

struct reader {
        const uint8_t *record_key;
        struct backup_set *set;
        size_t leased, nodes;
        char *err;
        size_t err_size;
};

static int read_one(const struct store_kv *kv, void *userdata)
{
        struct reader *rd = userdata;
        int r;

        if (kv->lease) {
                rd->leased++;
                rd->nodes += RECORDS_UNDER(kv->key, RECORDS_NODES);
                return 0;
        }
        r = backup_set_add(rd->set, rd->record_key, kv->key, kv->value, kv->value_len, rd->err, rd->err_size);
        return r == -EBADMSG ? -EKEYREJECTED : r;
}

int migrate_read(struct store *src, const uint8_t *record_key, struct backup_set *ret, size_t *ret_leased,
                 char *err, size_t err_size)
{
        struct backup_set set = { 0 };
        char why[MIGRATE_ERR_MAX] = "";
        struct reader rd = { record_key, &set, 0, 0, why, sizeof(why) };
        int r;

        err[0] = 0;
        /* One range: SQLite reads it in one statement, etcd every page at
         * the revision of the first: one consistent state either way. */
        r = store_ops_of(src)->range(src, "", read_one, &rd);
        if (r == -EKEYREJECTED) {
                struct store_kv kv = { 0 };

                /* Without the format record, nothing there carries a MAC
                 * yet: a store this version has never started on. */
                if (store_ops_of(src)->get(src, STORE_AUTH_FORMAT_KEY, &kv) == -ENOENT) {
                        snprintf(err, err_size, "the source store was written by a dkmd from before records "
                                 "were authenticated: start this dkmd on it once (it authenticates every "
                                 "record), stop it, then migrate (nothing was written)");
                        r = -EPROTO;
                } else
                        snprintf(err, err_size, "the master key does not open the source store: %s; wrong "
                                 "[daemon] master_key, or the source was altered (nothing was written)", why);
                store_kv_clear(&kv);
        } else if (r < 0)
                snprintf(err, err_size, "cannot read the source store: %s", why[0] ? why : strerror(-r));
        else if (rd.nodes > 0) {
                /* What they write after the copy would be lost. */
                snprintf(err, err_size, "%zu node%s still serve%s the source store (heartbeat records under "
                         RECORDS_NODES "): stop every node of it first (nothing was written)", rd.nodes,
                         rd.nodes == 1 ? "" : "s", rd.nodes == 1 ? "s" : "");
                r = -EBUSY;
        } else if (set.n == 0) {
                snprintf(err, err_size, "the source store holds no record: nothing to migrate");
                r = -ENODATA;
        }
        if (r < 0) {
                backup_set_free(&set);
                return r;
        }
        *ret = set;
        *ret_leased = rd.leased;
        return 0;
}

int migrate_check_master(const struct backup_set *set, const uint8_t *master, unsigned *ret_policies,
                         char *err, size_t err_size)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(ENGINE_KEY_SIZE);
        unsigned policies = 0;

        if (!key)
                return -ENOMEM;
        for (size_t i = 0; i < set->n; i++) {
                const char *k = set->v[i].key;
                struct policy_record rec;
                uint8_t id[16];
                int r;

                /* policies/<id> only, not policies/<id>/gens/... */
                if (!RECORDS_UNDER(k, RECORDS_POLICIES) || strchr(k + RECORDS_LEN(RECORDS_POLICIES), '/'))
                        continue;
                policies++;
                r = policy_record_decode(set->v[i].value, set->v[i].len, &rec);
                if (r < 0) {
                        snprintf(err, err_size, "source record %s is not a policy record this dkmd reads", k);
                        return -EBADMSG;
                }
                if (rec.purged || rec.n_customer_keys || uuid_from_string(rec.id, id) < 0) {
                        secure_wipe(&rec, sizeof(rec));
                        continue;
                }
                r = key_unwrap(master, WRAP_POLICY_KEY, id, 0, rec.wrapped_key, key);
                secure_wipe(key, ENGINE_KEY_SIZE);
                if (r < 0) {
                        snprintf(err, err_size, "the master key does not unwrap the key of policy '%s' in the "
                                 "source store: wrong [daemon] master_key (nothing was written)", rec.name);
                        secure_wipe(&rec, sizeof(rec));
                        return -EKEYREJECTED;
                }
                secure_wipe(&rec, sizeof(rec));
        }
        *ret_policies = policies;
        return 0;
}

int migrate_ensure_marker(struct backup_set *set, const char *key, uint64_t now_usec)
{
        struct backup_rec *v, rec = { 0 };
        size_t at = 0;
        char buf[96];
        int n;

        for (; at < set->n; at++) {
                int c = strcmp(set->v[at].key, key);

                if (c == 0)
                        return 0;
                if (c > 0)
                        break;
        }
        n = snprintf(buf, sizeof(buf), "{\"initialized_usec\":%" PRIu64 ",\"migrated\":true}", now_usec);
        rec.key = strdup(key);
        rec.value = (uint8_t *)strdup(buf);
        v = reallocarray(set->v, set->n + 1, sizeof(*v));
        if (!rec.key || !rec.value || !v) {
                free(rec.key);
                free(rec.value);
                if (v)
                        set->v = v;
                return -ENOMEM;
        }
        rec.len = (size_t)n;
        set->v = v;
        memmove(v + at + 1, v + at, (set->n - at) * sizeof(*v));
        v[at] = rec;
        set->n++;
        return 1;
}
