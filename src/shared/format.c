/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "format.h"
#include "util.h"

void format_write_shared_fields(uint8_t *out, uint8_t version, uint8_t algorithm, uint16_t flags,
                                const uint8_t policy_id[FORMAT_POLICY_ID_SIZE], uint32_t generation)
{
        memcpy(out, FORMAT_MAGIC, 4);
        out[4] = version;
        out[5] = algorithm;
        put_le16(out + 6, flags);
        memcpy(out + 8, policy_id, FORMAT_POLICY_ID_SIZE);
        put_le32(out + 24, generation);
}

void format_header_write(const struct format_header *h, uint8_t out[FORMAT_HEADER_SIZE])
{
        format_write_shared_fields(out, h->version, h->algorithm, h->flags, h->policy_id, h->generation);
        memcpy(out + 28, h->nonce, FORMAT_NONCE_SIZE);
}

int format_parse(const uint8_t *buf, size_t len, struct format_header *ret,
                 const char **ret_error)
{
        struct format_header h;
        uint8_t version;
        int r;

        r = format_peek_version(buf, len, &version, ret_error);
        if (r < 0)
                return r;
        if (version != FORMAT_VERSION) {
                *ret_error = "unsupported ciphertext version";
                return -EPROTONOSUPPORT;
        }
        if (len < FORMAT_OVERHEAD) {
                *ret_error = "truncated ciphertext";
                return -EBADMSG;
        }
        r = format_check_shared_fields(buf, 0, ret_error);
        if (r < 0)
                return r;
        h.version = buf[4];
        h.algorithm = buf[5];
        h.flags = get_le16(buf + 6);
        memcpy(h.policy_id, buf + 8, FORMAT_POLICY_ID_SIZE);
        h.generation = get_le32(buf + 24);
        memcpy(h.nonce, buf + 28, FORMAT_NONCE_SIZE);
        *ret = h;
        return 0;
}

int format_check_shared_fields(const uint8_t *buf, uint16_t allowed_flags, const char **ret_error)
{
        if (buf[5] != FORMAT_ALG_AES256GCM) {
                *ret_error = "unsupported ciphertext algorithm";
                return -EPROTONOSUPPORT;
        }
        if (get_le16(buf + 6) & ~allowed_flags) {
                *ret_error = "unknown ciphertext flags";
                return -EBADMSG;
        }
        if (get_le32(buf + 24) == 0) {
                *ret_error = "invalid generation 0 in ciphertext";
                return -EBADMSG;
        }
        return 0;
}

int format_peek_version(const uint8_t *buf, size_t len, uint8_t *ret_version,
                        const char **ret_error)
{
        if (!buf || len < 4 || memcmp(buf, FORMAT_MAGIC, 4) != 0) {
                *ret_error = "not a dkm ciphertext (bad magic)";
                return -EBADMSG;
        }
        if (len < 5) {
                *ret_error = "truncated ciphertext";
                return -EBADMSG;
        }
        *ret_version = buf[4];
        return 0;
}

static int pair_cmp(const void *a, const void *b)
{
        const struct context_pair *x = a, *y = b;

        return strcmp(x->key, y->key);
}

int format_context_encode(const struct context_pair *pairs, size_t n, uint8_t **ret,
                          size_t *ret_len, const char **ret_error)
{
        _cleanup_free_ struct context_pair *sorted = NULL;
        size_t total = 2, off;
        uint8_t *out;

        if (n > CONTEXT_MAX_PAIRS) {
                *ret_error = "too many context pairs";
                return -EINVAL;
        }
        sorted = calloc(n ? n : 1, sizeof(*sorted));
        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                size_t kl = strlen(pairs[i].key), vl = strlen(pairs[i].value);

                if (kl == 0) {
                        *ret_error = "empty context key";
                        return -EINVAL;
                }
                if (kl > CONTEXT_MAX_KEY || vl > CONTEXT_MAX_VALUE) {
                        *ret_error = "context key or value too long";
                        return -EINVAL;
                }
                sorted[i] = pairs[i];
                total += 4 + kl + vl;
        }
        qsort(sorted, n, sizeof(*sorted), pair_cmp);
        for (size_t i = 1; i < n; i++)
                if (strcmp(sorted[i - 1].key, sorted[i].key) == 0) {
                        *ret_error = "duplicate context key";
                        return -EINVAL;
                }

        out = malloc(total);
        if (!out)
                return -ENOMEM;
        put_le16(out, (uint16_t)n);
        off = 2;
        for (size_t i = 0; i < n; i++) {
                size_t kl = strlen(sorted[i].key), vl = strlen(sorted[i].value);

                put_le16(out + off, (uint16_t)kl);
                memcpy(out + off + 2, sorted[i].key, kl);
                off += 2 + kl;
                put_le16(out + off, (uint16_t)vl);
                memcpy(out + off + 2, sorted[i].value, vl);
                off += 2 + vl;
        }
        *ret = out;
        *ret_len = total;
        return 0;
}

void uuid_to_string(const uint8_t id[16], char out[37])
{
        snprintf(out, 37,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[8], id[9], id[10],
                 id[11], id[12], id[13], id[14], id[15]);
}

int uuid_from_string(const char *s, uint8_t ret[16])
{
        uint8_t id[16];
        size_t j = 0;

        if (strlen(s) != 36)
                return -EINVAL;
        for (size_t i = 0; i < 36;) {
                int hi, lo;

                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i++] != '-')
                                return -EINVAL;
                        continue;
                }
                hi = unhexchar(s[i]);
                lo = unhexchar(s[i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                id[j++] = (uint8_t)(hi << 4 | lo);
                i += 2;
        }
        memcpy(ret, id, 16);
        return 0;
}
