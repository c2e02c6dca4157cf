/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every dkmctl verb shares: failing with a message, connecting to
 * dkmd, reading input and writing output.  Below the verbs and dkmctl.c's
 * verb table, so that a verb never calls up into the file that calls it. */
#include <fcntl.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ctl.h"
#include "shared/util.h"
#include "shared/wire.h"

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
