/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sends one record through audit.c, as dkmd would, for the integration tests:
 *
 *   audit-emit [-k key|access|config] [-p PID -u UID -g GID | -s] [-f] OP [NAME=TEXT...]
 *
 * The requester is the process PID with the given (SO_PEERCRED-like) uid and
 * gid, held with pidfd_open() as dkmd does on kernels without SO_PEERPIDFD
 * (a PID that is gone, or not UID's, gives subj_verified=no); -s sends no requester (dkmd acting on its own).  Each NAME=TEXT field
 * is encoded with audit_value().  -f records a failure (res=failed).
 * Exit status: 0 when the kernel accepted the record, 1 when audit_record()
 * failed (the error on stderr), 2 for bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "shared/audit.h"

static int usage(void)
{
        fprintf(stderr, "usage: audit-emit [-k key|access|config] [-p PID -u UID -g GID | -s] [-f] "
                        "OP [NAME=TEXT...]\n");
        return 2;
}

int main(int argc, char **argv)
{
        enum audit_kind kind = AUDIT_KIND_KEY;
        struct audit_subject subj;
        long pid = getpid(), uid = getuid(), gid = getgid();
        int no_subject = 0, failed = 0, c, r, pidfd;
        size_t len = 1;
        char *extra;

        while ((c = getopt(argc, argv, "k:p:u:g:sf")) != -1) {
                switch (c) {
                case 'k':
                        if (strcmp(optarg, "key") == 0)
                                kind = AUDIT_KIND_KEY;
                        else if (strcmp(optarg, "access") == 0)
                                kind = AUDIT_KIND_ACCESS;
                        else if (strcmp(optarg, "config") == 0)
                                kind = AUDIT_KIND_CONFIG;
                        else
                                return usage();
                        break;
                case 'p': pid = strtol(optarg, NULL, 10); break;
                case 'u': uid = strtol(optarg, NULL, 10); break;
                case 'g': gid = strtol(optarg, NULL, 10); break;
                case 's': no_subject = 1; break;
                case 'f': failed = 1; break;
                default: return usage();
                }
        }
        if (optind >= argc)
                return usage();

        for (int i = optind + 1; i < argc; i++)
                len += 2 * strlen(argv[i]) + 4;
        extra = calloc(1, len);
        if (!extra)
                return 1;
        for (int i = optind + 1; i < argc; i++) {
                char *eq = strchr(argv[i], '='), *v;

                if (!eq)
                        return usage();
                v = audit_value(eq + 1);
                if (!v)
                        return 1;
                if (*extra)
                        strcat(extra, " ");
                strncat(extra, argv[i], (size_t)(eq - argv[i]) + 1);
                strcat(extra, v);
                free(v);
        }

        r = audit_open_log();
        if (r < 0) {
                fprintf(stderr, "audit-emit: audit_open_log: %s\n", strerror(-r));
                return 1;
        }
        pidfd = pid > 0 ? pidfd_open((pid_t)pid, 0) : -1;
        audit_subject_from_pidfd(&subj, pidfd, true, (pid_t)pid, (uid_t)uid, (gid_t)gid);
        if (pidfd >= 0)
                close(pidfd);
        r = audit_record(kind, argv[optind], no_subject ? NULL : &subj, !failed, "%s", extra);
        audit_close_log();
        free(extra);
        if (r < 0) {
                fprintf(stderr, "audit-emit: audit_record: %s\n", strerror(-r));
                return 1;
        }
        return 0;
}
