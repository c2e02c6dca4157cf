/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "connlimit.h"
#include "log.h"
#include "server.h"
#include "shared/util.h"
#include "shared/wire.h"

/* One thread per connection: clients keep a connection open and send
 * requests one after another, so a thread serves them without hand-offs. */
/* How many, and whose: connlimit.h.  A non-member waits this long at most
 * between requests. */
#define NONMEMBER_IDLE_USEC (5 * UINT64_C(1000000))
/* The largest frame a non-member may send: every request that a refusal
 * answers fits (a refusal reads no data).  Larger ones are refused before
 * they are allocated or read. */
#define NONMEMBER_FRAME_MAX 4096
/* The accept loop turns at least this often, even when idle, so that the
 * watchdog can tell a live loop from a stuck one. */
#define TURN_MS 1000

struct server {
        const struct daemon_state *st;
        int listen_fd;
        int stop_pipe[2];
        bool activated; /* the socket came from systemd: do not unlink it */
        char path[108];
        _Atomic uint64_t last_turn_usec; /* monotonic */
        struct connlimit limits;
};

struct conn {
        struct server *srv;
        int fd;
        struct peer peer;
        int pidfd;       /* the peer's process from accept until its subject is read, else -1 */
        bool pidfd_late; /* opened from the pid at accept, not by the socket */
        unsigned roles; /* from the credentials taken at connect */
        char refusal[256]; /* why check_frame refused a frame */
};

/* Linux 6.5; the headers of older distributions lack it.  The other
 * architectures have their own numbers: they fall back to pidfd_open(). */
#if !defined(SO_PEERPIDFD) && (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) || \
                               defined(__arm__) || defined(__riscv) || defined(__s390__) || \
                               defined(__powerpc__) || defined(__loongarch__))
#define SO_PEERPIDFD 77
#endif

/* A pidfd of the process that connected, to tell it from a later one that
 * reuses its pid.  SO_PEERPIDFD names the connecting process itself (from
 * Linux 6.16 even once it was reaped; 6.5 to 6.15 while it is not); without
 * it, pidfd_open() of the SO_PEERCRED pid right at accept, and *ret_late
 * says that the pid may have changed hands before that.  -1 when the peer is
 * already gone or pidfds are unavailable: its subject stays unverified. */
static int peer_pidfd(int fd, pid_t pid, bool *ret_late)
{
        int pidfd = -1;

        *ret_late = false;
#ifdef SO_PEERPIDFD
        socklen_t len = sizeof(pidfd);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0)
                return pidfd;
        if (errno != ENOPROTOOPT)
                return -1; /* ESRCH: the peer is gone, and its pid free */
#endif
        /* pidfds are always close-on-exec. */
        *ret_late = true;
        return pid > 0 ? pidfd_open(pid, 0) : -1;
}

/* An error reply that must not hold up the caller: a peer that does not
 * read it loses it. */
static void send_error_now(int fd, int error, const char *msg)
{
        struct wire_builder b;

        wire_begin(&b, WIRE_REPLY_ERROR);
        wire_add_u32(&b, WIRE_TAG_ERRNO, (uint32_t)error);
        wire_add_string(&b, WIRE_TAG_MESSAGE, msg);
        if (wire_finish(&b) >= 0) {
                uint8_t hdr[4];
                struct iovec iov[2] = { { hdr, 4 }, { b.buf, b.len } };
                struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

                put_le32(hdr, (uint32_t)b.len);
                (void)!sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        wire_builder_free(&b);
}

static int peer_credentials(int fd, struct peer *ret)
{
        struct ucred uc;
        socklen_t len = sizeof(uc);
        gid_t groups[PEER_MAX_GROUPS];

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
                return negative_errno();
        ret->pid = uc.pid;
        ret->uid = uc.uid;
        ret->gid = uc.gid;
        len = sizeof(groups);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
                /* More groups than we look at: refuse rather than guess. */
                return errno == ERANGE ? -E2BIG : negative_errno();
        }
        ret->n_groups = len / sizeof(gid_t);
        memcpy(ret->groups, groups, len);
        return 0;
}

/* A request that failed for a reason of this host's own (a full disk, an
 * I/O error, a read-only file system) is the administrator's to know, not
 * only the caller's: the journal says so, within the caller's line budget.
 * m is scratch for parsing the reply. */
static void log_host_failure(const struct conn *c, uint16_t type, struct wire_builder *reply,
                             struct wire_msg *m)
{
        char msg[512] = "";
        const char *why;
        uint32_t e;

        if (!reply->buf || reply->len < WIRE_HEADER_SIZE || get_le16(reply->buf + 4) != WIRE_REPLY_ERROR ||
            wire_finish(reply) < 0 || wire_parse(reply->buf, reply->len, m, &why) < 0 ||
            wire_get_u32(m, WIRE_TAG_ERRNO, &e) < 0)
                return;
        if (e != ENOSPC && e != EDQUOT && e != EIO && e != EROFS)
                return;
        (void)wire_get_string(m, WIRE_TAG_MESSAGE, msg, sizeof(msg));
        log_peer(c->peer.uid, LOG_ERR, "%s for uid %u pid %d failed on this host: %s", wire_type_name(type),
                 (unsigned)c->peer.uid, (int)c->peer.pid, *msg ? msg : strerror((int)e));
}

static void serve_one(struct conn *c, const uint8_t *buf, size_t len, const int *fds, size_t n_fds,
                      struct wire_builder *reply)
{
        struct wire_msg *req = malloc(sizeof(*req));
        const char *why;
        int r;

        if (!req) {
                wire_begin(reply, WIRE_REPLY_ERROR);
                wire_add_u32(reply, WIRE_TAG_ERRNO, ENOMEM);
                return;
        }
        r = wire_parse(buf, len, req, &why);
        if (r < 0) {
                char msg[128];

                snprintf(msg, sizeof(msg), "malformed request: %s", why);
                wire_begin(reply, WIRE_REPLY_ERROR);
                wire_add_u32(reply, WIRE_TAG_ERRNO, (uint32_t)-r);
                wire_add_string(reply, WIRE_TAG_MESSAGE, msg);
                log_peer(c->peer.uid, LOG_NOTICE, "uid %u pid %d sent a %s", (unsigned)c->peer.uid,
                         (int)c->peer.pid, msg);
        } else {
                uint16_t type = req->type;

                handle_request(c->srv->st, &c->peer, req, fds, n_fds, reply);
                log_host_failure(c, type, reply, req);
        }
        free(req);
}

/* Before a frame is allocated or read: a peer in no dkm group may send
 * only what a refusal answers, and is refused unread above that (as it
 * would be after reading: no role allows it anything). */
static int check_frame(void *userdata, uint32_t len)
{
        struct conn *c = userdata;

        if (c->roles || len <= NONMEMBER_FRAME_MAX)
                return 0;
        snprintf(c->refusal, sizeof(c->refusal),
                 "permission denied: not in any dkm group (a frame of %u bytes from such a uid is "
                 "refused unread)", len);
        handle_refusal(&c->peer, "frame", c->refusal);
        return -EACCES;
}

static void *conn_thread(void *arg)
{
        struct conn *c = arg;
        const struct dkm_config *cfg = c->srv->st->cfg;

        /* Once per connection, here rather than in the accept loop: the
         * /proc reads cost a few syscalls. */
        audit_subject_from_pidfd(&c->peer.subj, c->pidfd, c->pidfd_late, c->peer.pid, c->peer.uid,
                                 c->peer.gid);
        if (c->pidfd >= 0)
                close(c->pidfd);
        c->pidfd = -1;
        for (;;) {
                struct wire_builder reply = { 0 };
                struct wire_recv_limits lim = {
                        .idle_usec = CFG(cfg, idle_timeout_usec),
                        .frame_usec = CFG(cfg, read_timeout_usec),
                        .check = check_frame,
                        .userdata = c,
                };
                int fds[WIRE_MAX_FDS];
                size_t n_fds = 0;
                uint8_t *buf;
                size_t len;
                int r;

                if (!c->roles && lim.idle_usec > NONMEMBER_IDLE_USEC)
                        lim.idle_usec = NONMEMBER_IDLE_USEC;
                r = wire_recv_limited(c->fd, &lim, &buf, &len, fds, WIRE_MAX_FDS, &n_fds);
                if (r < 0) {
                        if (r == -EMSGSIZE)
                                log_peer(c->peer.uid, LOG_NOTICE, "uid %u sent an oversize frame; closing",
                                         (unsigned)c->peer.uid);
                        else if (r == -EACCES)
                                send_error_now(c->fd, EACCES, c->refusal);
                        else if (r == -ETIMEDOUT)
                                log_peer(c->peer.uid, LOG_NOTICE,
                                         "uid %u pid %d sent part of a frame and then nothing for %" PRIu64
                                         " s ([daemon] read_timeout); closing",
                                         (unsigned)c->peer.uid, (int)c->peer.pid,
                                         lim.frame_usec / 1000000);
                        else if (r == -ETIME)
                                log_debug("uid %u idle for %" PRIu64 " s; closing", (unsigned)c->peer.uid,
                                          lim.idle_usec / 1000000);
                        break;
                }
                serve_one(c, buf, len, fds, n_fds, &reply);
                wire_free_buf(buf, len);
                /* Passed descriptors live for one request. */
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                r = wire_finish(&reply);
                if (r < 0) {
                        wire_builder_free(&reply);
                        wire_begin(&reply, WIRE_REPLY_ERROR);
                        wire_add_u32(&reply, WIRE_TAG_ERRNO, (uint32_t)-r);
                        wire_add_string(&reply, WIRE_TAG_MESSAGE, "reply too large");
                        wire_finish(&reply);
                }
                r = wire_send(c->fd, reply.buf, reply.len);
                wire_builder_free(&reply);
                if (r < 0)
                        break;
        }
        close(c->fd);
        connlimit_give_back(&c->srv->limits, c->peer.uid, c->roles != 0);
        free(c);
        return NULL;
}

/* A slot for the new connection, and a bound on how long a reply may wait
 * for a peer that does not read it; a peer over its limit is told why. */
static int accept_limits(struct server *s, struct conn *c)
{
        uint64_t t = CFG(s->st->cfg, read_timeout_usec);
        struct timeval tv = { .tv_sec = (time_t)(t / 1000000), .tv_usec = (suseconds_t)(t % 1000000) };
        char why[200];
        int r;

        r = connlimit_take(&s->limits, c->peer.uid, c->roles != 0,
                           CFG(s->st->cfg, max_connections_per_uid), why, sizeof(why));
        if (r < 0) {
                send_error_now(c->fd, -r, why);
                log_peer(c->peer.uid, LOG_WARNING, "refused a connection from uid %u pid %d: %s",
                         (unsigned)c->peer.uid, (int)c->peer.pid, why);
                return r;
        }
        (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        return 0;
}

/* systemd socket activation: LISTEN_PID/LISTEN_FDS, first fd is 3. */
static int activated_socket(void)
{
        const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

        if (!pid || !fds || atoi(pid) != getpid() || atoi(fds) < 1)
                return -ENOENT;
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        return 3;
}

int server_new(const struct daemon_state *st, struct server **ret, char *err, size_t err_size)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct server *s;
        int fd, r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->st = st;
        s->listen_fd = -1;
        pthread_mutex_init(&s->limits.lock, NULL);
        atomic_store(&s->last_turn_usec, now_mono_usec());
        if (pipe2(s->stop_pipe, O_CLOEXEC) < 0) {
                r = negative_errno();
                free(s);
                return r;
        }
        fd = activated_socket();
        if (fd >= 0) {
                s->activated = true;
                s->listen_fd = fd;
                fcntl(fd, F_SETFD, FD_CLOEXEC);
                log_info("using the socket passed by systemd");
                *ret = s;
                return 0;
        }
        if (strlen(st->cfg->socket) >= sizeof(sa.sun_path)) {
                snprintf(err, err_size, "socket path too long: %s", st->cfg->socket);
                r = -ENAMETOOLONG;
                goto fail;
        }
        strcpy(sa.sun_path, st->cfg->socket);
        strcpy(s->path, st->cfg->socket);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = negative_errno();
                snprintf(err, err_size, "socket: %s", strerror(-r));
                goto fail;
        }
        s->listen_fd = fd;
        /* A stale socket from a crashed instance would block bind. */
        unlink(sa.sun_path);
        /* Anyone may connect: access is decided from the peer's credentials. */
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(sa.sun_path, 0666) < 0 ||
            listen(fd, 128) < 0) {
                r = negative_errno();
                snprintf(err, err_size, "cannot listen on %s: %s", sa.sun_path, strerror(-r));
                goto fail;
        }
        *ret = s;
        return 0;
fail:
        server_free(s);
        return r;
}

int server_run(struct server *s)
{
        pthread_attr_t attr;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 512 * 1024);
        /* A connection that goes away between poll() and accept4() must not
         * leave the loop blocked in accept4(): the watchdog counts turns. */
        fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK);
        for (;;) {
                struct pollfd pfd[2] = {
                        { .fd = s->listen_fd, .events = POLLIN },
                        { .fd = s->stop_pipe[0], .events = POLLIN },
                };
                struct conn *c;
                pthread_t t;
                int fd, r;

                r = poll(pfd, 2, TURN_MS);
                atomic_store(&s->last_turn_usec, now_mono_usec());
                /* The counts of what the rate limits left out, once their
                 * interval has ended, even when nothing else comes. */
                log_peer_flush(atomic_load(&s->last_turn_usec));
                handle_flush_refusals(atomic_load(&s->last_turn_usec));
                if (r == 0)
                        continue;
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        pthread_attr_destroy(&attr);
                        return r;
                }
                if (pfd[1].revents)
                        break;
                fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                c = calloc(1, sizeof(*c));
                if (!c || peer_credentials(fd, &c->peer) < 0) {
                        log_warn("refusing a connection: %s", c ? "cannot read its credentials" :
                                 "out of memory");
                        free(c);
                        close(fd);
                        continue;
                }
                c->srv = s;
                c->fd = fd;
                c->roles = access_roles(s->st->cfg, &c->peer);
                if (accept_limits(s, c) < 0) {
                        close(fd);
                        free(c);
                        continue;
                }
                c->pidfd = peer_pidfd(fd, c->peer.pid, &c->pidfd_late);
                if (pthread_create(&t, &attr, conn_thread, c) != 0) {
                        connlimit_give_back(&s->limits, c->peer.uid, c->roles != 0);
                        if (c->pidfd >= 0)
                                close(c->pidfd);
                        close(fd);
                        free(c);
                }
        }
        pthread_attr_destroy(&attr);
        return 0;
}

uint64_t server_stuck_usec(const struct server *s)
{
        uint64_t now = now_mono_usec(), last = atomic_load(&s->last_turn_usec);
        const uint64_t allowed = 3 * TURN_MS * UINT64_C(1000);

        return now > last + allowed ? now - last : 0;
}

void server_stop(struct server *s)
{
        ssize_t k _unused_ = write(s->stop_pipe[1], "x", 1);
}

bool server_drained(struct server *s, unsigned wait_ms)
{
        for (unsigned waited = 0;; waited += 10) {
                unsigned live;

                pthread_mutex_lock(&s->limits.lock);
                live = s->limits.total;
                pthread_mutex_unlock(&s->limits.lock);
                if (live == 0)
                        return true;
                if (waited >= wait_ms)
                        return false;
                usleep(10000);
        }
}

void server_free(struct server *s)
{
        if (!s)
                return;
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        if (!s->activated && s->path[0])
                unlink(s->path);
        close(s->stop_pipe[0]);
        close(s->stop_pipe[1]);
        pthread_mutex_destroy(&s->limits.lock);
        free(s);
}
