/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dkmctl: the command line of every dkm role, as a table of verbs. */
#include <fcntl.h>
#include <json-c/json.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

int fail(const char *fmt, ...)
{
        va_list ap;

        fputs("dkmctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

int fail_dkm(struct ctl *ctl, int r, const char *what)
{
        const char *msg = ctl->client ? dkm_last_error(ctl->client) : "";

        return fail("%s: %s", what, msg && *msg ? msg : strerror(-r));
}

int parse_number_arg(const char *verb, const char *what, const char *s, bool nonzero, uint32_t *ret)
{
        unsigned long v;
        char *end;

        if (!s)
                return fail("%s: which %s?", verb, what);
        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || *end || end == s || v > UINT32_MAX || (nonzero && v == 0) || s[0] == '-' ||
            s[0] == '+' || s[0] == ' ')
                return fail("%s: '%s' is not a %s", verb, s, what);
        *ret = (uint32_t)v;
        return 0;
}

int ctl_connect(struct ctl *ctl)
{
        int r = dkm_connect(ctl->socket, &ctl->client);

        if (r < 0) {
                const char *path = ctl->socket ? ctl->socket : getenv("DKM_SOCKET");
                return fail("cannot connect to dkmd at %s: %s", path ? path : "/run/dkm/dkmd.sock",
                            strerror(-r));
        }
        return 0;
}

int read_input(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        uint8_t *buf;
        size_t len = 0, cap = 65536;

        if (!path || strcmp(path, "-") == 0)
                fd = dup(STDIN_FILENO);
        else
                fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return fail("cannot open %s: %s", path, strerror(errno));
        buf = malloc(cap);
        if (!buf)
                return fail("out of memory");
        for (;;) {
                ssize_t n;

                if (len == cap) {
                        uint8_t *nb;
                        if (cap > max) {
                                dkm_free_secret(buf, cap);
                                return fail("input larger than %zu bytes", max);
                        }
                        nb = malloc(cap * 2);
                        if (!nb) {
                                dkm_free_secret(buf, cap);
                                return fail("out of memory");
                        }
                        memcpy(nb, buf, len);
                        dkm_free_secret(buf, cap);
                        buf = nb;
                        cap *= 2;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        dkm_free_secret(buf, cap);
                        return fail("cannot read %s: %s", path ? path : "standard input", strerror(e));
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > max) {
                dkm_free_secret(buf, cap);
                return fail("input larger than %zu bytes", max);
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

int output_open(struct output *o, const char *path, bool secret)
{
        _cleanup_free_ char *dir = NULL;
        struct stat st;

        *o = (struct output){ .path = path, .fd = STDOUT_FILENO };
        if (!path || strcmp(path, "-") == 0)
                return 0;
        if (secret && stat(path, &st) == 0 && (st.st_mode & 0004))
                fprintf(stderr, "dkmctl: warning: %s was world-readable; replacing it with mode 0600\n",
                        path);
        dir = strdup(path);
        if (!dir || asprintf(&o->tmp, "%s/.dkmctl.XXXXXX", dirname(dir)) < 0)
                return fail("out of memory");
        /* mkostemp creates the file 0600: plaintext never sits world-readable. */
        o->fd = mkostemp(o->tmp, O_CLOEXEC);
        if (o->fd < 0) {
                free(o->tmp);
                o->tmp = NULL;
                return fail("cannot create a file next to %s: %s", path, strerror(errno));
        }
        return 0;
}

int output_close(struct output *o, bool ok)
{
        int r = 0;

        if (!o->tmp)
                return 0;
        if (ok && fsync(o->fd) < 0)
                r = fail("cannot write %s: %s", o->path, strerror(errno));
        close(o->fd);
        if (ok && r == 0 && rename(o->tmp, o->path) < 0)
                r = fail("cannot write %s: %s", o->path, strerror(errno));
        if (!ok || r)
                unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        return r;
}

int write_output(const char *path, const uint8_t *buf, size_t len, bool secret)
{
        struct output o;
        int r;

        if (output_open(&o, path, secret))
                return 1;
        r = write_all(o.fd, buf, len);
        if (r < 0) {
                output_close(&o, false);
                return fail("cannot write %s: %s", path ? path : "standard output", strerror(-r));
        }
        return output_close(&o, true);
}

void print_json(const char *json)
{
        json_object *o = json_tokener_parse(json);

        if (!o) {
                puts(json);
                return;
        }
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

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
