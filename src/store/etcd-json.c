/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The gateway's JSON encoding of etcd's messages: bytes fields (keys,
 * values) as base64, int64 fields as decimal strings, fields with their
 * zero value left out.  Helpers to build requests and read replies.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#include "shared/util.h"
#include "store/etcd-http.h"

int etcd_b64_encode(const void *p, size_t n, char **ret)
{
        char *s;

        if (n > STORE_VALUE_MAX + STORE_KEY_MAX + STORE_ETCD_PREFIX_MAX)
                return -E2BIG;
        s = malloc(4 * ((n + 2) / 3) + 1);
        if (!s)
                return -ENOMEM;
        EVP_EncodeBlock((unsigned char *)s, p, (int)n);
        *ret = s;
        return 0;
}

static bool b64_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/';
}

int etcd_b64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len)
{
        size_t pad = 0, len;
        uint8_t *p;
        int k;

        /* EVP_DecodeBlock skips blanks and ignores '=' placement: check first. */
        if (n % 4 != 0 || n > (size_t)INT32_MAX)
                return -EBADMSG;
        while (pad < 2 && pad < n && s[n - 1 - pad] == '=')
                pad++;
        for (size_t i = 0; i < n - pad; i++)
                if (!b64_char(s[i]))
                        return -EBADMSG;
        p = malloc(n / 4 * 3 + 1);
        if (!p)
                return -ENOMEM;
        k = n ? EVP_DecodeBlock(p, (const unsigned char *)s, (int)n) : 0;
        if (k < 0 || (size_t)k < pad) {
                free(p);
                return -EBADMSG;
        }
        len = (size_t)k - pad;
        *ret = p;
        *ret_len = len;
        return 0;
}

int etcd_json_u64(struct json_object *o, const char *field, uint64_t *ret)
{
        struct json_object *v;
        const char *s;
        uint64_t x = 0;
        size_t n;

        if (!o || !json_object_object_get_ex(o, field, &v)) {
                *ret = 0;
                return 0;
        }
        if (json_object_is_type(v, json_type_int)) {
                int64_t i = json_object_get_int64(v);

                if (i < 0)
                        return -EBADMSG;
                *ret = (uint64_t)i;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return -EBADMSG;
        s = json_object_get_string(v);
        n = (size_t)json_object_get_string_len(v);
        if (n == 0 || n > 19)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                x = x * 10 + (uint64_t)(s[i] - '0');
        }
        if (x > INT64_MAX)
                return -EBADMSG;
        *ret = x;
        return 0;
}

int etcd_json_add_to_array(struct json_object *a, struct json_object *o)
{
        if (!o || json_object_array_add(a, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

int etcd_json_add_object(struct json_object *o, const char *field, struct json_object *v)
{
        if (!v || json_object_object_add(o, field, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int etcd_json_add_bytes(struct json_object *o, const char *field, const void *p, size_t n)
{
        char *b64 = NULL;
        struct json_object *v;
        int r;

        r = etcd_b64_encode(p, n, &b64);
        if (r < 0)
                return r;
        v = json_object_new_string(b64);
        free(b64);
        return etcd_json_add_object(o, field, v);
}

int etcd_json_add_u64(struct json_object *o, const char *field, uint64_t v)
{
        return etcd_json_add_object(o, field, json_object_new_int64(v > INT64_MAX ? INT64_MAX : (int64_t)v));
}

int etcd_json_add_bool(struct json_object *o, const char *field)
{
        return etcd_json_add_object(o, field, json_object_new_boolean(1));
}

int etcd_json_header_revision(struct json_object *reply, uint64_t *ret)
{
        struct json_object *h;

        if (!json_object_object_get_ex(reply, "header", &h) || !json_object_is_type(h, json_type_object))
                return -EBADMSG;
        return etcd_json_u64(h, "revision", ret);
}

int etcd_json_get_bytes(struct json_object *o, const char *field, bool required, uint8_t **ret,
                        size_t *ret_len)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, field, &v)) {
                if (required)
                        return -EBADMSG;
                /* The gateway leaves empty fields out: an empty value. */
                return etcd_b64_decode("", 0, ret, ret_len);
        }
        if (!json_object_is_type(v, json_type_string))
                return -EBADMSG;
        return etcd_b64_decode(json_object_get_string(v), (size_t)json_object_get_string_len(v), ret,
                               ret_len);
}
