/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* status and key administration. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "shared/util.h"

static const char *str(json_object *o, const char *key)
{
        json_object *v;

        if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
                return json_object_get_string(v);
        return "-";
}

static int64_t num(json_object *o, const char *key)
{
        json_object *v;

        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

int verb_status(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        json_object *o, *pols, *st, *nodes;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_status_json(ctl->client, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "status");
        if (a->json) {
                print_json(json);
                return 0;
        }
        o = json_tokener_parse(json);
        if (!o)
                return fail("status: malformed reply from dkmd");
        printf("dkmd %s, up %" PRId64 " s\n", str(o, "version"), num(o, "uptime_seconds"));
        printf("engine:  %s (gcm(aes) by %s)\n", str(o, "engine"), str(o, "driver"));
        printf("         %s\n", str(o, "engine_reason"));
        printf("custody: %s\n", str(o, "custody"));
        printf("store:   %s in %s\n", str(o, "store"), str(o, "state_dir"));
        if (json_object_object_get_ex(o, "store_state", &st)) {
                json_object *avail;

                printf("         revision %" PRId64 " applied, watch %s", num(st, "applied_revision"),
                       str(st, "watch"));
                if (strcmp(str(st, "watch"), "streaming") == 0)
                        printf(" after revision %" PRId64, num(st, "watch_from_revision"));
                else if (strcmp(str(st, "watch_error"), "-") != 0)
                        printf(": %s", str(st, "watch_error"));
                if (json_object_object_get_ex(st, "watch_restarts", &avail))
                        printf(" (restarts %" PRId64 ", full reloads %" PRId64 ")", num(st, "watch_restarts"),
                               num(st, "full_reloads"));
                printf("\n");
                if (json_object_object_get_ex(st, "available", &avail) && !json_object_get_boolean(avail))
                        printf("DEGRADED: %s; encrypt and decrypt from cached keys, changes refused\n",
                               str(st, "error"));
        }
        if (json_object_object_get_ex(o, "nodes", &nodes) && json_object_is_type(nodes, json_type_array))
                for (size_t i = 0; i < json_object_array_length(nodes); i++) {
                        json_object *nd = json_object_array_get_idx(nodes, i), *self;
                        bool me = json_object_object_get_ex(nd, "self", &self) &&
                                  json_object_get_boolean(self);

                        printf("%s %-20s revision %" PRId64 ", heartbeat %" PRId64 " s ago, %s, dkm %s%s\n",
                               i ? "        " : "nodes:  ", str(nd, "name"), num(nd, "applied_revision"),
                               num(nd, "heartbeat_age_seconds"), str(nd, "engine"), str(nd, "version"),
                               me ? " (this node)" : "");
                }
        if (json_object_object_get_ex(o, "nodes_error", &nodes)) {
                time_t t = (time_t)num(o, "nodes_as_of");
                char when[32] = "never";

                if (t > 0)
                        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
                printf("         (as read at %s; now %s)\n", when, json_object_get_string(nodes));
        }
        if (json_object_object_get_ex(o, "policies", &pols))
                for (size_t i = 0; i < json_object_array_length(pols); i++) {
                        json_object *p = json_object_array_get_idx(pols, i);
                        printf("policy:  %s, generation %" PRId64 " active of %" PRId64 "\n",
                               str(p, "name"), num(p, "active_generation"), num(p, "generations"));
                }
        if (strcmp(str(o, "alert"), "-") != 0)
                printf("ALERT:   %s\n", str(o, "alert"));
        json_object_put(o);
        return 0;
}

int verb_key_list(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        json_object *arr;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_key_list_json(ctl->client, a->policy, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "key list");
        if (a->json) {
                print_json(json);
                return 0;
        }
        arr = json_tokener_parse(json);
        if (!arr || !json_object_is_type(arr, json_type_array))
                return fail("key list: malformed reply from dkmd");
        printf("%-16s %5s  %-9s %-20s %12s\n", "POLICY", "GEN", "STATE", "CREATED", "USES");
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
                json_object *g = json_object_array_get_idx(arr, i);
                time_t t = (time_t)num(g, "created");
                char when[32];

                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
                printf("%-16s %5" PRId64 "  %-9s %-20s %12" PRId64 "\n", str(g, "policy"),
                       num(g, "generation"), str(g, "state"), when, num(g, "uses"));
        }
        json_object_put(arr);
        return 0;
}

int verb_key_rotate(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t gen;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_key_rotate(ctl->client, a->policy, &gen);
        if (r < 0)
                return fail_dkm(ctl, r, "key rotate");
        printf("generation %u is now active\n", gen);
        return 0;
}

int verb_key_retire(struct ctl *ctl, struct ctl_args *a)
{
        uint32_t gen;
        int r;

        if (parse_number_arg("key retire", "generation number", a->args[0], true, &gen))
                return 1;
        if (ctl_connect(ctl))
                return 1;
        r = dkm_key_retire(ctl->client, a->policy, gen);
        if (r < 0)
                return fail_dkm(ctl, r, "key retire");
        printf("generation %u retired\n", gen);
        return 0;
}

int verb_backup(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        struct output o;
        json_object *j;
        int r;

        if (!a->out || strcmp(a->out, "-") == 0)
                return fail("backup: --out FILE is required (the backup is written there, mode 0600)");
        if (ctl_connect(ctl))
                return 1;
        if (output_open(&o, a->out, true))
                return 1;
        r = dkm_backup_fd(ctl->client, o.fd, &json);
        if (output_close(&o, r >= 0))
                return 1;
        if (r < 0)
                return fail_dkm(ctl, r, "backup");
        if (a->json) {
                print_json(json);
                return 0;
        }
        j = json_tokener_parse(json);
        if (!j)
                return fail("backup: malformed reply from dkmd");
        printf("backup written to %s: %" PRId64 " records at store revision %" PRId64 ", %" PRId64 " bytes\n",
               a->out, num(j, "records"), num(j, "revision"), num(j, "bytes"));
        if (num(j, "left_out") > 0)
                fprintf(stderr, "dkmctl: warning: %" PRId64 " store records whose authentication does not "
                        "hold were left out (dkmd's journal names them)\n", num(j, "left_out"));
        json_object_put(j);
        return 0;
}

int verb_store_verify(struct ctl *ctl, struct ctl_args *a)
{
        _cleanup_free_ char *json = NULL;
        json_object *o, *pols;
        int64_t failed;
        int r;

        if (ctl_connect(ctl))
                return 1;
        r = dkm_store_verify_json(ctl->client, &json);
        if (r < 0)
                return fail_dkm(ctl, r, "store verify");
        o = json_tokener_parse(json);
        if (!o)
                return fail("store verify: malformed reply from dkmd");
        failed = num(o, "failed");
        if (a->json)
                print_json(json);
        else if (json_object_object_get_ex(o, "policies", &pols))
                for (size_t i = 0; i < json_object_array_length(pols); i++) {
                        json_object *p = json_object_array_get_idx(pols, i), *f, *v;

                        if (json_object_object_get_ex(p, "purged", &v) && json_object_get_boolean(v)) {
                                printf("policy %s: purged, nothing to check\n", str(p, "name"));
                                continue;
                        }
                        printf("policy %s: %" PRId64 " generations checked, %" PRId64 " destroyed, %s\n",
                               str(p, "name"), num(p, "checked"), num(p, "destroyed"),
                               json_object_object_get_ex(p, "ok", &v) && json_object_get_boolean(v) ? "ok" :
                                                                                                    "FAILED");
                        if (strcmp(str(p, "error"), "-") != 0)
                                printf("  %s\n", str(p, "error"));
                        if (json_object_object_get_ex(p, "failed", &f))
                                for (size_t j = 0; j < json_object_array_length(f); j++) {
                                        json_object *e = json_object_array_get_idx(f, j);
                                        printf("  generation %" PRId64 ": %s\n", num(e, "generation"),
                                               str(e, "error"));
                                }
                        if (json_object_object_get_ex(p, "missing", &f))
                                for (size_t j = 0; j < json_object_array_length(f); j++)
                                        printf("  generation %" PRId64 ": its record is missing\n",
                                               json_object_get_int64(json_object_array_get_idx(f, j)));
                }
        json_object_put(o);
        if (failed)
                return fail("store verify: %" PRId64 " failure%s", failed, failed == 1 ? "" : "s");
        return 0;
}
