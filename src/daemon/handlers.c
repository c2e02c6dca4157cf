/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <sys/stat.h>

#include "backup.h"
#include "log.h"
#include "masterkey.h"
#include "ratelimit.h"
#include "server.h"
#include "shared/format.h"
#include "shared/secret.h"
#include "shared/stream-io.h"
#include "shared/stream-pool.h"
#include "shared/stream.h"
#include "shared/util.h"
#include "shared/wire.h"
#include "store/store-auth.h"
#include "store/store-etcd.h"

static void reply_error(struct wire_builder *b, int error, const char *msg)
{
        size_t n;

        wire_builder_free(b);
        wire_begin(b, WIRE_REPLY_ERROR);
        wire_add_u32(b, WIRE_TAG_ERRNO, (uint32_t)(error < 0 ? -error : error));
        n = strlen(msg);
        /* The limit on the message field is 512 bytes. */
        wire_add(b, WIRE_TAG_MESSAGE, msg, n > 511 ? 511 : n);
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

/* The policy a request names, else the caller's assigned one; NULL for the
 * default.  -EBADMSG for a malformed name. */
static int request_policy(const struct daemon_state *st, const struct peer *peer,
                          const struct wire_msg *req, char policy[65], const char **ret)
{
        int r = wire_get_string(req, WIRE_TAG_POLICY, policy, 65);

        if (r == -EBADMSG)
                return r;
        if (r == -ENOENT && keys_policy_for(st->keys, peer->uid, peer->gid, peer->groups,
                                            peer->n_groups, policy))
                r = 0;
        *ret = r == 0 ? policy : NULL;
        return 0;
}

/* A fresh 256-bit data key, returned in the clear and wrapped (a v1
 * ciphertext of it under the policy's active generation). */
static void handle_datakey(const struct daemon_state *st, const struct peer *peer,
                           const struct wire_msg *req, const uint8_t *ctx, size_t ctx_len,
                           struct wire_builder *b)
{
        _cleanup_secret_ uint8_t *key = secret_alloc(32);
        char policy[65], err[KEYS_ERR_MAX] = "";
        const char *pol;
        uint8_t *out = NULL;
        size_t out_len;
        int r;

        if (!key) {
                reply_error(b, -ENOMEM, "out of locked memory");
                return;
        }
        if (request_policy(st, peer, req, policy, &pol) < 0) {
                reply_error(b, -EINVAL, "malformed policy name");
                return;
        }
        r = engine_random(key, 32);
        if (r >= 0)
                r = keys_encrypt(st->keys, pol, ctx, ctx_len, key, 32, &out, &out_len, err);
        if (r < 0) {
                reply_error(b, r, err[0] ? err : strerror(-r));
                return;
        }
        wire_begin(b, WIRE_REPLY_OK);
        wire_add(b, WIRE_TAG_DATA, out, out_len);
        wire_add(b, WIRE_TAG_KEY, key, 32);
        free(out);
}

static int handle_crypt(const struct daemon_state *st, const struct peer *peer,
                         const struct wire_msg *req, struct wire_builder *b)
{
        _cleanup_free_ uint8_t *ctx = NULL;
        const struct wire_field *data = wire_get(req, WIRE_TAG_DATA);
        char policy[65], err[KEYS_ERR_MAX] = "";
        const char *why;
        uint8_t *out = NULL;
        size_t ctx_len, out_len = 0;
        int r;

        if (!data && req->type != WIRE_DATAKEY) {
                reply_error(b, -EINVAL, "request carries no data");
                return -EINVAL;
        }
        r = context_from_request(req, &ctx, &ctx_len, &why);
        if (r < 0) {
                reply_error(b, r, why);
                return r;
        }
        switch (req->type) {
        case WIRE_ENCRYPT:
                if (data->len > WIRE_MAX_DATA) {
                        reply_error(b, -E2BIG, "plaintext too large for one request");
                        return -E2BIG;
                }
                {
                        const char *pol;

                        /* No policy named: the caller's assigned one, else the default. */
                        if (request_policy(st, peer, req, policy, &pol) < 0) {
                                reply_error(b, -EBADMSG, "malformed policy name");
                                return -EBADMSG;
                        }
                        r = keys_encrypt(st->keys, pol, ctx, ctx_len, data->value, data->len, &out,
                                         &out_len, err);
                }
                break;
        case WIRE_DECRYPT:
                r = keys_decrypt(st->keys, ctx, ctx_len, data->value, data->len, &out, &out_len, err);
                break;
        case WIRE_DATAKEY:
                handle_datakey(st, peer, req, ctx, ctx_len, b);
                return 0;
        default:
                r = keys_rewrap(st->keys, ctx, ctx_len, data->value, data->len, &out, &out_len, err);
                break;
        }
        if (r < 0) {
                reply_error(b, r, err[0] ? err : strerror(-r));
                return r;
        }
        reply_data(b, out, out_len);
        secure_wipe(out, out_len);
        free(out);
        return 0;
}

/* Many small items in one round trip; each gets its own answer, so one bad
 * item does not fail the others. */
static void handle_batch(const struct daemon_state *st, const struct peer *peer,
                         const struct wire_msg *req, struct wire_builder *b)
{
        struct wire_msg *inner = malloc(sizeof(*inner));
        size_t n = 0;

        if (!inner) {
                reply_error(b, -ENOMEM, "out of memory");
                return;
        }
        wire_begin(b, WIRE_REPLY_OK);
        for (size_t i = 0; i < req->n_fields; i++) {
                const struct wire_field *f = &req->fields[i];
                struct wire_builder ib = { 0 };
                const char *why;

                if (f->tag != WIRE_TAG_ITEM)
                        continue;
                if (++n > WIRE_MAX_BATCH) {
                        reply_error(b, -E2BIG, "too many items in one batch");
                        break;
                }
                if (wire_parse(f->value, f->len, inner, &why) < 0)
                        reply_error(&ib, -EBADMSG, why);
                else if (inner->type != WIRE_ENCRYPT && inner->type != WIRE_DECRYPT)
                        reply_error(&ib, -EINVAL, "a batch item is an encrypt or a decrypt");
                else
                        handle_crypt(st, peer, inner, &ib);
                if (wire_finish(&ib) >= 0)
                        wire_add(b, WIRE_TAG_ITEM, ib.buf, ib.len);
                else
                        wire_add(b, WIRE_TAG_ITEM, "", 0);
                wire_builder_free(&ib);
        }
        free(inner);
}

static int handle_inspect(const struct daemon_state *st, const struct wire_msg *req,
                           struct wire_builder *b)
{
        const struct wire_field *data = wire_get(req, WIRE_TAG_DATA);
        _cleanup_free_ char *json = NULL;
        char err[KEYS_ERR_MAX] = "";
        int r;

        if (!data) {
                reply_error(b, -EINVAL, "request carries no data");
                return -EINVAL;
        }
        r = keys_inspect_json(st->keys, data->value, data->len, &json, err);
        if (r < 0)
                reply_error(b, r, err[0] ? err : strerror(-r));
        else
                reply_json(b, json);
        return r < 0 ? r : 0;
}

/* full: for the roles that work with keys; reviewers and root get what
 * keyctl needs (the grants keyring) and nothing about policies or keys. */
static void handle_status(const struct daemon_state *st, bool full, struct wire_builder *b)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "version", json_object_new_string(DKM_VERSION));
        json_object_object_add(o, "engine", json_object_new_string(st->engine.name));
        json_object_object_add(o, "driver", json_object_new_string(st->engine.driver));
        json_object_object_add(o, "engine_reason", json_object_new_string(st->engine.reason));
        json_object_object_add(o, "custody", json_object_new_string(st->custody));
        json_object_object_add(o, "store", json_object_new_string(st->cfg->store_backend));
        json_object_object_add(o, "state_dir", json_object_new_string(st->cfg->state_dir));
        json_object_object_add(o, "keyring", json_object_new_int(st->ring));
        json_object_object_add(o, "uptime_seconds",
                               json_object_new_int64((int64_t)((now_mono_usec() - st->started_usec) / 1000000)));
        json_object_object_add(o, "max_message_bytes",
                               json_object_new_int64(st->engine_max_message ?
                                                     (int64_t)st->engine_max_message : WIRE_MAX_DATA));
        json_object_object_add(o, "grants_keyring",
                               json_object_new_int(st->grants ? grants_keyring(st->grants) : 0));
        if (full) {
                keys_status(st->keys, o);
                keys_sync_status(st->keys, st->store_watch, o);
                nodes_status(st->nodes, o);
        }
        reply_json(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
}

static void handle_keys(const struct daemon_state *st, const struct peer *peer,
                        const struct wire_msg *req, struct wire_builder *b)
{
        _cleanup_free_ char *json = NULL;
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
        switch (req->type) {
        case WIRE_KEY_LIST:
                r = keys_list_json(st->keys, pol, &json, err);
                if (r >= 0)
                        reply_json(b, json);
                break;
        case WIRE_KEY_ROTATE:
                r = keys_rotate(st->keys, pol, &peer->subj, &gen, err);
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
                r = keys_retire(st->keys, pol, gen, &peer->subj, err);
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        }
        if (r < 0)
                reply_error(b, r, err[0] ? err : strerror(-r));
}

static void handle_policy(const struct daemon_state *st, const struct wire_msg *req,
                          const struct audit_subject *subj, struct wire_builder *b)
{
        char policy[65] = "", uris[2][1024], err[KEYS_ERR_MAX] = "";
        const char *u[2] = { NULL, NULL };
        _cleanup_free_ char *json = NULL;
        size_t n_uris = 0;
        uint32_t id, flags = 0;
        int r;

        r = wire_get_string(req, WIRE_TAG_POLICY, policy, sizeof(policy));
        if (r == -EBADMSG || (r == -ENOENT && req->type != WIRE_POLICY_LIST)) {
                reply_error(b, -EINVAL, r == -ENOENT ? "request names no policy" : "malformed policy name");
                return;
        }
        for (size_t i = 0; i < req->n_fields; i++) {
                const struct wire_field *f = &req->fields[i];

                if (f->tag != WIRE_TAG_CUSTOMER_KEY)
                        continue;
                if (n_uris == 2) {
                        reply_error(b, -EINVAL, "give exactly two customer keys (three or more were given)");
                        return;
                }
                if (memchr(f->value, 0, f->len)) {
                        reply_error(b, -EINVAL, "malformed customer key URI");
                        return;
                }
                memcpy(uris[n_uris], f->value, f->len);
                uris[n_uris][f->len] = 0;
                u[n_uris] = uris[n_uris];
                n_uris++;
        }
        if (n_uris == 1) {
                reply_error(b, -EINVAL, "give exactly two customer keys (or none for a service-managed policy)");
                return;
        }
        wire_get_u32(req, WIRE_TAG_FLAGS, &flags);
        switch (req->type) {
        case WIRE_POLICY_CREATE:
                r = keys_policy_create(st->keys, policy, n_uris ? u : NULL, subj, err);
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        case WIRE_POLICY_REKEY:
                if (n_uris != 2) {
                        reply_error(b, -EINVAL, "rekey needs two new customer keys");
                        return;
                }
                r = keys_policy_rekey(st->keys, policy, u, flags & WIRE_FLAG_NEW_POLICY_KEY, subj, err);
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        case WIRE_POLICY_ASSIGN:
                if (wire_get_u32(req, WIRE_TAG_UID, &id) == 0)
                        r = keys_policy_assign(st->keys, policy, false, id, subj, err);
                else if (wire_get_u32(req, WIRE_TAG_GID, &id) == 0)
                        r = keys_policy_assign(st->keys, policy, true, id, subj, err);
                else {
                        reply_error(b, -EINVAL, "assign to which uid or gid?");
                        return;
                }
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        default:
                r = keys_policy_list_json(st->keys, req->type == WIRE_POLICY_SHOW ? policy : NULL, &json, err);
                if (r >= 0)
                        reply_json(b, json);
                break;
        }
        if (r < 0)
                reply_error(b, r, err[0] ? err : strerror(-r));
}

/* Writes the record of one use of a grant with its outcome: result >= 0
 * is res=success, else res=failed with the error.  A use whose record
 * cannot be written fails closed: -EIO, and the caller withholds the
 * answer. */
static int grant_use_record(const struct daemon_state *st, const struct peer *peer, unsigned type,
                            const struct audit_subject *subj, const char *policy, uint32_t generation,
                            const struct grant_use *use, int result, char *msg, size_t msg_size)
{
        _cleanup_free_ char *areason = audit_value(use->reason);

        if (!areason || (audit_outcome(AUDIT_KIND_KEY, "grant-use", subj, result,
                                       "request=%u use=%s policy=%s generation=%u approvers=%s reason=%s",
                                       use->id, wire_type_name(type), policy, generation, use->approvers,
                                       areason) < 0 &&
                         CFG(st->cfg, audit_fail_closed))) {
                snprintf(msg, msg_size, "refused: the audit record could not be written");
                return areason ? -EIO : -ENOMEM;
        }
        if (result >= 0)
                log_notice("uid %u uses grant %u to %s (policy '%s', generation %u)", (unsigned)peer->uid,
                           use->id, wire_type_name(type), policy, generation);
        return 0;
}

/* Checks the caller's live grant of the scope that type needs on policy. */
static int grant_check(const struct daemon_state *st, unsigned type, const struct audit_subject *subj,
                       const char *policy, struct grant_use *use, char *msg, size_t msg_size)
{
        char err[GRANT_ERR_MAX] = "";
        int r;

        r = grants_check(st->grants, subj, type == WIRE_INSPECT ? SCOPE_INSPECT : SCOPE_DECRYPT, policy, use,
                         err);
        if (r < 0)
                snprintf(msg, msg_size, "permission denied: %s", err);
        return r;
}

/* A stream's grant, checked and its use recorded before the first byte is
 * written (what follows is recorded at the stream's end). */
static int grant_use(const struct daemon_state *st, const struct peer *peer, unsigned type,
                     const struct audit_subject *subj, const char *policy, uint32_t generation,
                     struct grant_use *ret_use, char *msg, size_t msg_size)
{
        int r;

        r = grant_check(st, type, subj, policy, ret_use, msg, msg_size);
        if (r < 0)
                return r;
        if (CFG(st->cfg, audit_fail_closed) && audit_can_write() < 0) {
                snprintf(msg, msg_size, "refused: the audit record could not be written");
                return -EIO;
        }
        return grant_use_record(st, peer, type, subj, policy, generation, ret_use, 0, msg, msg_size);
}

/* A caller outside the users group may decrypt or inspect under a live
 * grant: checked here, before the operation; the use is recorded after it,
 * with its outcome (grant_used).  Refused beforehand when fail_closed and
 * the record could not be written. */
struct grant_pending {
        struct grant_use use;
        char policy[65];
        uint32_t generation;
};

static int grant_allows(const struct daemon_state *st, const struct wire_msg *req,
                        const struct audit_subject *subj, struct grant_pending *p, char *msg, size_t msg_size)
{
        const struct wire_field *data = wire_get(req, WIRE_TAG_DATA);
        char err[KEYS_ERR_MAX] = "";
        struct format_header h;
        const char *why;
        int r;

        if (!data) {
                snprintf(msg, msg_size, "request carries no data");
                return -EINVAL;
        }
        r = keys_policy_of(st->keys, data->value, data->len, p->policy, err);
        if (r < 0) {
                snprintf(msg, msg_size, "%s", err);
                return r;
        }
        format_parse(data->value, data->len, &h, &why);
        p->generation = h.generation;
        r = grant_check(st, req->type, subj, p->policy, &p->use, msg, msg_size);
        if (r < 0)
                return r;
        if (CFG(st->cfg, audit_fail_closed) && audit_can_write() < 0) {
                snprintf(msg, msg_size, "refused: the audit record could not be written");
                return -EIO;
        }
        return 0;
}

/* After the operation: its outcome goes into the use's record; a record
 * that cannot be written withholds the reply. */
static void grant_used(const struct daemon_state *st, const struct peer *peer, const struct wire_msg *req,
                       const struct grant_pending *p, int result, struct wire_builder *reply)
{
        char msg[128];

        if (grant_use_record(st, peer, req->type, &peer->subj, p->policy, p->generation, &p->use, result, msg,
                             sizeof(msg)) < 0)
                reply_error(reply, -EIO, msg);
}

/* Refusals are audited and logged, but a uid that sends them by the
 * thousand gets RATELIMIT_BURST records per interval and then one that says
 * how many were left out (op=refusals-suppressed suppressed=K). */
static struct ratelimit refusal_records = RATELIMIT_INIT;

static void report_refusals(uid_t uid _unused_, unsigned n, const struct audit_subject *last,
                            void *userdata _unused_)
{
        audit_record(AUDIT_KIND_ACCESS, "refusals-suppressed", last, false, "suppressed=%u seconds=%u", n,
                     (unsigned)(RATELIMIT_INTERVAL_USEC / 1000000));
}

void handle_flush_refusals(uint64_t now_usec)
{
        ratelimit_flush(&refusal_records, now_usec, report_refusals, NULL);
}

static void refusal_op_record(const struct peer *peer, const struct audit_subject *subj, const char *op,
                              const char *why)
{
        if (ratelimit_allow(&refusal_records, peer->uid, now_mono_usec(), subj, report_refusals, NULL))
                audit_record(AUDIT_KIND_ACCESS, op, subj, false, "reason=refused");
        log_peer(peer->uid, LOG_NOTICE, "refused %s for uid %u pid %d: %s", op, (unsigned)peer->uid,
                 (int)peer->pid, why);
}

static void refusal_record(const struct peer *peer, const struct audit_subject *subj, unsigned type,
                           const char *why)
{
        refusal_op_record(peer, subj, wire_type_name((uint16_t)type), why);
}

void handle_refusal(const struct peer *peer, const char *op, const char *why)
{
        struct audit_subject subj;

        audit_subject_from_peer(&subj, peer->pid, peer->uid, peer->gid);
        refusal_op_record(peer, &subj, op, why);
}

/* A stream decrypted under a grant: dkmd has read the input's header and
 * asks here, before anything is written, with the policy it names; then
 * again while the stream flows (keys.h), so that a grant that ends
 * mid-stream stops it. */
struct stream_grant {
        const struct daemon_state *st;
        const struct peer *peer;
        const struct audit_subject *subj;
        unsigned type;
        struct grant_use use; /* the grant the stream runs under, id 0 before the first check */
        char policy[65];
        uint32_t generation;
};

/* Mid-stream: the grant still holds (or another that covers the stream,
 * whose use is audited in turn), else the stream stops, audited. */
static int stream_grant_recheck(struct stream_grant *g, const char *policy, uint32_t generation, char *err)
{
        char why[GRANT_ERR_MAX] = "";
        _cleanup_free_ char *awhy = NULL;
        struct grant_use use;
        int r;

        r = grants_check(g->st->grants, g->subj, SCOPE_DECRYPT, policy, &use, why);
        if (r >= 0 && use.id == g->use.id)
                return 0;
        if (r >= 0)
                return grant_use(g->st, g->peer, g->type, g->subj, policy, generation, &g->use, err,
                                 KEYS_ERR_MAX);
        /* Cut to fit: why may be longer than what is left after the prefix. */
        (void)!snprintf(err, KEYS_ERR_MAX, "permission denied: stopped mid-stream: %.*s",
                        (int)(KEYS_ERR_MAX - sizeof("permission denied: stopped mid-stream: ")), why);
        awhy = audit_value(why);
        audit_record(AUDIT_KIND_ACCESS, "grant-use-stop", g->subj, false,
                     "request=%u use=%s policy=%s generation=%u error=%s", g->use.id, wire_type_name(g->type),
                     policy, generation, awhy ? awhy : "?");
        log_notice("stopped %s for uid %u pid %d mid-stream: %s", wire_type_name(g->type),
                   (unsigned)g->peer->uid, (int)g->peer->pid, why);
        return r;
}

static int stream_grant_gate(void *userdata, const char *policy, uint32_t generation, char *err)
{
        struct stream_grant *g = userdata;
        int r;

        if (g->use.id)
                return stream_grant_recheck(g, policy, generation, err);
        snprintf(g->policy, sizeof(g->policy), "%s", policy);
        g->generation = generation;
        r = grant_use(g->st, g->peer, g->type, g->subj, policy, generation, &g->use, err, KEYS_ERR_MAX);
        if (r < 0)
                refusal_record(g->peer, g->subj, g->type, err);
        return r;
}

static void handle_access(const struct daemon_state *st, const struct wire_msg *req,
                          const struct audit_subject *subj, struct wire_builder *b)
{
        char reason[4097] = "", duration[65] = "", scope[17] = "", policy[65] = "", state[640];
        char err[GRANT_ERR_MAX] = "", json_text[96];
        _cleanup_free_ char *json = NULL;
        uint32_t id = 0, gen = 0;
        bool has_policy, has_scope, has_duration;
        int r;

        if (wire_get_string(req, WIRE_TAG_REASON, reason, sizeof(reason)) == -EBADMSG ||
            wire_get_string(req, WIRE_TAG_DURATION, duration, sizeof(duration)) == -EBADMSG ||
            wire_get_string(req, WIRE_TAG_SCOPE, scope, sizeof(scope)) == -EBADMSG ||
            wire_get_string(req, WIRE_TAG_POLICY, policy, sizeof(policy)) == -EBADMSG) {
                reply_error(b, -EINVAL, "malformed text field");
                return;
        }
        has_policy = wire_get(req, WIRE_TAG_POLICY);
        has_scope = wire_get(req, WIRE_TAG_SCOPE);
        has_duration = wire_get(req, WIRE_TAG_DURATION);
        wire_get_u32(req, WIRE_TAG_GENERATION, &gen);
        if (req->type != WIRE_ACCESS_REQUEST && req->type != WIRE_KEY_DESTROY &&
            req->type != WIRE_POLICY_PURGE && req->type != WIRE_ACCESS_LIST &&
            req->type != WIRE_RECOVERY_RESHARE &&
            wire_get_u32(req, WIRE_TAG_REQUEST, &id) < 0) {
                reply_error(b, -EINVAL, "request names no access request id");
                return;
        }
        switch (req->type) {
        case WIRE_RECOVERY_RESHARE:
                r = grants_request(st->grants, subj, reason, NULL, "reshare", NULL, 0, &id, err);
                if (r >= 0) {
                        snprintf(json_text, sizeof(json_text), "{\"request\":%u}", id);
                        reply_json(b, json_text);
                }
                break;
        case WIRE_POLICY_PURGE:
                if (!has_policy) {
                        reply_error(b, -EINVAL, "request names no policy");
                        return;
                }
                r = grants_request(st->grants, subj, reason, NULL, "purge", policy, 0, &id, err);
                if (r >= 0) {
                        snprintf(json_text, sizeof(json_text), "{\"request\":%u}", id);
                        reply_json(b, json_text);
                }
                break;
        case WIRE_ACCESS_REQUEST:
        case WIRE_KEY_DESTROY:
                if (req->type == WIRE_KEY_DESTROY && !gen) {
                        reply_error(b, -EINVAL, "request names no generation");
                        return;
                }
                if (req->type == WIRE_ACCESS_REQUEST && has_scope &&
                    (strcmp(scope, "destroy") == 0 || strcmp(scope, "purge") == 0 ||
                     strcmp(scope, "reshare") == 0)) {
                        reply_error(b, -EINVAL, "unknown scope (decrypt or inspect; use key destroy "
                                                "or policy purge to crypto-shred, recovery reshare for "
                                                "a new share set)");
                        return;
                }
                r = grants_request(st->grants, subj, reason,
                                   req->type == WIRE_KEY_DESTROY ? NULL : has_duration ? duration : NULL,
                                   req->type == WIRE_KEY_DESTROY ? "destroy" : has_scope ? scope : NULL,
                                   has_policy ? policy : req->type == WIRE_KEY_DESTROY ? DEFAULT_POLICY : NULL,
                                   req->type == WIRE_KEY_DESTROY ? gen : 0, &id, err);
                if (r >= 0) {
                        snprintf(json_text, sizeof(json_text), "{\"request\":%u}", id);
                        reply_json(b, json_text);
                }
                break;
        case WIRE_ACCESS_APPROVE:
                r = grants_approve(st->grants, subj, id, state, sizeof(state), err);
                if (r >= 0) {
                        /* The state may carry a warning's free text: escaped by json-c. */
                        json_object *o = json_object_new_object();

                        json_object_object_add(o, "request", json_object_new_int64(id));
                        json_object_object_add(o, "state", json_object_new_string(state));
                        reply_json(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
                        json_object_put(o);
                }
                break;
        case WIRE_ACCESS_DENY:
                r = grants_deny(st->grants, subj, id, reason, err);
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        case WIRE_ACCESS_REVOKE:
                r = grants_revoke(st->grants, subj, id, err);
                if (r >= 0)
                        reply_json(b, "{}");
                break;
        default:
                r = grants_list_json(st->grants, &json, err);
                if (r >= 0)
                        reply_json(b, json);
                break;
        }
        if (r < 0)
                reply_error(b, r, err[0] ? err : strerror(-r));
}

static const char *file_type_name(mode_t m)
{
        return S_ISDIR(m) ? "a directory" : S_ISCHR(m) ? "a character device" :
               S_ISBLK(m) ? "a block device" : S_ISLNK(m) ? "a symbolic link" : "an unusual file";
}

/* Before any I/O: the input is a regular file, pipe or socket open for
 * reading (a character device such as /dev/zero could keep a worker busy
 * for ever); the output is one of those or a character device (a
 * terminal, /dev/null) open for writing. */
static int stream_fds_check(const int fds[2], char *err, size_t err_size)
{
        static const char *const what[2] = { "input", "output" };

        for (int i = 0; i < 2; i++) {
                struct stat st;
                int fl = fcntl(fds[i], F_GETFL), acc;

                if (fl < 0 || fstat(fds[i], &st) < 0) {
                        snprintf(err, err_size, "cannot use the passed %s descriptor: %s", what[i],
                                 strerror(errno));
                        return -EBADF;
                }
                acc = fl & O_ACCMODE;
                if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode) &&
                    (i == 0 || !S_ISCHR(st.st_mode))) {
                        snprintf(err, err_size, "the passed %s is %s: a stream %s a regular file, "
                                 "pipe or socket", what[i], file_type_name(st.st_mode),
                                 i == 0 ? "reads" : "writes to");
                        return -EINVAL;
                }
                if ((i == 0 && acc == O_WRONLY) || (i == 1 && acc == O_RDONLY)) {
                        snprintf(err, err_size, "the passed %s descriptor is not open for %s", what[i],
                                 i == 0 ? "reading" : "writing");
                        return -EBADF;
                }
        }
        return 0;
}

/* Streams between the two descriptors the client passed: input, output. */
static void handle_stream(const struct daemon_state *st, const struct peer *peer,
                          const struct wire_msg *req, const int *fds, size_t n_fds,
                          const struct audit_subject *subj, bool under_grant, struct wire_builder *b)
{
        struct stream_grant grant = { .st = st, .peer = peer, .subj = subj, .type = req->type };
        _cleanup_free_ uint8_t *ctx = NULL;
        char policy[65], err[KEYS_ERR_MAX] = "", json[64];
        uint32_t segment = STREAM_SEGMENT_DEFAULT;
        const char *why, *pol;
        uint64_t bytes = 0;
        size_t ctx_len;
        int r;

        if (n_fds != 2) {
                reply_error(b, -EINVAL, "a stream request passes two file descriptors (input, output)");
                return;
        }
        r = stream_fds_check(fds, err, sizeof(err));
        if (r < 0) {
                reply_error(b, r, err);
                return;
        }
        /* A pipe that stays silent, or that nobody reads, gives up the
         * worker after this long without progress. */
        stream_io_set_timeout_usec(CFG(st->cfg, stream_timeout_usec));
        stream_pool_set_threads(CFG(st->cfg, stream_threads));
        r = context_from_request(req, &ctx, &ctx_len, &why);
        if (r < 0) {
                reply_error(b, r, why);
                return;
        }
        if (req->type == WIRE_ENCRYPT_FD) {
                if (request_policy(st, peer, req, policy, &pol) < 0) {
                        reply_error(b, -EINVAL, "malformed policy name");
                        return;
                }
                wire_get_u32(req, WIRE_TAG_SEGMENT, &segment);
                r = keys_stream_encrypt(st->keys, pol, ctx, ctx_len, segment, fds[0], fds[1], &bytes, err);
        } else
                r = keys_stream_decrypt(st->keys, ctx, ctx_len, fds[0], fds[1],
                                        under_grant ? stream_grant_gate : NULL, &grant, &bytes, err);
        /* The use was recorded at its start; its end says how it went. */
        if (grant.use.id)
                audit_outcome(AUDIT_KIND_KEY, "grant-use-end", subj, r,
                              "request=%u use=%s policy=%s generation=%u bytes=%" PRIu64, grant.use.id,
                              wire_type_name(req->type), grant.policy, grant.generation, bytes);
        if (r == -ETIME) {
                snprintf(err, sizeof(err), "a passed descriptor timed out: no data moved for %" PRIu64
                         " s ([daemon] stream_timeout)", CFG(st->cfg, stream_timeout_usec) / 1000000);
                log_peer(peer->uid, LOG_NOTICE, "uid %u pid %d: %s", (unsigned)peer->uid, (int)peer->pid, err);
        }
        if (r < 0) {
                reply_error(b, r, err[0] ? err : strerror(-r));
                return;
        }
        snprintf(json, sizeof(json), "{\"bytes\":%" PRIu64 "}", bytes);
        reply_json(b, json);
}

/* dkmctl backup: the snapshot goes to the one descriptor passed (dkmctl's
 * temporary file), not through this socket. */
static void handle_backup(const struct daemon_state *st, const struct wire_msg *req, const int *fds,
                          size_t n_fds, const struct audit_subject *subj, struct wire_builder *b)
{
        _cleanup_secret_ uint8_t *keys = secret_alloc(ENGINE_KEY_SIZE + MASTERKEY_RECORD_KEY_SIZE);
        uint64_t records = 0, revision = 0, refused = 0, bytes = 0;
        char err[BACKUP_ERR_MAX] = "", source[4200], json[160];
        struct store *backend = store_backend(st->store);
        struct stat sb;
        size_t n = 0;
        int fl, r;

        (void)req;
        if (n_fds != 1) {
                reply_error(b, -EINVAL, "a backup request passes one file descriptor (the output)");
                return;
        }
        fl = fcntl(fds[0], F_GETFL);
        /* A regular file only: a pipe nobody reads would hold a worker. */
        if (fl < 0 || fstat(fds[0], &sb) < 0 || !S_ISREG(sb.st_mode) || (fl & O_ACCMODE) == O_RDONLY) {
                reply_error(b, -EBADF, "the passed output is not a regular file open for writing");
                return;
        }
        if (CFG(st->cfg, audit_fail_closed) && audit_can_write() < 0) {
                reply_error(b, -EIO, "refused: the audit record could not be written ([audit] fail_closed=yes)");
                return;
        }
        if (!keys) {
                reply_error(b, -ENOMEM, "out of locked memory");
                return;
        }
        if (strcmp(st->cfg->store_backend, "etcd") == 0)
                snprintf(source, sizeof(source), "%s", st->cfg->store_prefix ? st->cfg->store_prefix :
                                                                          STORE_ETCD_DEFAULT_PREFIX);
        else
                snprintf(source, sizeof(source), "%s/dkm.db", st->cfg->state_dir);
        r = keyring_read(st->master, keys, ENGINE_KEY_SIZE, &n);
        if (r >= 0 && n != ENGINE_KEY_SIZE)
                r = -EBADMSG;
        if (r >= 0)
                r = masterkey_derive_record_key(keys, keys + ENGINE_KEY_SIZE);
        if (r < 0)
                snprintf(err, sizeof(err), "the master key is not available: %s", strerror(-r));
        else
                r = backup_snapshot(backend, store_backend_ops(st->store)->name, source, keys,
                                    keys + ENGINE_KEY_SIZE, fds[0], &records, &revision, &refused, &bytes, err,
                                    sizeof(err));
        audit_outcome(AUDIT_KIND_KEY, "store-backup", subj, r,
                      "records=%" PRIu64 " revision=%" PRIu64 " left_out=%" PRIu64, records, revision, refused);
        if (r < 0) {
                log_err("backup failed: %s", err);
                reply_error(b, r, err[0] ? err : strerror(-r));
                return;
        }
        log_notice("backup: %" PRIu64 " records at revision %" PRIu64 " (%" PRIu64 " bytes)%s", records,
                   revision, bytes, refused ? ", some records left out (see above)" : "");
        snprintf(json, sizeof(json),
                 "{\"records\":%" PRIu64 ",\"revision\":%" PRIu64 ",\"left_out\":%" PRIu64 ",\"bytes\":%" PRIu64 "}",
                 records, revision, refused, bytes);
        reply_json(b, json);
}

static void handle_store_verify(const struct daemon_state *st, const struct audit_subject *subj,
                                struct wire_builder *b)
{
        _cleanup_free_ char *json = NULL;
        char err[KEYS_ERR_MAX] = "";
        uint32_t failed = 0;
        int r;

        if (CFG(st->cfg, audit_fail_closed) && audit_can_write() < 0) {
                reply_error(b, -EIO, "refused: the audit record could not be written ([audit] fail_closed=yes)");
                return;
        }
        r = keys_verify_json(st->keys, &json, &failed, err);
        audit_outcome(AUDIT_KIND_KEY, "store-verify", subj, r < 0 ? r : failed ? -EBADMSG : 0,
                      "failed=%" PRIu32, failed);
        if (r < 0) {
                reply_error(b, r, err[0] ? err : strerror(-r));
                return;
        }
        if (failed)
                log_err("store verify: %" PRIu32 " failures: %s", failed, json);
        reply_json(b, json);
}

void handle_request(const struct daemon_state *st, const struct peer *peer,
                    const struct wire_msg *req, const int *fds, size_t n_fds,
                    struct wire_builder *reply)
{
        unsigned roles = access_roles(st->cfg, peer);
        bool under_grant = false, granted = false;
        struct grant_pending pending;
        const char *why;
        char msg[GRANT_ERR_MAX + 32];
        int r;

        r = access_check(roles, req->type, &why);
        /* A peer in no dkm group holds no grant (grants are requested by
         * operators, and used by them): it is refused on its credentials
         * alone, before any descriptor it passed is touched. */
        if (r < 0 && !roles) {
                refusal_record(peer, &peer->subj, req->type, why);
                snprintf(msg, sizeof(msg), "permission denied: %s", why);
                reply_error(reply, r, msg);
                return;
        }
        if (r < 0 && req->type == WIRE_DECRYPT_FD && st->grants) {
                struct grant_use use;
                char gwhy[GRANT_ERR_MAX] = "";

                /* The policy is in the stream's header, which dkmd reads
                 * from the passed input: the grant is checked there.  A
                 * caller with no live decrypt grant at all is refused first,
                 * before any descriptor it passed is read. */
                r = grants_check(st->grants, &peer->subj, SCOPE_DECRYPT, NULL, &use, gwhy);
                if (r < 0) {
                        snprintf(msg, sizeof(msg), "permission denied: %s", gwhy);
                        refusal_record(peer, &peer->subj, req->type, msg);
                        reply_error(reply, r, msg);
                        return;
                }
                under_grant = true;
        } else if (r < 0 && (req->type == WIRE_DECRYPT || req->type == WIRE_INSPECT) && st->grants) {
                r = grant_allows(st, req, &peer->subj, &pending, msg, sizeof(msg));
                if (r < 0) {
                        refusal_record(peer, &peer->subj, req->type, msg);
                        reply_error(reply, r, msg);
                        return;
                }
                granted = true;
        } else if (r < 0) {
                refusal_record(peer, &peer->subj, req->type, why);
                snprintf(msg, sizeof(msg), "permission denied: %s", why);
                reply_error(reply, r, msg);
                return;
        }
        switch (req->type) {
        case WIRE_STATUS:
                handle_status(st, roles & (ROLE_USER | ROLE_OPERATOR | ROLE_APPROVER), reply);
                break;
        case WIRE_ENCRYPT:
        case WIRE_DECRYPT:
        case WIRE_REWRAP:
        case WIRE_DATAKEY:
                r = handle_crypt(st, peer, req, reply);
                if (granted)
                        grant_used(st, peer, req, &pending, r, reply);
                break;
        case WIRE_BATCH:
                handle_batch(st, peer, req, reply);
                break;
        case WIRE_ENCRYPT_FD:
        case WIRE_DECRYPT_FD:
                handle_stream(st, peer, req, fds, n_fds, under_grant ? &peer->subj : NULL, under_grant,
                              reply);
                break;
        case WIRE_INSPECT:
                r = handle_inspect(st, req, reply);
                if (granted)
                        grant_used(st, peer, req, &pending, r, reply);
                break;
        case WIRE_POLICY_CREATE:
        case WIRE_POLICY_LIST:
        case WIRE_POLICY_SHOW:
        case WIRE_POLICY_ASSIGN:
        case WIRE_POLICY_REKEY:
                handle_policy(st, req, &peer->subj, reply);
                break;
        case WIRE_POLICY_PURGE:
        case WIRE_RECOVERY_RESHARE:
        case WIRE_KEY_DESTROY:
        case WIRE_ACCESS_REQUEST:
        case WIRE_ACCESS_APPROVE:
        case WIRE_ACCESS_DENY:
        case WIRE_ACCESS_LIST:
        case WIRE_ACCESS_REVOKE:
                handle_access(st, req, &peer->subj, reply);
                break;
        case WIRE_BACKUP:
                handle_backup(st, req, fds, n_fds, &peer->subj, reply);
                break;
        case WIRE_STORE_VERIFY:
                handle_store_verify(st, &peer->subj, reply);
                break;
        default:
                handle_keys(st, peer, req, reply);
                break;
        }
}
