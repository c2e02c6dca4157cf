/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <json-c/json.h>
#include <stdio.h>

#include "log.h"
#include "server.h"
#include "shared/format.h"
#include "shared/util.h"
#include "shared/wire.h"

static void reply_error(struct wire_builder *b, int error, const char *msg)
{
        wire_builder_free(b);
        wire_begin(b, WIRE_REPLY_ERROR);
        wire_add_u32(b, WIRE_TAG_ERRNO, (uint32_t)(error < 0 ? -error : error));
        /* The limit on the message field is 512 bytes. */
        wire_add(b, WIRE_TAG_MESSAGE, msg, strnlen(msg, 511));
}

static void reply_data(struct wire_builder *b, const uint8_t *data, size_t len)
{
        wire_begin(b, WIRE_REPLY_OK);
        wire_add(b, WIRE_TAG_DATA, data, len);
}

static void reply_json(struct wire_builder *b, const char *json)
{
        wire_begin(b, WIRE_REPLY_OK);
        wire_add_string(b, WIRE_TAG_JSON, json);
}

/* Collects the repeated CONTEXT fields ("key" NUL "value") into the canonical
 * encoding. */
static int context_from_request(const struct wire_msg *req, uint8_t **ret, size_t *ret_len,
                                const char **ret_error)
{
        struct context_pair pairs[CONTEXT_MAX_PAIRS];
        char copies[CONTEXT_MAX_PAIRS][CONTEXT_MAX_KEY + 1 + CONTEXT_MAX_VALUE + 1];
        size_t n = 0;

        for (size_t i = 0; i < req->n_fields; i++) {
                const struct wire_field *f = &req->fields[i];
                char *nul;

                if (f->tag != WIRE_TAG_CONTEXT)
                        continue;
                if (n == CONTEXT_MAX_PAIRS) {
                        *ret_error = "too many context pairs";
                        return -EINVAL;
                }
                memcpy(copies[n], f->value, f->len);
                copies[n][f->len] = 0;
                nul = memchr(copies[n], 0, f->len);
                if (!nul || memchr(nul + 1, 0, f->len - (size_t)(nul - copies[n]) - 1)) {
                        *ret_error = "malformed context pair";
                        return -EINVAL;
                }
                pairs[n].key = copies[n];
                pairs[n].value = nul + 1;
                n++;
        }
        return format_context_encode(pairs, n, ret, ret_len, ret_error);
}

static void handle_crypt(const struct daemon_state *st, const struct wire_msg *req,
                         struct wire_builder *b)
{
        _cleanup_free_ uint8_t *ctx = NULL;
        const struct wire_field *data = wire_get(req, WIRE_TAG_DATA);
        char policy[65], err[KEYS_ERR_MAX] = "";
        const char *why;
        uint8_t *out = NULL;
        size_t ctx_len, out_len = 0;
        int r;

        if (!data) {
                reply_error(b, -EINVAL, "request carries no data");
                return;
        }
        r = context_from_request(req, &ctx, &ctx_len, &why);
        if (r < 0) {
                reply_error(b, r, why);
                return;
        }
        switch (req->type) {
        case WIRE_ENCRYPT:
                if (data->len > WIRE_MAX_DATA) {
                        reply_error(b, -E2BIG, "plaintext too large for one request");
                        return;
                }
                r = wire_get_string(req, WIRE_TAG_POLICY, policy, sizeof(policy));
                if (r == -EBADMSG) {
                        reply_error(b, r, "malformed policy name");
                        return;
                }
                r = keys_encrypt(st->keys, r == 0 ? policy : NULL, ctx, ctx_len, data->value,
                                 data->len, &out, &out_len, err);
                break;
        case WIRE_DECRYPT:
                r = keys_decrypt(st->keys, ctx, ctx_len, data->value, data->len, &out, &out_len, err);
                break;
        default:
                r = keys_rewrap(st->keys, ctx, ctx_len, data->value, data->len, &out, &out_len, err);
                break;
        }
        if (r < 0) {
                reply_error(b, r, err[0] ? err : strerror(-r));
                return;
        }
        reply_data(b, out, out_len);
        secure_wipe(out, out_len);
        free(out);
}

static void handle_inspect(const struct daemon_state *st, const struct wire_msg *req,
                           struct wire_builder *b)
{
        const struct wire_field *data = wire_get(req, WIRE_TAG_DATA);
        _cleanup_free_ char *json = NULL;
        char err[KEYS_ERR_MAX] = "";
        int r;

        if (!data) {
                reply_error(b, -EINVAL, "request carries no data");
                return;
        }
        r = keys_inspect_json(st->keys, data->value, data->len, &json, err);
        if (r < 0)
                reply_error(b, r, err[0] ? err : strerror(-r));
        else
                reply_json(b, json);
}

static void handle_status(const struct daemon_state *st, struct wire_builder *b)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "version", json_object_new_string(DKM_VERSION));
        json_object_object_add(o, "engine", json_object_new_string(st->engine.name));
        json_object_object_add(o, "driver", json_object_new_string(st->engine.driver));
        json_object_object_add(o, "engine_reason", json_object_new_string(st->engine.reason));
        json_object_object_add(o, "store", json_object_new_string(st->cfg->store_backend));
        json_object_object_add(o, "state_dir", json_object_new_string(st->cfg->state_dir));
        json_object_object_add(o, "keyring", json_object_new_int(st->ring));
        json_object_object_add(o, "uptime_seconds",
                               json_object_new_int64((int64_t)((now_mono_usec() - st->started_usec) / 1000000)));
        json_object_object_add(o, "max_message_bytes",
                               json_object_new_int64(st->engine_max_message ?
                                                     (int64_t)st->engine_max_message : WIRE_MAX_DATA));
        keys_status(st->keys, o);
        reply_json(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

static void handle_keys(const struct daemon_state *st, const struct peer *peer,
                        const struct wire_msg *req, struct wire_builder *b)
{
        _cleanup_free_ char *json = NULL;
        struct audit_subject subj;
        char policy[65], err[KEYS_ERR_MAX] = "", text[32];
        const char *pol = NULL;
        uint32_t gen;
        int r;

        r = wire_get_string(req, WIRE_TAG_POLICY, policy, sizeof(policy));
        if (r == -EBADMSG) {
                reply_error(b, r, "malformed policy name");
                return;
        }
        if (r == 0)
                pol = policy;
        audit_subject_from_peer(&subj, peer->pid, peer->uid, peer->gid);
        switch (req->type) {
        case WIRE_KEY_LIST:
                r = keys_list_json(st->keys, pol, &json, err);
                if (r >= 0)
                        reply_json(b, json);
                break;
        case WIRE_KEY_ROTATE:
                r = keys_rotate(st->keys, pol, &subj, &gen, err);
                if (r >= 0) {
                        snprintf(text, sizeof(text), "{\"generation\":%u}", gen);
                        reply_json(b, text);
                }
                break;
        case WIRE_KEY_RETIRE:
                r = wire_get_u32(req, WIRE_TAG_GENERATION, &gen);
                if (r < 0) {
                        reply_error(b, -EINVAL, "request names no generation");
                        return;
                }
                r = keys_retire(st->keys, pol, gen, &subj, err);
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        }
        if (r < 0)
                reply_error(b, r, err[0] ? err : strerror(-r));
}

void handle_request(const struct daemon_state *st, const struct peer *peer,
                    const struct wire_msg *req, struct wire_builder *reply)
{
        unsigned roles = access_roles(st->cfg, peer);
        const char *why;
        char msg[160];
        int r;

        r = access_check(roles, req->type, &why);
        if (r < 0) {
                struct audit_subject subj;

                audit_subject_from_peer(&subj, peer->pid, peer->uid, peer->gid);
                audit_record(AUDIT_KIND_ACCESS, wire_type_name(req->type), &subj, false,
                             "reason=refused");
                log_notice("refused %s for uid %u pid %d: %s", wire_type_name(req->type),
                           (unsigned)peer->uid, (int)peer->pid, why);
                snprintf(msg, sizeof(msg), "permission denied: %s", why);
                reply_error(reply, r, msg);
                return;
        }
        switch (req->type) {
        case WIRE_STATUS:
                handle_status(st, reply);
                break;
        case WIRE_ENCRYPT:
        case WIRE_DECRYPT:
        case WIRE_REWRAP:
                handle_crypt(st, req, reply);
                break;
        case WIRE_INSPECT:
                handle_inspect(st, req, reply);
                break;
        default:
                handle_keys(st, peer, req, reply);
                break;
        }
}
