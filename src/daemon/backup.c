/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Backups of the store (backup.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backup.h"
#include "log.h"
#include "records.h"
#include "shared/audit.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "store/store.h"

#define CHECK_LABEL "dkm backup key check"
/* A restore reads the whole file into memory: far above any store dkm
 * keeps (50 policies of a few thousand generations), far below memory. */
#define BACKUP_FILE_MAX (1024ull * 1024 * 1024)

int backup_derive_key(const uint8_t *master, uint8_t ret[BACKUP_KEY_SIZE])
{
        /* A label of its own: no other key derived from the master key
         * (the record key among them) can stand in for it. */
        static const char info[] = "dkm store backup v1";

        return engine_hkdf_sha256(master, ENGINE_KEY_SIZE, NULL, 0, (const uint8_t *)info, sizeof(info) - 1,
                                  ret, BACKUP_KEY_SIZE);
}

static int key_check(const uint8_t key[BACKUP_KEY_SIZE], uint8_t ret[8])
{
        uint8_t m[ENGINE_HMAC_SIZE];
        int r = engine_hmac_sha256(key, BACKUP_KEY_SIZE, (const uint8_t *)CHECK_LABEL,
                                   sizeof(CHECK_LABEL) - 1, m);

        if (r >= 0)
                memcpy(ret, m, 8);
        return r;
}

/* --- writer ------------------------------------------------------------------ */

static uint8_t *reserve(struct backup_writer *w, size_t n)
{
        if (w->error)
                return NULL;
        if (w->len + n > w->cap) {
                size_t cap = w->cap ? w->cap : 4096;
                uint8_t *b;

                while (cap < w->len + n)
                        cap *= 2;
                b = realloc(w->buf, cap);
                if (!b) {
                        w->error = -ENOMEM;
                        return NULL;
                }
                w->buf = b;
                w->cap = cap;
        }
        w->len += n;
        return w->buf + w->len - n;
}

static void add_name(struct backup_writer *w, const char *s)
{
        size_t n = s ? strlen(s) : 0;
        uint8_t *p;

        if (n > BACKUP_NAME_MAX)
                n = BACKUP_NAME_MAX;
        p = reserve(w, 2 + n);
        if (!p)
                return;
        put_le16(p, (uint16_t)n);
        if (n)
                memcpy(p + 2, s, n);
}

void backup_writer_begin(struct backup_writer *w, uint64_t revision, uint64_t created, const char *backend,
                         const char *source)
{
        uint8_t *p;

        *w = (struct backup_writer){ 0 };
        p = reserve(w, BACKUP_FIXED_HEADER);
        if (!p)
                return;
        memset(p, 0, BACKUP_FIXED_HEADER);
        memcpy(p, BACKUP_MAGIC, 8);
        put_le32(p + 8, BACKUP_VERSION);
        put_le64(p + 24, revision);
        put_le64(p + 32, created);
        add_name(w, backend);
        add_name(w, source);
}

void backup_writer_add(struct backup_writer *w, const char *key, const uint8_t *value, size_t len)
{
        size_t kl = key ? strlen(key) : 0;
        uint8_t *p;

        if (w->error)
                return;
        if (kl == 0 || kl > STORE_KEY_MAX || len > BACKUP_VALUE_MAX) {
                w->error = -E2BIG;
                return;
        }
        p = reserve(w, 4 + kl + 4 + len);
        if (!p)
                return;
        put_le32(p, (uint32_t)kl);
        memcpy(p + 4, key, kl);
        put_le32(p + 4 + kl, (uint32_t)len);
        if (len)
                memcpy(p + 8 + kl, value, len);
        w->n_records++;
}

int backup_writer_finish(struct backup_writer *w, const uint8_t key[BACKUP_KEY_SIZE])
{
        uint8_t *mac;
        int r;

        if (w->error)
                return w->error;
        if (!reserve(w, ENGINE_HMAC_SIZE))
                return w->error;
        put_le64(w->buf + 16, w->len);
        put_le64(w->buf + 40, w->n_records);
        r = key_check(key, w->buf + 48);
        mac = w->buf + w->len - ENGINE_HMAC_SIZE;
        if (r >= 0)
                r = engine_hmac_sha256(key, BACKUP_KEY_SIZE, w->buf, w->len - ENGINE_HMAC_SIZE, mac);
        if (r < 0)
                w->error = r;
        return r;
}

void backup_writer_free(struct backup_writer *w)
{
        if (w->buf)
                secure_wipe(w->buf, w->len);
        free(w->buf);
        *w = (struct backup_writer){ 0 };
}

/* --- parser ------------------------------------------------------------------ */

#define bad(...)                                                 \
        do {                                                     \
                snprintf(err, err_size, __VA_ARGS__);            \
                return -EBADMSG;                                 \
        } while (0)

static int get_name(const uint8_t *buf, size_t end, size_t *off, char out[BACKUP_NAME_MAX + 1])
{
        size_t n;

        if (end - *off < 2)
                return -EBADMSG;
        n = get_le16(buf + *off);
        *off += 2;
        if (n > BACKUP_NAME_MAX || end - *off < n || memchr(buf + *off, 0, n))
                return -EBADMSG;
        memcpy(out, buf + *off, n);
        out[n] = 0;
        *off += n;
        return 0;
}

int backup_parse(const uint8_t *buf, size_t len, const uint8_t *key, struct backup_header *ret_header,
                 int (*cb)(const char *key, const uint8_t *value, size_t len, void *userdata), void *userdata,
                 char *err, size_t err_size)
{
        struct backup_header *h = ret_header;
        uint8_t mac[ENGINE_HMAC_SIZE], check[8];
        size_t off = BACKUP_FIXED_HEADER, end;
        unsigned diff = 0;
        uint32_t flags;
        int r;

        if (!buf || !h)
                return -EINVAL;
        *h = (struct backup_header){ 0 };
        if (len < 8 || memcmp(buf, BACKUP_MAGIC, 8) != 0)
                bad("not a dkm backup (no \"DKMBKUP\" magic)");
        if (len < BACKUP_FIXED_HEADER)
                bad("truncated: %zu bytes, shorter than a backup's header", len);
        h->version = get_le32(buf + 8);
        flags = get_le32(buf + 12);
        h->length = get_le64(buf + 16);
        h->revision = get_le64(buf + 24);
        h->created = get_le64(buf + 32);
        h->n_records = get_le64(buf + 40);
        memcpy(h->check, buf + 48, 8);
        if (h->version != BACKUP_VERSION)
                bad("backup format version %" PRIu32 ", this dkmd reads version %d", h->version,
                    BACKUP_VERSION);
        if (flags != 0)
                bad("unknown flags 0x%" PRIx32 " in the header", flags);
        if (h->length < BACKUP_FIXED_HEADER + 4 + ENGINE_HMAC_SIZE)
                bad("the header's length %" PRIu64 " is too small for a backup", h->length);
        if (len < h->length)
                bad("truncated: %zu of the %" PRIu64 " bytes its header announces", len, h->length);
        if (len > h->length)
                bad("%zu bytes after the end its header announces (%" PRIu64 " bytes)", len - (size_t)h->length,
                    h->length);
        end = len - ENGINE_HMAC_SIZE;
        if (key) {
                r = key_check(key, check);
                if (r < 0)
                        return r;
                if (memcmp(check, h->check, 8) != 0)
                        bad("made under another master key: a backup of another installation, or the "
                            "wrong [daemon] master_key");
                r = engine_hmac_sha256(key, BACKUP_KEY_SIZE, buf, end, mac);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ENGINE_HMAC_SIZE; i++)
                        diff |= (unsigned)(mac[i] ^ buf[end + i]);
                if (diff)
                        bad("its MAC does not verify: the file was altered");
        }
        if (get_name(buf, end, &off, h->backend) < 0 || get_name(buf, end, &off, h->source) < 0)
                bad("malformed header: its backend or source name runs past the records");
        for (uint64_t i = 0; i < h->n_records; i++) {
                char k[STORE_KEY_MAX + 1];
                size_t kl, vl;

                if (end - off < 4)
                        bad("record %" PRIu64 " of %" PRIu64 ": its key length is cut off", i + 1,
                            h->n_records);
                kl = get_le32(buf + off);
                off += 4;
                if (kl == 0 || kl > STORE_KEY_MAX || end - off < kl)
                        bad("record %" PRIu64 ": key length %zu is out of range", i + 1, kl);
                memcpy(k, buf + off, kl);
                k[kl] = 0;
                if (!store_utf8_valid((const unsigned char *)k, kl) || memchr(k, 0, kl))
                        bad("record %" PRIu64 ": its key is not UTF-8 text", i + 1);
                off += kl;
                if (end - off < 4)
                        bad("record %" PRIu64 " (%s): its value length is cut off", i + 1, k);
                vl = get_le32(buf + off);
                off += 4;
                if (vl > BACKUP_VALUE_MAX || end - off < vl)
                        bad("record %" PRIu64 " (%s): value length %zu is out of range", i + 1, k, vl);
                if (cb) {
                        r = cb(k, buf + off, vl, userdata);
                        if (r != 0)
                                return r;
                }
                off += vl;
        }
        if (off != end)
                bad("%zu bytes after the %" PRIu64 " records its header announces", end - off, h->n_records);
        return 0;
}

/* --- snapshot ---------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
        while (n > 0) {
                ssize_t w = write(fd, p, n);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return negative_errno();
                if (w == 0)
                        return -EIO;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

struct snap {
        struct backup_writer w;
        const uint8_t *record_key;
        uint64_t revision, refused;
};

static int snap_one(const struct store_kv *kv, void *userdata)
{
        struct snap *s = userdata;
        uint8_t *v = NULL;
        size_t vl;
        uint64_t seq;
        int r;

        if (kv->lease)
                return 0; /* ends by itself (a node's heartbeat): nothing to restore */
        /* Only what this installation sealed: a record forged into the
         * store must not become part of a backup that vouches for it. */
        r = store_auth_unseal(s->record_key, kv->key, kv->value, kv->value_len, &v, &vl, &seq);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || (kv->mod_revision && seq > kv->mod_revision)) {
                log_err("backup: leaving out store record %s (revision %" PRIu64 "): its authentication "
                        "does not hold", kv->key, kv->mod_revision);
                s->refused++;
        } else
                backup_writer_add(&s->w, kv->key, kv->value, kv->value_len);
        if (v) {
                secure_wipe(v, vl);
                free(v);
        }
        if (kv->mod_revision > s->revision)
                s->revision = kv->mod_revision;
        return s->w.error;
}

int backup_snapshot(struct store *backend, const char *backend_name, const char *source,
                    const uint8_t *master, const uint8_t *record_key, int fd, uint64_t *ret_records,
                    uint64_t *ret_revision, uint64_t *ret_refused, uint64_t *ret_bytes, char *err,
                    size_t err_size)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(BACKUP_KEY_SIZE);
        struct snap s = { .record_key = record_key };
        int r;

        if (!key)
                return -ENOMEM;
        r = backup_derive_key(master, key);
        if (r < 0) {
                snprintf(err, err_size, "cannot derive the backup key: %s", strerror(-r));
                return r;
        }
        /* Revision 0 for now: the header is written at the end. */
        backup_writer_begin(&s.w, 0, (uint64_t)time(NULL), backend_name, source);
        /* One range: SQLite reads it in one statement, etcd every page at
         * the revision of the first: a consistent snapshot either way. */
        r = store_ops_of(backend)->range(backend, "", snap_one, &s);
        if (r < 0) {
                snprintf(err, err_size, "cannot read the store: %s", strerror(-r));
                goto out;
        }
        if (!s.w.error)
                put_le64(s.w.buf + 24, s.revision);
        r = backup_writer_finish(&s.w, key);
        if (r < 0) {
                snprintf(err, err_size, "cannot assemble the backup: %s", strerror(-r));
                goto out;
        }
        r = write_all(fd, s.w.buf, s.w.len);
        if (r >= 0 && fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
                r = negative_errno();
        if (r < 0) {
                snprintf(err, err_size, "cannot write the backup to the passed descriptor: %s", strerror(-r));
                goto out;
        }
        *ret_records = s.w.n_records;
        *ret_revision = s.revision;
        *ret_refused = s.refused;
        *ret_bytes = s.w.len;
out:
        backup_writer_free(&s.w);
        return r;
}

/* --- filling an empty store (restore, migration) ------------------------- */

int backup_set_add(struct backup_set *set, const uint8_t *record_key, const char *key, const uint8_t *sealed,
                   size_t len, char *err, size_t err_size)
{
        struct backup_rec *v;
        uint64_t seq;
        int r;

        v = reallocarray(set->v, set->n + 1, sizeof(*v));
        if (!v)
                return -ENOMEM;
        set->v = v;
        v += set->n;
        *v = (struct backup_rec){ 0 };
        r = store_auth_unseal(record_key, key, sealed, len, &v->value, &v->len, &seq);
        if (r < 0) {
                snprintf(err, err_size, "record %s does not verify under this master key (%s)", key,
                         r == -EKEYREJECTED ? "its MAC does not match" :
                         r == -ENODATA ? "it carries no MAC" : strerror(-r));
                return r == -ENOMEM ? r : -EBADMSG;
        }
        v->key = strdup(key);
        set->n++;
        return v->key ? 0 : -ENOMEM;
}

void backup_set_free(struct backup_set *set)
{
        for (size_t i = 0; i < set->n; i++) {
                free(set->v[i].key);
                if (set->v[i].value)
                        secure_wipe(set->v[i].value, set->v[i].len);
                free(set->v[i].value);
        }
        free(set->v);
        *set = (struct backup_set){ 0 };
}

static int count_one(const struct store_kv *kv, void *userdata)
{
        (void)kv;
        (*(size_t *)userdata)++;
        return 0;
}

int backup_store_count(struct store *backend, size_t *ret_n)
{
        size_t n = 0;
        int r = store_ops_of(backend)->range(backend, "", count_one, &n);

        if (r >= 0)
                *ret_n = n;
        return r;
}

struct readback {
        const struct backup_set *set;
        size_t i;
        char *err;
        size_t err_size;
};

static int readback_one(const struct store_kv *kv, void *userdata)
{
        struct readback *b = userdata;
        const struct backup_rec *e;

        if (b->i >= b->set->n) {
                snprintf(b->err, b->err_size, "read back: record %s was not written by this copy", kv->key);
                return -EBADMSG;
        }
        e = &b->set->v[b->i++];
        if (strcmp(e->key, kv->key) != 0 || e->len != kv->value_len || memcmp(e->value, kv->value, e->len) != 0) {
                snprintf(b->err, b->err_size, "read back: record %s differs from what was written, or was "
                         "refused (a store-seen file of an earlier store in the state directory?)", e->key);
                return -EBADMSG;
        }
        return 0;
}

int backup_fill(struct store *s, const struct backup_set *set, char *err, size_t err_size)
{
        const struct store_ops *ops = store_ops_of(s);
        struct store_cmp *cmps = NULL;
        struct store_op *wops = NULL;
        size_t batch;
        int r = 0;

        err[0] = 0;
        /* Written afresh through the authenticated store: each record gets
         * a sequence of this store's revisions (a copied sequence could be
         * above them, and would be refused). */
        batch = ops->max_txn_ops ? ops->max_txn_ops : STORE_TXN_OPS_MAX;
        if (batch > 64)
                batch = 64;
        cmps = calloc(batch, sizeof(*cmps));
        wops = calloc(batch, sizeof(*wops));
        if (!cmps || !wops) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < set->n && r >= 0;) {
                size_t m = 0;

                for (; i < set->n && m < batch; i++, m++) {
                        cmps[m] = (struct store_cmp){ set->v[i].key, 0 };
                        wops[m] = (struct store_op){ STORE_PUT, set->v[i].key, set->v[i].value, set->v[i].len };
                }
                r = ops->txn(s, cmps, m, wops, m, NULL);
                if (r < 0)
                        snprintf(err, err_size, "cannot write the records: %s%s", strerror(-r),
                                 r == -ESTALE ? " (someone else writes to the store)" : "");
        }
        if (r < 0)
                goto out;
        {
                struct readback b = { set, 0, err, err_size };

                r = ops->range(s, "", readback_one, &b);
                if (r >= 0 && b.i != set->n) {
                        snprintf(err, err_size, "read back: %zu of the %zu records written (the others were "
                                 "refused)", b.i, set->n);
                        r = -EBADMSG;
                } else if (r < 0 && !err[0])
                        snprintf(err, err_size, "cannot read the store back: %s", strerror(-r));
        }
out:
        free(cmps);
        free(wops);
        return r;
}

/* --- restore ----------------------------------------------------------------- */

struct restore {
        const uint8_t *record_key;
        uint64_t now_usec;
        struct backup_set set;
        size_t ended;
        char *err;
        size_t err_size;
};

/* A grant live, or a request pending, in the backup may have been revoked
 * or denied since: the restore ends it rather than revive it. */
static int end_request(struct restore *rs, struct backup_rec *v)
{
        json_object *o = record_parse(v->value, v->len), *st;
        const char *state, *s;
        char *out;

        if (!o)
                return 0; /* not ours to judge: restored as it was */
        state = json_object_object_get_ex(o, "state", &st) ? json_object_get_string(st) : NULL;
        if (!state || (strcmp(state, "granted") != 0 && strcmp(state, "pending") != 0)) {
                json_object_put(o);
                return 0;
        }
        json_object_object_add(o, "state", json_object_new_string(strcmp(state, "granted") == 0 ? "revoked" :
                                                                                                 "expired"));
        json_object_object_add(o, "ended", json_object_new_int64((int64_t)rs->now_usec));
        json_object_object_add(o, "ended_by", json_object_new_string("restore"));
        json_object_object_add(o, "end_reason",
                               json_object_new_string("ended by dkmd --restore: it may have been revoked or "
                                                      "denied after the backup was made"));
        s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        out = s ? strdup(s) : NULL;
        json_object_put(o);
        if (!out)
                return -ENOMEM;
        secure_wipe(v->value, v->len);
        free(v->value);
        v->value = (uint8_t *)out;
        v->len = strlen(out);
        rs->ended++;
        return 0;
}

static int restore_collect(const char *key, const uint8_t *value, size_t len, void *userdata)
{
        struct restore *rs = userdata;
        int r;

        r = backup_set_add(&rs->set, rs->record_key, key, value, len, rs->err, rs->err_size);
        if (r < 0)
                return r;
        return RECORDS_UNDER(key, RECORDS_REQUESTS) ? end_request(rs, &rs->set.v[rs->set.n - 1]) : 0;
}

/* Says which generations each policy of the backup holds. */
static void report_generations(const struct backup_set *set)
{
        for (size_t i = 0; i < set->n; i++) {
                const char *k = set->v[i].key, *rest;
                struct policy_record p;
                uint32_t lo = 0, hi = 0, destroyed = 0;
                size_t pl;

                if (!RECORDS_UNDER(k, RECORDS_POLICIES) || strchr(k + RECORDS_LEN(RECORDS_POLICIES), '/'))
                        continue;
                if (policy_record_decode(set->v[i].value, set->v[i].len, &p) < 0)
                        continue;
                pl = strlen(k);
                for (size_t j = i + 1; j < set->n && strncmp(set->v[j].key, k, pl) == 0; j++) {
                        struct gen_record g;

                        rest = set->v[j].key + pl;
                        if (strncmp(rest, "/gens/", 6) != 0 ||
                            gen_record_decode(set->v[j].value, set->v[j].len, &g) < 0)
                                continue;
                        if (g.state == GEN_DESTROYED) {
                                destroyed++;
                                continue;
                        }
                        if (!lo || g.generation < lo)
                                lo = g.generation;
                        if (g.generation > hi)
                                hi = g.generation;
                }
                if (p.purged)
                        log_notice("restore: policy '%s' is purged in the backup: nothing of it decrypts",
                                   p.name);
                else
                        log_notice("restore: policy '%s': the backup holds generations %" PRIu32 "-%" PRIu32
                                   " (active %" PRIu32 ", %" PRIu32 " destroyed); ciphertexts made under "
                                   "generation %" PRIu32 " or later after this backup will not decrypt",
                                   p.name, lo, hi, p.active, destroyed, hi + 1);
                secure_wipe(&p, sizeof(p));
        }
}

static int read_file(const char *path, uint8_t **ret, size_t *ret_len, char *err, size_t err_size)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        uint8_t *buf;
        size_t n;
        int r;

        if (fd < 0 || fstat(fd, &st) < 0) {
                r = negative_errno();
                snprintf(err, err_size, "cannot open the backup %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > BACKUP_FILE_MAX) {
                snprintf(err, err_size, "the backup %s is not a regular file of at most 1 GiB", path);
                return -EINVAL;
        }
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        r = read_full(fd, buf, (size_t)st.st_size, &n);
        if (r < 0) {
                free(buf);
                snprintf(err, err_size, "cannot read the backup %s: %s", path, strerror(-r));
                return r;
        }
        *ret = buf;
        *ret_len = n;
        return 0;
}

int backup_restore(struct store *s, struct store *backend, const char *path, const uint8_t *master,
                   const uint8_t *record_key, uint64_t *ret_records, char *err, size_t err_size)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(BACKUP_KEY_SIZE);
        struct restore rs = { .record_key = record_key, .now_usec = now_real_usec(), .err = err,
                              .err_size = err_size };
        struct backup_header h;
        uint8_t *buf = NULL;
        size_t len = 0, present = 0;
        char why[BACKUP_ERR_MAX] = "";
        int r;

        err[0] = 0;
        if (!key)
                return -ENOMEM;
        r = backup_derive_key(master, key);
        if (r < 0) {
                snprintf(err, err_size, "cannot derive the backup key: %s", strerror(-r));
                return r;
        }
        r = read_file(path, &buf, &len, err, err_size);
        if (r < 0)
                return r;
        /* The whole file first: nothing is written from a file that does
         * not verify. */
        r = backup_parse(buf, len, key, &h, restore_collect, &rs, why, sizeof(why));
        if (r == -EBADMSG && why[0])
                snprintf(err, err_size, "the backup %s is refused: %s", path, why);
        else if (r < 0 && !err[0])
                snprintf(err, err_size, "cannot read the backup %s: %s", path, strerror(-r));
        if (r < 0)
                goto out;
        /* Into an empty store only: merging would mix two histories. */
        r = backup_store_count(backend, &present);
        if (r >= 0 && present > 0) {
                snprintf(err, err_size, "the store is not empty (%zu records): --restore fills an empty state "
                         "directory or an empty etcd prefix only; move the current store away first", present);
                r = -ENOTEMPTY;
        } else if (r < 0)
                snprintf(err, err_size, "cannot read the store: %s", strerror(-r));
        if (r < 0)
                goto out;
        {
                time_t t = (time_t)h.created;
                struct tm tm;
                char when[32] = "?";

                if (gmtime_r(&t, &tm))
                        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                log_notice("restore: backup of the %s store %s at revision %" PRIu64 ", made %s, %" PRIu64
                           " records", h.backend, h.source, h.revision, when, h.n_records);
        }
        r = backup_fill(s, &rs.set, err, err_size);
        if (r < 0)
                goto out;
        report_generations(&rs.set);
        if (rs.ended)
                log_notice("restore: %zu access grants or pending requests of the backup ended (state revoked "
                           "or expired, ended_by restore): ask and approve again", rs.ended);
        *ret_records = rs.set.n;
out:
        backup_set_free(&rs.set);
        if (buf)
                secure_wipe(buf, len);
        free(buf);
        return r;
}

int backup_restore_file(struct store **backend, keyring_serial_t master, const uint8_t *record_key,
                        const char *seen, const char *path, store_auth_refused_fn refused)
{
        _cleanup_secret_ uint8_t *mk = secret_alloc(ENGINE_KEY_SIZE);
        struct store *inner = *backend, *s = NULL;
        char err[BACKUP_ERR_MAX] = "";
        uint64_t n = 0;
        size_t len = 0;
        int r;

        if (!mk)
                return -ENOMEM;
        r = keyring_read(master, mk, ENGINE_KEY_SIZE, &len);
        if (r >= 0 && len != ENGINE_KEY_SIZE)
                r = -EBADMSG;
        if (r < 0) {
                log_err("restore: cannot read the master key back: %s", strerror(-r));
                return r;
        }
        r = store_auth_open(inner, record_key, seen, refused, NULL, &s);
        *backend = r < 0 ? NULL : s;
        if (r < 0) {
                log_err("restore: cannot authenticate the store: %s", strerror(-r));
                return r;
        }
        r = backup_restore(s, inner, path, mk, record_key, &n, err, sizeof(err));
        audit_outcome(AUDIT_KIND_KEY, "store-restore", NULL, r, "records=%" PRIu64, n);
        if (r < 0) {
                log_err("restore: %s", err[0] ? err : strerror(-r));
                return r;
        }
        log_notice("restore: %" PRIu64 " records restored from %s; generations destroyed and policies "
                   "purged after the backup was made are back as the backup held them", n, path);
        return 0;
}
