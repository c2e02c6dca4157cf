/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Data-encryption policies: creation, customer keys, assignment, rekey, purge. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>

#include "keys-internal.h"
#include "log.h"
#include "shared/format.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "wrap.h"


int create_policy(struct keys *k, const char *name, char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(KEYBUF_SIZE);
        _cleanup_free_ char *pjson = NULL, *gjson = NULL;
        struct policy *p = NULL;
        struct gen_record g;
        char kp[128], kg[160], kn[128];
        uint64_t rev;
        int r;

        if (!buf)
                return -ENOMEM;
        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        r = engine_random(p->id, 16);
        if (r < 0)
                goto fail;
        p->id[6] = (p->id[6] & 0x0f) | 0x40; /* UUID version 4 */
        p->id[8] = (p->id[8] & 0x3f) | 0x80;
        uuid_to_string(p->id, p->rec.id);
        snprintf(p->rec.name, sizeof(p->rec.name), "%s", name);
        p->rec.created_usec = now_real_usec();
        p->rec.active = p->rec.n_generations = 1;

        r = read_cached(k->env.master, buf + ENGINE_KEY_SIZE);
        if (r >= 0)
                r = engine_random(buf, ENGINE_KEY_SIZE);
        if (r >= 0)
                r = key_wrap(buf + ENGINE_KEY_SIZE, WRAP_POLICY_KEY, p->id, 0, buf, p->rec.wrapped_key);
        if (r < 0) {
                keys_seterr(err, "cannot create the key of policy '%s': %s", name, strerror(-r));
                goto fail;
        }
        r = new_wrapped_gen(k, p, 1, &g, err);
        if (r < 0)
                goto fail;
        r = policy_record_encode(&p->rec, &pjson);
        if (r >= 0)
                r = gen_record_encode(&g, &gjson);
        if (r < 0)
                goto fail;
        key_policy(kp, sizeof(kp), p->rec.id);
        key_generation(kg, sizeof(kg), p->rec.id, 1);
        key_name(kn, sizeof(kn), name);
        {
                const struct store_cmp cmps[] = { { kn, 0 }, { kp, 0 } };
                const struct store_op ops[] = {
                        { STORE_PUT, kn, p->rec.id, strlen(p->rec.id) },
                        { STORE_PUT, kp, pjson, strlen(pjson) },
                        { STORE_PUT, kg, gjson, strlen(gjson) },
                };

                if (audit_record(AUDIT_KIND_KEY, "policy-create", &k->self, true,
                                 "policy=%s policy_id=%s generation=1", name, p->rec.id) < 0 &&
                    k->cfg->audit_fail_closed) {
                        keys_seterr(err, "refused: the audit record could not be written");
                        r = -EIO;
                        goto fail;
                }
                r = store_ops_of(k->env.store)->txn(k->env.store, cmps, ARRAY_SIZE(cmps), ops,
                                                    ARRAY_SIZE(ops), &rev);
        }
        if (r < 0) {
                keys_seterr(err, "cannot store policy '%s': %s", name,
                       r == -ESTALE ? "it already exists" : strerror(-r));
                goto fail;
        }
        p->mod_revision = rev;
        r = add_gen(p, &g, rev);
        if (r < 0)
                goto fail;
        {
                struct policy **ps = realloc(k->policies, (k->n_policies + 1) * sizeof(*ps));
                if (!ps) {
                        r = -ENOMEM;
                        goto fail;
                }
                k->policies = ps;
                k->policies[k->n_policies++] = p;
        }
        log_info("created policy '%s' (%s) with generation 1", name, p->rec.id);
        return 0;
fail:
        if (p)
                policy_free(p);
        return r;
}
