/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "format.h"
#include "util.h"
#include "wire.h"

struct tag_rule {
        uint32_t max_len;
        bool repeatable;
};

static const struct tag_rule tag_rules[_WIRE_TAG_MAX] = {
        [WIRE_TAG_POLICY] = { 64, false },
        [WIRE_TAG_DATA] = { WIRE_MAX_DATA + FORMAT_OVERHEAD, false },
        [WIRE_TAG_CONTEXT] = { CONTEXT_MAX_KEY + 1 + CONTEXT_MAX_VALUE, true },
        [WIRE_TAG_GENERATION] = { 4, false },
        [WIRE_TAG_JSON] = { WIRE_MAX_DATA, false },
        [WIRE_TAG_ERRNO] = { 4, false },
        [WIRE_TAG_MESSAGE] = { 512, false },
        /* Reasons are checked again by dkmd (1024), so that an overlong one
         * gets a specific message rather than a protocol error. */
        [WIRE_TAG_REASON] = { 4096, false },
        [WIRE_TAG_DURATION] = { 64, false },
        [WIRE_TAG_SCOPE] = { 16, false },
        [WIRE_TAG_REQUEST] = { 4, false },
        [WIRE_TAG_CUSTOMER_KEY] = { 1023, true },
        [WIRE_TAG_UID] = { 4, false },
        [WIRE_TAG_GID] = { 4, false },
        [WIRE_TAG_FLAGS] = { 4, false },
        [WIRE_TAG_KEY] = { 32, false },
        [WIRE_TAG_ITEM] = { WIRE_MAX_ITEM, true },
        [WIRE_TAG_SEGMENT] = { 4, false },
};

static const char *const type_names[_WIRE_TYPE_MAX] = {
        [WIRE_REPLY_OK] = "ok",
        [WIRE_REPLY_ERROR] = "error",
        [WIRE_STATUS] = "status",
        [WIRE_ENCRYPT] = "encrypt",
        [WIRE_DECRYPT] = "decrypt",
        [WIRE_INSPECT] = "inspect",
        [WIRE_REWRAP] = "rewrap",
        [WIRE_DATAKEY] = "datakey",
        [WIRE_BATCH] = "batch",
        [WIRE_ENCRYPT_FD] = "encrypt-stream",
        [WIRE_DECRYPT_FD] = "decrypt-stream",
        [WIRE_KEY_LIST] = "key-list",
        [WIRE_KEY_ROTATE] = "key-rotate",
        [WIRE_KEY_RETIRE] = "key-retire",
        [WIRE_KEY_DESTROY] = "key-destroy",
        [WIRE_ACCESS_REQUEST] = "access-request",
        [WIRE_ACCESS_APPROVE] = "access-approve",
        [WIRE_ACCESS_DENY] = "access-deny",
        [WIRE_ACCESS_LIST] = "access-list",
        [WIRE_ACCESS_REVOKE] = "access-revoke",
        [WIRE_POLICY_CREATE] = "policy-create",
        [WIRE_POLICY_LIST] = "policy-list",
        [WIRE_POLICY_SHOW] = "policy-show",
        [WIRE_POLICY_ASSIGN] = "policy-assign",
        [WIRE_POLICY_REKEY] = "policy-rekey",
        [WIRE_POLICY_PURGE] = "policy-purge",
        [WIRE_BACKUP] = "backup",
        [WIRE_STORE_VERIFY] = "store-verify",
        [WIRE_RECOVERY_RESHARE] = "recovery-reshare",
};

const char *wire_type_name(uint16_t type)
{
        if (type < _WIRE_TYPE_MAX && type_names[type])
                return type_names[type];
        return NULL;
}

int wire_parse(const uint8_t *buf, size_t len, struct wire_msg *ret, const char **ret_error)
{
        size_t off = WIRE_HEADER_SIZE, n;
        uint32_t seen = 0;

        if (len < WIRE_HEADER_SIZE || memcmp(buf, WIRE_MAGIC, 4) != 0) {
                *ret_error = "not a dkm protocol message";
                return -EBADMSG;
        }
        if (len > WIRE_MAX_MESSAGE) {
                *ret_error = "message too large";
                return -EMSGSIZE;
        }
        ret->type = get_le16(buf + 4);
        if (!wire_type_name(ret->type)) {
                *ret_error = "unknown request type";
                return -EBADMSG;
        }
        n = get_le16(buf + 6);
        if (n > WIRE_MAX_FIELDS) {
                *ret_error = "too many fields";
                return -EBADMSG;
        }
        for (size_t i = 0; i < n; i++) {
                struct wire_field *f = &ret->fields[i];

                if (len - off < WIRE_FIELD_HEADER) {
                        *ret_error = "truncated field header";
                        return -EBADMSG;
                }
                f->tag = get_le16(buf + off);
                f->len = get_le32(buf + off + 2);
                off += WIRE_FIELD_HEADER;
                if (f->tag == 0 || f->tag >= _WIRE_TAG_MAX) {
                        *ret_error = "unknown field tag";
                        return -EBADMSG;
                }
                if (f->len > tag_rules[f->tag].max_len) {
                        *ret_error = "field exceeds its size limit";
                        return -EBADMSG;
                }
                if (f->len > len - off) {
                        *ret_error = "truncated field";
                        return -EBADMSG;
                }
                if (!tag_rules[f->tag].repeatable) {
                        if (seen & (1u << f->tag)) {
                                *ret_error = "field repeated";
                                return -EBADMSG;
                        }
                        seen |= 1u << f->tag;
                }
                f->value = buf + off;
                off += f->len;
        }
        if (off != len) {
                *ret_error = "trailing bytes after the last field";
                return -EBADMSG;
        }
        ret->n_fields = n;
        return 0;
}

const struct wire_field *wire_get(const struct wire_msg *m, uint16_t tag)
{
        for (size_t i = 0; i < m->n_fields; i++)
                if (m->fields[i].tag == tag)
                        return &m->fields[i];
        return NULL;
}

int wire_get_string(const struct wire_msg *m, uint16_t tag, char *buf, size_t size)
{
        const struct wire_field *f = wire_get(m, tag);

        if (!f)
                return -ENOENT;
        if (f->len >= size || memchr(f->value, 0, f->len))
                return -EBADMSG;
        memcpy(buf, f->value, f->len);
        buf[f->len] = 0;
        return 0;
}

int wire_get_u32(const struct wire_msg *m, uint16_t tag, uint32_t *ret)
{
        const struct wire_field *f = wire_get(m, tag);

        if (!f)
                return -ENOENT;
        if (f->len != 4)
                return -EBADMSG;
        *ret = get_le32(f->value);
        return 0;
}

static void reserve(struct wire_builder *b, size_t more)
{
        size_t cap;
        uint8_t *p;

        if (b->error)
                return;
        if (b->len + more > WIRE_MAX_MESSAGE) {
                b->error = -E2BIG;
                return;
        }
        if (b->len + more <= b->cap)
                return;
        cap = b->cap ? b->cap : 256;
        while (cap < b->len + more)
                cap *= 2;
        /* Not realloc: the old buffer may hold plaintext and must be wiped. */
        p = malloc(cap);
        if (!p) {
                b->error = -ENOMEM;
                return;
        }
        if (b->buf) {
                memcpy(p, b->buf, b->len);
                secure_wipe(b->buf, b->cap);
                free(b->buf);
        }
        b->buf = p;
        b->cap = cap;
}

void wire_begin(struct wire_builder *b, uint16_t type)
{
        *b = (struct wire_builder){ 0 };
        reserve(b, WIRE_HEADER_SIZE);
        if (b->error)
                return;
        memcpy(b->buf, WIRE_MAGIC, 4);
        put_le16(b->buf + 4, type);
        b->len = WIRE_HEADER_SIZE;
}

void wire_add(struct wire_builder *b, uint16_t tag, const void *value, size_t len)
{
        if (!b->error && (tag == 0 || tag >= _WIRE_TAG_MAX || len > tag_rules[tag].max_len ||
                          b->n_fields >= WIRE_MAX_FIELDS))
                b->error = -E2BIG;
        reserve(b, WIRE_FIELD_HEADER + len);
        if (b->error)
                return;
        put_le16(b->buf + b->len, tag);
        put_le32(b->buf + b->len + 2, (uint32_t)len);
        if (len)
                memcpy(b->buf + b->len + WIRE_FIELD_HEADER, value, len);
        b->len += WIRE_FIELD_HEADER + len;
        b->n_fields++;
}

void wire_add_string(struct wire_builder *b, uint16_t tag, const char *s)
{
        wire_add(b, tag, s, strlen(s));
}

void wire_add_u32(struct wire_builder *b, uint16_t tag, uint32_t v)
{
        uint8_t le[4];

        put_le32(le, v);
        wire_add(b, tag, le, sizeof(le));
}

int wire_finish(struct wire_builder *b)
{
        if (b->error)
                return b->error;
        put_le16(b->buf + 6, b->n_fields);
        return 0;
}

void wire_builder_free(struct wire_builder *b)
{
        if (b->buf) {
                secure_wipe(b->buf, b->cap);
                free(b->buf);
        }
        *b = (struct wire_builder){ 0 };
}

static int write_all(int fd, const void *p, size_t n)
{
        const uint8_t *q = p;

        while (n > 0) {
                ssize_t k = send(fd, q, n, MSG_NOSIGNAL);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                q += k;
                n -= (size_t)k;
        }
        return 0;
}

/* Waits until fd has something to read or the deadline (monotonic usec; 0:
 * none) has passed: -ETIMEDOUT then. */
static int wait_readable(int fd, uint64_t deadline)
{
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int ms = -1, k;

                if (deadline) {
                        uint64_t now = now_mono_usec();

                        if (now >= deadline)
                                return -ETIMEDOUT;
                        uint64_t left_ms = (deadline - now) / 1000 + 1;

                        ms = left_ms > INT_MAX ? INT_MAX : (int)left_ms;
                }
                k = poll(&p, 1, ms);
                if (k > 0)
                        return 0;
                if (k < 0 && errno != EINTR)
                        return negative_errno();
        }
}

/* 0 on success, 1 on end of stream before any byte, -errno otherwise
 * (-ETIMEDOUT past the deadline).  Never blocks in recv: a descriptor that
 * poll called readable and another reader emptied only loops back. */
static int read_all(int fd, void *p, size_t n, uint64_t deadline)
{
        uint8_t *q = p;
        size_t got = 0;

        while (got < n) {
                ssize_t k;
                int r = wait_readable(fd, deadline);

                if (r < 0)
                        return r;
                k = recv(fd, q + got, n - got, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        return got == 0 ? 1 : -EIO;
                got += (size_t)k;
        }
        return 0;
}

int wire_send_fds(int fd, const uint8_t *buf, size_t len, const int *fds, size_t n_fds)
{
        uint8_t hdr[4];
        struct iovec iov[2] = {
                { .iov_base = hdr, .iov_len = 4 },
                { .iov_base = (void *)buf, .iov_len = len },
        };
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
        } control = { 0 };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
        ssize_t k;

        if (len > WIRE_MAX_MESSAGE || n_fds > WIRE_MAX_FDS)
                return -EMSGSIZE;
        put_le32(hdr, (uint32_t)len);
        if (n_fds) {
                struct cmsghdr *c;

                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        /* One sendmsg for the common case (the descriptors ride on its first
         * byte); finish with write_all if it was short. */
        do
                k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return negative_errno();
        if ((size_t)k < 4) {
                int r = write_all(fd, hdr + k, 4 - (size_t)k);
                if (r < 0)
                        return r;
                k = 4;
        }
        return write_all(fd, buf + ((size_t)k - 4), len - ((size_t)k - 4));
}

int wire_send(int fd, const uint8_t *buf, size_t len)
{
        return wire_send_fds(fd, buf, len, NULL, 0);
}

/* Reads the 4-byte frame header with recvmsg so that descriptors sent with
 * the frame are taken (close-on-exec); more than max of them, or anything
 * else in the control data, is closed and refused. */
static int read_header(int fd, uint8_t hdr[4], int *fds, size_t max, size_t *ret_n,
                       const struct wire_recv_limits *lim, uint64_t *ret_deadline)
{
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * WIRE_MAX_FDS)];
        } control;
        struct iovec iov = { .iov_base = hdr, .iov_len = 4 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                             .msg_controllen = sizeof(control.buf) };
        uint64_t idle_deadline = lim->idle_usec ? now_mono_usec() + lim->idle_usec : 0;
        size_t n = 0;
        bool bad = false;
        ssize_t k;
        int r;

        for (;;) {
                r = wait_readable(fd, idle_deadline);
                if (r < 0)
                        return r == -ETIMEDOUT ? -ETIME : r;
                k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
                if (k >= 0 || (errno != EINTR && errno != EAGAIN))
                        break;
        }
        if (k < 0)
                return negative_errno();
        if (k == 0)
                return 1;
        /* From the first byte on, the whole frame has frame_usec. */
        *ret_deadline = lim->frame_usec ? now_mono_usec() + lim->frame_usec : 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                size_t cnt;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
                        bad = true;
                        continue;
                }
                cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < cnt; i++) {
                        int got;

                        memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (n < max)
                                fds[n++] = got;
                        else {
                                close(got);
                                bad = true;
                        }
                }
        }
        if (bad || (mh.msg_flags & MSG_CTRUNC)) {
                for (size_t i = 0; i < n; i++)
                        close(fds[i]);
                return -EBADMSG;
        }
        if (k < 4) {
                r = read_all(fd, hdr + k, 4 - (size_t)k, *ret_deadline);
                if (r != 0) {
                        for (size_t i = 0; i < n; i++)
                                close(fds[i]);
                        return r == 1 ? -EIO : r;
                }
        }
        *ret_n = n;
        return 0;
}

int wire_recv_limited(int fd, const struct wire_recv_limits *lim, uint8_t **ret, size_t *ret_len,
                      int *fds, size_t max_fds, size_t *ret_n_fds)
{
        static const struct wire_recv_limits none = { 0 };
        int ignored[WIRE_MAX_FDS];
        uint8_t hdr[4];
        uint64_t deadline = 0;
        uint32_t len;
        uint8_t *buf = NULL;
        size_t n = 0;
        int r;

        if (!lim)
                lim = &none;
        r = read_header(fd, hdr, fds ? fds : ignored, fds ? max_fds : 0, &n, lim, &deadline);
        if (r == 1)
                return -EPIPE;
        if (r < 0)
                return r;
        len = get_le32(hdr);
        if (len > WIRE_MAX_MESSAGE)
                r = -EMSGSIZE;
        /* Asked before anything is allocated, so that the caller can
         * refuse a frame unread. */
        else if (lim->check)
                r = lim->check(lim->userdata, len);
        if (r >= 0) {
                buf = malloc(len ? len : 1);
                if (!buf)
                        r = -ENOMEM;
        }
        if (r >= 0) {
                r = read_all(fd, buf, len, deadline);
                if (r != 0) {
                        wire_free_buf(buf, len);
                        r = r == 1 ? -EIO : r;
                }
        }
        if (r < 0) {
                for (size_t i = 0; fds && i < n; i++)
                        close(fds[i]);
                return r;
        }
        *ret = buf;
        *ret_len = len;
        if (ret_n_fds)
                *ret_n_fds = n;
        return 0;
}

int wire_recv_fds(int fd, uint8_t **ret, size_t *ret_len, int *fds, size_t max_fds, size_t *ret_n_fds)
{
        return wire_recv_limited(fd, NULL, ret, ret_len, fds, max_fds, ret_n_fds);
}

int wire_recv(int fd, uint8_t **ret, size_t *ret_len)
{
        return wire_recv_fds(fd, ret, ret_len, NULL, 0, NULL);
}

void wire_free_buf(uint8_t *buf, size_t len)
{
        if (buf) {
                secure_wipe(buf, len);
                free(buf);
        }
}
