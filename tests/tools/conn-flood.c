/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An unprivileged peer misbehaving on dkmd's socket, for the denial-of-service
 * tests (run it under setpriv as a uid in no dkm group, or as a member):
 *
 *   conn-flood hold SOCKET N LEN SECONDS
 *       opens N connections, each announcing a frame of LEN bytes that never
 *       comes (LEN "idle": sending nothing), and holds them for SECONDS or
 *       until dkmd has closed them all.  Prints "opened K" once all are open
 *       (K: how many connect()+send() succeeded), then "closed C MS MESSAGE":
 *       C connections had been closed by dkmd, the last of them MS
 *       milliseconds after "opened"; MESSAGE is the first error reply dkmd
 *       sent on any of them, or "(no reply)".
 *   conn-flood garbage SOCKET COUNT
 *       sends COUNT malformed frames (wrong magic), reconnecting when dkmd
 *       closes; prints "sent COUNT".
 *   conn-flood request SOCKET TYPE COUNT
 *       sends COUNT empty requests of wire type TYPE; prints the last reply's
 *       message ("ok" for a success).
 *   conn-flood stream SOCKET TYPE IN OUT SECONDS
 *       sends a stream request (17 encrypt, 18 decrypt) passing two
 *       descriptors: IN and OUT are "heldpipe" (a pipe whose other end this
 *       tool holds open and silent) or a path (opened read-only for IN,
 *       write-only for OUT; a FIFO is opened read-write so that the open does
 *       not wait).  Prints "reply: MESSAGE" and exits 0, or prints
 *       "no reply" and exits 3 when none came within SECONDS.
 *
 * Exit status: 0 done, 1 failure (on stderr), 2 bad usage, 3 no reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -1;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static void le32(uint8_t *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

/* A frame: length, "DKMW", type, no fields. */
static size_t empty_request(uint8_t out[12], uint16_t type)
{
        le32(out, 8);
        memcpy(out + 4, "DKMW", 4);
        out[8] = (uint8_t)type;
        out[9] = (uint8_t)(type >> 8);
        out[10] = out[11] = 0;
        return 12;
}

/* Reads one reply frame within ms; its message field (tag 7) into msg, or
 * "ok".  -1 when the connection ended, -2 on timeout. */
static int read_reply(int fd, int ms, char *msg, size_t size)
{
        uint8_t buf[4096];
        size_t got = 0, want = 4;
        uint64_t end = now_ms() + (uint64_t)ms;

        while (got < want) {
                struct pollfd p = { fd, POLLIN, 0 };
                int64_t left = (int64_t)(end - now_ms());
                ssize_t k;

                if (left <= 0 || poll(&p, 1, (int)left) == 0)
                        return -2;
                k = recv(fd, buf + got, want - got, 0);
                if (k <= 0)
                        return -1;
                got += (size_t)k;
                if (got == 4) {
                        want = 4 + (buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24);
                        if (want > sizeof(buf))
                                return -1;
                }
        }
        snprintf(msg, size, "ok");
        if (want >= 12 && buf[8] == 1) {
                for (size_t off = 12; off + 6 <= want;) {
                        uint16_t tag = buf[off] | buf[off + 1] << 8;
                        uint32_t len = buf[off + 2] | buf[off + 3] << 8 | buf[off + 4] << 16 |
                                       (uint32_t)buf[off + 5] << 24;

                        if (off + 6 + len > want)
                                break;
                        if (tag == 7) {
                                snprintf(msg, size, "%.*s", (int)len, (char *)buf + off + 6);
                                break;
                        }
                        off += 6 + len;
                }
                if (!strcmp(msg, "ok"))
                        snprintf(msg, size, "error without message");
        }
        return 0;
}

static int hold(int n, const char *len_arg, int seconds)
{
        /* "idle": connect and send nothing at all. */
        bool idle = !strcmp(len_arg, "idle");
        uint32_t len = (uint32_t)strtoul(len_arg, NULL, 0);
        int *fds = calloc((size_t)n, sizeof(int));
        int opened = 0, closed = 0;
        uint64_t start, last = 0;
        char msg[600] = "";
        uint8_t hdr[4];

        if (!fds)
                return 1;
        le32(hdr, len);
        for (int i = 0; i < n; i++) {
                fds[i] = dial();
                if (fds[i] >= 0 && (idle || send(fds[i], hdr, 4, MSG_NOSIGNAL) == 4))
                        opened++;
                else if (fds[i] >= 0) {
                        close(fds[i]);
                        fds[i] = -1;
                }
        }
        printf("opened %d\n", opened);
        fflush(stdout);
        start = now_ms();
        while (now_ms() - start < (uint64_t)seconds * 1000 && closed < opened) {
                for (int i = 0; i < n; i++) {
                        struct pollfd p = { fds[i], POLLIN, 0 };
                        char buf[1024];
                        ssize_t k;

                        if (fds[i] < 0 || poll(&p, 1, 0) <= 0)
                                continue;
                        /* Perhaps an error reply, then the end. */
                        if (!msg[0])
                                read_reply(fds[i], 100, msg, sizeof(msg));
                        while ((k = recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0)
                                ;
                        if (k == 0 || errno != EAGAIN) {
                                close(fds[i]);
                                fds[i] = -1;
                                closed++;
                                last = now_ms() - start;
                        }
                }
                usleep(50000);
        }
        printf("closed %d %llu %s\n", closed, (unsigned long long)last, msg[0] ? msg : "(no reply)");
        return 0;
}

static int garbage(int count)
{
        static const uint8_t frame[12] = { 8, 0, 0, 0, 'J', 'U', 'N', 'K', 0, 0, 0, 0 };
        char msg[600];
        int fd = -1;

        for (int i = 0; i < count; i++) {
                if (fd < 0 && (fd = dial()) < 0) {
                        perror("connect");
                        return 1;
                }
                if (send(fd, frame, sizeof(frame), MSG_NOSIGNAL) != sizeof(frame) ||
                    read_reply(fd, 10000, msg, sizeof(msg)) < 0) {
                        close(fd);
                        fd = -1;
                }
        }
        printf("sent %d\n", count);
        return 0;
}

static int request(uint16_t type, int count)
{
        char msg[600] = "no reply";
        uint8_t frame[12];
        int fd = -1;

        empty_request(frame, type);
        for (int i = 0; i < count; i++) {
                if (fd < 0 && (fd = dial()) < 0) {
                        perror("connect");
                        return 1;
                }
                if (send(fd, frame, sizeof(frame), MSG_NOSIGNAL) != sizeof(frame) ||
                    read_reply(fd, 10000, msg, sizeof(msg)) < 0) {
                        close(fd);
                        fd = -1;
                }
        }
        printf("%s\n", msg);
        return 0;
}

static int open_end(const char *what, int flags, int *held)
{
        struct stat st;
        int p[2];

        if (!strcmp(what, "heldpipe")) {
                if (pipe2(p, O_CLOEXEC) < 0)
                        return -1;
                /* Ours: the end dkmd does not get, kept open and silent. */
                *held = flags == O_RDONLY ? p[1] : p[0];
                return flags == O_RDONLY ? p[0] : p[1];
        }
        if (stat(what, &st) == 0 && S_ISFIFO(st.st_mode))
                flags = O_RDWR;
        return open(what, flags | O_CLOEXEC);
}

static int stream(uint16_t type, const char *in, const char *out, int seconds)
{
        uint8_t frame[12];
        int fds[2], held[2] = { -1, -1 }, fd;
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(fds))];
        } control = { 0 };
        struct iovec iov = { frame, sizeof(frame) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        struct cmsghdr *c;
        char msg[600];
        int r;

        fds[0] = open_end(in, O_RDONLY, &held[0]);
        fds[1] = open_end(out, O_WRONLY, &held[1]);
        if (fds[0] < 0 || fds[1] < 0) {
                perror("open");
                return 1;
        }
        fd = dial();
        if (fd < 0) {
                perror("connect");
                return 1;
        }
        empty_request(frame, type);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(fds));
        memcpy(CMSG_DATA(c), fds, sizeof(fds));
        if (sendmsg(fd, &mh, MSG_NOSIGNAL) != sizeof(frame)) {
                perror("sendmsg");
                return 1;
        }
        r = read_reply(fd, seconds * 1000, msg, sizeof(msg));
        if (r == -2) {
                printf("no reply\n");
                return 3;
        }
        printf("reply: %s\n", r < 0 ? "connection closed" : msg);
        return 0;
}

int main(int argc, char **argv)
{
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc < 3)
                goto usage;
        sock_path = argv[2];
        if (!strcmp(argv[1], "hold") && argc == 6)
                return hold(atoi(argv[3]), argv[4], atoi(argv[5]));
        if (!strcmp(argv[1], "garbage") && argc == 4)
                return garbage(atoi(argv[3]));
        if (!strcmp(argv[1], "request") && argc == 5)
                return request((uint16_t)atoi(argv[3]), atoi(argv[4]));
        if (!strcmp(argv[1], "stream") && argc == 7)
                return stream((uint16_t)atoi(argv[3]), argv[4], argv[5], atoi(argv[6]));
usage:
        fprintf(stderr, "usage: conn-flood hold|garbage|request|stream SOCKET ...\n");
        return 2;
}
