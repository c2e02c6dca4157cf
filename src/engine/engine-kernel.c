/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel engine: gcm(aes) through AF_ALG, driven by libkcapi.  This file
 * is the one place that turns libkcapi's codes into dkm's error mapping:
 * no AF_ALG socket -> -ENOTSUP, bind (unknown algorithm) -> -ENOENT,
 * setkey -> -EINVAL, short I/O -> -EIO, bad tag -> -EBADMSG.
 *
 * The kernel refuses ALG_SET_KEY (-EBUSY) on a transform once an operation
 * socket has been accepted from it, so a transform cannot be re-keyed per
 * call.  Each engine_aead therefore keeps a few transforms, one per recent
 * key, and finds the right one by a keyed fingerprint of the key; the key
 * bytes themselves stay in the caller's memory and in the kernel.
 *
 * Larger messages go to the kernel without a copy: libkcapi vmsplices the
 * caller's AAD and data pages into a pipe and splices that pipe into the
 * operation socket, so the kernel reads them where they are.  Small ones are
 * copied by sendmsg(), which costs two system calls fewer.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/utsname.h>

#include <kcapi.h>
#include <linux/if_alg.h>
#include <linux/netlink.h>

#include "engine/engine.h"
#include "shared/util.h"

#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef NETLINK_CRYPTO
#define NETLINK_CRYPTO 21
#endif

#define ALG_NAME "gcm(aes)"
/* libkcapi's documented one-shot limit (16 pages); used when the socket
 * buffer sizes cannot be read. */
#define FALLBACK_MAX_MSG (16 * 4096)
/* Below this much AAD + input, copying beats vmsplice + splice (libkcapi's
 * own heuristic uses the same threshold). */
#define ZEROCOPY_MIN 8192
/* Transforms kept per engine_aead: enough for a few keys in turn. */
#define SLOTS 4

#define REASON_NO_AF_ALG "CONFIG_CRYPTO_USER_API_AEAD (af_alg, algif_aead) not available in this kernel"
#define REASON_NO_ALGIF_AEAD "CONFIG_CRYPTO_USER_API_AEAD: module algif_aead not loaded (af_alg is)"
#define REASON_NO_GCM ALG_NAME " not available (modules gcm, aes/aesni_intel)"
#define REASON_NO_CRYPTO_USER "CONFIG_CRYPTO_USER (module crypto_user) needed by libkcapi"

static inline void fclosep(FILE **f)
{
        if (*f)
                fclose(*f);
}

struct slot {
        struct kcapi_handle *h;  /* NULL: empty */
        bool keyed;              /* h holds the key named by fp */
        bool accepted;           /* an operation ran, so libkcapi accept()ed */
        size_t splice_max;       /* most bytes one vmsplice into its pipe takes; 0: none */
        uint64_t fp[2];
        uint64_t last_use;
};

struct engine_aead {
        const struct engine_ops *ops; /* guards against mixing engines */
        struct slot slot[SLOTS];
        uint64_t fp_key[2][2];        /* random, per transform: fingerprints mean nothing elsewhere */
        uint64_t clock;
        uint8_t *aad_buf;             /* the kernel returns AAD || output; the AAD lands here */
        size_t aad_cap;
        size_t max_msg;               /* largest AAD + data + tag one operation may carry */
        bool no_zerocopy;             /* the kernel refused a spliced operation once */
};

/* Test case 13 of the GCM spec: zero key, zero nonce, empty input. */
static const uint8_t kat_tag[ENGINE_TAG_SIZE] = {
        0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9,
        0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b,
};

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void quiet_libkcapi(void)
{
        /* libkcapi prints its errors to stderr by default; dkm is a silent
         * library and reports through return codes instead. */
        kcapi_set_verbosity(KCAPI_LOG_NONE);
}

_printf_(3, 4)
static void set_reason(char *reason, size_t size, const char *fmt, ...)
{
        va_list ap;

        if (!reason || !size)
                return;
        va_start(ap, fmt);
        vsnprintf(reason, size, fmt, ap);
        va_end(ap);
}

/* --- AF_ALG checks of our own, so that the reason is exact -------------- */

static int alg_socket(char *reason, size_t size, int *ret_fd)
{
        int fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        if (fd < 0) {
                int e = errno;

                if (e == EMFILE || e == ENFILE || e == ENOMEM || e == ENOBUFS) {
                        set_reason(reason, size, "socket(AF_ALG): %s", strerror(e));
                        return -e;
                }
                if (e == EAFNOSUPPORT)
                        set_reason(reason, size, "%s", REASON_NO_AF_ALG);
                else
                        set_reason(reason, size,
                                   "socket(AF_ALG) refused (SELinux policy or seccomp filter?): %s",
                                   strerror(e));
                return -ENOTSUP;
        }
        *ret_fd = fd;
        return 0;
}

/* Whether a module is loaded or built in; true when we cannot tell. */
static bool module_present(const char *name)
{
        _cleanup_(fclosep) FILE *mods = fopen("/proc/modules", "re");
        _cleanup_(fclosep) FILE *builtin = NULL;
        char line[512], path[300], suffix[64];
        struct utsname u;
        size_t n = strlen(name);

        if (!mods || uname(&u) < 0)
                return true;
        while (fgets(line, sizeof(line), mods))
                if (strncmp(line, name, n) == 0 && line[n] == ' ')
                        return true;
        snprintf(path, sizeof(path), "/lib/modules/%s/modules.builtin", u.release);
        builtin = fopen(path, "re");
        if (!builtin)
                return true;
        snprintf(suffix, sizeof(suffix), "/%s.ko\n", name);
        while (fgets(line, sizeof(line), builtin))
                if (strlen(line) >= strlen(suffix) &&
                    strcmp(line + strlen(line) - strlen(suffix), suffix) == 0)
                        return true;
        return false;
}

/* Binding also instantiates the gcm template, which makes it appear in
 * /proc/crypto.  Both a missing "aead" socket type and a missing algorithm
 * fail with ENOENT; the module list tells them apart. */
static int alg_bind(int fd, char *reason, size_t size)
{
        struct sockaddr_alg sa = { .salg_family = AF_ALG };

        memcpy(sa.salg_type, "aead", sizeof("aead"));
        memcpy(sa.salg_name, ALG_NAME, sizeof(ALG_NAME));
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno == ENOENT && !module_present("algif_aead"))
                        set_reason(reason, size, "%s", REASON_NO_ALGIF_AEAD);
                else if (errno == ENOENT)
                        set_reason(reason, size, "%s", REASON_NO_GCM);
                else
                        set_reason(reason, size, "bind(" ALG_NAME "): %s", strerror(errno));
                return -ENOENT;
        }
        return 0;
}

static int raw_check(char *reason, size_t size)
{
        _cleanup_close_ int fd = -1;
        int r;

        r = alg_socket(reason, size, &fd);
        if (r < 0)
                return r;
        return alg_bind(fd, reason, size);
}

static bool crypto_user_missing(void)
{
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_CRYPTO);

        if (fd < 0)
                return errno == EPROTONOSUPPORT;
        close(fd);
        return false;
}

/* --- close-on-exec for libkcapi's descriptors ---------------------------- */

/*
 * libkcapi (1.4.0, and still on its master branch) opens its AF_ALG sockets
 * with socket(AF_ALG, SOCK_SEQPACKET, 0) and accept(), and its splice pipes
 * with pipe(), all without CLOEXEC, and its handle is opaque.  So right after
 * it has created them we mark them: after kcapi_aead_init() every AF_ALG
 * socket of the process and every pipe that appeared meanwhile, and after the
 * first operation (which accepts) every AF_ALG socket again.  A fork+exec in
 * another thread inside that window can still inherit them; dkmd creates its
 * engines before it starts threads.
 */
struct fdlist {
        int *fd;
        size_t n, cap;
        bool sockets_only;  /* the accept() pass: no pipes to look for */
};

static bool fdlist_has(const struct fdlist *l, int fd)
{
        for (size_t i = 0; i < l->n; i++)
                if (l->fd[i] == fd)
                        return true;
        return false;
}

/* Calls f for every open descriptor. */
static void for_each_fd(void (*f)(int fd, void *userdata), void *userdata)
{
        DIR *d = opendir("/proc/self/fd");  /* glibc opens it O_CLOEXEC */
        struct dirent *de;

        if (!d) {
                long max = sysconf(_SC_OPEN_MAX);

                if (max < 0 || max > 65536)
                        max = 65536;
                for (int fd = 0; fd < max; fd++)
                        if (fcntl(fd, F_GETFD) >= 0)
                                f(fd, userdata);
                return;
        }
        while ((de = readdir(d))) {
                char *end;
                long fd = strtol(de->d_name, &end, 10);

                if (de->d_name[0] == '.' || *end || fd < 0 || fd == dirfd(d))
                        continue;
                f((int)fd, userdata);
        }
        closedir(d);
}

static bool inheritable(int fd, int *ret_flags)
{
        int flags = fcntl(fd, F_GETFD);

        *ret_flags = flags;
        return flags >= 0 && !(flags & FD_CLOEXEC);
}

static void collect_inheritable(int fd, void *userdata)
{
        struct fdlist *l = userdata;
        int flags;

        if (!inheritable(fd, &flags))
                return;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                int *p = realloc(l->fd, cap * sizeof(int));

                if (!p)
                        return;  /* then we may mark a pre-existing pipe too: harmless */
                l->fd = p;
                l->cap = cap;
        }
        l->fd[l->n++] = fd;
}

static void mark_cloexec(int fd, void *userdata)
{
        const struct fdlist *before = userdata;
        int flags, domain;
        socklen_t len = sizeof(domain);
        struct stat st;
        bool ours;

        if (!inheritable(fd, &flags))
                return;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0)
                ours = domain == AF_ALG;
        else
                ours = !before->sockets_only && !fdlist_has(before, fd) && fstat(fd, &st) == 0 &&
                       S_ISFIFO(st.st_mode);
        if (ours)
                (void)fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

static void mark_accepted_cloexec(void)
{
        struct fdlist none = { .sockets_only = true };

        for_each_fd(mark_cloexec, &none);
}

/* --- key fingerprints ------------------------------------------------------ */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                  \
        do {                                                                      \
                v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);         \
                v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                            \
                v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                            \
                v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);         \
        } while (0)

/* SipHash-2-4 of a 32-byte key: a PRF under a secret random fp_key, so equal
 * fingerprints mean equal keys and a fingerprint says nothing about its key. */
static uint64_t siphash_key(const uint64_t k[2], const uint8_t m[ENGINE_KEY_SIZE])
{
        uint64_t v0 = k[0] ^ 0x736f6d6570736575ULL, v1 = k[1] ^ 0x646f72616e646f6dULL;
        uint64_t v2 = k[0] ^ 0x6c7967656e657261ULL, v3 = k[1] ^ 0x7465646279746573ULL;
        uint64_t b = (uint64_t)ENGINE_KEY_SIZE << 56;

        for (size_t i = 0; i < ENGINE_KEY_SIZE; i += 8) {
                uint64_t w = get_le64(m + i);

                v3 ^= w;
                SIPROUND(v0, v1, v2, v3);
                SIPROUND(v0, v1, v2, v3);
                v0 ^= w;
        }
        v3 ^= b;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= b;
        v2 ^= 0xff;
        for (int i = 0; i < 4; i++)
                SIPROUND(v0, v1, v2, v3);
        return v0 ^ v1 ^ v2 ^ v3;
}

/* --- one operation --------------------------------------------------------- */

static int map_io_error(ssize_t r)
{
        if (r == -EBADMSG || r == -ENOMEM || r == -EMSGSIZE)
                return (int)r;
        return -EIO;
}

/* Runs one AEAD operation on a keyed handle: in = AAD || data, out = AAD ||
 * result.  The output vector must add up to exactly what the kernel
 * produces: a larger buffer makes algif_aead run a second, empty operation.
 *
 * zerocopy: the control message goes alone (MSG_MORE) and the input follows
 * through kcapi_aead_stream_update_last(), which vmsplices the iovecs into
 * libkcapi's pipe and splices it into the operation socket in one go when
 * they fit the pipe (the caller checked that); otherwise sendmsg() copies
 * the input along with the control message. */
static int run_op(struct kcapi_handle *h, bool enc, bool zerocopy, const uint8_t *nonce,
                  size_t aad_len, struct iovec *in, size_t nin, size_t in_total,
                  struct iovec *out, size_t nout, size_t out_total)
{
        uint8_t dummy;
        struct iovec none = { .iov_base = &dummy, .iov_len = 1 };
        struct iovec *first = zerocopy || !nin ? NULL : in;
        size_t nfirst = zerocopy ? 0 : nin;
        ssize_t n;

        kcapi_aead_setassoclen(h, aad_len);
        /* The nonce is copied into the control message here; libkcapi keeps
         * only the pointer. */
        n = enc ? kcapi_aead_stream_init_enc(h, nonce, first, nfirst)
                : kcapi_aead_stream_init_dec(h, nonce, first, nfirst);
        if (n < 0)
                return map_io_error(n);
        if ((size_t)n != (zerocopy ? 0 : in_total))
                return -EIO;
        n = zerocopy ? kcapi_aead_stream_update_last(h, in, nin)
                     : kcapi_aead_stream_update_last(h, NULL, 0);
        if (n < 0)
                return map_io_error(n);
        if (zerocopy && (size_t)n != in_total)
                return -EIO;

        /* A decryption with neither AAD nor ciphertext produces nothing, yet
         * the kernel only runs it (and checks the tag) when recvmsg is given
         * some room. */
        if (out_total == 0) {
                out = &none;
                nout = 1;
        }
        n = kcapi_aead_stream_op(h, out, nout);
        if (n < 0)
                return map_io_error(n);
        if ((size_t)n != out_total)
                return -EIO;
        return 0;
}

/* A new, unkeyed libkcapi handle (its own transform), with its descriptors
 * marked close-on-exec. */
static int handle_new(struct kcapi_handle **ret, char *reason, size_t size)
{
        struct fdlist before = {};
        struct kcapi_handle *h = NULL;
        int r;

        pthread_once(&quiet_once, quiet_libkcapi);
        for_each_fd(collect_inheritable, &before);

        r = kcapi_aead_init(&h, ALG_NAME, 0);
        if (r < 0) {
                h = NULL;
                if (r == -EAFNOSUPPORT || r == -EOPNOTSUPP) {
                        set_reason(reason, size, "%s", REASON_NO_AF_ALG);
                        r = -ENOTSUP;
                } else if (r == -ENOENT) {
                        set_reason(reason, size, "%s", REASON_NO_GCM);
                } else if (crypto_user_missing()) {
                        set_reason(reason, size, "%s", REASON_NO_CRYPTO_USER);
                        r = -ENOTSUP;
                } else {
                        set_reason(reason, size, "libkcapi: kcapi_aead_init(" ALG_NAME "): %s",
                                   strerror(-r));
                }
                goto out;
        }
        for_each_fd(mark_cloexec, &before);

        /* The tag size belongs to the transform and, like the key, can only
         * be set before the first operation. */
        r = kcapi_aead_settaglen(h, ENGINE_TAG_SIZE);
        if (r < 0) {
                set_reason(reason, size, "%s", ALG_NAME ": 16-byte tags refused by the kernel");
                r = -EINVAL;
                goto out;
        }
        if (kcapi_aead_ivsize(h) != ENGINE_NONCE_SIZE) {
                set_reason(reason, size, "%s", ALG_NAME ": kernel reports an IV size other than 12");
                r = -ENOTSUP;
                goto out;
        }
out:
        free(before.fd);
        if (r < 0) {
                kcapi_aead_destroy(h);
                return r;
        }
        *ret = h;
        return 0;
}

static int set_key(struct kcapi_handle *h, const uint8_t *key)
{
        return kcapi_aead_setkey(h, key, ENGINE_KEY_SIZE) < 0 ? -EINVAL : 0;
}

/* Creates a handle and checks it against a known answer end to end. */
static int self_test(char *reason, size_t size)
{
        static const uint8_t zero[ENGINE_KEY_SIZE];
        struct kcapi_handle *h;
        uint8_t tag[ENGINE_TAG_SIZE];
        struct iovec out = { .iov_base = tag, .iov_len = sizeof(tag) };
        int r;

        r = handle_new(&h, reason, size);
        if (r < 0)
                return r;
        r = set_key(h, zero);
        if (r < 0) {
                set_reason(reason, size, "%s", ALG_NAME ": the kernel refused a 256-bit key");
                goto out;
        }
        r = run_op(h, true, false, zero, 0, NULL, 0, 0, &out, 1, sizeof(tag));
        mark_accepted_cloexec();
        if (r == 0 && memcmp(tag, kat_tag, sizeof(tag)) != 0)
                r = -EIO;
        if (r < 0)
                set_reason(reason, size, "%s", ALG_NAME " known-answer test through AF_ALG failed");
out:
        kcapi_aead_destroy(h);
        return r;
}

/* --- the engine operations ------------------------------------------------ */

/* A whole AEAD message must sit in the operation socket's send buffer before
 * the kernel processes it, and its output in the receive buffer: a larger one
 * makes sendmsg() sleep for room that never comes.  Every socket starts with
 * the same buffer sizes (net.core.[wr]mem_default), so a fresh AF_ALG socket
 * tells them; unlike the sysctl files, which a private network namespace
 * hides, that works everywhere.  Keep one page of slack. */
static size_t max_message(void)
{
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        _cleanup_close_ int fd = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        int w = 0, r = 0;
        socklen_t wl = sizeof(w), rl = sizeof(r);
        size_t m;

        if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &w, &wl) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &r, &rl) < 0 || w <= 0 || r <= 0)
                return FALLBACK_MAX_MSG;
        m = (size_t)(w < r ? w : r) & ~(page - 1);
        if (m < 2 * page)
                return FALLBACK_MAX_MSG;
        return m - page;
}

/* How much one vmsplice into the handle's pipe takes (libkcapi enlarges the
 * pipe to 17 pages or more where it may); 0 when that cannot be told. */
static size_t splice_capacity(struct kcapi_handle *h)
{
        int n = kcapi_get_maxsplicesize(h);

        return n > 0 ? (size_t)n : 0;
}

static void slot_clear(struct slot *s)
{
        kcapi_aead_destroy(s->h);  /* closes the sockets; the kernel frees the key */
        *s = (struct slot){};
}

static int kernel_aead_new(struct engine_aead **ret)
{
        struct engine_aead *a;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->ops = &engine_kernel_ops;
        a->max_msg = max_message();
        r = engine_random(a->fp_key, sizeof(a->fp_key));
        if (r < 0)
                goto fail;
        /* One transform up front, so that an absent engine fails here. */
        r = handle_new(&a->slot[0].h, NULL, 0);
        if (r < 0)
                goto fail;
        a->slot[0].splice_max = splice_capacity(a->slot[0].h);
        *ret = a;
        return 0;
fail:
        free(a);
        return r;
}

static void kernel_aead_free(struct engine_aead *a)
{
        if (!a)
                return;
        for (size_t i = 0; i < SLOTS; i++)
                slot_clear(&a->slot[i]);
        secure_wipe(a->fp_key, sizeof(a->fp_key));
        free(a->aad_buf);
        free(a);
}

/* The slot whose transform holds key: a hit, or a transform keyed now in an
 * empty, unkeyed or least recently used slot. */
static int get_slot(struct engine_aead *a, const uint8_t *key, struct slot **ret)
{
        uint64_t fp[2] = { siphash_key(a->fp_key[0], key), siphash_key(a->fp_key[1], key) };
        struct slot *victim = NULL;
        int r;

        for (size_t i = 0; i < SLOTS; i++) {
                struct slot *s = &a->slot[i];

                if (s->keyed && s->fp[0] == fp[0] && s->fp[1] == fp[1]) {
                        s->last_use = ++a->clock;
                        *ret = s;
                        return 0;
                }
        }
        for (size_t i = 0; i < SLOTS; i++) {
                struct slot *s = &a->slot[i];

                if (!s->keyed && (!victim || victim->keyed || (s->h && !victim->h)))
                        victim = s;  /* an unkeyed handle is best, an empty slot next */
                else if (!victim || (victim->keyed && s->last_use < victim->last_use))
                        victim = s;
        }
        if (victim->keyed)
                slot_clear(victim);  /* its transform cannot take another key */
        if (!victim->h) {
                r = handle_new(&victim->h, NULL, 0);
                if (r < 0)
                        return r;
                victim->splice_max = splice_capacity(victim->h);
        }
        r = set_key(victim->h, key);
        if (r < 0) {
                slot_clear(victim);
                return r;
        }
        victim->keyed = true;
        victim->fp[0] = fp[0];
        victim->fp[1] = fp[1];
        victim->last_use = ++a->clock;
        *ret = victim;
        return 0;
}

static int prepare(struct engine_aead *a, const uint8_t *key, const uint8_t *nonce,
                   const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len,
                   size_t payload)
{
        if (!a || a->ops != &engine_kernel_ops || !key || !nonce)
                return -EINVAL;
        if ((!aad && aad_len) || (!in && in_len))
                return -EINVAL;
        if (aad_len > a->max_msg || payload > a->max_msg - aad_len ||
            ENGINE_TAG_SIZE > a->max_msg - aad_len - payload)
                return -EMSGSIZE;
        if (aad_len > a->aad_cap) {
                uint8_t *p = realloc(a->aad_buf, aad_len);

                if (!p)
                        return -ENOMEM;
                a->aad_buf = p;
                a->aad_cap = aad_len;
        }
        return 0;
}

static int finish(struct slot *s, int r)
{
        if (!s->accepted) {
                mark_accepted_cloexec();
                s->accepted = true;
        }
        /* After anything but a clean result or a bad tag, the operation
         * socket may hold half a message: drop the transform. */
        if (r < 0 && r != -EBADMSG)
                slot_clear(s);
        return r;
}

/* Whether libkcapi will hand the input over in a single vmsplice: large
 * enough to pay off, and within the pipe in bytes and in pages (a buffer
 * that starts mid-page spans one page more than its length says).  A
 * vmsplice that fills the pipe half way would leave libkcapi splitting the
 * message, which the kernel takes as two. */
static bool want_zerocopy(const struct engine_aead *a, const struct slot *s,
                          const struct iovec *v, size_t n, size_t total)
{
        size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = 0;

        if (a->no_zerocopy || total < ZEROCOPY_MIN || total > s->splice_max)
                return false;
        for (size_t i = 0; i < n; i++) {
                uintptr_t b = (uintptr_t)v[i].iov_base;

                pages += (b + v[i].iov_len - 1) / page - b / page + 1;
        }
        return pages <= s->splice_max / page;
}

/* One operation under key.  Should the kernel refuse a spliced one (a kernel
 * or policy without splice into AF_ALG), it runs again with copies on a
 * fresh transform, and this engine_aead copies from then on. */
static int run_crypt(struct engine_aead *a, const uint8_t *key, bool enc, const uint8_t *nonce,
                     size_t aad_len, struct iovec *in, size_t nin, size_t in_total,
                     struct iovec *out, size_t nout, size_t out_total)
{
        struct slot *s;
        bool zc;
        int r;

        r = get_slot(a, key, &s);
        if (r < 0)
                return r;
        zc = want_zerocopy(a, s, in, nin, in_total);
        r = finish(s, run_op(s->h, enc, zc, nonce, aad_len, in, nin, in_total, out, nout,
                             out_total));
        if (!zc || r >= 0 || r == -EBADMSG)
                return r;
        a->no_zerocopy = true;
        r = get_slot(a, key, &s);
        if (r < 0)
                return r;
        return finish(s, run_op(s->h, enc, false, nonce, aad_len, in, nin, in_total, out, nout,
                                out_total));
}

static size_t iov_add(struct iovec *v, size_t n, const void *p, size_t len)
{
        if (len == 0)
                return n;
        v[n].iov_base = (void *)(uintptr_t)p;  /* libkcapi's iovecs are not const */
        v[n].iov_len = len;
        return n + 1;
}

static int kernel_seal(struct engine_aead *a, const uint8_t key[ENGINE_KEY_SIZE],
                       const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len, uint8_t *out)
{
        struct iovec iv_in[2], iv_out[2];
        size_t nin = 0, nout = 0;
        int r;

        if (!out)
                return -EINVAL;
        r = prepare(a, key, nonce, aad, aad_len, in, in_len, in_len);
        if (r < 0)
                return r;
        nin = iov_add(iv_in, nin, aad, aad_len);
        nin = iov_add(iv_in, nin, in, in_len);
        nout = iov_add(iv_out, nout, a->aad_buf, aad_len);
        nout = iov_add(iv_out, nout, out, in_len + ENGINE_TAG_SIZE);
        r = run_crypt(a, key, true, nonce, aad_len, iv_in, nin, aad_len + in_len,
                      iv_out, nout, aad_len + in_len + ENGINE_TAG_SIZE);
        if (r < 0)
                secure_wipe(out, in_len + ENGINE_TAG_SIZE);
        return r;
}

static int kernel_open(struct engine_aead *a, const uint8_t key[ENGINE_KEY_SIZE],
                       const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len, uint8_t *out)
{
        struct iovec iv_in[2], iv_out[2];
        size_t nin = 0, nout = 0, ct_len;
        int r;

        if (in_len < ENGINE_TAG_SIZE)
                return -EINVAL;
        ct_len = in_len - ENGINE_TAG_SIZE;
        if (!out && ct_len)
                return -EINVAL;
        r = prepare(a, key, nonce, aad, aad_len, in, in_len, ct_len);
        if (r < 0)
                return r;
        nin = iov_add(iv_in, nin, aad, aad_len);
        nin = iov_add(iv_in, nin, in, in_len);
        nout = iov_add(iv_out, nout, a->aad_buf, aad_len);
        nout = iov_add(iv_out, nout, out, ct_len);
        r = run_crypt(a, key, false, nonce, aad_len, iv_in, nin, aad_len + in_len,
                      iv_out, nout, aad_len + ct_len);
        /* The kernel decrypts into out before it compares the tag. */
        if (r < 0)
                secure_wipe(out, ct_len);
        return r;
}

static int kernel_probe(char *ret_reason, size_t reason_size)
{
        int r;

        r = raw_check(ret_reason, reason_size);
        if (r < 0)
                return r;
        return self_test(ret_reason, reason_size);
}

/* --- which implementation serves ------------------------------------------ */

static void trim(char *s)
{
        size_t n = strlen(s);

        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
                s[--n] = 0;
        memmove(s, s + strspn(s, " \t"), strlen(s + strspn(s, " \t")) + 1);
}

struct crypto_entry {
        char name[128], driver[128], internal[8];
        long priority;
        bool have_priority;
};

static void consider(const struct crypto_entry *e, const char *alg, struct crypto_entry *best,
                     bool *found)
{
        if (strcmp(e->name, alg) != 0 || !e->driver[0] || !e->have_priority ||
            strcmp(e->internal, "yes") == 0)
                return;
        if (!*found || e->priority > best->priority) {
                *best = *e;
                *found = true;
        }
}

int engine_kernel_parse_crypto(FILE *f, const char *alg, char *ret, size_t size)
{
        struct crypto_entry cur = {}, best = {};
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        bool found = false;

        if (!f || !alg || !ret || size == 0)
                return -EINVAL;
        while (getline(&line, &cap, f) >= 0) {
                char *colon, *key = line, *val;

                trim(line);
                if (!line[0]) {         /* a blank line ends an entry */
                        consider(&cur, alg, &best, &found);
                        cur = (struct crypto_entry){};
                        continue;
                }
                colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = 0;
                val = colon + 1;
                trim(key);
                trim(val);
                if (strcmp(key, "name") == 0) {
                        /* A name line without a blank line before it still
                         * starts a new entry. */
                        if (cur.name[0])
                                consider(&cur, alg, &best, &found);
                        cur = (struct crypto_entry){};
                        snprintf(cur.name, sizeof(cur.name), "%s", val);
                } else if (strcmp(key, "driver") == 0) {
                        snprintf(cur.driver, sizeof(cur.driver), "%s", val);
                } else if (strcmp(key, "internal") == 0) {
                        snprintf(cur.internal, sizeof(cur.internal), "%s", val);
                } else if (strcmp(key, "priority") == 0) {
                        char *end;

                        errno = 0;
                        cur.priority = strtol(val, &end, 10);
                        cur.have_priority = errno == 0 && end != val && !*end;
                }
        }
        consider(&cur, alg, &best, &found);
        if (!found)
                return -ENOENT;
        if (strlen(best.driver) >= size)
                return -ENOBUFS;
        strcpy(ret, best.driver);
        return 0;
}

static int read_proc_crypto(char *ret, size_t size)
{
        _cleanup_(fclosep) FILE *f = fopen("/proc/crypto", "re");

        if (!f)
                return negative_errno();
        return engine_kernel_parse_crypto(f, ALG_NAME, ret, size);
}

static int kernel_driver(char *ret, size_t size)
{
        int r;

        r = read_proc_crypto(ret, size);
        if (r != -ENOENT)
                return r;
        /* gcm(aes) is a template instance: it shows in /proc/crypto only
         * once something has asked for it. */
        r = raw_check(NULL, 0);
        if (r < 0)
                return r;
        return read_proc_crypto(ret, size);
}

const struct engine_ops engine_kernel_ops = {
        .name = "kernel",
        .probe = kernel_probe,
        .driver = kernel_driver,
        .aead_new = kernel_aead_new,
        .aead_free = kernel_aead_free,
        .seal = kernel_seal,
        .open = kernel_open,
        .max_message = max_message,
};
