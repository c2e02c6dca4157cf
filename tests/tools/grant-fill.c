/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Makes N live grants through dkmd's own access flow, fast enough for
 * thousands (dkmctl would spawn three processes per grant).  Three child
 * processes, each with one identity and one connection, form a pipeline:
 * the operator requests, the first approver approves, the second approves
 * (the grant is made); request ids pass along pipes.  Run as root.
 *
 *   grant-fill SOCKET N DURATION OP_UID OPS_GID APPR_UID APPR2_UID APPRS_GID
 *
 * Prints the number of grants made; exit 1 on the first failure.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dkm/dkm.h"

static const char *sock;

static dkm_client *connect_as(uid_t uid, gid_t group)
{
        dkm_client *c;

        /* For good: the connection's credentials are read at connect. */
        if (setgroups(1, &group) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0) {
                fprintf(stderr, "grant-fill: cannot become uid %u: %s\n", (unsigned)uid, strerror(errno));
                exit(1);
        }
        if (dkm_connect(sock, &c) < 0) {
                fprintf(stderr, "grant-fill: uid %u cannot connect to %s\n", (unsigned)uid, sock);
                exit(1);
        }
        return c;
}

static void requester(int out, unsigned long n, const char *duration, uid_t uid, gid_t group)
{
        dkm_client *c = connect_as(uid, group);

        for (unsigned long i = 0; i < n; i++) {
                uint32_t id;

                if (dkm_access_request(c, "grant-fill: start-up with many live grants", duration,
                                       NULL, NULL, &id) < 0) {
                        fprintf(stderr, "grant-fill: request: %s\n", dkm_last_error(c));
                        exit(1);
                }
                if (write(out, &id, sizeof(id)) != sizeof(id))
                        exit(1);
        }
        exit(0);
}

static void approver(int in, int out, uid_t uid, gid_t group)
{
        dkm_client *c = connect_as(uid, group);
        uint32_t id;

        while (read(in, &id, sizeof(id)) == sizeof(id)) {
                char *state;

                if (dkm_access_approve(c, id, &state) < 0) {
                        fprintf(stderr, "grant-fill: approve %u: %s\n", id, dkm_last_error(c));
                        exit(1);
                }
                free(state);
                if (write(out, &id, sizeof(id)) != sizeof(id))
                        exit(1);
        }
        exit(0);
}

int main(int argc, char **argv)
{
        int p1[2], p2[2], p3[2], failed = 0, status;
        unsigned long n, made = 0;
        uint32_t id;
        pid_t pids[3];

        if (argc != 9) {
                fprintf(stderr, "usage: grant-fill SOCKET N DURATION OP_UID OPS_GID APPR_UID APPR2_UID "
                                "APPRS_GID\n");
                return 2;
        }
        sock = argv[1];
        n = strtoul(argv[2], NULL, 10);
        if (pipe(p1) < 0 || pipe(p2) < 0 || pipe(p3) < 0)
                return 1;
        pids[0] = fork();
        if (pids[0] == 0) {
                close(p1[0]), close(p2[0]), close(p2[1]), close(p3[0]), close(p3[1]);
                requester(p1[1], n, argv[3], (uid_t)atoi(argv[4]), (gid_t)atoi(argv[5]));
        }
        pids[1] = fork();
        if (pids[1] == 0) {
                close(p1[1]), close(p2[0]), close(p3[0]), close(p3[1]);
                approver(p1[0], p2[1], (uid_t)atoi(argv[6]), (gid_t)atoi(argv[8]));
        }
        pids[2] = fork();
        if (pids[2] == 0) {
                close(p1[0]), close(p1[1]), close(p2[1]), close(p3[0]);
                approver(p2[0], p3[1], (uid_t)atoi(argv[7]), (gid_t)atoi(argv[8]));
        }
        close(p1[0]), close(p1[1]), close(p2[0]), close(p2[1]), close(p3[1]);
        while (read(p3[0], &id, sizeof(id)) == sizeof(id))
                made++;
        for (int i = 0; i < 3; i++)
                if (pids[i] < 0 || waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0)
                        failed = 1;
        printf("%lu\n", made);
        return failed || made != n;
}
