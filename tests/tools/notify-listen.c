/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stands in for systemd's $NOTIFY_SOCKET in the watchdog tests:
 *
 *   notify-listen PATH
 *
 * Binds a unix datagram socket at PATH (a stale file there is replaced) and
 * prints each message it receives as one line, "REALTIME MESSAGE", the
 * message's newlines turned into spaces.  REALTIME is when the kernel queued
 * the datagram (SO_TIMESTAMPNS, CLOCK_REALTIME, in seconds), not when this
 * tool got round to reading it: on a loaded machine the order of events is
 * that of the sender.  Runs until SIGTERM or SIGINT.
 * Exit status: 0 stopped by a signal, 1 failure (on stderr), 2 bad usage.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "shared/util.h"

static int listen_at(const char *path, int *ret_fd)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, one = 1;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        unlink(path);
        if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = negative_errno();

                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* Reads one datagram and prints it; 0 also when there was none. */
static int relay(int fd)
{
        char buf[4096], cbuf[CMSG_SPACE(sizeof(struct timespec))];
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf),
        };
        struct timespec ts = { 0 };
        struct cmsghdr *c;
        ssize_t n;

        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : negative_errno();
        for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS)
                        memcpy(&ts, CMSG_DATA(c), sizeof(ts));
        if (ts.tv_sec == 0) /* no stamp: the best we have is now */
                clock_gettime(CLOCK_REALTIME, &ts);
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '\n' || buf[i] == 0)
                        buf[i] = ' ';
        printf("%lld.%09ld %s\n", (long long)ts.tv_sec, ts.tv_nsec, buf);
        fflush(stdout);
        return 0;
}

int main(int argc, char **argv)
{
        sigset_t set;
        int fd = -1, sfd, r;

        if (argc != 2 || !argv[1][0]) {
                fprintf(stderr, "usage: notify-listen PATH\n");
                return 2;
        }
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigprocmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        sfd = signalfd(-1, &set, SFD_CLOEXEC);
        if (sfd < 0) {
                fprintf(stderr, "notify-listen: signalfd: %s\n", strerror(errno));
                return 1;
        }
        r = listen_at(argv[1], &fd);
        if (r < 0) {
                fprintf(stderr, "notify-listen: cannot listen on %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        for (;;) {
                struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };

                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        break;
                }
                /* Messages already queued are printed before stopping. */
                if (pfd[0].revents) {
                        r = relay(fd);
                        if (r < 0)
                                break;
                        continue;
                }
                if (pfd[1].revents)
                        break;
        }
        unlink(argv[1]);
        if (r < 0) {
                fprintf(stderr, "notify-listen: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
