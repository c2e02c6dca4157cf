/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
/* pem.h first: cms.h declares PEM_write_bio_CMS only after it. */
#include <openssl/pem.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "masterkey.h"
#include "records.h"
#include "recovery.h"
#include "shared/secret.h"
#include "shared/shamir.h"
#include "shared/util.h"
#include "store/store-auth.h"

#define SHARE_FILE_MAX 512
#define CERT_FILE_MAX (64 * 1024)

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
                check[2 * RECOVERY_CHECK_SIZE + 1], wrapped[2 * WRAPPED_KEY_SIZE + 1] = "";
        bool w = rec->version == RECOVERY_RECORD_WRAPPED;

        if (rec->version != RECOVERY_RECORD_LEGACY && !w)
                return -EINVAL;
        hex(rec->install_id, sizeof(rec->install_id), id);
        hex(rec->set_id, sizeof(rec->set_id), set);
        hex(rec->check, sizeof(rec->check), check);
        if (w)
                hex(rec->wrapped, sizeof(rec->wrapped), wrapped);
        if (asprintf(ret, "{\"version\":%u,\"installation\":\"%s\",\"set\":\"%s\",\"threshold\":%u,"
                          "\"shares\":%u,\"check\":\"%s\",%s%s%s\"created_usec\":%" PRIu64 "}",
                     rec->version, id, set, rec->threshold, rec->shares, check, w ? "\"wrapped\":\"" : "",
                     wrapped, w ? "\"," : "", rec->created_usec) < 0)
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
        if (get_u(o, "version", UINT32_MAX, &version) < 0)
                goto out;
        if (version != RECOVERY_RECORD_LEGACY && version != RECOVERY_RECORD_WRAPPED) {
                r = -EPROTONOSUPPORT;
                goto out;
        }
        rec.version = (unsigned)version;
        if (version == RECOVERY_RECORD_WRAPPED && get_hex(o, "wrapped", rec.wrapped, sizeof(rec.wrapped)) < 0)
                goto out;
        if (get_hex(o, "installation", rec.install_id, sizeof(rec.install_id)) < 0 ||
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

/* --- custodians ------------------------------------------------------------ */

struct recovery_custodians {
        size_t n;
        char names[RECOVERY_SHARES_MAX][RECOVERY_CUSTODIAN_NAME_MAX + 1];
        X509 *certs[RECOVERY_SHARES_MAX];
};

int recovery_custodian_name(const char *entry, char ret[RECOVERY_CUSTODIAN_NAME_MAX + 1])
{
        size_t len = strlen(entry);

        if (len < 4 || strcmp(entry + len - 4, ".pem") != 0)
                return -ENOENT;
        len -= 4;
        if (len < 1 || len > RECOVERY_CUSTODIAN_NAME_MAX || entry[0] == '.')
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                char c = entry[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '_' || c == '.'))
                        return -EINVAL;
        }
        memcpy(ret, entry, len);
        ret[len] = 0;
        return 0;
}

void recovery_custodians_free(struct recovery_custodians *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n; i++)
                X509_free(c->certs[i]);
        free(c);
}

size_t recovery_custodians_count(const struct recovery_custodians *c)
{
        return c ? c->n : 0;
}

const char *recovery_custodians_name(const struct recovery_custodians *c, size_t i)
{
        return c && i < c->n ? c->names[i] : NULL;
}

static int cmp_names(const void *a, const void *b)
{
        return strcmp(a, b);
}

/* One certificate, through OpenSSL's PEM reader; the checks a share needs:
 * a key CMS can encrypt to, and a validity period that holds now. */
static int load_cert(int dirfd, const char *dir, const char *entry, X509 **ret, char *err, size_t err_size)
{
        _cleanup_close_ int fd = openat(dirfd, entry, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        _cleanup_free_ char *buf = malloc(CERT_FILE_MAX + 1);
        struct stat st;
        size_t len = 0;
        X509 *x = NULL;
        EVP_PKEY *pk;
        BIO *bio;
        int r, id;

        if (!buf)
                return -ENOMEM;
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = negative_errno();
                fail("custodian certificate %s/%s: %s", dir, entry, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                fail("custodian certificate %s/%s: not a regular file", dir, entry);
                return -EBADMSG;
        }
        r = read_full(fd, buf, CERT_FILE_MAX + 1, &len);
        if (r < 0) {
                fail("custodian certificate %s/%s: %s", dir, entry, strerror(-r));
                return r;
        }
        if (len > CERT_FILE_MAX) {
                fail("custodian certificate %s/%s: larger than %d bytes", dir, entry, CERT_FILE_MAX);
                return -EBADMSG;
        }
        bio = BIO_new_mem_buf(buf, (int)len);
        if (!bio)
                return -ENOMEM;
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        if (!x) {
                fail("custodian certificate %s/%s: not a PEM X.509 certificate", dir, entry);
                return -EBADMSG;
        }
        pk = X509_get0_pubkey(x);
        id = pk ? EVP_PKEY_get_base_id(pk) : 0;
        if (id != EVP_PKEY_RSA && id != EVP_PKEY_EC) {
                X509_free(x);
                fail("custodian certificate %s/%s: its key is neither RSA nor EC (CMS cannot encrypt a "
                     "share to it)", dir, entry);
                return -EBADMSG;
        }
        if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0 ||
            X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
                X509_free(x);
                fail("custodian certificate %s/%s: not valid now (expired, or not yet valid)", dir, entry);
                return -EBADMSG;
        }
        *ret = x;
        return 0;
}

int recovery_custodians_load(const char *dir, unsigned want, struct recovery_custodians **ret, char *err,
                             size_t err_size)
{
        struct recovery_custodians *c = calloc(1, sizeof(*c));
        char name[RECOVERY_CUSTODIAN_NAME_MAX + 1], entry[RECOVERY_CUSTODIAN_NAME_MAX + 8];
        _cleanup_close_ int dirfd = -1;
        struct dirent *de;
        size_t found = 0;
        DIR *d;
        int r = 0;

        if (!c)
                return -ENOMEM;
        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                r = negative_errno();
                fail("[recovery] custodians=%s: %s", dir, strerror(-r));
                free(c);
                return r == -ENOTDIR ? -ENOENT : r;
        }
        d = fdopendir(fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
        if (!d) {
                r = negative_errno();
                fail("[recovery] custodians=%s: %s", dir, strerror(-r));
                free(c);
                return r;
        }
        while ((de = readdir(d))) {
                int e = recovery_custodian_name(de->d_name, name);

                if (e == -ENOENT)
                        continue;
                if (e < 0) {
                        fail("[recovery] custodians=%s: '%s' is not a custodian certificate name (NAME.pem, "
                             "NAME of letters, digits, '-', '_' and '.', at most %d)", dir, de->d_name,
                             RECOVERY_CUSTODIAN_NAME_MAX);
                        r = -EINVAL;
                        break;
                }
                found++;
                if (c->n < RECOVERY_SHARES_MAX)
                        memcpy(c->names[c->n++], name, sizeof(name));
        }
        closedir(d);
        if (r >= 0 && found != want) {
                fail("[recovery] custodians=%s holds %zu certificate%s (NAME.pem); shares=%u needs one per "
                     "share", dir, found, found == 1 ? "" : "s", want);
                r = -EINVAL;
        }
        if (r < 0) {
                c->n = 0;
                recovery_custodians_free(c);
                return r;
        }
        qsort(c->names, c->n, sizeof(c->names[0]), cmp_names);
        for (size_t i = 0; i < c->n; i++) {
                snprintf(entry, sizeof(entry), "%s.pem", c->names[i]);
                r = load_cert(dirfd, dir, entry, &c->certs[i], err, err_size);
                if (r < 0) {
                        c->n = i;
                        recovery_custodians_free(c);
                        return r;
                }
        }
        *ret = c;
        return 0;
}

/* The share line as a PEM CMS EnvelopedData (AES-256-CBC) to one
 * certificate: what `openssl cms -decrypt` opens.  ret: malloc'd. */
static int cms_encrypt(X509 *cert, const char *line, size_t len, char **ret, size_t *ret_len)
{
        STACK_OF(X509) *to = sk_X509_new_null();
        CMS_ContentInfo *cms = NULL;
        BIO *in = NULL, *out = NULL;
        BUF_MEM *mem;
        int r = -EIO;

        if (!to || !sk_X509_push(to, cert))
                goto out;
        in = BIO_new_mem_buf(line, (int)len);
        out = BIO_new(BIO_s_mem());
        if (!in || !out)
                goto out;
        cms = CMS_encrypt(to, in, EVP_aes_256_cbc(), CMS_BINARY);
        if (!cms || !PEM_write_bio_CMS(out, cms))
                goto out;
        BIO_get_mem_ptr(out, &mem);
        *ret = malloc(mem->length);
        if (!*ret) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(*ret, mem->data, mem->length);
        *ret_len = mem->length;
        r = 0;
out:
        CMS_ContentInfo_free(cms);
        BIO_free(in);
        BIO_free(out);
        sk_X509_free(to);
        return r;
}

/* --- share sets -------------------------------------------------------------- */

/* Where share files go and how they are made. */
struct share_out {
        int dirfd;
        const char *dir;
        const struct recovery_custodians *custodians; /* NULL: plain lines */
        mode_t mode;
        gid_t gid; /* (gid_t)-1: left alone */
};

static void share_name(const struct share_out *o, unsigned i, char *buf, size_t size)
{
        if (o->custodians)
                snprintf(buf, size, "recovery-share-%u.%s.cms", i, o->custodians->names[i - 1]);
        else
                snprintf(buf, size, "recovery-share-%u", i);
}

static void unlink_shares(const struct share_out *o, unsigned n)
{
        char name[RECOVERY_CUSTODIAN_NAME_MAX + 32];

        for (unsigned i = 1; i <= n; i++) {
                share_name(o, i, name, sizeof(name));
                (void)unlinkat(o->dirfd, name, 0);
        }
}

/* Writes share files 1..n; on failure removes the ones it wrote. */
static int write_shares(const struct share_out *o, const struct recovery_record *rec, const uint8_t *values,
                        char *err, size_t err_size)
{
        _cleanup_secret_ struct recovery_share *s = secret_alloc(sizeof(*s));
        _cleanup_secret_ char *line = secret_alloc(RECOVERY_SHARE_TEXT_MAX + 1);
        char name[RECOVERY_CUSTODIAN_NAME_MAX + 32];
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
                _cleanup_free_ char *cms = NULL;
                const char *data = line;
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
                if (o->custodians) {
                        r = cms_encrypt(o->custodians->certs[i - 1], line, len, &cms, &len);
                        if (r < 0) {
                                fail("cannot encrypt recovery share %u to custodian %s: %s", i,
                                     o->custodians->names[i - 1], r == -EIO ? "OpenSSL's CMS_encrypt failed" :
                                     strerror(-r));
                                break;
                        }
                        data = cms;
                }
                share_name(o, i, name, sizeof(name));
                fd = openat(o->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0) {
                        r = negative_errno();
                        fail("cannot create %s/%s: %s%s", o->dir, name, strerror(-r),
                             r == -EEXIST ? " (shares of an earlier --init are there: move them away "
                                            "first, they are not overwritten)" : "");
                        break;
                }
                if ((o->gid != (gid_t)-1 && fchown(fd, (uid_t)-1, o->gid) < 0) || fchmod(fd, o->mode) < 0 ||
                    write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) {
                        r = errno ? negative_errno() : -EIO;
                        (void)unlinkat(o->dirfd, name, 0);
                        fail("cannot write %s/%s: %s", o->dir, name, strerror(-r));
                        break;
                }
        }
        if (r < 0)
                unlink_shares(o, i - 1);
        else if (fsync(o->dirfd) < 0) {
                r = negative_errno();
                unlink_shares(o, rec->shares);
                fail("cannot sync the share directory %s: %s", o->dir, strerror(-r));
        }
        return r;
}

/* The wrap's associated data: the installation and the set, so that a
 * wrapped key copied into another set's record does not open. */
static void set_aad(const struct recovery_record *rec, uint8_t id[16])
{
        memset(id, 0, 16);
        memcpy(id, rec->install_id, RECOVERY_INSTALL_ID_SIZE);
        memcpy(id + RECOVERY_INSTALL_ID_SIZE, rec->set_id, RECOVERY_SET_ID_SIZE);
}

/* A new set of rec->install_id: a fresh set id and recovery key, the
 * master key wrapped under it, and the recovery key's n shares. */
static int make_set(const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k, struct recovery_record *rec,
                    uint8_t *values)
{
        _cleanup_secret_ uint8_t *rkey = secret_alloc(ENGINE_KEY_SIZE);
        uint8_t id[16];
        int r;

        if (!rkey)
                return -ENOMEM;
        rec->version = RECOVERY_RECORD_WRAPPED;
        rec->threshold = k;
        rec->shares = n;
        rec->created_usec = now_real_usec();
        r = engine_random(rec->set_id, sizeof(rec->set_id));
        if (r >= 0)
                r = engine_random(rkey, ENGINE_KEY_SIZE);
        if (r >= 0)
                r = recovery_check_value(master, rec->install_id, rec->check);
        if (r >= 0) {
                set_aad(rec, id);
                r = key_wrap(rkey, WRAP_RECOVERY_MASTER, id, 0, master, rec->wrapped);
        }
        if (r >= 0)
                r = shamir_split(rkey, ENGINE_KEY_SIZE, n, k, values);
        return r;
}

static bool counts_valid(unsigned n, unsigned k, const struct recovery_custodians *custodians, char *err,
                         size_t err_size)
{
        if (n < 2 || k < 2 || k > n || n > RECOVERY_SHARES_MAX) {
                fail("[recovery] threshold=%u, shares=%u: need 2 <= threshold <= shares <= %d", k, n,
                     RECOVERY_SHARES_MAX);
                return false;
        }
        if (custodians && custodians->n != n) {
                fail("[recovery] custodians: %zu certificates for shares=%u", custodians->n, n);
                return false;
        }
        return true;
}

int recovery_create(struct store *s, const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k,
                    const char *dir, const struct recovery_custodians *custodians, struct recovery_record *ret,
                    char *err, size_t err_size)
{
        _cleanup_secret_ uint8_t *values = secret_alloc((size_t)RECOVERY_SHARES_MAX * RECOVERY_SHARE_VALUE_SIZE);
        _cleanup_free_ char *json = NULL;
        _cleanup_close_ int dirfd = -1;
        struct recovery_record rec = { 0 };
        struct store_kv kv = { 0 };
        struct store_cmp cmp = { RECOVERY_RECORD_KEY, 0 };
        struct store_op op = { STORE_PUT, RECOVERY_RECORD_KEY, NULL, 0 };
        struct share_out o = { .dir = dir, .custodians = custodians, .mode = 0600, .gid = (gid_t)-1 };
        int r;

        if (!values)
                return -ENOMEM;
        if (!counts_valid(n, k, custodians, err, err_size))
                return -EINVAL;
        r = store_ops_of(s)->get(s, RECOVERY_RECORD_KEY, &kv);
        if (r >= 0) {
                store_kv_clear(&kv);
                fail("this installation's recovery shares were made already; a second set is not made by "
                     "--init (the first one still rebuilds the master key; dkmctl recovery reshare makes a "
                     "new one)");
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
        o.dirfd = dirfd;
        r = engine_random(rec.install_id, sizeof(rec.install_id));
        if (r >= 0)
                r = make_set(master, n, k, &rec, values);
        if (r >= 0)
                r = recovery_record_encode(&rec, &json);
        if (r < 0) {
                fail("cannot make the recovery key and its shares: %s", strerror(-r));
                return r;
        }
        r = write_shares(&o, &rec, values, err, err_size);
        if (r < 0)
                return r;
        op.value = json;
        op.value_len = strlen(json);
        r = store_ops_of(s)->txn(s, &cmp, 1, &op, 1, NULL);
        if (r < 0) {
                unlink_shares(&o, n);
                fail("cannot write the recovery record to the store: %s%s", strerror(-r),
                     r == -ESTALE ? " (another node made shares at the same time)" : "");
                return r == -ESTALE ? -EEXIST : r;
        }
        *ret = rec;
        return 0;
}

/* mkdir, or an existing directory (not a symbolic link); then its mode and
 * group as asked. */
static int make_dir(const char *path, gid_t gid, char *err, size_t err_size)
{
        _cleanup_close_ int fd = -1;
        int r;

        if (mkdir(path, 0750) < 0 && errno != EEXIST) {
                r = negative_errno();
                fail("cannot create %s: %s", path, strerror(-r));
                return r;
        }
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                fail("cannot create %s: %s", path, r == -ENOTDIR || r == -ELOOP ?
                     "something else than a directory is there" : strerror(-r));
                return r;
        }
        if (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) < 0) {
                r = negative_errno();
                fail("cannot give %s to group %u: %s%s", path, (unsigned)gid, strerror(-r),
                     r == -EPERM ? " (dkmd must be a member of the operators group to hand them the "
                                   "shares: SupplementaryGroups= in its unit)" : "");
                return r;
        }
        if (fchmod(fd, 0750) < 0) {
                r = negative_errno();
                fail("cannot set the mode of %s: %s", path, strerror(-r));
                return r;
        }
        return 0;
}

int recovery_reshare(struct store *s, const uint8_t master[ENGINE_KEY_SIZE], unsigned n, unsigned k,
                     const struct recovery_custodians *custodians, const char *out_root, gid_t gid,
                     struct recovery_record *ret_old, struct recovery_record *ret_new, char *err,
                     size_t err_size)
{
        _cleanup_secret_ uint8_t *values = secret_alloc((size_t)RECOVERY_SHARES_MAX * RECOVERY_SHARE_VALUE_SIZE);
        _cleanup_free_ char *json = NULL, *setdir = NULL;
        _cleanup_close_ int dirfd = -1;
        struct recovery_record old, rec = { 0 };
        struct store_kv kv = { 0 };
        uint8_t check[RECOVERY_CHECK_SIZE];
        char set[2 * RECOVERY_SET_ID_SIZE + 1];
        struct share_out o = { .custodians = custodians, .mode = 0640, .gid = gid };
        int r;

        if (!values)
                return -ENOMEM;
        if (!custodians) {
                fail("a reshare needs [recovery] custodians= (plain shares would all reach one operator)");
                return -EINVAL;
        }
        if (!counts_valid(n, k, custodians, err, err_size))
                return -EINVAL;
        r = store_ops_of(s)->get(s, RECOVERY_RECORD_KEY, &kv);
        if (r == -ENOENT) {
                fail("the store has no recovery record: this installation never made recovery shares "
                     "(dkmd --init --recovery-dir makes the first set)");
                return -ENOENT;
        }
        if (r < 0) {
                fail("cannot read the store's recovery record: %s", strerror(-r));
                return r;
        }
        r = recovery_record_decode(kv.value, kv.value_len, &old);
        if (r < 0) {
                store_kv_clear(&kv);
                fail("the store's recovery record is %s", r == -EPROTONOSUPPORT ? "of a newer format than this "
                     "dkmd reads" : "malformed");
                return r;
        }
        r = recovery_check_value(master, old.install_id, check);
        if (r < 0 || CRYPTO_memcmp(check, old.check, sizeof(check)) != 0) {
                store_kv_clear(&kv);
                fail("the store's recovery record is of another master key");
                return -EKEYREJECTED;
        }
        memcpy(rec.install_id, old.install_id, sizeof(rec.install_id));
        r = make_set(master, n, k, &rec, values);
        if (r >= 0)
                r = recovery_record_encode(&rec, &json);
        if (r < 0) {
                store_kv_clear(&kv);
                fail("cannot make the recovery key and its shares: %s", strerror(-r));
                return r;
        }
        hex(rec.set_id, sizeof(rec.set_id), set);
        if (asprintf(&setdir, "%s/%s", out_root, set) < 0) {
                store_kv_clear(&kv);
                return -ENOMEM;
        }
        r = make_dir(out_root, gid, err, err_size);
        if (r >= 0)
                r = make_dir(setdir, gid, err, err_size);
        if (r >= 0) {
                dirfd = open(setdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (dirfd < 0) {
                        r = negative_errno();
                        fail("cannot open %s: %s", setdir, strerror(-r));
                }
        }
        o.dirfd = dirfd;
        o.dir = setdir;
        if (r >= 0)
                r = write_shares(&o, &rec, values, err, err_size);
        if (r >= 0) {
                /* Replaced only if nobody changed it since it was read:
                 * one set at a time. */
                struct store_cmp cmp = { RECOVERY_RECORD_KEY, kv.mod_revision };
                struct store_op op = { STORE_PUT, RECOVERY_RECORD_KEY, json, strlen(json) };

                r = store_ops_of(s)->txn(s, &cmp, 1, &op, 1, NULL);
                if (r < 0) {
                        unlink_shares(&o, n);
                        fail("cannot replace the recovery record in the store: %s%s", strerror(-r),
                             r == -ESTALE ? " (it changed meanwhile: another reshare)" : "");
                }
        }
        store_kv_clear(&kv);
        if (r < 0) {
                if (dirfd >= 0)
                        (void)rmdir(setdir);
                return r;
        }
        *ret_old = old;
        *ret_new = rec;
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
                if (r == -EPROTONOSUPPORT) {
                        fail("the store's recovery record is of a newer format than this dkmd reads "
                             "(versions %d and %d): recover with the dkmd that made it",
                             RECOVERY_RECORD_LEGACY, RECOVERY_RECORD_WRAPPED);
                        return r;
                }
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
        /* A legacy set's shares are of the master key; a set of now, of
         * the recovery key that opens the master key in the record. */
        r = shamir_combine(values, numbers, n, ENGINE_KEY_SIZE,
                           sealed.version == RECOVERY_RECORD_WRAPPED ? rkey : master);
        if (r < 0) {
                fail("cannot combine the shares: %s", strerror(-r));
                goto out;
        }
        if (sealed.version == RECOVERY_RECORD_WRAPPED) {
                uint8_t id[16];

                set_aad(&sealed, id);
                r = key_unwrap(rkey, WRAP_RECOVERY_MASTER, id, 0, sealed.wrapped, master);
                explicit_bzero(rkey, MASTERKEY_RECORD_KEY_SIZE);
                if (r < 0) {
                        r = -EKEYREJECTED;
                        fail("the %u shares do not rebuild this installation's master key: at least one of "
                             "them is wrong (the recovery key they make does not open the store's recovery "
                             "record, or the record was altered); nothing was written", n);
                        goto out;
                }
        }
        r = masterkey_derive_record_key(master, rkey);
        if (r < 0) {
                fail("cannot derive the record key: %s", strerror(-r));
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
            memcmp(rec.install_id, sealed.install_id, sizeof(rec.install_id)) != 0 ||
            rec.version != sealed.version || memcmp(rec.set_id, sealed.set_id, sizeof(rec.set_id)) != 0 ||
            CRYPTO_memcmp(rec.wrapped, sealed.wrapped, sizeof(rec.wrapped)) != 0) {
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
