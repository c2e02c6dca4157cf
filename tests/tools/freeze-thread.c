/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stops ONE thread of a running process, as a hung thread would be, for the
 * watchdog tests:
 *
 *   freeze-thread [--stdin] PID TID SECONDS
 *
 * TID must be a thread of PID (for dkmd's accept loop: the main thread,
 * TID = PID).  The thread is stopped with ptrace (PTRACE_SEIZE, then
 * PTRACE_INTERRUPT); the other threads of the process keep running.  It stays
 * stopped for SECONDS (0: no limit), or until SIGTERM, SIGINT or SIGHUP, or
 * with --stdin until stdin closes; then it is detached and resumes.  Should
 * this tool die, the kernel detaches the thread just the same.  Should the
 * thread die while frozen (its process killed), this tool reaps it for its
 * parent at once and fails.
 *
 * stdout: "frozen TID REALTIME" once the thread is stopped and "thawed TID
 * REALTIME" once it is let go, REALTIME being CLOCK_REALTIME in seconds
 * (the clock of SO_TIMESTAMPNS); the thawed time is taken just before the
 * detach, so the thread runs no earlier than that.
 * Exit status: 0 done, 1 failure (on stderr), 2 bad usage, 77 ptrace is not
 * permitted here (no CAP_SYS_PTRACE, or a security module says no).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shared/util.h"

#define EXIT_NOT_PERMITTED 77

static int parse_id(const char *s, long max, long *ret)
{
        char *end;
        long v;

        if (!s || !*s || *s == '-' || *s == '+')
                return -EINVAL;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void print_time(const char *what, pid_t tid, const struct timespec *at)
{
        struct timespec ts = { 0 };

        if (at)
                ts = *at;
        else
                clock_gettime(CLOCK_REALTIME, &ts);
        printf("%s %d %lld.%09ld\n", what, (int)tid, (long long)ts.tv_sec, ts.tv_nsec);
        fflush(stdout);
}

/* Stops the thread; *ret_sig is a signal it was about to take when it
 * stopped, to hand back on detach (0: none). */
static int freeze(pid_t tid, int *ret_sig)
{
        int status;

        if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) < 0)
                return negative_errno();
        if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) < 0) {
                int r = negative_errno();

                ptrace(PTRACE_DETACH, tid, NULL, NULL);
                return r;
        }
        for (;;) {
                if (waitpid(tid, &status, __WALL) < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (!WIFSTOPPED(status))
                        return -ESRCH; /* it exited */
                break;
        }
        /* A signal-delivery-stop may come before the interrupt's stop: the
         * thread is stopped all the same, and the signal is its due. */
        *ret_sig = (status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status);
        return 0;
}

/* SIGCHLD: the thread may have died (its process killed, say by systemd's
 * watchdog).  Its real parent gets it only once its tracer has waited for
 * it: -ESRCH then. */
static int reaped(pid_t tid)
{
        int status;
        pid_t k = waitpid(tid, &status, WNOHANG | __WALL);

        if (k < 0)
                return errno == EINTR ? 0 : negative_errno();
        return k > 0 && (WIFEXITED(status) || WIFSIGNALED(status)) ? -ESRCH : 0;
}

/* Waits for the time limit, a signal or (with_stdin) the end of stdin;
 * -ESRCH when the thread dies meanwhile. */
static int hold(pid_t tid, int sfd, bool with_stdin, long seconds)
{
        uint64_t until = seconds ? now_mono_usec() + (uint64_t)seconds * 1000000 : 0;

        for (;;) {
                struct pollfd pfd[2] = {
                        { .fd = sfd, .events = POLLIN },
                        { .fd = with_stdin ? STDIN_FILENO : -1, .events = POLLIN },
                };
                int timeout = -1, n;
                char buf[256];

                if (until) {
                        uint64_t now = now_mono_usec();

                        if (now >= until)
                                return 0;
                        timeout = (int)((until - now + 999) / 1000);
                }
                n = poll(pfd, 2, timeout);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (pfd[0].revents) {
                        struct signalfd_siginfo si;
                        int r;

                        if (read(sfd, &si, sizeof(si)) != sizeof(si))
                                continue;
                        if (si.ssi_signo != SIGCHLD)
                                return 0;
                        r = reaped(tid);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (pfd[1].revents) {
                        ssize_t k = read(STDIN_FILENO, buf, sizeof(buf));

                        if (k == 0 || (k < 0 && errno != EINTR && errno != EAGAIN))
                                return 0;
                }
        }
}

static int usage(void)
{
        fprintf(stderr, "usage: freeze-thread [--stdin] PID TID SECONDS\n");
        return 2;
}

int main(int argc, char **argv)
{
        bool with_stdin = false;
        long pid, tid, seconds;
        char task[64];
        struct timespec thawed;
        struct stat st;
        sigset_t set;
        int sfd, sig = 0, r;

        if (argc > 1 && strcmp(argv[1], "--stdin") == 0) {
                with_stdin = true;
                argc--;
                argv++;
        }
        if (argc != 4 || parse_id(argv[1], INT_MAX, &pid) < 0 || pid == 0 ||
            parse_id(argv[2], INT_MAX, &tid) < 0 || tid == 0 ||
            parse_id(argv[3], INT_MAX / 1000, &seconds) < 0)
                return usage();
        snprintf(task, sizeof(task), "/proc/%ld/task/%ld", pid, tid);
        if (stat(task, &st) < 0) {
                fprintf(stderr, "freeze-thread: %ld is not a thread of process %ld: %s\n", tid,
                        pid, strerror(errno));
                return 1;
        }

        /* Signals end the hold; they must not kill this tool while it
         * holds the thread (the kernel would let it go, unannounced). */
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGCHLD);
        sigprocmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        signal(SIGCHLD, SIG_DFL); /* an inherited SIG_IGN would hide the tracee's death */
        sfd = signalfd(-1, &set, SFD_CLOEXEC);
        if (sfd < 0) {
                fprintf(stderr, "freeze-thread: signalfd: %s\n", strerror(errno));
                return 1;
        }

        r = freeze((pid_t)tid, &sig);
        if (r < 0) {
                fprintf(stderr, "freeze-thread: cannot stop thread %ld: %s\n", tid, strerror(-r));
                return r == -EPERM ? EXIT_NOT_PERMITTED : 1;
        }
        print_time("frozen", (pid_t)tid, NULL);

        r = hold((pid_t)tid, sfd, with_stdin, seconds);
        if (r == -ESRCH) {
                fprintf(stderr, "freeze-thread: thread %ld died while frozen\n", tid);
                return 1;
        }
        if (r < 0)
                fprintf(stderr, "freeze-thread: waiting: %s; letting thread %ld go\n",
                        strerror(-r), tid);

        clock_gettime(CLOCK_REALTIME, &thawed);
        if (ptrace(PTRACE_DETACH, (pid_t)tid, NULL, (void *)(long)sig) < 0) {
                /* ESRCH: it died meanwhile (the process was killed). */
                fprintf(stderr, "freeze-thread: cannot let thread %ld go: %s\n", tid,
                        strerror(errno));
                return 1;
        }
        print_time("thawed", (pid_t)tid, &thawed);
        return r < 0 ? 1 : 0;
}
