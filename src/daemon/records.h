/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What dkmd keeps in the store, and how it is laid out:
 *
 *   names/<policy name>            -> policy id (UUID text)
 *   policies/<id>                  -> policy record (JSON)
 *   policies/<id>/gens/<%010u>     -> generation record (JSON)
 *   assign/uid/<uid>, assign/gid/<gid> -> policy name (a caller's default)
 *   access/next-id, access/requests/<%010u>, access/grants/...: grants.h
 *   nodes/<name>                   -> a node's heartbeat (nodes.h)
 *
 * Records hold wrapped keys only (base64 of nonce || ciphertext || tag).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wrap.h"

/* The key prefixes above, named once for every file that reads or writes
 * them. */
#define RECORDS_NAMES "names/"
#define RECORDS_POLICIES "policies/"
#define RECORDS_ASSIGN "assign/"
#define RECORDS_ASSIGN_UID RECORDS_ASSIGN "uid/"
#define RECORDS_ASSIGN_GID RECORDS_ASSIGN "gid/"
#define RECORDS_ACCESS "access/"
#define RECORDS_NEXT_REQUEST_ID RECORDS_ACCESS "next-id"
#define RECORDS_REQUESTS RECORDS_ACCESS "requests/"
#define RECORDS_GRANTS RECORDS_ACCESS "grants/"
#define RECORDS_NODES "nodes/"
/* Length of one of them; whether store key k lies under prefix p. */
#define RECORDS_LEN(p) (sizeof(p) - 1)
#define RECORDS_UNDER(k, p) (strncmp((k), (p), RECORDS_LEN(p)) == 0)

enum gen_state {
        GEN_ACTIVE,
        GEN_ARCHIVED,
        GEN_RETIRED,
        GEN_DESTROYED, /* crypto-shredded: its wrapped key is gone from the store */
};

#define CUSTOMER_URI_MAX 1024
#define CUSTOMER_BLOB_MAX 512

/* A policy key is wrapped either by the master key alone (service-managed)
 * or by two customer keys plus the availability key, which is itself wrapped
 * by the master key.  A purged policy keeps its name and id and nothing that
 * unwraps. */
struct policy_record {
        char id[37];
        char name[65];
        uint64_t created_usec;
        uint32_t active;
        uint32_t n_generations;
        bool purged;
        uint8_t wrapped_key[WRAPPED_KEY_SIZE]; /* service-managed: under the master key */
        unsigned n_customer_keys;              /* 0 or 2 */
        char customer_uri[2][CUSTOMER_URI_MAX];
        uint8_t customer_blob[2][CUSTOMER_BLOB_MAX];
        size_t customer_blob_len[2];
        uint8_t availability_key[WRAPPED_KEY_SIZE]; /* under the master key */
        uint8_t availability_wrap[WRAPPED_KEY_SIZE]; /* policy key under the availability key */
        /* Each new policy key (rekey --new-policy-key) has the next version;
         * until every generation is re-wrapped under it, the one before it
         * stays, wrapped under it. */
        uint32_t key_version;
        bool has_previous;
        uint32_t previous_version;
        uint8_t previous_key[WRAPPED_KEY_SIZE];
};

struct gen_record {
        uint32_t generation;
        enum gen_state state;
        uint64_t created_usec;
        uint64_t activated_usec;
        uint64_t uses_reserved;
        uint8_t wrapped_key[WRAPPED_KEY_SIZE]; /* generation key under the policy key */
        uint32_t key_version; /* of the policy key that wraps it */
};

const char *gen_state_to_string(enum gen_state s);

int policy_record_encode(const struct policy_record *r, char **ret);
int policy_record_decode(const uint8_t *buf, size_t len, struct policy_record *ret);
int gen_record_encode(const struct gen_record *r, char **ret);
int gen_record_decode(const uint8_t *buf, size_t len, struct gen_record *ret);

/* Parses a store value (not NUL-terminated) as one JSON object, or NULL. */
struct json_object;
struct json_object *record_parse(const uint8_t *buf, size_t len);
/* The same, and nothing may follow the object (records added since
 * policies' and generations', which stay as lenient as they always were). */
struct json_object *record_parse_exact(const uint8_t *buf, size_t len);
/* A field of a parsed record; -EBADMSG when absent, of another type,
 * negative, or (strings) longer than size - 1. */
int record_get_u64(struct json_object *o, const char *name, uint64_t *ret);
int record_get_str(struct json_object *o, const char *name, char *buf, size_t size);

/* Store key names. */
void key_policy(char *buf, size_t size, const char *id);
void key_generation(char *buf, size_t size, const char *id, uint32_t gen);
void key_name(char *buf, size_t size, const char *name);

/* Policy names: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
int policy_name_valid(const char *name);
