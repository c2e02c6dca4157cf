/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <sys/stat.h>

#include "masterkey.h"
#include "records.h"
#include "recovery.h"
#include "shared/secret.h"
#include "shared/shamir.h"
#include "shared/util.h"
#include "store/store-auth.h"

#define RECOVERY_RECORD_VERSION 1
#define SHARE_FILE_MAX 512

#define fail(...) (void)snprintf(err, err_size, __VA_ARGS__)

static void hex(const uint8_t *b, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", b[i]);
}

static int unhex_exact(const char *s, uint8_t *out, size_t n)
{
        if (strlen(s) != 2 * n)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                int hi = unhexchar(s[2 * i]), lo = unhexchar(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
}

int recovery_record_encode(const struct recovery_record *rec, char **ret)
{
        char id[2 * RECOVERY_INSTALL_ID_SIZE + 1], set[2 * RECOVERY_SET_ID_SIZE + 1],
                check[2 * RECOVERY_CHECK_SIZE + 1];

        hex(rec->install_id, sizeof(rec->install_id), id);
        hex(rec->set_id, sizeof(rec->set_id), set);
        hex(rec->check, sizeof(rec->check), check);
        if (asprintf(ret, "{\"version\":%d,\"installation\":\"%s\",\"set\":\"%s\",\"threshold\":%u,"
                          "\"shares\":%u,\"check\":\"%s\",\"created_usec\":%" PRIu64 "}",
                     RECOVERY_RECORD_VERSION, id, set, rec->threshold, rec->shares, check,
                     rec->created_usec) < 0)
                return -ENOMEM;
        return 0;
}

static int get_u(json_object *o, const char *name, uint64_t max, uint64_t *ret)
{
        json_object *v;
        int64_t n;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        n = json_object_get_int64(v);
        if (n < 0 || (uint64_t)n > max)
                return -EBADMSG;
        *ret = (uint64_t)n;
        return 0;
}

static int get_hex(json_object *o, const char *name, uint8_t *out, size_t n)
{
        json_object *v;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        return unhex_exact(json_object_get_string(v), out, n);
}

int recovery_record_decode(const uint8_t *buf, size_t len, struct recovery_record *ret)
{
        struct recovery_record rec = { 0 };
        json_object *o;
        uint64_t version, k, n;
        int r = -EBADMSG;

        if (!buf || len > STORE_VALUE_MAX)
                return -EBADMSG;
        o = record_parse_exact(buf, len);
        if (!o)
                return -EBADMSG;
        if (get_u(o, "version", UINT32_MAX, &version) < 0 || version != RECOVERY_RECORD_VERSION ||
            get_hex(o, "installation", rec.install_id, sizeof(rec.install_id)) < 0 ||
            get_hex(o, "set", rec.set_id, sizeof(rec.set_id)) < 0 ||
            get_u(o, "threshold", RECOVERY_SHARES_MAX, &k) < 0 ||
            get_u(o, "shares", RECOVERY_SHARES_MAX, &n) < 0 || k < 2 || k > n ||
            get_hex(o, "check", rec.check, sizeof(rec.check)) < 0 ||
            get_u(o, "created_usec", INT64_MAX, &rec.created_usec) < 0)
                goto out;
        rec.threshold = (unsigned)k;
        rec.shares = (unsigned)n;
        *ret = rec;
        r = 0;
out:
        json_object_put(o);
        return r;
}

int recovery_check_value(const uint8_t master[ENGINE_KEY_SIZE], const uint8_t install_id[RECOVERY_INSTALL_ID_SIZE],
                         uint8_t ret[RECOVERY_CHECK_SIZE])
{
        /* A label of its own: nothing else derived from the master key
         * (the record key among them) equals it. */
        static const char info[] = "dkm recovery check value v1";

        return engine_hkdf_sha256(master, ENGINE_KEY_SIZE, install_id, RECOVERY_INSTALL_ID_SIZE,
                                  (const uint8_t *)info, sizeof(info) - 1, ret, RECOVERY_CHECK_SIZE);
}

static void unlink_shares(int dirfd, unsigned n)
{
        char name[64];

        for (unsigned i = 1; i <= n; i++) {
                snprintf(name, sizeof(name), "recovery-share-%u", i);
                (void)unlinkat(dirfd, name, 0);
        }
}

/* Writes share files 1..n; on failure removes the ones it wrote. */
static int write_shares(int dirfd, const char *dir, const struct recovery_record *rec, const uint8_t *values,
                        char *err, size_t err_size)
{
        _cleanup_secret_ struct recovery_share *s = secret_alloc(sizeof(*s));
        _cleanup_secret_ char *line = secret_alloc(RECOVERY_SHARE_TEXT_MAX + 1);
        char name[64];
        unsigned i;
        int r = 0;

        if (!s || !line)
                return -ENOMEM;
        memcpy(s->install_id, rec->install_id, sizeof(s->install_id));
        memcpy(s->set_id, rec->set_id, sizeof(s->set_id));
        s->threshold = rec->threshold;
        s->shares = rec->shares;
        for (i = 1; i <= rec->shares; i++) {
                _cleanup_close_ int fd = -1;
                size_t len;

                s->index = i;
                memcpy(s->value, values + (size_t)(i - 1) * RECOVERY_SHARE_VALUE_SIZE, RECOVERY_SHARE_VALUE_SIZE);
                r = recovery_share_format(s, line, RECOVERY_SHARE_TEXT_MAX);
                if (r < 0) {
                        fail("cannot format recovery share %u: %s", i, strerror(-r));
                        break;
                }
                len = strlen(line);
                line[len++] = '\n';
                snprintf(name, sizeof(name), "recovery-share-%u", i);
                fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0) {
                        r = negative_errno();
                        fail("cannot create %s/%s: %s%s", dir, name, strerror(-r),
                             r == -EEXIST ? " (shares of an earlier --init are there: move them away "
                                            "first, they are not overwritten)" : "");
                        break;
                }
                if (write(fd, line, len) != (ssize_t)len || fsync(fd) < 0) {
                        r = errno ? negative_errno() : -EIO;
                        (void)unlinkat(dirfd, name, 0);
                        fail("cannot write %s/%s: %s", dir, name, strerror(-r));
                        break;
                }
        }
        if (r < 0)
                unlink_shares(dirfd, i - 1);
        else if (fsync(dirfd) < 0) {
                r = negative_errno();
                unlink_shares(dirfd, rec->shares);
                fail("cannot sync the share directory %s: %s", dir, strerror(-r));
        }
        return r;
}

int recovery_create(struct store *s, const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k,
                    const char *dir, struct recovery_record *ret, char *err, size_t err_size)
{
        _cleanup_secret_ uint8_t *values = secret_alloc((size_t)RECOVERY_SHARES_MAX * RECOVERY_SHARE_VALUE_SIZE);
        _cleanup_free_ char *json = NULL;
        _cleanup_close_ int dirfd = -1;
        struct recovery_record rec = { 0 };
        struct store_kv kv = { 0 };
        struct store_cmp cmp = { RECOVERY_RECORD_KEY, 0 };
        struct store_op op = { STORE_PUT, RECOVERY_RECORD_KEY, NULL, 0 };
        int r;

        if (!values)
                return -ENOMEM;
        if (n < 2 || k < 2 || k > n || n > RECOVERY_SHARES_MAX) {
                fail("[recovery] threshold=%u, shares=%u: need 2 <= threshold <= shares <= %d", k, n,
                     RECOVERY_SHARES_MAX);
                return -EINVAL;
        }
        r = store_ops_of(s)->get(s, RECOVERY_RECORD_KEY, &kv);
        if (r >= 0) {
                store_kv_clear(&kv);
                fail("this installation's recovery shares were made already; a second set is not made "
                     "(the first one still rebuilds the master key)");
                return -EEXIST;
        }
        if (r != -ENOENT) {
                fail("cannot read the store's recovery record: %s", strerror(-r));
                return r;
        }
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
                r = negative_errno();
                fail("cannot create the share directory %s: %s", dir, strerror(-r));
                return r;
        }
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                r = negative_errno();
                fail("cannot open the share directory %s: %s", dir, strerror(-r));
                return r;
        }
        rec.threshold = k;
        rec.shares = n;
        rec.created_usec = now_real_usec();
        r = engine_random(rec.install_id, sizeof(rec.install_id));
        if (r >= 0)
                r = engine_random(rec.set_id, sizeof(rec.set_id));
        if (r >= 0)
                r = recovery_check_value(master, rec.install_id, rec.check);
        if (r >= 0)
                r = shamir_split(master, ENGINE_KEY_SIZE, n, k, values);
        if (r >= 0)
                r = recovery_record_encode(&rec, &json);
        if (r < 0) {
                fail("cannot split the master key: %s", strerror(-r));
                return r;
        }
        r = write_shares(dirfd, dir, &rec, values, err, err_size);
        if (r < 0)
                return r;
        op.value = json;
        op.value_len = strlen(json);
        r = store_ops_of(s)->txn(s, &cmp, 1, &op, 1, NULL);
        if (r < 0) {
                unlink_shares(dirfd, n);
                fail("cannot write the recovery record to the store: %s%s", strerror(-r),
                     r == -ESTALE ? " (another node made shares at the same time)" : "");
                return r == -ESTALE ? -EEXIST : r;
        }
        *ret = rec;
        return 0;
}

static int read_share(const char *path, struct recovery_share *ret, char *err, size_t err_size)
{
        _cleanup_secret_ char *buf = secret_alloc(SHARE_FILE_MAX + 1);
        _cleanup_close_ int fd = -1;
        size_t len = 0;
        int r;

        if (!buf)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = negative_errno();
                fail("share %s: %s", path, strerror(-r));
                return -EBADMSG;
        }
        r = read_full(fd, buf, SHARE_FILE_MAX + 1, &len);
        if (r < 0) {
                fail("share %s: %s", path, strerror(-r));
                return -EBADMSG;
        }
        if (len > SHARE_FILE_MAX) {
                fail("share %s: %s", path, recovery_share_strerror(-EBADMSG));
                return -EBADMSG;
        }
        r = recovery_share_parse(buf, len, ret);
        if (r < 0) {
                fail("share %s: %s", path, recovery_share_strerror(r));
                return -EBADMSG;
        }
        return 0;
}

int recovery_recover(struct store *raw, char *const *paths, unsigned n_paths, uint8_t *ret_master,
                     struct recovery_record *ret_rec, char *err, size_t err_size)
{
        _cleanup_secret_ struct recovery_share *shares =
                secret_alloc(sizeof(struct recovery_share) * RECOVERY_SHARES_MAX);
        _cleanup_secret_ uint8_t *master = secret_alloc(ENGINE_KEY_SIZE);
        _cleanup_secret_ uint8_t *rkey = secret_alloc(MASTERKEY_RECORD_KEY_SIZE);
        const uint8_t *values[RECOVERY_SHARES_MAX];
        uint8_t numbers[RECOVERY_SHARES_MAX], check[RECOVERY_CHECK_SIZE];
        const char *from[RECOVERY_SHARES_MAX + 1];
        char want[2 * RECOVERY_INSTALL_ID_SIZE + 1], got[2 * RECOVERY_INSTALL_ID_SIZE + 1];
        struct recovery_record rec, sealed;
        struct store_kv kv = { 0 };
        _cleanup_free_ uint8_t *plain = NULL;
        size_t plain_len = 0;
        uint64_t seq;
        unsigned n = 0;
        int r;

        if (!shares || !master || !rkey)
                return -ENOMEM;
        r = store_ops_of(raw)->get(raw, RECOVERY_RECORD_KEY, &kv);
        if (r == -ENOENT) {
                fail("the store has no recovery record: no recovery shares were made for it (dkmd --init "
                     "--recovery-dir), or this is another installation's store");
                return -ENOENT;
        }
        if (r < 0) {
                fail("cannot read the store's recovery record: %s", strerror(-r));
                return r;
        }
        /* Read before any key is at hand, only to name what does not fit;
         * trusted once the rebuilt key authenticates it below. */
        r = recovery_record_decode(kv.value, kv.value_len, &sealed);
        if (r < 0) {
                store_kv_clear(&kv);
                fail("the store's recovery record is malformed");
                return -EBADMSG;
        }
        hex(sealed.install_id, sizeof(sealed.install_id), want);
        for (unsigned i = 0; i < n_paths; i++) {
                struct recovery_share *s = &shares[n];
                bool dup = false;

                if (n == RECOVERY_SHARES_MAX) {
                        r = -E2BIG;
                        fail("more than %d shares given", RECOVERY_SHARES_MAX);
                        goto out;
                }
                r = read_share(paths[i], s, err, err_size);
                if (r < 0)
                        goto out;
                if (memcmp(s->install_id, sealed.install_id, sizeof(s->install_id)) != 0) {
                        hex(s->install_id, sizeof(s->install_id), got);
                        r = -EXDEV;
                        fail("share %s belongs to another installation (%s); this store's installation "
                             "is %s", paths[i], got, want);
                        goto out;
                }
                if (memcmp(s->set_id, sealed.set_id, sizeof(s->set_id)) != 0 ||
                    s->threshold != sealed.threshold || s->shares != sealed.shares) {
                        r = -ESTALE;
                        fail("share %s is not of this installation's current share set (it says %u of %u; "
                             "the store's set is %u of %u): an older set, no longer valid", paths[i],
                             s->threshold, s->shares, sealed.threshold, sealed.shares);
                        goto out;
                }
                for (unsigned j = 0; j < n; j++)
                        if (shares[j].index == s->index) {
                                dup = true;
                                /* The same share twice counts once. */
                                if (memcmp(shares[j].value, s->value, sizeof(s->value)) != 0) {
                                        r = -EKEYREJECTED;
                                        fail("shares %s and %s both claim to be share %u of %u but differ: "
                                             "one of them is wrong", from[j], paths[i], s->index, s->shares);
                                        goto out;
                                }
                        }
                if (dup)
                        continue;
                from[n] = paths[i];
                values[n] = s->value;
                numbers[n] = (uint8_t)s->index;
                n++;
        }
        if (n < sealed.threshold) {
                r = -ENOKEY;
                fail("%u distinct share%s given; this installation's master key needs %u of its %u shares",
                     n, n == 1 ? "" : "s", sealed.threshold, sealed.shares);
                goto out;
        }
        r = shamir_combine(values, numbers, n, ENGINE_KEY_SIZE, master);
        if (r >= 0)
                r = masterkey_derive_record_key(master, rkey);
        if (r < 0) {
                fail("cannot combine the shares: %s", strerror(-r));
                goto out;
        }
        /* The record's MAC is under a key derived from the master key: only
         * the right key opens it.  Then its check value, which says so. */
        r = store_auth_unseal(rkey, RECOVERY_RECORD_KEY, kv.value, kv.value_len, &plain, &plain_len, &seq);
        if (r >= 0)
                r = recovery_record_decode(plain, plain_len, &rec);
        if (r >= 0)
                r = recovery_check_value(master, rec.install_id, check);
        if (r < 0 || CRYPTO_memcmp(check, rec.check, sizeof(check)) != 0 ||
            memcmp(rec.install_id, sealed.install_id, sizeof(rec.install_id)) != 0) {
                r = -EKEYREJECTED;
                fail("the %u shares do not rebuild this installation's master key: at least one of them "
                     "is wrong (or the store's recovery record was altered); nothing was written", n);
                goto out;
        }
        memcpy(ret_master, master, ENGINE_KEY_SIZE);
        *ret_rec = rec;
        r = 0;
out:
        store_kv_clear(&kv);
        if (plain)
                explicit_bzero(plain, plain_len);
        return r;
}

static int key_file_equal(int fd, const uint8_t master[ENGINE_KEY_SIZE], bool *ret)
{
        _cleanup_secret_ uint8_t *old = secret_alloc(ENGINE_KEY_SIZE + 1);
        size_t len = 0;
        int r;

        if (!old)
                return -ENOMEM;
        r = read_full(fd, old, ENGINE_KEY_SIZE + 1, &len);
        if (r < 0)
                return r;
        *ret = len == ENGINE_KEY_SIZE && CRYPTO_memcmp(old, master, ENGINE_KEY_SIZE) == 0;
        return 0;
}

int recovery_write_key(const char *path, const uint8_t master[ENGINE_KEY_SIZE], bool *ret_written, char *err,
                       size_t err_size)
{
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        bool same = false;
        int r;

        *ret_written = false;
        if (strcmp(path, "-") == 0) {
                if (isatty(STDOUT_FILENO)) {
                        fail("--recover-out -: standard output is a terminal; pipe it into "
                             "systemd-creds encrypt instead");
                        return -ENOTTY;
                }
                if (write(STDOUT_FILENO, master, ENGINE_KEY_SIZE) != ENGINE_KEY_SIZE) {
                        r = errno ? negative_errno() : -EIO;
                        fail("cannot write the master key to standard output: %s", strerror(-r));
                        return r;
                }
                *ret_written = true;
                return 0;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd >= 0) {
                r = key_file_equal(fd, master, &same);
                if (r < 0) {
                        fail("cannot read the existing master key %s: %s", path, strerror(-r));
                        return r;
                }
                if (same)
                        return 0;
                fail("master key %s exists and holds another key: it is not replaced (move it away first "
                     "if it is to go)", path);
                return -EEXIST;
        }
        if (errno != ENOENT) {
                r = negative_errno();
                fail("cannot check the master key %s: %s", path, strerror(-r));
                return r;
        }
        /* Whole or not at all: written beside it, then linked into place,
         * which also refuses a file that appeared meanwhile. */
        if (asprintf(&tmp, "%s.recover-XXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                fail("cannot create the master key %s: %s", path, strerror(-r));
                return r;
        }
        if (fchmod(fd, 0600) < 0 || write(fd, master, ENGINE_KEY_SIZE) != ENGINE_KEY_SIZE || fsync(fd) < 0)
                r = errno ? negative_errno() : -EIO;
        else if (link(tmp, path) < 0)
                r = negative_errno();
        else
                r = 0;
        (void)unlink(tmp);
        if (r < 0) {
                fail("cannot write the master key %s: %s", path, strerror(-r));
                return r;
        }
        *ret_written = true;
        return 0;
}
