/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dkmctl: the command line of every dkm role, as a table of verbs. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "shared/util.h"
#include "shared/wire.h"

static const struct verb verbs[] = {
        { "status", 0, 0, "j", verb_status, "status [--json]" },
        { "encrypt", 0, 0, "iopc", verb_encrypt,
          "encrypt [--in FILE] [--out FILE] [--policy NAME] [--context KEY=VALUE]..." },
        { "decrypt", 0, 0, "ioc", verb_decrypt, "decrypt [--in FILE] [--out FILE] [--context KEY=VALUE]..." },
        { "rewrap", 0, 0, "ioc", verb_rewrap, "rewrap [--in FILE] [--out FILE] [--context KEY=VALUE]..." },
        { "inspect", 0, 0, "ij", verb_inspect, "inspect [--in FILE] [--json]" },
        { "datakey", 0, 0, "opcK", verb_datakey,
          "datakey --out WRAPPED [--key-out FILE] [--policy NAME] [--context KEY=VALUE]..." },
        { "key list", 0, 0, "pj", verb_key_list, "key list [--policy NAME] [--json]" },
        { "key rotate", 0, 0, "p", verb_key_rotate, "key rotate [--policy NAME]" },
        { "key retire", 1, 1, "p", verb_key_retire, "key retire GENERATION [--policy NAME]" },
        { "key destroy", 1, 1, "rp", verb_key_destroy,
          "key destroy GENERATION --reason TEXT [--policy NAME]   (needs approval)" },
        { "access request", 0, 0, "rdps", verb_access_request,
          "access request --reason TEXT --duration DUR [--policy NAME] [--scope decrypt|inspect]" },
        { "access approve", 1, 1, "", verb_access_approve, "access approve ID" },
        { "access deny", 1, 1, "r", verb_access_deny, "access deny ID [--reason TEXT]" },
        { "access list", 0, 0, "j", verb_access_list, "access list [--json]" },
        { "access revoke", 1, 1, "", verb_access_revoke, "access revoke ID" },
        { "policy create", 1, 1, "k", verb_policy_create,
          "policy create NAME [--customer-key URI --customer-key URI]" },
        { "policy list", 0, 0, "j", verb_policy_list, "policy list [--json]" },
        { "policy show", 1, 1, "j", verb_policy_show, "policy show NAME [--json]" },
        { "policy assign", 1, 1, "ug", verb_policy_assign, "policy assign NAME --uid UID|--gid GID" },
        { "policy rekey", 1, 1, "kn", verb_policy_rekey,
          "policy rekey NAME --customer-key URI --customer-key URI [--new-policy-key]" },
        { "policy purge", 1, 1, "r", verb_policy_purge, "policy purge NAME --reason TEXT   (needs approval)" },
        { "backup", 0, 0, "oj", verb_backup, "backup --out FILE [--json]" },
        { "store verify", 0, 0, "j", verb_store_verify, "store verify [--json]" },
        { "recovery reshare", 0, 0, "r", verb_recovery_reshare,
          "recovery reshare --reason TEXT   (needs approval)" },
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: dkmctl [--socket PATH] VERB [ARGS]\n\nVerbs:\n");
        for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
                fprintf(f, "  %s\n", verbs[i].usage);
        fprintf(f, "\nThe socket defaults to $DKM_SOCKET, then /run/dkm/dkmd.sock.\n");
}

/* For the bash completion (completion/dkmctl.bash), so that it never
 * drifts from this table: "VERB<TAB>OPTIONS" per line. */
static void list_verbs(void)
{
        for (size_t i = 0; i < ARRAY_SIZE(verbs); i++) {
                printf("%s\t", verbs[i].name);
                ctl_print_options(&verbs[i], stdout);
                putchar('\n');
        }
}

int main(int argc, char **argv)
{
        struct ctl ctl = { 0 };
        const struct verb *verb = NULL;
        struct ctl_args args;
        int i = 1, words = 0, r;

        /* A reader that goes away must not kill dkmctl mid-write. */
        signal(SIGPIPE, SIG_IGN);

        while (i < argc && argv[i][0] == '-') {
                if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
                        ctl.socket = argv[i + 1];
                        i += 2;
                } else if (strncmp(argv[i], "--socket=", 9) == 0) {
                        ctl.socket = argv[i++] + 9;
                } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                        usage(stdout);
                        return 0;
                } else if (strcmp(argv[i], "--version") == 0) {
                        puts("dkmctl " DKM_VERSION);
                        return 0;
                } else if (strcmp(argv[i], "--list-verbs") == 0) {
                        list_verbs();
                        return 0;
                } else
                        return fail("unknown option '%s' (see dkmctl --help)", argv[i]);
        }
        if (i >= argc) {
                usage(stderr);
                return 1;
        }
        for (size_t v = 0; v < ARRAY_SIZE(verbs); v++) {
                const char *name = verbs[v].name, *sp = strchr(name, ' ');

                if (!sp && strcmp(argv[i], name) == 0) {
                        verb = &verbs[v];
                        words = 1;
                } else if (sp && strncmp(argv[i], name, (size_t)(sp - name)) == 0 &&
                           argv[i][sp - name] == 0 && i + 1 < argc && strcmp(argv[i + 1], sp + 1) == 0) {
                        verb = &verbs[v];
                        words = 2;
                }
        }
        if (!verb) {
                if (strcmp(argv[i], "key") == 0)
                        return fail("'key' needs one of: list, rotate, retire, destroy");
                if (strcmp(argv[i], "policy") == 0)
                        return fail("'policy' needs one of: create, list, show, assign, rekey, purge");
                if (strcmp(argv[i], "access") == 0)
                        return fail("'access' needs one of: request, approve, deny, list, revoke");
                if (strcmp(argv[i], "recovery") == 0)
                        return fail("'recovery' needs: reshare");
                return fail("unknown verb '%s' (see dkmctl --help)", argv[i]);
        }
        if (ctl_parse_args(verb, argc - i - words + 1, argv + i + words - 1, &args))
                return 1;
        r = verb->run(&ctl, &args);
        dkm_disconnect(ctl.client);
        return r;
}
