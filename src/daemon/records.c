/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "records.h"
#include "shared/util.h"
#include <stdlib.h>

static const char *const gen_states[] = {
        [GEN_ACTIVE] = "active",
        [GEN_ARCHIVED] = "archived",
        [GEN_RETIRED] = "retired",
        [GEN_DESTROYED] = "destroyed",
};

const char *gen_state_to_string(enum gen_state s)
{
        return (unsigned)s < ARRAY_SIZE(gen_states) ? gen_states[s] : "unknown";
}

static int gen_state_from_string(const char *s, enum gen_state *ret)
{
        for (size_t i = 0; i < ARRAY_SIZE(gen_states); i++)
                if (strcmp(s, gen_states[i]) == 0) {
                        *ret = (enum gen_state)i;
                        return 0;
                }
        return -EBADMSG;
}

void key_policy(char *buf, size_t size, const char *id)
{
        snprintf(buf, size, RECORDS_POLICIES "%s", id);
}

void key_generation(char *buf, size_t size, const char *id, uint32_t gen)
{
        snprintf(buf, size, RECORDS_POLICIES "%s/gens/%010u", id, gen);
}

void key_name(char *buf, size_t size, const char *name)
{
        snprintf(buf, size, RECORDS_NAMES "%s", name);
}

int policy_name_valid(const char *name)
{
        size_t n = strlen(name);

        if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-')
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return 0;
        }
        return 1;
}

static void add_b64(json_object *o, const char *name, const uint8_t *w, size_t len)
{
        char b64[4 * ((CUSTOMER_BLOB_MAX + 2) / 3) + 1];

        EVP_EncodeBlock((unsigned char *)b64, w, (int)len);
        json_object_object_add(o, name, json_object_new_string(b64));
}

static void add_wrapped(json_object *o, const uint8_t w[WRAPPED_KEY_SIZE])
{
        add_b64(o, "wrapped_key", w, WRAPPED_KEY_SIZE);
}

/* Base64 of at most max bytes; *ret_len is the decoded length. */
static int get_b64(json_object *o, const char *name, uint8_t *ret, size_t max, size_t *ret_len)
{
        uint8_t out[CUSTOMER_BLOB_MAX + 3];
        json_object *v;
        const char *s;
        size_t n, pad = 0;
        int k;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        s = json_object_get_string(v);
        n = strlen(s);
        if (n == 0 || n % 4 != 0 || n / 4 * 3 > max + 2)
                return -EBADMSG;
        k = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
        /* EVP_DecodeBlock counts padding bytes as data. */
        pad = (s[n - 1] == '=') + (s[n - 2] == '=');
        if (k < 0 || (size_t)k < pad || (size_t)k - pad > max)
                return -EBADMSG;
        memcpy(ret, out, (size_t)k - pad);
        *ret_len = (size_t)k - pad;
        return 0;
}

static int get_wrapped_as(json_object *o, const char *name, uint8_t ret[WRAPPED_KEY_SIZE])
{
        size_t n;

        if (get_b64(o, name, ret, WRAPPED_KEY_SIZE, &n) < 0 || n != WRAPPED_KEY_SIZE)
                return -EBADMSG;
        return 0;
}

static int get_wrapped(json_object *o, uint8_t ret[WRAPPED_KEY_SIZE])
{
        return get_wrapped_as(o, "wrapped_key", ret);
}

int record_get_u64(json_object *o, const char *name, uint64_t *ret)
{
        json_object *v;
        int64_t n;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        n = json_object_get_int64(v);
        if (n < 0)
                return -EBADMSG;
        *ret = (uint64_t)n;
        return 0;
}

int record_get_str(json_object *o, const char *name, char *buf, size_t size)
{
        json_object *v;
        const char *s;

        if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        s = json_object_get_string(v);
        if (strlen(s) >= size)
                return -EBADMSG;
        strcpy(buf, s);
        return 0;
}

static int finish(json_object *o, char **ret)
{
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        char *copy = s ? strdup(s) : NULL;

        json_object_put(o);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

/* An optional whole number up to UINT32_MAX (0 when absent). */
static int get_opt_u32(json_object *o, const char *name, uint32_t *ret)
{
        uint64_t v = 0;

        if (json_object_object_get_ex(o, name, NULL) && (record_get_u64(o, name, &v) < 0 || v > UINT32_MAX))
                return -EBADMSG;
        *ret = (uint32_t)v;
        return 0;
}

static json_object *parse_object(const uint8_t *buf, size_t len, bool exact)
{
        json_tokener *tok;
        json_object *o;

        if (!buf || len > INT32_MAX)
                return NULL;
        tok = json_tokener_new();
        if (!tok)
                return NULL;
        o = json_tokener_parse_ex(tok, (const char *)buf, (int)len);
        if (o && (json_tokener_get_error(tok) != json_tokener_success ||
                  (exact && json_tokener_get_parse_end(tok) != len) ||
                  !json_object_is_type(o, json_type_object))) {
                json_object_put(o);
                o = NULL;
        }
        json_tokener_free(tok);
        return o;
}

json_object *record_parse(const uint8_t *buf, size_t len)
{
        return parse_object(buf, len, false);
}

json_object *record_parse_exact(const uint8_t *buf, size_t len)
{
        return parse_object(buf, len, true);
}

int policy_record_encode(const struct policy_record *r, char **ret)
{
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "id", json_object_new_string(r->id));
        json_object_object_add(o, "name", json_object_new_string(r->name));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)r->created_usec));
        json_object_object_add(o, "active", json_object_new_int64(r->active));
        json_object_object_add(o, "generations", json_object_new_int64(r->n_generations));
        if (r->purged) {
                /* Nothing that unwraps is written for a purged policy. */
                json_object_object_add(o, "purged", json_object_new_boolean(true));
        } else if (r->n_customer_keys == 2) {
                json_object *arr = json_object_new_array();

                for (int i = 0; i < 2; i++) {
                        json_object *c = json_object_new_object();
                        json_object_object_add(c, "uri", json_object_new_string(r->customer_uri[i]));
                        add_b64(c, "blob", r->customer_blob[i], r->customer_blob_len[i]);
                        json_object_array_add(arr, c);
                }
                json_object_object_add(o, "customer_keys", arr);
                add_b64(o, "availability_key", r->availability_key, WRAPPED_KEY_SIZE);
                add_b64(o, "availability_wrap", r->availability_wrap, WRAPPED_KEY_SIZE);
        } else
                add_wrapped(o, r->wrapped_key);
        /* Written only when set: records of policies never given a new
         * policy key stay as they were. */
        if (!r->purged && r->key_version)
                json_object_object_add(o, "key_version", json_object_new_int64(r->key_version));
        if (!r->purged && r->has_previous) {
                json_object_object_add(o, "previous_version", json_object_new_int64(r->previous_version));
                add_b64(o, "previous_key", r->previous_key, WRAPPED_KEY_SIZE);
        }
        return finish(o, ret);
}

static int decode_customer_keys(json_object *o, struct policy_record *r)
{
        json_object *arr;

        if (!json_object_object_get_ex(o, "customer_keys", &arr))
                return 0;
        if (!json_object_is_type(arr, json_type_array) || json_object_array_length(arr) != 2)
                return -EBADMSG;
        for (int i = 0; i < 2; i++) {
                json_object *c = json_object_array_get_idx(arr, (size_t)i);

                if (record_get_str(c, "uri", r->customer_uri[i], CUSTOMER_URI_MAX) < 0 ||
                    get_b64(c, "blob", r->customer_blob[i], CUSTOMER_BLOB_MAX,
                            &r->customer_blob_len[i]) < 0)
                        return -EBADMSG;
        }
        r->n_customer_keys = 2;
        if (get_wrapped_as(o, "availability_key", r->availability_key) < 0 ||
            get_wrapped_as(o, "availability_wrap", r->availability_wrap) < 0)
                return -EBADMSG;
        return 0;
}

int policy_record_decode(const uint8_t *buf, size_t len, struct policy_record *ret)
{
        struct policy_record *r = calloc(1, sizeof(*r));
        uint64_t active, n;
        json_object *o = record_parse(buf, len), *v;
        int e = 0;

        if (!o || !r) {
                json_object_put(o);
                free(r);
                return o ? -ENOMEM : -EBADMSG;
        }
        r->purged = json_object_object_get_ex(o, "purged", &v) && json_object_get_boolean(v);
        if (record_get_str(o, "id", r->id, sizeof(r->id)) < 0 || record_get_str(o, "name", r->name, sizeof(r->name)) < 0 ||
            record_get_u64(o, "created", &r->created_usec) < 0 || record_get_u64(o, "active", &active) < 0 ||
            record_get_u64(o, "generations", &n) < 0 || active == 0 || active > n || n > UINT32_MAX)
                e = -EBADMSG;
        else if (!r->purged && decode_customer_keys(o, r) < 0)
                e = -EBADMSG;
        else if (!r->purged && r->n_customer_keys == 0 && get_wrapped(o, r->wrapped_key) < 0)
                e = -EBADMSG;
        else if (get_opt_u32(o, "key_version", &r->key_version) < 0)
                e = -EBADMSG;
        else if (json_object_object_get_ex(o, "previous_key", NULL)) {
                r->has_previous = true;
                if (get_wrapped_as(o, "previous_key", r->previous_key) < 0 ||
                    get_opt_u32(o, "previous_version", &r->previous_version) < 0 ||
                    r->previous_version >= r->key_version)
                        e = -EBADMSG;
        }
        json_object_put(o);
        if (e == 0) {
                r->active = (uint32_t)active;
                r->n_generations = (uint32_t)n;
                *ret = *r;
        }
        secure_wipe(r, sizeof(*r));
        free(r);
        return e;
}

int gen_record_encode(const struct gen_record *r, char **ret)
{
        json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        json_object_object_add(o, "generation", json_object_new_int64(r->generation));
        json_object_object_add(o, "state", json_object_new_string(gen_state_to_string(r->state)));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)r->created_usec));
        json_object_object_add(o, "activated", json_object_new_int64((int64_t)r->activated_usec));
        json_object_object_add(o, "uses_reserved", json_object_new_int64((int64_t)r->uses_reserved));
        if (r->state != GEN_DESTROYED)
                add_wrapped(o, r->wrapped_key);
        if (r->key_version)
                json_object_object_add(o, "key_version", json_object_new_int64(r->key_version));
        return finish(o, ret);
}

int gen_record_decode(const uint8_t *buf, size_t len, struct gen_record *ret)
{
        struct gen_record r = { 0 };
        char state[16];
        uint64_t g;
        json_object *o = record_parse(buf, len);
        int e = 0;

        if (!o)
                return -EBADMSG;
        if (record_get_u64(o, "generation", &g) < 0 || record_get_str(o, "state", state, sizeof(state)) < 0 ||
            gen_state_from_string(state, &r.state) < 0 ||
            record_get_u64(o, "created", &r.created_usec) < 0 ||
            record_get_u64(o, "activated", &r.activated_usec) < 0 ||
            record_get_u64(o, "uses_reserved", &r.uses_reserved) < 0 ||
            (r.state != GEN_DESTROYED && get_wrapped(o, r.wrapped_key) < 0) || g == 0 || g > UINT32_MAX ||
            get_opt_u32(o, "key_version", &r.key_version) < 0)
                e = -EBADMSG;
        json_object_put(o);
        if (e < 0)
                return e;
        r.generation = (uint32_t)g;
        *ret = r;
        return 0;
}
