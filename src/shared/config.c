/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dkmd.conf through inih.  inih is lenient where dkmd must not be, so:
 *  - lines are fed to ini_parse_stream() by our own reader, which counts
 *    them (inih v55 as packaged is built without line numbers for the
 *    handler), refuses a line longer than inih's buffer instead of letting
 *    inih split it into two, and stops at the first error;
 *  - section lines are checked in the reader too, so that an unknown
 *    section is an error even when it holds no keys;
 *  - an indented line after a key is taken by inih as a continuation of
 *    that key's value: refused here, it is almost always a mistake;
 *  - every key is known, set at most once, and checked for range.
 * The result is written to the caller only when the whole file is good.
 *
 * Groups: config_init_defaults() cannot fail, so a default group that does
 * not exist is recorded as (gid_t)-1; config_load() and
 * config_parse_string() then fail naming it unless the file set that key.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "duration.h"
#include "util.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_DAY (86400 * USEC_PER_SEC)
#define CONFIG_FILE_MAX (1024 * 1024)
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

static const char *const default_groups[3] = { "dkm-users", "dkm-operators", "dkm-approvers" };
/* May be missing: then only dkmd itself manages grants with keyctl. */
#define DEFAULT_REVIEWERS "dkm-reviewers"

enum key_kind { K_PATH, K_SOCKET, K_ENGINE, K_GROUP, K_DURATION, K_UINT, K_U64, K_BACKEND,
                K_OPTPATH, K_STRING, K_BOOL, K_MASTERKEY, K_NODENAME, K_MODULES, K_DIRS, K_THREADS };

#define CREDENTIAL_PREFIX "credential:"
#define CREDENTIAL_NAME_MAX 255

struct key_def {
        const char *section, *name;
        enum key_kind kind;
        size_t offset;
        uint64_t min, max; /* K_DURATION: usec; K_UINT: value */
};

#define F(field) offsetof(struct dkm_config, field)
static const struct key_def keys[] = {
        { "daemon", "socket", K_SOCKET, F(socket), 0, 0 },
        { "daemon", "state_dir", K_PATH, F(state_dir), 0, 0 },
        { "daemon", "engine", K_ENGINE, F(engine), 0, 0 },
        { "daemon", "master_key", K_MASTERKEY, F(master_key), 0, 0 },
        /* Limits on what one peer may hold (server.c): none can be turned
         * off, nor set so high that one uid takes every connection. */
        { "daemon", "max_connections_per_uid", K_UINT, F(max_connections_per_uid), 1, 256 },
        { "daemon", "read_timeout", K_DURATION, F(read_timeout_usec), USEC_PER_SEC, 300 * USEC_PER_SEC },
        { "daemon", "idle_timeout", K_DURATION, F(idle_timeout_usec), USEC_PER_SEC, USEC_PER_DAY },
        { "daemon", "stream_timeout", K_DURATION, F(stream_timeout_usec), USEC_PER_SEC,
          3600 * USEC_PER_SEC },
        /* Threads that seal or open one stream; more than 64 only adds
         * buffers (and RSS) without a core to run them. */
        { "daemon", "stream_threads", K_THREADS, F(stream_threads), 1, CONFIG_STREAM_THREADS_MAX },
        { "groups", "users", K_GROUP, F(users_gid), 0, 0 },
        { "groups", "operators", K_GROUP, F(operators_gid), 0, 0 },
        { "groups", "approvers", K_GROUP, F(approvers_gid), 0, 0 },
        { "groups", "reviewers", K_GROUP, F(reviewers_gid), 0, 0 },
        { "rotation", "max_age", K_DURATION, F(max_age_usec), USEC_PER_SEC, 3650 * USEC_PER_DAY },
        /* GCM with random nonces: stay at or below 2^32 uses per key. */
        { "rotation", "max_uses", K_U64, F(max_uses), 1, UINT64_C(1) << 32 },
        /* More than a request can record could never be met. */
        { "access", "approvals_required", K_UINT, F(approvals_required), 1, CONFIG_APPROVALS_MAX },
        { "access", "max_duration", K_DURATION, F(max_duration_usec), USEC_PER_SEC,
          365 * USEC_PER_DAY },
        { "access", "request_ttl", K_DURATION, F(request_ttl_usec), USEC_PER_SEC,
          365 * USEC_PER_DAY },
        /* DESIGN.md: at most 50 data-encryption policies. */
        { "policy", "max_policies", K_UINT, F(max_policies), 1, 50 },
        { "policy", "hedge_delay", K_DURATION, F(hedge_delay_usec), 0, 60 * USEC_PER_SEC },
        /* The keyring timeout is in whole seconds. */
        { "policy", "cache_ttl", K_DURATION, F(cache_ttl_usec), USEC_PER_SEC, 365 * USEC_PER_DAY },
        { "policy", "pkcs11_modules", K_MODULES, F(pkcs11_modules), 0, 0 },
        { "policy", "key_dirs", K_DIRS, F(key_dirs), 0, 0 },
        { "store", "backend", K_BACKEND, F(store_backend), 0, 0 },
        { "store", "endpoints", K_STRING, F(store_endpoints), 0, 0 },
        { "store", "cacert", K_OPTPATH, F(store_cacert), 0, 0 },
        { "store", "cert", K_OPTPATH, F(store_cert), 0, 0 },
        { "store", "key", K_OPTPATH, F(store_key), 0, 0 },
        { "store", "prefix", K_STRING, F(store_prefix), 0, 0 },
        { "store", "node_name", K_NODENAME, F(node_name), 0, 0 },
        /* etcd's shortest lease is about 2 s; a node missing for longer
         * than an hour is better called gone. */
        { "store", "node_ttl", K_DURATION, F(node_ttl_usec), 2 * USEC_PER_SEC, 3600 * USEC_PER_SEC },
        /* etcd over plain http: anyone on the path reads and writes the
         * store; only on the administrator's say-so. */
        { "store", "insecure", K_BOOL, F(store_insecure), 0, 0 },
        { "audit", "fail_closed", K_BOOL, F(audit_fail_closed), 0, 0 },
        /* Shamir over GF(256) (libgfshare) numbers shares 1..255; more than
         * 16 custodians is a list nobody can keep, and one share alone must
         * never rebuild the key (threshold >= 2, checked in finish()). */
        { "recovery", "shares", K_UINT, F(recovery_shares), 2, CONFIG_RECOVERY_SHARES_MAX },
        { "recovery", "threshold", K_UINT, F(recovery_threshold), 2, CONFIG_RECOVERY_SHARES_MAX },
        { "recovery", "custodians", K_OPTPATH, F(recovery_custodians), 0, 0 },
        { "recovery", "out_dir", K_OPTPATH, F(recovery_out_dir), 0, 0 },
};
#undef F

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

struct parser {
        const char *name; /* file name for messages */
        const char *pos;  /* reader position in the text */
        int line;
        int err_line;     /* line of the message in err, 0 = none or global */
        bool indented;    /* current line starts with blank space */
        bool failed;
        int seen[N_KEYS]; /* line where each key was set, 0 = not yet */
        struct dkm_config cfg;
        char *err;
        size_t err_size;
};

static void set_err(struct parser *p, int line, const char *fmt, ...) _printf_(3, 4);
static void set_err(struct parser *p, int line, const char *fmt, ...)
{
        va_list ap;
        int n = 0;

        if (p->failed)
                return; /* the first error is the one to fix */
        p->failed = true;
        p->err_line = line;
        if (!p->err || !p->err_size)
                return;
        if (line > 0)
                n = snprintf(p->err, p->err_size, "%s:%d: ", p->name, line);
        else
                n = snprintf(p->err, p->err_size, "%s: ", p->name);
        if (n < 0 || (size_t)n >= p->err_size)
                return;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
        va_end(ap);
}

/* A value quoted back in a message: printable, and not too long. */
static const char *shown(const char *v, char *buf, size_t size)
{
        size_t i, n = strlen(v), max = size - 4;

        for (i = 0; i < n && i < max; i++)
                buf[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
        if (n > max) {
                memcpy(buf + max, "...", 3);
                i = max + 3;
        }
        buf[i] = '\0';
        return buf;
}

static int resolve_group(const char *name, gid_t *ret)
{
        uint64_t v;
        struct group gr, *res = NULL;
        size_t size = 1024;
        int r;

        r = parse_u64(name, &v);
        if (r == 0 || r == -ERANGE) {
                /* (gid_t)-1 means "no group" to the kernel. */
                if (r < 0 || v >= (gid_t)-1)
                        return -ERANGE;
                *ret = (gid_t)v;
                return 0;
        }
        for (;;) {
                _cleanup_free_ char *buf = malloc(size);

                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(name, &gr, buf, size, &res);
                if (r == ERANGE && size < 1024 * 1024) {
                        size *= 4;
                        continue;
                }
                if (r != 0)
                        return -r;
                if (!res)
                        return -ENOENT;
                *ret = res->gr_gid;
                return 0;
        }
}

static int set_string(char **field, const char *v)
{
        char *s = strdup(v);

        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

static bool parse_bool(const char *v, bool *ret)
{
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
                if (strcmp(v, yes[i]) == 0) {
                        *ret = true;
                        return true;
                }
                if (strcmp(v, no[i]) == 0) {
                        *ret = false;
                        return true;
                }
        }
        return false;
}

/* A systemd credential name is a plain file name in $CREDENTIALS_DIRECTORY. */
static bool credential_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > CREDENTIAL_NAME_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        for (; *s; s++)
                if (*s == '/' || !isprint((unsigned char)*s))
                        return false;
        return true;
}

bool config_node_name_valid(const char *name)
{
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > DKM_NODE_NAME_MAX || !isalnum((unsigned char)name[0]))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)name[i];

                /* isalnum() follows the locale: say exactly which bytes. */
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

static void strip_trailing_slashes(char *path);

#define LIST_MAX 64 /* entries in one list setting */

void config_list_free(char **l)
{
        if (!l)
                return;
        for (char **e = l; *e; e++)
                free(*e);
        free(l);
}

/* A p11-kit module name: the file name of /etc/pkcs11/modules/NAME.module. */
static bool module_name_valid(const char *s)
{
        if (!isalnum((unsigned char)s[0]))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '.' || *s == '_' || *s == '-'))
                        return false;
        return true;
}

/* [policy] pkcs11_modules and key_dirs: entries separated by spaces or
 * commas; an empty value is an empty list (nothing allowed). */
static bool apply_list(struct parser *p, const struct key_def *k, const char *v, char ***field)
{
        char **list = calloc(LIST_MAX + 1, sizeof(*list)), vb[80];
        size_t n = 0;

        if (!list) {
                set_err(p, p->line, "out of memory");
                return false;
        }
        while (*v) {
                size_t len = strcspn(v, " \t,");
                char *e;

                if (len == 0) {
                        v++;
                        continue;
                }
                if (n == LIST_MAX) {
                        set_err(p, p->line, "[%s] %s: more than %d entries", k->section, k->name, LIST_MAX);
                        goto fail;
                }
                e = strndup(v, len);
                if (!e) {
                        set_err(p, p->line, "out of memory");
                        goto fail;
                }
                list[n++] = e;
                v += len;
                shown(e, vb, sizeof(vb));
                if (k->kind == K_DIRS || e[0] == '/') {
                        if (!path_is_clean(e) || strlen(e) >= PATH_MAX) {
                                set_err(p, p->line, "[%s] %s: '%s' must be an absolute path without "
                                                    "'.' or '..' components",
                                        k->section, k->name, vb);
                                goto fail;
                        }
                        if (k->kind == K_DIRS) {
                                strip_trailing_slashes(e);
                                if (strcmp(e, "/") == 0) {
                                        set_err(p, p->line, "[%s] %s: '/' would allow every file dkmd "
                                                            "can read; name the directories that hold "
                                                            "key and PIN files",
                                                k->section, k->name);
                                        goto fail;
                                }
                        } else if (e[strlen(e) - 1] == '/') {
                                set_err(p, p->line, "[%s] %s: '%s' names a directory, not a module",
                                        k->section, k->name, vb);
                                goto fail;
                        }
                } else if (!module_name_valid(e)) {
                        set_err(p, p->line, "[%s] %s: '%s' is neither an absolute module path nor a "
                                            "p11-kit module name (A-Z a-z 0-9 . _ -)",
                                k->section, k->name, vb);
                        goto fail;
                }
        }
        config_list_free(*field);
        *field = list;
        return true;
fail:
        config_list_free(list);
        return false;
}

/* Stores one value; on a bad one, sets the message and returns false. */
static bool apply(struct parser *p, const struct key_def *k, const char *v)
{
        char *field = (char *)&p->cfg + k->offset, vb[80], lim[32], lim2[32];
        uint64_t u;
        int r = 0;

        shown(v, vb, sizeof(vb));
        if (!*v && k->kind != K_STRING && k->kind != K_OPTPATH && k->kind != K_MODULES &&
            k->kind != K_DIRS) {
                set_err(p, p->line, "[%s] %s: empty value", k->section, k->name);
                return false;
        }

        switch (k->kind) {
        case K_MODULES:
        case K_DIRS:
                return apply_list(p, k, v, (char ***)field);
        case K_MASTERKEY:
                if (strncmp(v, CREDENTIAL_PREFIX, strlen(CREDENTIAL_PREFIX)) == 0) {
                        const char *name = v + strlen(CREDENTIAL_PREFIX);

                        if (!credential_name_valid(name)) {
                                set_err(p, p->line, "[%s] %s: bad credential name in '%s' (a file "
                                                    "name of at most %d bytes)",
                                        k->section, k->name, vb, CREDENTIAL_NAME_MAX);
                                return false;
                        }
                        r = set_string(&p->cfg.master_key_credential, name);
                        break;
                }
                /* fall through - a path */
        case K_SOCKET:
        case K_PATH:
        case K_OPTPATH:
                if (!*v) { /* K_OPTPATH only: unset */
                        free(*(char **)field);
                        *(char **)field = NULL;
                        return true;
                }
                if (v[0] != '/') {
                        set_err(p, p->line, "[%s] %s: must be an absolute path, got '%s'",
                                k->section, k->name, vb);
                        return false;
                }
                if (k->kind == K_SOCKET && strlen(v) > SOCKET_PATH_MAX) {
                        set_err(p, p->line, "[%s] %s: path too long for a socket (max %zu bytes)",
                                k->section, k->name, (size_t)SOCKET_PATH_MAX);
                        return false;
                }
                if (strlen(v) >= PATH_MAX) {
                        set_err(p, p->line, "[%s] %s: path too long", k->section, k->name);
                        return false;
                }
                r = set_string((char **)field, v);
                break;
        case K_STRING:
                if (!*v) {
                        free(*(char **)field);
                        *(char **)field = NULL;
                        return true;
                }
                r = set_string((char **)field, v);
                break;
        case K_NODENAME:
                if (!config_node_name_valid(v)) {
                        set_err(p, p->line, "[%s] %s: bad node name '%s' (1-%d of A-Z a-z 0-9 . _ -, "
                                            "starting with a letter or digit)",
                                k->section, k->name, vb, DKM_NODE_NAME_MAX);
                        return false;
                }
                r = set_string((char **)field, v);
                break;
        case K_BACKEND:
                if (strcmp(v, "sqlite") != 0 && strcmp(v, "etcd") != 0) {
                        set_err(p, p->line, "[%s] %s: expected sqlite or etcd, got '%s'",
                                k->section, k->name, vb);
                        return false;
                }
                r = set_string((char **)field, v);
                break;
        case K_ENGINE:
                /* Parsed here rather than by the engine module, so that the
                 * parser (and its fuzz target) stands alone. */
                if (strcmp(v, "auto") == 0)
                        *(enum engine_kind *)field = ENGINE_AUTO;
                else if (strcmp(v, "kernel") == 0)
                        *(enum engine_kind *)field = ENGINE_KERNEL;
                else if (strcmp(v, "openssl") == 0)
                        *(enum engine_kind *)field = ENGINE_OPENSSL;
                else {
                        set_err(p, p->line, "[%s] %s: expected auto, kernel or openssl, got '%s'",
                                k->section, k->name, vb);
                        return false;
                }
                return true;
        case K_GROUP:
                r = resolve_group(v, (gid_t *)field);
                if (r == -ENOENT)
                        set_err(p, p->line, "[%s] %s: group '%s' does not exist", k->section,
                                k->name, vb);
                else if (r == -ERANGE)
                        set_err(p, p->line, "[%s] %s: bad gid '%s'", k->section, k->name, vb);
                else if (r < 0 && r != -ENOMEM)
                        set_err(p, p->line, "[%s] %s: cannot look up group '%s': %s", k->section,
                                k->name, vb, strerror(-r));
                break;
        case K_DURATION:
                r = duration_parse(v, 0, &u);
                if (r == -EINVAL) {
                        set_err(p, p->line,
                                "[%s] %s: bad duration '%s' (examples: 50ms, 30s, 8h, 1h30m, 30d)",
                                k->section, k->name, vb);
                        return false;
                }
                if (r < 0 || u < k->min || u > k->max) {
                        set_err(p, p->line, "[%s] %s: duration '%s' out of range (%s to %s)",
                                k->section, k->name, vb, duration_format(k->min, lim, sizeof(lim)),
                                duration_format(k->max, lim2, sizeof(lim2)));
                        return false;
                }
                *(uint64_t *)field = u;
                return true;
        case K_THREADS:
                if (strcmp(v, "auto") == 0) {
                        *(unsigned *)field = CONFIG_STREAM_THREADS_AUTO;
                        return true;
                }
                r = parse_u64(v, &u);
                if (r < 0 || u < k->min || u > k->max) {
                        set_err(p, p->line, "[%s] %s: expected auto or a whole number from %llu to %llu, "
                                            "got '%s'",
                                k->section, k->name, (unsigned long long)k->min,
                                (unsigned long long)k->max, vb);
                        return false;
                }
                *(unsigned *)field = (unsigned)u;
                return true;
        case K_UINT:
        case K_U64:
                r = parse_u64(v, &u);
                if (r < 0 || u < k->min || u > k->max) {
                        bool approvals = r >= 0 && u > k->max &&
                                         k->offset == offsetof(struct dkm_config, approvals_required);
                        bool one_share = r >= 0 && u < k->min &&
                                         k->offset == offsetof(struct dkm_config, recovery_threshold);

                        set_err(p, p->line, "[%s] %s: must be a whole number from %llu to %llu, "
                                            "got '%s'%s",
                                k->section, k->name, (unsigned long long)k->min,
                                (unsigned long long)k->max, vb,
                                approvals ? " (a request records no more approvals than that, "
                                            "so more could never be met)" :
                                one_share ? " (with threshold=1 any single share would be the master "
                                            "key itself)" : "");
                        return false;
                }
                if (k->kind == K_U64)
                        *(uint64_t *)field = u;
                else
                        *(unsigned *)field = (unsigned)u;
                return true;
        case K_BOOL:
                if (!parse_bool(v, (bool *)field)) {
                        set_err(p, p->line, "[%s] %s: expected yes or no, got '%s'", k->section,
                                k->name, vb);
                        return false;
                }
                return true;
        }
        if (r == -ENOMEM)
                set_err(p, p->line, "out of memory");
        return r >= 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parser *p = user;
        char sb[64], nb[64];

        if (p->failed)
                return 0;
        if (p->indented) {
                /* inih reads it as more of the previous key's value. */
                set_err(p, p->line, "indented line: keys must start at the beginning of the line");
                return 0;
        }
        if (!*section) {
                set_err(p, p->line, "%s: key before the first [section]", shown(name, nb, sizeof(nb)));
                return 0;
        }
        for (size_t i = 0; i < N_KEYS; i++) {
                if (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, name) != 0)
                        continue;
                if (p->seen[i]) {
                        set_err(p, p->line, "[%s] %s: duplicate key (first set on line %d)",
                                section, name, p->seen[i]);
                        return 0;
                }
                p->seen[i] = p->line;
                return apply(p, &keys[i], value) ? 1 : 0;
        }
        /* The section was checked by the reader: the key is what is wrong. */
        set_err(p, p->line, "[%s] %s: unknown key", shown(section, sb, sizeof(sb)),
                shown(name, nb, sizeof(nb)));
        return 0;
}

static bool known_section(const char *s, size_t n)
{
        for (size_t i = 0; i < N_KEYS; i++)
                if (strlen(keys[i].section) == n && memcmp(keys[i].section, s, n) == 0)
                        return true;
        return false;
}

/* fgets() for ini_parse_stream(), over the text, one line per call. */
static char *reader(char *str, int num, void *stream)
{
        struct parser *p = stream;
        const char *nl, *s;
        size_t len, with_nl;

        if (p->failed || !*p->pos)
                return NULL;
        p->line++;
        if (num < 3) {
                set_err(p, p->line, "inih's line buffer is too small");
                return NULL;
        }
        nl = strchr(p->pos, '\n');
        len = nl ? (size_t)(nl - p->pos) : strlen(p->pos);
        with_nl = len + (nl ? 1 : 0);
        /* inih needs room for '\r', '\n' and NUL past the text. */
        if (len > (size_t)num - 3) {
                set_err(p, p->line, "line too long (more than %d characters)", num - 3);
                return NULL;
        }
        memcpy(str, p->pos, with_nl);
        str[with_nl] = '\0';
        p->pos += with_nl;

        p->indented = len > 0 && (str[0] == ' ' || str[0] == '\t');
        s = str;
        if (p->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3; /* inih skips a UTF-8 byte order mark */
        for (; *s == ' ' || *s == '\t'; s++)
                ;
        if (*s == '[') {
                const char *end = strchr(s, ']');

                if (end && !known_section(s + 1, (size_t)(end - s - 1))) {
                        char sb[64], raw[64];

                        snprintf(raw, sizeof(raw), "%.*s", (int)(end - s - 1), s + 1);
                        set_err(p, p->line, "unknown section [%s]", shown(raw, sb, sizeof(sb)));
                        return NULL;
                }
                /* inih ignores what follows the ']': only a comment may. */
                if (end) {
                        for (s = end + 1; *s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'; s++)
                                ;
                        if (*s && *s != ';' && *s != '#') {
                                set_err(p, p->line, "text after the section name");
                                return NULL;
                        }
                }
        }
        return str;
}

void config_init_defaults(struct dkm_config *c)
{
        memset(c, 0, sizeof(*c));
        c->socket = strdup(DKM_DEFAULT_SOCKET);
        c->state_dir = strdup(DKM_DEFAULT_STATE_DIR);
        c->engine = ENGINE_AUTO;
        c->master_key = NULL; /* <state_dir>/master.key, once state_dir is known */
        if (resolve_group(default_groups[0], &c->users_gid) < 0)
                c->users_gid = (gid_t)-1;
        if (resolve_group(default_groups[1], &c->operators_gid) < 0)
                c->operators_gid = (gid_t)-1;
        if (resolve_group(default_groups[2], &c->approvers_gid) < 0)
                c->approvers_gid = (gid_t)-1;
        c->max_connections_per_uid = 64;
        c->read_timeout_usec = 10 * USEC_PER_SEC;
        c->idle_timeout_usec = 15 * 60 * USEC_PER_SEC;
        c->stream_timeout_usec = 60 * USEC_PER_SEC;
        c->stream_threads = CONFIG_STREAM_THREADS_AUTO;
        if (resolve_group(DEFAULT_REVIEWERS, &c->reviewers_gid) < 0)
                c->reviewers_gid = (gid_t)-1;
        c->max_age_usec = 30 * USEC_PER_DAY;
        c->max_uses = UINT64_C(1) << 30;
        c->approvals_required = 2;
        c->max_duration_usec = 8 * 3600 * USEC_PER_SEC;
        c->request_ttl_usec = 3600 * USEC_PER_SEC;
        c->max_policies = 50;
        c->hedge_delay_usec = 50000;
        c->cache_ttl_usec = 2 * 3600 * USEC_PER_SEC;
        c->pkcs11_modules = calloc(1, sizeof(char *));
        c->key_dirs = calloc(1, sizeof(char *));
        c->store_backend = strdup("sqlite");
        c->node_ttl_usec = 10 * USEC_PER_SEC;
        c->audit_fail_closed = true;
        c->recovery_shares = 5;
        c->recovery_threshold = 3;
}

void config_free(struct dkm_config *c)
{
        if (!c)
                return;
        free(c->socket);
        free(c->state_dir);
        free(c->master_key);
        free(c->master_key_credential);
        free(c->store_backend);
        free(c->store_endpoints);
        free(c->store_cacert);
        free(c->store_cert);
        free(c->store_key);
        free(c->store_prefix);
        free(c->node_name);
        free(c->recovery_custodians);
        free(c->recovery_out_dir);
        config_list_free(c->pkcs11_modules);
        config_list_free(c->key_dirs);
        memset(c, 0, sizeof(*c));
}

static void strip_trailing_slashes(char *path)
{
        size_t n = strlen(path);

        while (n > 1 && path[n - 1] == '/')
                path[--n] = '\0';
}

/* master_key: see config.h.  $CREDENTIALS_DIRECTORY is set by systemd for a
 * unit with LoadCredential*= or SetCredential=. */
static int resolve_master_key(struct dkm_config *c)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        int r = 0;

        if (dir && dir[0] != '/')
                dir = NULL;
        if (!c->master_key && !c->master_key_credential && dir) {
                _cleanup_free_ char *path = NULL;

                if (asprintf(&path, "%s/%s", dir, DKM_MASTER_KEY_CREDENTIAL) < 0)
                        return -ENOMEM;
                if (access(path, F_OK) == 0) {
                        c->master_key_credential = strdup(DKM_MASTER_KEY_CREDENTIAL);
                        if (!c->master_key_credential)
                                return -ENOMEM;
                }
        }
        if (c->master_key_credential) {
                free(c->master_key);
                c->master_key = NULL;
                if (dir)
                        r = asprintf(&c->master_key, "%s/%s", dir, c->master_key_credential);
        } else if (!c->master_key)
                r = asprintf(&c->master_key, "%s/master.key",
                             strcmp(c->state_dir, "/") ? c->state_dir : "");
        if (r < 0) {
                c->master_key = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* dkmd.service's SetCredential=NAME:missing, which systemd passes instead
 * when the file LoadCredentialEncrypted= names does not exist.  Seven bytes
 * can never be a key, so only such a short file is read. */
static bool is_fallback(const char *path)
{
        static const char marker[] = DKM_MASTER_KEY_MISSING;
        char buf[sizeof(marker)] = "";
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0 || st.st_size != (off_t)strlen(marker))
                return false;
        return read(fd, buf, sizeof(buf) - 1) == (ssize_t)strlen(marker) &&
               strcmp(buf, marker) == 0;
}

int config_master_key_error(const struct dkm_config *c, char *err, size_t err_size)
{
        static const char how[] = "create it with 'head -c 32 /dev/urandom | systemd-creds "
                                  "encrypt --name=%s - /etc/credstore.encrypted/%s' (see README.md)";
        char fix[300];
        struct stat st;

        if (!c || !c->master_key_credential)
                return 0;
        snprintf(fix, sizeof(fix), how, c->master_key_credential, c->master_key_credential);
        if (!c->master_key) {
                snprintf(err, err_size, "master key: systemd credential '%s' is missing: dkmd was "
                         "not started with credentials ($CREDENTIALS_DIRECTORY is unset); start it "
                         "as dkmd.service (LoadCredentialEncrypted=%s:...), or set [daemon] "
                         "master_key= to a key file", c->master_key_credential,
                         c->master_key_credential);
                return -ENOENT;
        }
        if (stat(c->master_key, &st) < 0) {
                int e = errno;

                snprintf(err, err_size, "master key: systemd credential '%s' is missing (%s): %s",
                         c->master_key_credential,
                         e == ENOENT ? "systemd did not pass it to dkmd" : strerror(e), fix);
                return e == ENOENT ? -ENOENT : -e;
        }
        if (S_ISREG(st.st_mode) && (st.st_size == 0 || is_fallback(c->master_key))) {
                snprintf(err, err_size, "master key: systemd credential '%s' is missing (systemd "
                         "found no file for LoadCredentialEncrypted=%s:...): %s",
                         c->master_key_credential, c->master_key_credential, fix);
                return -ENOENT;
        }
        return 0;
}

static size_t key_index(const char *section, const char *name)
{
        for (size_t i = 0; i < N_KEYS; i++)
                if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
                        return i;
        abort(); /* a name from this file that is not in keys[] */
}

/* Whether path is dir or below it (both clean, dir without a trailing '/'). */
static bool path_within(const char *path, const char *dir)
{
        size_t n = strlen(dir);

        return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* What can only be checked once the whole file is read. */
static int finish(struct parser *p)
{
        struct dkm_config *c = &p->cfg;
        static const size_t group_fields[3] = {
                offsetof(struct dkm_config, users_gid),
                offsetof(struct dkm_config, operators_gid),
                offsetof(struct dkm_config, approvers_gid),
        };
        static const char *const group_keys[3] = { "users", "operators", "approvers" };

        if (!c->socket || !c->state_dir || !c->store_backend || !c->pkcs11_modules || !c->key_dirs)
                return -ENOMEM;
        strip_trailing_slashes(c->state_dir);
        if (resolve_master_key(c) < 0)
                return -ENOMEM;
        /* dkmd's own secrets must not be nameable as a customer key or a
         * PIN (which an allowed module would send to its token). */
        for (char **d = c->key_dirs; *d; d++) {
                const char *own = path_within(c->state_dir, *d) ? "[daemon] state_dir" :
                                  c->master_key && path_within(c->master_key, *d) ? "the master key" : NULL;
                if (own) {
                        set_err(p, 0, "[policy] key_dirs: '%s' holds %s; key and PIN files need a "
                                      "directory of their own", *d, own);
                        return -EINVAL;
                }
        }
        for (int i = 0; i < 3; i++)
                if (*(gid_t *)((char *)c + group_fields[i]) == (gid_t)-1) {
                        set_err(p, 0, "[groups] %s: group '%s' does not exist (create it, or set "
                                      "%s= to an existing group name or gid)",
                                group_keys[i], default_groups[i], group_keys[i]);
                        return -EINVAL;
                }
        if (c->recovery_threshold > c->recovery_shares) {
                set_err(p, 0, "[recovery] threshold=%u is more than shares=%u: the shares could never "
                              "rebuild the master key", c->recovery_threshold, c->recovery_shares);
                return -EINVAL;
        }
        if (strcmp(c->store_backend, "etcd") == 0) {
                if (!c->store_endpoints) {
                        set_err(p, 0, "[store] endpoints: required with backend=etcd");
                        return -EINVAL;
                }
                if (!c->store_cert != !c->store_key) {
                        set_err(p, 0, "[store] cert, key: give both or neither");
                        return -EINVAL;
                }
                /* Every dkm key lives under the prefix: one deployment, one
                 * absolute path that ends in '/'. */
                if (c->store_prefix && (c->store_prefix[0] != '/' ||
                                        c->store_prefix[strlen(c->store_prefix) - 1] != '/')) {
                        set_err(p, 0, "[store] prefix: an absolute key prefix ending in '/' (e.g. /dkm/)");
                        return -EINVAL;
                }
        } else if (c->store_endpoints || c->store_cacert || c->store_cert || c->store_key ||
                   c->store_prefix) {
                set_err(p, 0, "[store] endpoints, cacert, cert, key, prefix: only for backend=etcd");
                return -EINVAL;
        } else if (p->seen[key_index("store", "node_ttl")]) {
                set_err(p, 0, "[store] node_ttl: only for backend=etcd");
                return -EINVAL;
        }
        return 0;
}

int config_parse_string(const char *text, const char *name, struct dkm_config *c, char *err,
                        size_t err_size)
{
        struct parser p = { .name = name ? name : "config", .pos = text, .err = err,
                            .err_size = err_size };
        int r;

        if (!text || !c)
                return -EINVAL;
        if (err && err_size)
                err[0] = '\0';

        config_init_defaults(&p.cfg);
        r = ini_parse_stream(reader, &p, handler, &p);
        if (r == -2 && !p.failed) {
                r = -ENOMEM;
                set_err(&p, 0, "out of memory");
        } else if (r > 0 && (!p.failed || r < p.err_line)) {
                /* inih's own complaint, on an earlier line than ours (it
                 * goes on after one, and tells only the line). */
                p.failed = false;
                set_err(&p, r, "syntax error: expected [section], key = value, or a comment");
                r = -EINVAL;
        } else if (p.failed)
                r = -EINVAL;
        else if (r != 0)
                r = -EIO;
        if (r == 0) {
                r = finish(&p);
                if (r == -ENOMEM)
                        set_err(&p, 0, "out of memory");
        }
        if (r < 0) {
                config_free(&p.cfg);
                return r;
        }
        *c = p.cfg;
        return 0;
}

int config_load(const char *path, struct dkm_config *c, char *err, size_t err_size)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        if (err && err_size)
                err[0] = '\0';
        if (!path || !c)
                return -EINVAL;

        /* Read it whole: the same parser then serves files and strings, and a
         * NUL byte (which would silently end a C string) can be refused. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = negative_errno();
                if (err && err_size)
                        snprintf(err, err_size, "%s: cannot read: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
                if (err && err_size)
                        snprintf(err, err_size, "%s: %s", path,
                                 S_ISREG(st.st_mode) ? "larger than 1 MiB" : "not a regular file");
                return S_ISREG(st.st_mode) ? -EFBIG : -EINVAL;
        }
        text = malloc((size_t)st.st_size + 1);
        if (!text)
                return -ENOMEM;
        while (len < (size_t)st.st_size) {
                ssize_t n = read(fd, text + len, (size_t)st.st_size - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = negative_errno();
                        if (err && err_size)
                                snprintf(err, err_size, "%s: cannot read: %s", path, strerror(-r));
                        return r;
                }
                if (n == 0)
                        break; /* shrank under us: parse what is there */
                len += (size_t)n;
        }
        text[len] = '\0';
        if (strlen(text) != len) {
                int line = 1;

                for (const char *s = text; *s; s++)
                        line += *s == '\n';
                if (err && err_size)
                        snprintf(err, err_size, "%s:%d: NUL byte in the file", path, line);
                return -EINVAL;
        }
        return config_parse_string(text, path, c, err, err_size);
}
