/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* policy create|list|show|assign|rekey|purge */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "shared/util.h"

int verb_policy_create(struct ctl *ctl, struct ctl_args *a)
{
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_create(ctl->client, a->args[0], a->customer_keys[0], a->customer_keys[1]);
        if (r < 0)
                return fail_dkm(ctl, r, "policy create");
        printf("policy %s created (%s-managed)\n", a->args[0], a->n_customer_keys ? "customer" : "service");
        return 0;
}

int verb_policy_list(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        json_object *arr;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_list_json(ctl->client, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "policy list");
        if (a->json) {
                print_json(json);
                return 0;
        }
        arr = json_tokener_parse(json);
        if (!arr || !json_object_is_type(arr, json_type_array))
                return fail("policy list: malformed reply from dkmd");
        printf("%-20s %-9s %-38s %6s  %s\n", "NAME", "MANAGED", "ID", "ACTIVE", "STATE");
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *o = json_object_array_get_idx(arr, i), *v[5];

                json_object_object_get_ex(o, "name", &v[0]);
                json_object_object_get_ex(o, "managed_by", &v[1]);
                json_object_object_get_ex(o, "id", &v[2]);
                json_object_object_get_ex(o, "active_generation", &v[3]);
                json_object_object_get_ex(o, "state", &v[4]);
                printf("%-20s %-9s %-38s %6s  %s\n", json_object_get_string(v[0]), json_object_get_string(v[1]),
                       json_object_get_string(v[2]), json_object_get_string(v[3]), json_object_get_string(v[4]));
        }
        json_object_put(arr);
        return 0;
}

int verb_policy_show(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_show_json(ctl->client, a->args[0], &json);
        if (r < 0)
                return fail_dkm(ctl, r, "policy show");
        /* The detail is nested; JSON is its readable form either way. */
        print_json(json);
        return 0;
}

int verb_policy_assign(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t id = 0;
        int r;

        if (!a->uid == !a->gid)
                return fail("policy assign: give one of --uid UID or --gid GID");
        if (parse_number_arg("policy assign", a->uid ? "numeric uid" : "numeric gid", a->uid ? a->uid : a->gid,
                             false, &id) || ctl_connect(ctl))
                return 1;
        r = dkm_policy_assign(ctl->client, a->args[0], a->gid != NULL, id);
        if (r < 0)
                return fail_dkm(ctl, r, "policy assign");
        printf("%s %u now encrypts under policy %s by default\n", a->uid ? "uid" : "gid", id, a->args[0]);
        return 0;
}

int verb_policy_rekey(struct ctl *ctl, struct ctl_args *a)
{
        int r;

        if (a->n_customer_keys != 2)
                return fail("policy rekey: give the two new --customer-key URIs");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_rekey(ctl->client, a->args[0], a->customer_keys[0], a->customer_keys[1], a->new_policy_key);
        if (r < 0)
                return fail_dkm(ctl, r, "policy rekey");
        printf("policy %s rekeyed%s\n", a->args[0], a->new_policy_key ? " with a new policy key" : "");
        return 0;
}

int verb_recovery_reshare(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t id;
        int r;

        if (!a->reason)
                return fail("recovery reshare: --reason is required");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_recovery_reshare(ctl->client, a->reason, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "recovery reshare");
        printf("%u\n", id);
        fprintf(stderr, "dkmctl: reshare request %u filed; a new recovery share set is made when approved\n", id);
        return 0;
}

int verb_policy_purge(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t id;
        int r;

        if (!a->reason)
                return fail("policy purge: --reason is required");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_purge(ctl->client, a->args[0], a->reason, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "policy purge");
        printf("%u\n", id);
        fprintf(stderr, "dkmctl: purge request %u filed; policy %s is purged when approved\n", id, a->args[0]);
        return 0;
}
