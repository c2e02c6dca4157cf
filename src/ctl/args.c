/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every verb's options, parsed once against the verb table's list of what
 * each verb takes. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "shared/util.h"

static const struct option options[] = {
        { "in", required_argument, NULL, 'i' },
        { "out", required_argument, NULL, 'o' },
        { "key-out", required_argument, NULL, 'K' },
        { "policy", required_argument, NULL, 'p' },
        { "context", required_argument, NULL, 'c' },
        { "json", no_argument, NULL, 'j' },
        { "reason", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "scope", required_argument, NULL, 's' },
        { "customer-key", required_argument, NULL, 'k' },
        { "new-policy-key", no_argument, NULL, 'n' },
        { "uid", required_argument, NULL, 'u' },
        { "gid", required_argument, NULL, 'g' },
        {},
};

static const char *option_name(int c)
{
        for (const struct option *o = options; o->name; o++)
                if (o->val == c)
                        return o->name;
        return "?";
}

void ctl_print_options(const struct verb *v, FILE *f)
{
        const char *sep = "";

        for (const struct option *o = options; o->name; o++)
                if (strchr(v->options, o->val)) {
                        fprintf(f, "%s--%s%s", sep, o->name, o->has_arg ? "=" : "");
                        sep = " ";
                }
}

static int not_taken(const struct verb *v, int c)
{
        /* The verbs that read a ciphertext take --in but never --policy. */
        if (c == 'p' && strchr(v->options, 'i'))
                return fail("%s takes no --policy: the ciphertext names its policy", v->name);
        if (c == 'j')
                return fail("%s has no --json output", v->name);
        return fail("%s takes no --%s (usage: dkmctl %s)", v->name, option_name(c), v->usage);
}

static int add_context(struct ctl_args *a, char *pair)
{
        char *eq = strchr(pair, '=');

        if (!eq || eq == pair)
                return fail("bad --context '%s': expected KEY=VALUE", pair);
        if (a->n_ctx == CONTEXT_MAX_PAIRS)
                return fail("too many --context pairs (at most %d)", CONTEXT_MAX_PAIRS);
        *eq = 0;
        a->ctx[a->n_ctx].key = pair;
        a->ctx[a->n_ctx++].value = eq + 1;
        return 0;
}

int ctl_parse_args(const struct verb *v, int argc, char **argv, struct ctl_args *a)
{
        int c;

        *a = (struct ctl_args){ .verb = v->name };
        optind = 0;
        opterr = 0;
        /* "-": positional arguments come back in order, as code 1. */
        while ((c = getopt_long(argc, argv, "-", options, NULL)) >= 0) {
                if (c == '?' || c == ':')
                        return fail("%s: unknown or incomplete option '%s'", v->name, argv[optind - 1]);
                if (c != 1 && !strchr(v->options, c))
                        return not_taken(v, c);
                switch (c) {
                case 1:
                        if (a->n_args == (size_t)v->max_args)
                                return fail("%s: unexpected argument '%s' (usage: dkmctl %s)", v->name,
                                            optarg, v->usage);
                        a->args[a->n_args++] = optarg;
                        break;
                case 'i': a->in = optarg; break;
                case 'o': a->out = optarg; break;
                case 'K': a->key_out = optarg; break;
                case 'p': a->policy = optarg; break;
                case 'j': a->json = true; break;
                case 'r': a->reason = optarg; break;
                case 'd': a->duration = optarg; break;
                case 's': a->scope = optarg; break;
                case 'n': a->new_policy_key = true; break;
                case 'u': a->uid = optarg; break;
                case 'g': a->gid = optarg; break;
                case 'c':
                        if (add_context(a, optarg))
                                return 1;
                        break;
                case 'k':
                        if (a->n_customer_keys == ARRAY_SIZE(a->customer_keys))
                                return fail("give exactly two --customer-key options");
                        a->customer_keys[a->n_customer_keys++] = optarg;
                        break;
                }
        }
        if (a->n_args < (size_t)v->min_args)
                return fail("%s: missing argument (usage: dkmctl %s)", v->name, v->usage);
        if (a->n_customer_keys == 1)
                return fail("give exactly two --customer-key options (or none for a service-managed policy)");
        return 0;
}
