/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* policy create|list|show|assign|rekey|purge */
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "shared/util.h"

struct policy_args {
        const char *name, *keys[3], *reason;
        size_t n_keys;
        const char *uid, *gid;
        bool json, new_policy_key;
};

static int parse_policy_args(int argc, char **argv, const char *allowed, struct policy_args *a)
{
        static const struct option opts[] = {
                { "customer-key", required_argument, NULL, 'k' },
                { "uid", required_argument, NULL, 'u' },
                { "gid", required_argument, NULL, 'g' },
                { "reason", required_argument, NULL, 'r' },
                { "new-policy-key", no_argument, NULL, 'n' },
                { "json", no_argument, NULL, 'j' },
                {},
        };
        int c;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "-", opts, NULL)) >= 0) {
                if (c != 1 && c != '?' && !strchr(allowed, c))
                        return fail("%s does not take %s", argv[0], argv[optind - 1]);
                switch (c) {
                case 'k':
                        if (a->n_keys == 2)
                                return fail("give exactly two --customer-key options");
                        a->keys[a->n_keys++] = optarg;
                        break;
                case 'u':
                        a->uid = optarg;
                        break;
                case 'g':
                        a->gid = optarg;
                        break;
                case 'r':
                        a->reason = optarg;
                        break;
                case 'n':
                        a->new_policy_key = true;
                        break;
                case 'j':
                        a->json = true;
                        break;
                case 1:
                        a->name = optarg;
                        break;
                default:
                        return fail("%s: unknown or incomplete option '%s'", argv[0], argv[optind - 1]);
                }
        }
        if (a->n_keys == 1)
                return fail("give exactly two --customer-key options (or none for a service-managed policy)");
        return 0;
}

int verb_policy_create(struct ctl *ctl, int argc, char **argv)
{
        struct policy_args a = { 0 };
        int r;

        if (parse_policy_args(argc, argv, "k", &a) || ctl_connect(ctl))
                return 1;
        r = dkm_policy_create(ctl->client, a.name, a.keys[0], a.keys[1]);
        if (r < 0)
                return fail_dkm(ctl, r, "policy create");
        printf("policy %s created (%s-managed)\n", a.name, a.n_keys ? "customer" : "service");
        return 0;
}

int verb_policy_list(struct ctl *ctl, int argc, char **argv)
{
        struct policy_args a = { 0 };
        _cleanup_free_ char *json = NULL;
        json_object *arr;
        int r;

        if (parse_policy_args(argc, argv, "j", &a) || ctl_connect(ctl))
                return 1;
        r = dkm_policy_list_json(ctl->client, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "policy list");
        if (a.json) {
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

int verb_policy_show(struct ctl *ctl, int argc, char **argv)
{
        struct policy_args a = { 0 };
        _cleanup_free_ char *json = NULL;
        int r;

        if (parse_policy_args(argc, argv, "j", &a) || ctl_connect(ctl))
                return 1;
        r = dkm_policy_show_json(ctl->client, a.name, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "policy show");
        /* The detail is nested; JSON is its readable form either way. */
        print_json(json);
        return 0;
}

int verb_policy_assign(struct ctl *ctl, int argc, char **argv)
{
        struct policy_args a = { 0 };
        uint32_t id = 0;
        int r;

        if (parse_policy_args(argc, argv, "ug", &a))
                return 1;
        if (!a.uid == !a.gid)
                return fail("policy assign: give one of --uid UID or --gid GID");
        if (parse_number_arg("policy assign", a.uid ? "numeric uid" : "numeric gid", a.uid ? a.uid : a.gid,
                             false, &id) || ctl_connect(ctl))
                return 1;
        r = dkm_policy_assign(ctl->client, a.name, a.gid != NULL, id);
        if (r < 0)
                return fail_dkm(ctl, r, "policy assign");
        printf("%s %u now encrypts under policy %s by default\n", a.uid ? "uid" : "gid", id, a.name);
        return 0;
}

int verb_policy_rekey(struct ctl *ctl, int argc, char **argv)
{
        struct policy_args a = { 0 };
        int r;

        if (parse_policy_args(argc, argv, "kn", &a))
                return 1;
        if (a.n_keys != 2)
                return fail("policy rekey: give the two new --customer-key URIs");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_rekey(ctl->client, a.name, a.keys[0], a.keys[1], a.new_policy_key);
        if (r < 0)
                return fail_dkm(ctl, r, "policy rekey");
        printf("policy %s rekeyed%s\n", a.name, a.new_policy_key ? " with a new policy key" : "");
        return 0;
}

int verb_policy_purge(struct ctl *ctl, int argc, char **argv)
{
        struct policy_args a = { 0 };
        uint32_t id;
        int r;

        if (parse_policy_args(argc, argv, "r", &a))
                return 1;
        if (!a.reason)
                return fail("policy purge: --reason is required");
        if (ctl_connect(ctl))
                return 1;
        r = dkm_policy_purge(ctl->client, a.name, a.reason, &id);
        if (r < 0)
                return fail_dkm(ctl, r, "policy purge");
        printf("%u\n", id);
        fprintf(stderr, "dkmctl: purge request %u filed; policy %s is purged when approved\n", id, a.name);
        return 0;
}
