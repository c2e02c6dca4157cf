/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A client that hands its connection from one process to another, as an
 * attacker would to make dkmd's audit trail name someone else:
 *
 *   handoff-client SOCKET warm|cold VERB [ARG]
 *
 * A child process connects to dkmd's socket; with "warm" it first sends a
 * status request and waits for the answer (so dkmd has served the
 * connection while the child lived), with "cold" it sends nothing.  The
 * child then exits and is reaped: the connection's peer pid (SO_PEERCRED)
 * names a process that no longer exists, and that pid may be reused.  The
 * parent prints "peer PID" on stdout and waits for one line on stdin (the
 * test reuses the pid meanwhile), then sends VERB on the same connection:
 *   rotate             key rotate of the default policy
 *   request REASON     an access request (decrypt, 10m)
 * It prints "ok" or "error: MESSAGE" and exits 0 when dkmd answered OK,
 * 1 when it refused, 2 on bad usage or a broken connection.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shared/wire.h"

static int call(int fd, struct wire_builder *b, char *msg, size_t msg_size)
{
        struct wire_msg *m = malloc(sizeof(*m));
        const char *why;
        uint8_t *buf;
        size_t len;
        int r;

        if (!m || wire_finish(b) < 0 || wire_send(fd, b->buf, b->len) < 0 || wire_recv(fd, &buf, &len) < 0) {
                free(m);
                return -EIO;
        }
        r = wire_parse(buf, len, m, &why);
        if (r >= 0 && m->type == WIRE_REPLY_ERROR) {
                if (wire_get_string(m, WIRE_TAG_MESSAGE, msg, msg_size) < 0)
                        snprintf(msg, msg_size, "(no message)");
                r = -EPERM;
        } else if (r < 0)
                snprintf(msg, msg_size, "malformed reply: %s", why);
        wire_free_buf(buf, len);
        free(m);
        return r;
}

int main(int argc, char **argv)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct wire_builder b = { 0 };
        char msg[512] = "", line[64];
        bool warm;
        pid_t child;
        int fd, st, r;

        if (argc < 4 || (strcmp(argv[2], "warm") && strcmp(argv[2], "cold")) ||
            strlen(argv[1]) >= sizeof(sa.sun_path) ||
            !(strcmp(argv[3], "rotate") == 0 || (strcmp(argv[3], "request") == 0 && argc == 5))) {
                fprintf(stderr, "usage: handoff-client SOCKET warm|cold rotate|request REASON\n");
                return 2;
        }
        warm = strcmp(argv[2], "warm") == 0;
        strcpy(sa.sun_path, argv[1]);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                perror("socket");
                return 2;
        }
        /* The child connects the parent's socket: the kernel records the
         * child as the peer. */
        child = fork();
        if (child < 0) {
                perror("fork");
                return 2;
        }
        if (child == 0) {
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        _exit(3);
                if (warm) {
                        wire_begin(&b, WIRE_STATUS);
                        _exit(call(fd, &b, msg, sizeof(msg)) < 0 ? 4 : 0);
                }
                _exit(0);
        }
        if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "handoff-client: the child could not connect (status %d)\n", st);
                return 2;
        }
        printf("peer %d\n", (int)child);
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin)) {
                fprintf(stderr, "handoff-client: no go-ahead on stdin\n");
                return 2;
        }
        if (strcmp(argv[3], "rotate") == 0)
                wire_begin(&b, WIRE_KEY_ROTATE);
        else {
                wire_begin(&b, WIRE_ACCESS_REQUEST);
                wire_add_string(&b, WIRE_TAG_REASON, argv[4]);
                wire_add_string(&b, WIRE_TAG_DURATION, "10m");
                wire_add_string(&b, WIRE_TAG_SCOPE, "decrypt");
        }
        r = call(fd, &b, msg, sizeof(msg));
        wire_builder_free(&b);
        close(fd);
        if (r == -EIO) {
                fprintf(stderr, "handoff-client: the connection broke\n");
                return 2;
        }
        if (r < 0) {
                printf("error: %s\n", msg);
                return 1;
        }
        printf("ok\n");
        return 0;
}
