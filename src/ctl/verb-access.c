/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Elevated access: request, approve, deny, list, revoke; and key destroy,
 * which goes through the same approval. */
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "shared/util.h"

struct access_args {
        const char *reason, *duration, *policy, *scope, *positional;
        bool json;
};

static int parse_access_args(int argc, char **argv, const char *allowed, struct access_args *a)
{
        static const struct option opts[] = {
                { "reason", required_argument, NULL, 'r' },
                { "duration", required_argument, NULL, 'd' },
                { "policy", required_argument, NULL, 'p' },
                { "scope", required_argument, NULL, 's' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        int c;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "-", opts, NULL)) >= 0) {
                if (c != 1 && c != '?' && !strchr(allowed, c))
                        return fail("%s does not take --%s", argv[0], argv[optind - 1] + 2);
                switch (c) {
                case 'r':
                        a->reason = optarg;
                        break;
                case 'd':
                        a->duration = optarg;
                        break;
                case 'p':
                        a->policy = optarg;
                        break;
                case 's':
                        a->scope = optarg;
                        break;
                case 'j':
                        a->json = true;
                        break;
                case 1:
                        a->positional = optarg;
                        break;
                default:
                        return fail("%s: unknown or incomplete option '%s'", argv[0], argv[optind - 1]);
                }
        }
        return 0;
}

int verb_access_request(struct ctl *ctl, int argc, char **argv)
{
        struct access_args a = { 0 };
        uint32_t id;
        int r;

        if (parse_access_args(argc, argv, "rdps", &a))
                return 1;
        if (!a.reason)
                return fail("access request: --reason is required");
        if (!a.duration)
                return fail("access request: --duration is required (e.g. 30m)");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_access_request(ctl->client, a.reason, a.duration, a.scope, a.policy, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "access request");
        printf("%u\n", id);
        return 0;
}

int verb_access_approve(struct ctl *ctl, int argc, char **argv)
{
        struct access_args a = { 0 };
        _cleanup_free_ char *state = NULL;
        uint32_t id;
        int r;

        if (parse_access_args(argc, argv, "", &a) || parse_number_arg("access approve", "request id", a.positional, true, &id) ||
            ctl_connect(ctl))
                return 1;
        r = dkm_access_approve(ctl->client, id, &state);
        if (r < 0)
                return fail_dkm(ctl, r, "access approve");
        printf("request %u: %s\n", id, state);
        return 0;
}

int verb_access_deny(struct ctl *ctl, int argc, char **argv)
{
        struct access_args a = { 0 };
        uint32_t id;
        int r;

        if (parse_access_args(argc, argv, "r", &a) || parse_number_arg("access deny", "request id", a.positional, true, &id) ||
            ctl_connect(ctl))
                return 1;
        r = dkm_access_deny(ctl->client, id, a.reason);
        if (r < 0)
                return fail_dkm(ctl, r, "access deny");
        printf("request %u denied\n", id);
        return 0;
}

int verb_access_revoke(struct ctl *ctl, int argc, char **argv)
{
        struct access_args a = { 0 };
        uint32_t id;
        int r;

        if (parse_access_args(argc, argv, "", &a) || parse_number_arg("access revoke", "request id", a.positional, true, &id) ||
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

int verb_access_list(struct ctl *ctl, int argc, char **argv)
{
        struct access_args a = { 0 };
        _cleanup_free_ char *json = NULL;
        json_object *arr;
        int r;

        if (parse_access_args(argc, argv, "j", &a) || ctl_connect(ctl))
                return 1;
        r = dkm_access_list_json(ctl->client, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "access list");
        if (a.json) {
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

int verb_key_destroy(struct ctl *ctl, int argc, char **argv)
{
        struct access_args a = { 0 };
        uint32_t gen, id;
        int r;

        if (parse_access_args(argc, argv, "rp", &a) ||
            parse_number_arg("key destroy", "generation number", a.positional, true, &gen))
                return 1;
        if (!a.reason)
                return fail("key destroy: --reason is required");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_key_destroy(ctl->client, a.policy, gen, a.reason, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "key destroy");
        printf("%u\n", id);
        fprintf(stderr, "dkmctl: destroy request %u filed; generation %u is destroyed when approved\n",
                id, gen);
        return 0;
}
