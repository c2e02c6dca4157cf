/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel custody: gcm(aes) transforms keyed from a keyring serial
 * (ALG_SET_KEY_BY_KEY_SERIAL, Linux 6.2 and later), so that the key goes
 * from the keyring to the transform inside the kernel and never through
 * this process.  libkcapi has no call for it and keeps its transform socket
 * to itself, so this file owns the AF_ALG sockets of this path: one
 * transform socket per key, keyed once, and one operation socket accept()ed
 * from it per operation (any thread may share the transform).  Every
 * descriptor is close-on-exec from birth.
 *
 * Error mapping (STYLE.md): no AF_ALG socket -> -ENOTSUP; bind -> -ENOENT;
 * setkey -> -EINVAL, except a kernel without keying by serial (-ENOTSUP)
 * and a key that is not there to use (-ENOKEY, -EKEYEXPIRED, -EKEYREVOKED,
 * -EACCES, passed on: they name the key's state); short I/O -> -EIO; bad tag
 * -> -EBADMSG.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/if_alg.h>

#include "engine/engine.h"
#include "shared/util.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef SOL_ALG
#define SOL_ALG 279
#endif
/* Linux 6.2 UAPI; Debian 12's headers (6.1) lack it. */
#ifndef ALG_SET_KEY_BY_KEY_SERIAL
#define ALG_SET_KEY_BY_KEY_SERIAL 7
#endif

struct engine_serial {
        int tfm;          /* the keyed transform socket */
        uint64_t id;      /* unique in this process: names it where a pointer could be reused */
        size_t max_msg;   /* AAD + data + tag one operation may carry */
};

/* GCM spec test case 13: zero key, zero nonce, empty input. */
static const uint8_t kat_tag[ENGINE_TAG_SIZE] = {
        0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9,
        0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b,
};

static int tfm_open(int *ret)
{
        struct sockaddr_alg sa = { .salg_family = AF_ALG };
        int fd;

        fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return errno == EMFILE || errno == ENFILE || errno == ENOMEM ? negative_errno()
                                                                               : -ENOTSUP;
        memcpy(sa.salg_type, "aead", sizeof("aead"));
        memcpy(sa.salg_name, "gcm(aes)", sizeof("gcm(aes)"));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                close(fd);
                return -ENOENT;
        }
        if (setsockopt(fd, SOL_ALG, ALG_SET_AEAD_AUTHSIZE, NULL, ENGINE_TAG_SIZE) < 0) {
                close(fd);
                return -EINVAL;
        }
        *ret = fd;
        return 0;
}

static int set_key_serial(int fd, int32_t serial)
{
        if (setsockopt(fd, SOL_ALG, ALG_SET_KEY_BY_KEY_SERIAL, &serial, sizeof(serial)) == 0)
                return 0;
        switch (errno) {
        case ENOPROTOOPT:  /* before 6.2: the option does not exist */
                return -ENOTSUP;
        case ENOKEY:
        case EKEYEXPIRED:
        case EKEYREVOKED:
        case EACCES:
        case ENOMEM:
                return negative_errno();
        default:
                return -EINVAL;
        }
}

int engine_serial_new(int32_t serial, struct engine_serial **ret)
{
        struct engine_serial *t;
        int r;

        if (serial <= 0 || !ret)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        r = tfm_open(&t->tfm);
        if (r < 0) {
                free(t);
                return r;
        }
        r = set_key_serial(t->tfm, serial);
        if (r < 0) {
                close(t->tfm);
                free(t);
                return r;
        }
        t->max_msg = engine_kernel_ops.max_message();
        {
                static _Atomic uint64_t next_id = 1;

                t->id = next_id++;
        }
        *ret = t;
        return 0;
}

uint64_t engine_serial_id(const struct engine_serial *t)
{
        return t ? t->id : 0;
}

void engine_serial_free(struct engine_serial *t)
{
        if (!t)
                return;
        /* Operation sockets still open keep the transform alive in the
         * kernel; it frees the key with the last of them. */
        close(t->tfm);
        free(t);
}

int engine_serial_accept(struct engine_serial *t, struct engine_serial_op *ret)
{
        int fd;

        if (!t || !ret)
                return -EINVAL;
        fd = accept4(t->tfm, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return errno == EMFILE || errno == ENFILE || errno == ENOMEM ? negative_errno() : -EIO;
        *ret = (struct engine_serial_op){ .fd = fd, .max_msg = t->max_msg };
        return 0;
}

void engine_serial_op_close(struct engine_serial_op *op)
{
        if (op && op->fd >= 0) {
                close(op->fd);
                op->fd = -1;
        }
}

static int map_io(void)
{
        int e = errno;

        return e == EBADMSG || e == ENOMEM || e == EMSGSIZE ? -e : -EIO;
}

/* One operation on an accepted socket: AAD || input in one sendmsg with the
 * operation, nonce and AAD length; AAD || output back in one recvmsg. */
static int crypt_op(const struct engine_serial_op *op, bool enc,
                    const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len)
{
        union {
                char buf[CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(struct af_alg_iv) + ENGINE_NONCE_SIZE) +
                         CMSG_SPACE(sizeof(uint32_t))];
                struct cmsghdr align;
        } ctl = {};
        struct iovec iv_in[2], iv_out[2];
        struct msghdr msg = { .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        struct cmsghdr *c;
        struct af_alg_iv *iv;
        _cleanup_free_ uint8_t *aad_sink = NULL;
        uint8_t dummy;
        size_t nin = 0, nout = 0;
        ssize_t n;

        if (!op || op->fd < 0 || !nonce || (!aad && aad_len) || (!in && in_len) || (!out && out_len))
                return -EINVAL;
        /* A message larger than the socket buffers would make sendmsg()
         * wait for room that never comes. */
        if (aad_len > op->max_msg || in_len > op->max_msg - aad_len ||
            ENGINE_TAG_SIZE > op->max_msg - aad_len - in_len)
                return -EMSGSIZE;

        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_ALG;
        c->cmsg_type = ALG_SET_OP;
        c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
        *(uint32_t *)(void *)CMSG_DATA(c) = enc ? ALG_OP_ENCRYPT : ALG_OP_DECRYPT;
        c = CMSG_NXTHDR(&msg, c);
        c->cmsg_level = SOL_ALG;
        c->cmsg_type = ALG_SET_IV;
        c->cmsg_len = CMSG_LEN(sizeof(struct af_alg_iv) + ENGINE_NONCE_SIZE);
        iv = (struct af_alg_iv *)(void *)CMSG_DATA(c);
        iv->ivlen = ENGINE_NONCE_SIZE;
        memcpy(iv->iv, nonce, ENGINE_NONCE_SIZE);
        c = CMSG_NXTHDR(&msg, c);
        c->cmsg_level = SOL_ALG;
        c->cmsg_type = ALG_SET_AEAD_ASSOCLEN;
        c->cmsg_len = CMSG_LEN(sizeof(uint32_t));
        *(uint32_t *)(void *)CMSG_DATA(c) = (uint32_t)aad_len;

        if (aad_len) {
                iv_in[nin++] = (struct iovec){ (void *)(uintptr_t)aad, aad_len };
                /* The kernel hands the AAD back ahead of the output. */
                aad_sink = malloc(aad_len);
                if (!aad_sink)
                        return -ENOMEM;
                iv_out[nout++] = (struct iovec){ aad_sink, aad_len };
        }
        if (in_len)
                iv_in[nin++] = (struct iovec){ (void *)(uintptr_t)in, in_len };
        if (out_len)
                iv_out[nout++] = (struct iovec){ out, out_len };
        msg.msg_iov = nin ? iv_in : NULL;
        msg.msg_iovlen = nin;
        n = sendmsg(op->fd, &msg, 0);
        if (n < 0)
                return map_io();
        if ((size_t)n != aad_len + in_len)
                return -EIO;

        /* An empty decryption produces nothing, yet the kernel runs it (and
         * checks the tag) only when recvmsg is given some room. */
        if (nout == 0)
                iv_out[nout++] = (struct iovec){ &dummy, 1 };
        msg = (struct msghdr){ .msg_iov = iv_out, .msg_iovlen = nout };
        n = recvmsg(op->fd, &msg, 0);
        if (n < 0 || (size_t)n != aad_len + out_len) {
                int r = n < 0 ? map_io() : -EIO;

                /* The kernel decrypts into out before it compares the tag. */
                if (out_len)
                        secure_wipe(out, out_len);
                return r;
        }
        return 0;
}

int engine_serial_seal(const struct engine_serial_op *op, const uint8_t nonce[ENGINE_NONCE_SIZE],
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out)
{
        if (!out)
                return -EINVAL;
        return crypt_op(op, true, nonce, aad, aad_len, in, in_len, out, in_len + ENGINE_TAG_SIZE);
}

int engine_serial_open(const struct engine_serial_op *op, const uint8_t nonce[ENGINE_NONCE_SIZE],
                       const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                       uint8_t *out)
{
        if (in_len < ENGINE_TAG_SIZE)
                return -EINVAL;
        return crypt_op(op, false, nonce, aad, aad_len, in, in_len, out, in_len - ENGINE_TAG_SIZE);
}

int engine_serial_probe(int32_t zero_key, char *ret_reason, size_t reason_size)
{
        static const uint8_t zero[ENGINE_NONCE_SIZE];
        struct engine_serial t = { .tfm = -1, .max_msg = 4096 };
        struct engine_serial_op op = { .fd = -1 };
        uint8_t tag[ENGINE_TAG_SIZE];
        const char *why;
        int r;

        r = tfm_open(&t.tfm);
        if (r < 0) {
                why = r == -ENOENT ? "gcm(aes) cannot be bound" : "no AF_ALG socket";
                goto fail;
        }
        r = set_key_serial(t.tfm, zero_key);
        if (r == -ENOTSUP) {
                why = "the kernel cannot key AF_ALG by keyring serial "
                      "(ALG_SET_KEY_BY_KEY_SERIAL needs Linux 6.2 or later)";
                goto fail;
        }
        if (r < 0) {
                why = "keying gcm(aes) by keyring serial failed";
                goto fail;
        }
        r = engine_serial_accept(&t, &op);
        if (r >= 0)
                r = engine_serial_seal(&op, zero, NULL, 0, NULL, 0, tag);
        if (r >= 0 && memcmp(tag, kat_tag, sizeof(tag)) != 0)
                r = -EIO;
        why = "gcm(aes) keyed by keyring serial failed its known-answer test";
fail:
        engine_serial_op_close(&op);
        if (t.tfm >= 0)
                close(t.tfm);
        if (r >= 0)
                return 0;
        if (ret_reason && reason_size)
                snprintf(ret_reason, reason_size, "%s%s%s", why, r == -ENOTSUP ? "" : ": ",
                         r == -ENOTSUP ? "" : strerror(-r));
        return -ENOTSUP;
}
