/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The nodes of a fleet.  On etcd each dkmd registers nodes/<node_name>
 * under a lease of [store] node_ttl and rewrites it (keeping the lease
 * alive) every third of that, from a thread of its own; a clean stop
 * revokes the lease, so the record goes at once, and a node that dies
 * leaves it to expire.  The record (struct node_record, JSON) says what
 * `dkmctl status` shows of the node: what it serves, the store revision it
 * has applied, when it started and when it last beat.
 *
 * SQLite has no other nodes and no leases: nothing is written, and status
 * lists this node alone.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "shared/config.h"
#include "store/store.h"

#define NODES_ERR_MAX 256
#define NODE_FIELD_MAX 64

struct node_record {
        char name[DKM_NODE_NAME_MAX + 1];
        char version[NODE_FIELD_MAX];
        char engine[NODE_FIELD_MAX];   /* "kernel" or "openssl" */
        uint64_t applied_revision;     /* the store revision it has applied */
        uint64_t started_usec;         /* CLOCK_REALTIME */
        uint64_t heartbeat_usec;       /* CLOCK_REALTIME, when it wrote this */
        uint64_t ttl_sec;              /* its lease's TTL */
};

/* The record as stored; ret is malloc'd. */
int node_record_encode(const struct node_record *r, char **ret);
/* -EBADMSG for anything that is not such a record (one JSON object, nothing
 * after it): fields missing or of the wrong type, strings too long, a name
 * that config_node_name_valid() refuses; -ENOMEM.  Unknown fields are
 * ignored. */
int node_record_decode(const uint8_t *buf, size_t len, struct node_record *ret);

struct nodes;

/* name: [store] node_name, or NULL for the host name. */
int nodes_new(const struct dkm_config *cfg, struct store *store, struct keys *keys, const char *engine,
              struct nodes **ret, char *err);
/* Registers this node and starts its heartbeat thread (etcd; 0 and nothing
 * done on SQLite).  A store that is away only delays the registration: the
 * thread keeps trying. */
int nodes_start(struct nodes *n, char *err);
/* Stops the heartbeat and revokes the lease: the record goes at once. */
void nodes_stop(struct nodes *n);
void nodes_free(struct nodes *n);
const char *nodes_name(struct nodes *n);

/* Adds "node" (this node's name) and "nodes" (every node seen, this one
 * included: name, self, engine, version, applied_revision, started,
 * heartbeat_age_seconds; sorted by name) to a json-c object; on etcd a
 * failed read adds "nodes_error" instead of "nodes". */
void nodes_status(struct nodes *n, void *json_object);
