/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Streaming ciphertext format v2 (STREAM over AES-256-GCM); see stream.h. */
#include "shared/stream.h"
#include "shared/secret.h"
#include "shared/stream-io.h"
#include "shared/util.h"

/* Shared state of both directions: what every segment's nonce and AAD need. */
struct stream_core {
        const struct engine_ops *ops;
        struct engine_aead *a;
        uint8_t *key;                  /* secret_alloc'd copy */
        uint8_t *aad;                  /* header || context */
        size_t aad_len;
        uint8_t prefix[STREAM_PREFIX_SIZE];
        uint32_t segment_size;
        uint64_t counter;              /* next segment's index */
        bool done;                     /* the final segment went through */
};

struct stream_enc {
        struct stream_core c;
};

struct stream_dec {
        struct stream_core c;
        const char *failed;            /* sticky: the first rejection */
};

size_t stream_header_size(const struct stream_header *h)
{
        return h->flags & STREAM_FLAG_SALTED ? STREAM_HEADER_MAX : STREAM_HEADER_SIZE;
}

size_t stream_header_length(const uint8_t fixed[STREAM_HEADER_SIZE])
{
        return get_le16(fixed + 6) & STREAM_FLAG_SALTED ? STREAM_HEADER_MAX : STREAM_HEADER_SIZE;
}

void stream_header_write(const struct stream_header *h, uint8_t out[STREAM_HEADER_MAX])
{
        format_write_shared_fields(out, h->version, h->algorithm, h->flags, h->policy_id, h->generation);
        memcpy(out + 28, h->nonce_prefix, STREAM_PREFIX_SIZE);
        out[35] = 0;
        put_le32(out + 36, h->segment_size);
        if (h->flags & STREAM_FLAG_SALTED)
                memcpy(out + STREAM_HEADER_SIZE, h->salt, STREAM_SALT_SIZE);
}

static bool segment_size_ok(uint32_t s)
{
        return s >= STREAM_SEGMENT_MIN && s <= STREAM_SEGMENT_MAX;
}

int stream_parse_header(const uint8_t *buf, size_t len, struct stream_header *ret,
                        const char **ret_error)
{
        struct stream_header h;
        int r;

        if (!buf || len < 4 || memcmp(buf, FORMAT_MAGIC, 4) != 0) {
                *ret_error = "not a dkm ciphertext (bad magic)";
                return -EBADMSG;
        }
        if (len < 5) {
                *ret_error = "truncated stream header";
                return -EBADMSG;
        }
        if (buf[4] != STREAM_VERSION) {
                *ret_error = "unsupported ciphertext version";
                return -EPROTONOSUPPORT;
        }
        if (len < STREAM_HEADER_SIZE) {
                *ret_error = "truncated stream header";
                return -EBADMSG;
        }
        r = format_check_shared_fields(buf, STREAM_FLAG_SALTED, ret_error);
        if (r < 0)
                return r;
        h.version = buf[4];
        h.algorithm = buf[5];
        h.flags = get_le16(buf + 6);
        memcpy(h.policy_id, buf + 8, FORMAT_POLICY_ID_SIZE);
        h.generation = get_le32(buf + 24);
        memcpy(h.nonce_prefix, buf + 28, STREAM_PREFIX_SIZE);
        if (buf[35] != 0) {
                *ret_error = "nonzero reserved byte in stream header";
                return -EBADMSG;
        }
        h.segment_size = get_le32(buf + 36);
        if (!segment_size_ok(h.segment_size)) {
                *ret_error = "stream segment size out of range";
                return -EBADMSG;
        }
        memset(h.salt, 0, sizeof(h.salt));
        if (h.flags & STREAM_FLAG_SALTED) {
                if (len < STREAM_HEADER_MAX) {
                        *ret_error = "truncated stream header";
                        return -EBADMSG;
                }
                memcpy(h.salt, buf + STREAM_HEADER_SIZE, STREAM_SALT_SIZE);
        }
        *ret = h;
        return 0;
}

int stream_segment_key(const struct stream_header *h, const uint8_t key[ENGINE_KEY_SIZE],
                       uint8_t ret[ENGINE_KEY_SIZE])
{
        uint8_t info[sizeof(STREAM_SUBKEY_LABEL) - 1 + STREAM_HEADER_SIZE], hdr[STREAM_HEADER_MAX];

        if (!h || !key || !ret)
                return -EINVAL;
        if (!(h->flags & STREAM_FLAG_SALTED)) {
                memcpy(ret, key, ENGINE_KEY_SIZE);
                return 0;
        }
        /* The info binds the subkey to the header's fixed part as well; the
         * salt goes in as HKDF's salt. */
        stream_header_write(h, hdr);
        memcpy(info, STREAM_SUBKEY_LABEL, sizeof(STREAM_SUBKEY_LABEL) - 1);
        memcpy(info + sizeof(STREAM_SUBKEY_LABEL) - 1, hdr, STREAM_HEADER_SIZE);
        return engine_hkdf_sha256(key, ENGINE_KEY_SIZE, h->salt, STREAM_SALT_SIZE, info, sizeof(info),
                                  ret, ENGINE_KEY_SIZE);
}

/* --- the construction ----------------------------------------------------- */

static int core_init(struct stream_core *c, const struct engine_ops *ops, struct engine_aead *a,
                     const uint8_t *key, const struct stream_header *h, const uint8_t *ctx,
                     size_t ctx_len)
{
        size_t max = ops->max_message ? ops->max_message() : SIZE_MAX, hlen = stream_header_size(h);
        int r;

        /* Every segment carries the whole AAD, so the engine must take all
         * of it with a full segment; better to say so now than mid-file. */
        if (ctx_len > max || hlen + h->segment_size + STREAM_TAG_SIZE > max - ctx_len)
                return -EMSGSIZE;

        c->ops = ops;
        c->a = a;
        c->segment_size = h->segment_size;
        memcpy(c->prefix, h->nonce_prefix, STREAM_PREFIX_SIZE);
        c->key = secret_alloc(ENGINE_KEY_SIZE);
        if (!c->key)
                return -ENOMEM;
        r = stream_segment_key(h, key, c->key);
        if (r < 0) {
                secret_free(c->key);
                return r;
        }
        c->aad_len = hlen + ctx_len;
        c->aad = malloc(c->aad_len);
        if (!c->aad) {
                secret_free(c->key);
                return -ENOMEM;
        }
        stream_header_write(h, c->aad);
        if (ctx_len)
                memcpy(c->aad + hlen, ctx, ctx_len);
        return 0;
}

static void core_clear(struct stream_core *c)
{
        secret_free(c->key);
        free(c->aad);
}

/* prefix || counter (u32 big-endian, as in the paper) || last flag */
static void core_nonce(const struct stream_core *c, uint64_t counter, bool last,
                       uint8_t nonce[ENGINE_NONCE_SIZE])
{
        memcpy(nonce, c->prefix, STREAM_PREFIX_SIZE);
        nonce[7] = (uint8_t)(counter >> 24);
        nonce[8] = (uint8_t)(counter >> 16);
        nonce[9] = (uint8_t)(counter >> 8);
        nonce[10] = (uint8_t)counter;
        nonce[11] = last ? 1 : 0;
}

static bool args_ok(const struct engine_ops *ops, struct engine_aead *a, const uint8_t *key,
                    const uint8_t *ctx, size_t ctx_len)
{
        return ops && a && key && (ctx || ctx_len == 0);
}

int stream_enc_new(const struct engine_ops *ops, struct engine_aead *a,
                   const uint8_t key[ENGINE_KEY_SIZE], const uint8_t policy_id[FORMAT_POLICY_ID_SIZE],
                   uint32_t generation, const uint8_t *ctx, size_t ctx_len, uint32_t segment_size,
                   struct stream_enc **ret, uint8_t ret_header[STREAM_HEADER_MAX],
                   size_t *ret_header_len)
{
        struct stream_header h = {
                .version = STREAM_VERSION,
                .algorithm = FORMAT_ALG_AES256GCM,
                .flags = STREAM_FLAG_SALTED,
                .generation = generation,
                .segment_size = segment_size,
        };
        struct stream_enc *s;
        int r;

        if (!args_ok(ops, a, key, ctx, ctx_len) || !policy_id || !ret || !ret_header ||
            !ret_header_len || generation == 0 || !segment_size_ok(segment_size))
                return -EINVAL;
        memcpy(h.policy_id, policy_id, FORMAT_POLICY_ID_SIZE);
        /* A fresh salt gives the stream its own key, so its nonces need
         * only be unique within it; the random prefix is kept on top. */
        r = engine_random(h.salt, sizeof(h.salt));
        if (r >= 0)
                r = engine_random(h.nonce_prefix, sizeof(h.nonce_prefix));
        if (r < 0)
                return r;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = core_init(&s->c, ops, a, key, &h, ctx, ctx_len);
        if (r < 0) {
                free(s);
                return r;
        }
        memcpy(ret_header, s->c.aad, STREAM_HEADER_MAX);
        *ret_header_len = STREAM_HEADER_MAX;
        *ret = s;
        return 0;
}

int stream_enc_seal_at(const struct stream_enc *s, struct engine_aead *a, uint64_t index,
                       const uint8_t *in, size_t len, bool last, uint8_t *out)
{
        uint8_t nonce[ENGINE_NONCE_SIZE];
        const struct stream_core *c;

        if (!s || !a || (!in && len) || !out)
                return -EINVAL;
        c = &s->c;
        if (len > c->segment_size || (!last && len != c->segment_size) || (last && len == 0 && index > 0))
                return -EINVAL;
        /* The counter is 32 bits in the nonce: past it a nonce would
         * repeat, so the index is refused before anything is sealed. */
        if (index > STREAM_MAX_COUNTER || (!last && index >= STREAM_MAX_COUNTER))
                return -EFBIG;
        core_nonce(c, index, last, nonce);
        return c->ops->seal(a, c->key, nonce, c->aad, c->aad_len, in ? in : (const uint8_t *)"", len, out);
}

int stream_enc_segment(struct stream_enc *s, const uint8_t *in, size_t len, bool last,
                       uint8_t *out, size_t *ret_out_len)
{
        struct stream_core *c;
        int r;

        if (!s || (!in && len) || !out || !ret_out_len)
                return -EINVAL;
        c = &s->c;
        if (c->done)
                return -EINVAL;
        r = stream_enc_seal_at(s, c->a, c->counter, in, len, last, out);
        if (r < 0)
                return r;
        c->counter++;
        c->done = last;
        *ret_out_len = len + STREAM_TAG_SIZE;
        return 0;
}

void stream_enc_free(struct stream_enc *s)
{
        if (!s)
                return;
        core_clear(&s->c);
        free(s);
}

int stream_dec_new(const struct engine_ops *ops, struct engine_aead *a,
                   const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                   const uint8_t *ctx, size_t ctx_len, struct stream_dec **ret,
                   const char **ret_error)
{
        struct stream_dec *s;
        int r;

        if (!args_ok(ops, a, key, ctx, ctx_len) || !h || !ret || !ret_error)
                return -EINVAL;
        if (h->version != STREAM_VERSION || h->algorithm != FORMAT_ALG_AES256GCM ||
            (h->flags != 0 && h->flags != STREAM_FLAG_SALTED) || !segment_size_ok(h->segment_size))
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        r = core_init(&s->c, ops, a, key, h, ctx, ctx_len);
        if (r < 0) {
                if (r == -EMSGSIZE)
                        *ret_error = "stream segment size too large for this engine";
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

static int dec_fail(struct stream_dec *s, const char *why, const char **ret_error)
{
        s->failed = why;
        *ret_error = why;
        return -EBADMSG;
}

static int dec_open(const struct stream_core *c, struct engine_aead *a, uint64_t index,
                    const uint8_t *in, size_t len, bool last, uint8_t *out)
{
        uint8_t nonce[ENGINE_NONCE_SIZE];

        core_nonce(c, index, last, nonce);
        return c->ops->open(a, c->key, nonce, c->aad, c->aad_len, in, len, out);
}

int stream_dec_open_at(const struct stream_dec *s, struct engine_aead *a, uint64_t index,
                       const uint8_t *in, size_t len, bool last, uint8_t *out, const char **ret_error)
{
        const struct stream_core *c;
        size_t full;
        int r;

        if (!s || !a || (!in && len) || !out || !ret_error)
                return -EINVAL;
        c = &s->c;
        full = (size_t)c->segment_size + STREAM_TAG_SIZE;
        if (len > full || (!last && len != full))
                return -EINVAL;
        if (len < STREAM_TAG_SIZE) {
                *ret_error = "stream truncated";
                return -EBADMSG;
        }
        if (index > STREAM_MAX_COUNTER || (!last && index >= STREAM_MAX_COUNTER)) {
                *ret_error = "stream too long";
                return -EBADMSG;
        }
        r = dec_open(c, a, index, in, len, last, out);
        if (r == -EBADMSG) {
                *ret_error = "segment failed authentication";
                /* Only for the message: a full segment that opens with the
                 * other flag shows the stream was cut at a segment boundary
                 * or continues past its final segment. */
                if (len == full && dec_open(c, a, index, in, len, !last, out) == 0) {
                        secure_wipe(out, len - STREAM_TAG_SIZE);
                        *ret_error = last ? "stream truncated" : "data after the final segment";
                }
                return -EBADMSG;
        }
        if (r < 0)
                return r;
        /* Our encoder sends an empty final segment only for empty input;
         * one after data would give two encodings of the same plaintext. */
        if (len == STREAM_TAG_SIZE && index > 0) {
                *ret_error = "empty final segment";
                return -EBADMSG;
        }
        return 0;
}

int stream_dec_segment(struct stream_dec *s, const uint8_t *in, size_t len, bool last,
                       uint8_t *out, size_t *ret_out_len, const char **ret_error)
{
        const char *why = NULL;
        size_t full;
        int r;

        if (!s || (!in && len) || !out || !ret_out_len || !ret_error)
                return -EINVAL;
        full = (size_t)s->c.segment_size + STREAM_TAG_SIZE;
        if (s->failed) {
                *ret_error = s->failed;
                return -EBADMSG;
        }
        if (s->c.done)
                return dec_fail(s, "data after the final segment", ret_error);
        if (len > full || (!last && len != full))
                return -EINVAL;
        r = stream_dec_open_at(s, s->c.a, s->c.counter, in, len, last, out, &why);
        if (r == -EBADMSG)
                return dec_fail(s, why, ret_error);
        if (r < 0)
                return r;
        s->c.counter++;
        s->c.done = last;
        *ret_out_len = len - STREAM_TAG_SIZE;
        return 0;
}

bool stream_dec_done(const struct stream_dec *s)
{
        return s && s->c.done && !s->failed;
}

void stream_dec_free(struct stream_dec *s)
{
        if (!s)
                return;
        core_clear(&s->c);
        free(s);
}

void stream_enc_test_set_counter(struct stream_enc *s, uint64_t counter)
{
        s->c.counter = counter;
}

void stream_dec_test_set_counter(struct stream_dec *s, uint64_t counter)
{
        s->c.counter = counter;
}

/* --- file descriptors ----------------------------------------------------- */

/* Output is gathered and written once per chunk of input (STREAM_IO_CHUNK):
 * a buffer of that many whole segments, sealed or opened in place. */
static size_t segments_per_write(size_t piece)
{
        return (STREAM_IO_CHUNK + piece - 1) / piece;
}

int stream_encrypt_fd(const struct engine_ops *ops, struct engine_aead *a,
                      const uint8_t key[ENGINE_KEY_SIZE], const uint8_t policy_id[FORMAT_POLICY_ID_SIZE],
                      uint32_t generation, const uint8_t *ctx, size_t ctx_len, uint32_t segment_size,
                      int in_fd, int out_fd, uint64_t *ret_plaintext_size, const char **ret_error)
{
        struct piece_reader *rd = NULL;
        struct stream_enc *s = NULL;
        size_t full = (size_t)segment_size + STREAM_TAG_SIZE, cap = 0, fill = 0;
        bool last = false;
        uint64_t total = 0;
        uint8_t *ct = NULL;
        const char *why;
        int r;

        if (!ret_error || in_fd < 0 || out_fd < 0)
                return -EINVAL;
        /* The header goes out with the first segments. */
        cap = STREAM_HEADER_MAX + segments_per_write(segment_size) * full;
        ct = malloc(cap);
        if (!ct) {
                *ret_error = "out of memory";
                return -ENOMEM;
        }
        r = stream_enc_new(ops, a, key, policy_id, generation, ctx, ctx_len, segment_size, &s, ct, &fill);
        if (r < 0) {
                free(ct);
                *ret_error = r == -EMSGSIZE ? "stream segment size too large for this engine" :
                             "cannot start the stream";
                return r;
        }
        why = "out of memory";
        r = piece_reader_new(in_fd, segment_size, &rd);
        if (r < 0)
                goto out;
        while (!last) {
                const uint8_t *pt;
                size_t len, n;

                why = "reading the input failed";
                r = piece_reader_next(rd, &pt, &len, &last);
                if (r < 0)
                        goto out;
                r = stream_enc_segment(s, pt, len, last, ct + fill, &n);
                why = r == -EFBIG ? "stream too long" : "encryption failed";
                if (r < 0)
                        goto out;
                fill += n;
                total += len;
                if (last || cap - fill < full) {
                        why = "writing the output failed";
                        r = stream_write_full(out_fd, ct, fill);
                        if (r < 0)
                                goto out;
                        fill = 0;
                }
        }
        if (ret_plaintext_size)
                *ret_plaintext_size = total;
        r = 0;
out:
        piece_reader_free(rd);  /* wipes the plaintext it read */
        free(ct);
        stream_enc_free(s);
        if (r < 0)
                *ret_error = why;
        return r;
}

int stream_read_header_fd(int fd, struct stream_header *ret, const char **ret_error)
{
        uint8_t buf[STREAM_HEADER_MAX];
        size_t got, more = 0;
        int r;

        if (fd < 0 || !ret || !ret_error)
                return -EINVAL;
        r = stream_read_full(fd, buf, STREAM_HEADER_SIZE, &got);
        /* The salted layout's salt follows; the flags word says so. */
        if (r >= 0 && got == STREAM_HEADER_SIZE && stream_header_length(buf) > got)
                r = stream_read_full(fd, buf + got, stream_header_length(buf) - got, &more);
        if (r < 0) {
                *ret_error = "reading the input failed";
                return r;
        }
        return stream_parse_header(buf, got + more, ret, ret_error);
}

/* Asks check when it is due (at or after *next_usec), and sets when it is
 * due next. */
static int check_due(const struct stream_check *check, uint64_t *next_usec)
{
        uint64_t now = now_mono_usec();

        if (!check || now < *next_usec)
                return 0;
        *next_usec = now + check->interval_ms * UINT64_C(1000);
        return check->fn(check->userdata);
}

/* Waits for the next piece of input, asking check whenever it is due. */
static int await_input(struct piece_reader *rd, const struct stream_check *check, uint64_t *next_usec)
{
        for (;;) {
                uint64_t now;
                unsigned ms;
                int r = check_due(check, next_usec);

                if (r < 0)
                        return r;
                now = now_mono_usec();
                ms = *next_usec > now ? (unsigned)((*next_usec - now + 999) / 1000) : 0;
                if (piece_reader_wait(rd, ms) == 0)
                        return 0;
        }
}

int stream_decrypt_fd_checked(const struct engine_ops *ops, struct engine_aead *a,
                              const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                              const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                              const struct stream_check *check, uint64_t *ret_plaintext_size,
                              const char **ret_error)
{
        struct piece_reader *rd = NULL;
        struct stream_dec *s = NULL;
        bool last = false;
        uint64_t total = 0, next_check = 0;
        const char *why = "cannot start the stream";
        size_t full, cap = 0, fill = 0;
        uint8_t *pt = NULL;
        int r;

        if (!ret_error || !h || in_fd < 0 || out_fd < 0 || (check && (!check->fn || !check->interval_ms)))
                return -EINVAL;
        /* The caller has just asked: the first answer is due an interval on. */
        if (check)
                next_check = now_mono_usec() + check->interval_ms * UINT64_C(1000);
        r = stream_dec_new(ops, a, key, h, ctx, ctx_len, &s, &why);
        if (r < 0)
                goto out;
        full = (size_t)h->segment_size + STREAM_TAG_SIZE;
        cap = segments_per_write(full) * h->segment_size;
        pt = malloc(cap);
        why = "out of memory";
        r = pt ? piece_reader_new(in_fd, full, &rd) : -ENOMEM;
        if (r < 0)
                goto out;
        while (!last) {
                const uint8_t *in;
                size_t len, n;

                why = "stopped";
                if (check && (r = await_input(rd, check, &next_check)) < 0)
                        goto out;
                why = "reading the input failed";
                r = piece_reader_next(rd, &in, &len, &last);
                if (r < 0)
                        goto out;
                why = "decryption failed";
                r = stream_dec_segment(s, in, len, last, pt + fill, &n, &why);
                if (r < 0)
                        goto out;
                fill += n;
                total += n;
                /* Only segments that authenticated are written; under a
                 * check, a segment at a time, each when it still holds. */
                if (last || cap - fill < h->segment_size) {
                        size_t step = check ? h->segment_size : fill;

                        for (size_t off = 0; off < fill; off += step) {
                                why = "stopped";
                                r = check_due(check, &next_check);
                                if (r < 0)
                                        goto out;
                                why = "writing the output failed";
                                r = stream_write_full(out_fd, pt + off, fill - off < step ? fill - off : step);
                                if (r < 0)
                                        goto out;
                        }
                        secure_wipe(pt, fill);
                        fill = 0;
                }
        }
        if (ret_plaintext_size)
                *ret_plaintext_size = total;
        r = 0;
out:
        if (pt)
                secure_wipe(pt, cap);
        free(pt);
        piece_reader_free(rd);
        stream_dec_free(s);
        if (r < 0)
                *ret_error = why;
        return r;
}

int stream_decrypt_fd(const struct engine_ops *ops, struct engine_aead *a,
                      const uint8_t key[ENGINE_KEY_SIZE], const struct stream_header *h,
                      const uint8_t *ctx, size_t ctx_len, int in_fd, int out_fd,
                      uint64_t *ret_plaintext_size, const char **ret_error)
{
        return stream_decrypt_fd_checked(ops, a, key, h, ctx, ctx_len, in_fd, out_fd, NULL,
                                         ret_plaintext_size, ret_error);
}
