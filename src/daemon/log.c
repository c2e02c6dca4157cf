/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "log.h"
#include "ratelimit.h"
#include "shared/util.h"

static bool journal_prefix;
static int max_priority = LOG_INFO;

void log_setup(void)
{
        /* Under systemd stderr goes to the journal, which takes "<N>" as the priority. */
        journal_prefix = getenv("JOURNAL_STREAM") != NULL;
        if (getenv("DKM_DEBUG"))
                max_priority = LOG_DEBUG;
}

void log_msg(int priority, const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        if (priority > max_priority)
                return;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (journal_prefix)
                fprintf(stderr, "<%d>%s\n", priority, line);
        else
                fprintf(stderr, "dkmd: %s\n", line);
}

static struct ratelimit peer_lines = RATELIMIT_INIT;

static void report_suppressed(uid_t uid, unsigned n, const struct audit_subject *last _unused_,
                              void *userdata _unused_)
{
        log_notice("suppressed %u similar messages from uid %u in the last %u s", n, (unsigned)uid,
                   (unsigned)(RATELIMIT_INTERVAL_USEC / 1000000));
}

bool log_peer(uid_t uid, int priority, const char *fmt, ...)
{
        char line[1024];
        va_list ap;

        if (priority > max_priority)
                return false;
        if (!ratelimit_allow(&peer_lines, uid, now_mono_usec(), NULL, report_suppressed, NULL))
                return false;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_msg(priority, "%s", line);
        return true;
}

void log_peer_flush(uint64_t now_usec)
{
        ratelimit_flush(&peer_lines, now_usec, report_suppressed, NULL);
}

int notify(const char *state)
{
        const char *path = getenv("NOTIFY_SOCKET");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        size_t n;

        if (!path || !*path)
                return 0;
        n = strlen(path);
        if (n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
                return -EINVAL;
        memcpy(sa.sun_path, path, n);
        if (path[0] == '@')
                sa.sun_path[0] = 0; /* abstract namespace */
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
                return negative_errno();
        return 0;
}
