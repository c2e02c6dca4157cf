/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Elevated access: request, approve, deny, list, revoke; and key destroy,
 * which goes through the same approval. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "shared/util.h"

int verb_access_request(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t id;
        int r;

        if (!a->reason)
                return fail("access request: --reason is required");
        if (!a->duration)
                return fail("access request: --duration is required (e.g. 30m)");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_access_request(ctl->client, a->reason, a->duration, a->scope, a->policy, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "access request");
        printf("%u\n", id);
        return 0;
}

int verb_access_approve(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *state = NULL;
        uint32_t id;
        int r;

        if (parse_number_arg("access approve", "request id", a->args[0], true, &id) ||
            ctl_connect(ctl))
                return 1;
        r = dkm_access_approve(ctl->client, id, &state);
        if (r < 0)
                return fail_dkm(ctl, r, "access approve");
        printf("request %u: %s\n", id, state);
        return 0;
}

int verb_access_deny(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t id;
        int r;

        if (parse_number_arg("access deny", "request id", a->args[0], true, &id) ||
            ctl_connect(ctl))
                return 1;
        r = dkm_access_deny(ctl->client, id, a->reason);
        if (r < 0)
                return fail_dkm(ctl, r, "access deny");
        printf("request %u denied\n", id);
        return 0;
}

int verb_access_revoke(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t id;
        int r;

        if (parse_number_arg("access revoke", "request id", a->args[0], true, &id) ||
            ctl_connect(ctl))
                return 1;
        r = dkm_access_revoke(ctl->client, id);
        if (r < 0)
                return fail_dkm(ctl, r, "access revoke");
        printf("request %u revoked\n", id);
        return 0;
}

static const char *field(json_object *o, const char *key, char *buf, size_t size)
{
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return "-";
        snprintf(buf, size, "%s", json_object_get_string(v));
        return buf;
}

int verb_access_list(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        json_object *arr;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_access_list_json(ctl->client, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "access list");
        if (a->json) {
                print_json(json);
                return 0;
        }
        arr = json_tokener_parse(json);
        if (!arr || !json_object_is_type(arr, json_type_array))
                return fail("access list: malformed reply from dkmd");
        printf("%-5s %-8s %-7s %-8s %-10s %-12s %-9s %s\n", "ID", "STATE", "UID", "SCOPE", "POLICY",
               "APPROVERS", "LEFT", "REASON");
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *o = json_object_array_get_idx(arr, i), *v;
                char b[8][128], appr[128] = "";

                if (json_object_object_get_ex(o, "approvers", &v))
                        for (size_t j = 0; j < json_object_array_length(v); j++)
                                snprintf(appr + strlen(appr), sizeof(appr) - strlen(appr), "%s%s",
                                         j ? "," : "", json_object_get_string(json_object_array_get_idx(v, j)));
                printf("%-5s %-8s %-7s %-8s %-10s %-12s %-9s %s\n", field(o, "id", b[0], 128),
                       field(o, "state", b[1], 128), field(o, "requester", b[2], 128),
                       field(o, "scope", b[3], 128), field(o, "policy", b[4], 128),
                       appr[0] ? appr : "-", field(o, "remaining_seconds", b[5], 128),
                       field(o, "reason", b[6], 128));
        }
        json_object_put(arr);
        return 0;
}

int verb_key_destroy(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t gen, id;
        int r;

        if (parse_number_arg("key destroy", "generation number", a->args[0], true, &gen))
                return 1;
        if (!a->reason)
                return fail("key destroy: --reason is required");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_key_destroy(ctl->client, a->policy, gen, a->reason, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "key destroy");
        printf("%u\n", id);
        fprintf(stderr, "dkmctl: destroy request %u filed; generation %u is destroyed when approved\n",
                id, gen);
        return 0;
}
