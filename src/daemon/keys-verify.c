/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dkmctl store verify: every generation of every policy, as the store holds
 * it now, unwrapped and wiped at once; the reply holds counts and names. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "keys-internal.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "wrap.h"

struct vpolicy {
        char *key;     /* policies/<id> */
        struct policy_record rec;
        json_object *out;
        uint32_t checked, destroyed, failed;
        uint32_t max_gen;
        uint8_t *seen; /* seen[g] for 1..rec.n_generations */
};

static int collect(const struct store_kv *kv, void *userdata)
{
        struct store_kv_list *l = userdata;
        struct store_kv *e = store_kv_list_add(l);

        if (!e)
                return -ENOMEM;
        e->key = strdup(kv->key);
        e->value = malloc(kv->value_len + 1);
        if (!e->key || !e->value) {
                store_kv_clear(e);
                return -ENOMEM;
        }
        memcpy(e->value, kv->value, kv->value_len);
        e->value_len = kv->value_len;
        l->n++;
        return 0;
}

static void fail_gen(json_object *failures, uint32_t gen, const char *why)
{
        json_object *f = json_object_new_object();

        json_object_object_add(f, "generation", json_object_new_int64(gen));
        json_object_object_add(f, "error", json_object_new_string(why));
        json_object_array_add(failures, f);
}

/* The policy key of rec into key (buf: KEYBUF_SIZE of scratch). */
static int verify_policy_key(struct keys *k, const struct policy_record *rec, const uint8_t id[16],
                             uint8_t *key, uint8_t *buf, char *err)
{
        struct policy *p;
        int r;

        if (rec->n_customer_keys == 0) {
                /* From the record as the store holds it, not from the cache. */
                r = read_cached(k->env.master, buf);
                if (r < 0) {
                        keys_seterr(err, "master key not available in the keyring: %s", strerror(-r));
                        return r;
                }
                r = key_unwrap(buf, WRAP_POLICY_KEY, id, 0, rec->wrapped_key, key);
                secure_wipe(buf, ENGINE_KEY_SIZE);
                if (r < 0)
                        keys_seterr(err, "the policy key does not unwrap with the master key");
                return r;
        }
        /* Customer-managed: as for serving, so that a revoked customer key
         * is not bypassed through the availability key. */
        pthread_rwlock_rdlock(&k->lock);
        p = find_policy_id(k, id);
        r = p ? policy_key(k, p, key, err) : -ENOENT;
        pthread_rwlock_unlock(&k->lock);
        if (r == -ENOENT && !p)
                keys_seterr(err, "this node has not loaded the policy yet");
        return r;
}

static void verify_one(struct keys *k, struct vpolicy *vp, const struct store_kv_list *l, size_t from)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(4 * ENGINE_KEY_SIZE);
        uint8_t *pkey, *prev, *scratch, *tmp;
        json_object *failures = json_object_new_array(), *missing = json_object_new_array();
        size_t kl = strlen(vp->key);
        char err[KEYS_ERR_MAX] = "";
        bool has_prev = false;
        uint8_t id[16];
        int r;

        json_object_object_add(vp->out, "failed", failures);
        if (!buf || uuid_from_string(vp->rec.id, id) < 0) {
                json_object_object_add(vp->out, "error",
                                       json_object_new_string(buf ? "malformed policy id" : "out of memory"));
                vp->failed++;
                json_object_put(missing);
                return;
        }
        pkey = buf, prev = buf + ENGINE_KEY_SIZE, scratch = buf + 2 * ENGINE_KEY_SIZE, tmp = scratch;
        r = verify_policy_key(k, &vp->rec, id, pkey, scratch, err);
        if (r >= 0 && vp->rec.has_previous) {
                has_prev = key_unwrap(pkey, WRAP_PREVIOUS_POLICY_KEY, id, vp->rec.previous_version,
                                      vp->rec.previous_key, prev) >= 0;
                if (!has_prev)
                        fail_gen(failures, 0, "the previous policy key (kept during a rekey) does not unwrap");
        }
        for (size_t j = from; j < l->n && strncmp(l->v[j].key, vp->key, kl) == 0; j++) {
                struct gen_record g;
                const uint8_t *kek;

                if (strncmp(l->v[j].key + kl, "/gens/", 6) != 0)
                        continue;
                if (gen_record_decode(l->v[j].value, l->v[j].value_len, &g) < 0) {
                        fail_gen(failures, 0, "a generation record is malformed");
                        vp->failed++;
                        continue;
                }
                if (g.generation >= 1 && g.generation <= vp->rec.n_generations)
                        vp->seen[g.generation] = 1;
                if (g.generation > vp->max_gen)
                        vp->max_gen = g.generation;
                if (g.state == GEN_DESTROYED) {
                        vp->destroyed++;
                        continue;
                }
                vp->checked++;
                if (r < 0) {
                        fail_gen(failures, g.generation, err);
                        vp->failed++;
                        continue;
                }
                kek = g.key_version == vp->rec.key_version ? pkey :
                      has_prev && g.key_version == vp->rec.previous_version ? prev : NULL;
                if (!kek || key_unwrap(kek, WRAP_GENERATION_KEY, id, g.generation, g.wrapped_key, tmp) < 0) {
                        fail_gen(failures, g.generation,
                                 kek ? "its key does not unwrap" :
                                       "wrapped under a policy key version the policy no longer has");
                        vp->failed++;
                }
                secure_wipe(tmp, ENGINE_KEY_SIZE);
        }
        /* Generation numbers are handed out one by one: a gap is a lost record. */
        for (uint32_t g = 1; g <= vp->rec.n_generations; g++)
                if (!vp->seen[g]) {
                        json_object_array_add(missing, json_object_new_int64(g));
                        vp->failed++;
                }
        json_object_object_add(vp->out, "missing", missing);
        if (r < 0 && vp->checked == 0) {
                json_object_object_add(vp->out, "error", json_object_new_string(err));
                vp->failed++;
        }
}

int keys_verify_json(struct keys *k, char **ret, uint32_t *ret_failed, char *err)
{
        struct store_kv_list l = { 0 };
        json_object *o = json_object_new_object(), *arr = json_object_new_array();
        uint32_t failed = 0, checked = 0;
        int r;

        if (!o || !arr) {
                json_object_put(o);
                json_object_put(arr);
                return -ENOMEM;
        }
        json_object_object_add(o, "policies", arr);
        r = store_ops_of(k->env.store)->range(k->env.store, RECORDS_POLICIES, collect, &l);
        if (r < 0) {
                keys_seterr(err, "cannot read the store: %s", store_strerror(k->env.store, r));
                goto out;
        }
        for (size_t i = 0; i < l.n; i++) {
                struct vpolicy vp = { .key = l.v[i].key };

                if (strchr(l.v[i].key + RECORDS_LEN(RECORDS_POLICIES), '/'))
                        continue;
                vp.out = json_object_new_object();
                if (!vp.out) {
                        r = -ENOMEM;
                        break;
                }
                json_object_array_add(arr, vp.out);
                if (policy_record_decode(l.v[i].value, l.v[i].value_len, &vp.rec) < 0) {
                        json_object_object_add(vp.out, "record", json_object_new_string(l.v[i].key));
                        json_object_object_add(vp.out, "error", json_object_new_string("malformed policy record"));
                        failed++;
                        continue;
                }
                json_object_object_add(vp.out, "name", json_object_new_string(vp.rec.name));
                json_object_object_add(vp.out, "purged", json_object_new_boolean(vp.rec.purged));
                if (!vp.rec.purged) {
                        vp.seen = calloc((size_t)vp.rec.n_generations + 1, 1);
                        if (!vp.seen) {
                                r = -ENOMEM;
                                break;
                        }
                        verify_one(k, &vp, &l, i + 1);
                        free(vp.seen);
                }
                json_object_object_add(vp.out, "checked", json_object_new_int64(vp.checked));
                json_object_object_add(vp.out, "destroyed", json_object_new_int64(vp.destroyed));
                json_object_object_add(vp.out, "ok", json_object_new_boolean(vp.failed == 0));
                failed += vp.failed;
                checked += vp.checked;
                secure_wipe(&vp.rec, sizeof(vp.rec));
        }
        if (r >= 0) {
                json_object_object_add(o, "checked", json_object_new_int64(checked));
                json_object_object_add(o, "failed", json_object_new_int64(failed));
                json_object_object_add(o, "ok", json_object_new_boolean(failed == 0));
                *ret = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                if (!*ret)
                        r = -ENOMEM;
                else
                        *ret_failed = failed;
        }
out:
        for (size_t i = 0; i < l.n; i++)
                if (l.v[i].value)
                        secure_wipe(l.v[i].value, l.v[i].value_len);
        store_kv_list_free(&l);
        json_object_put(o);
        return r;
}
