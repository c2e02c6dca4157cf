/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

#include "access.h"
#include "grants.h"
#include "keys.h"
#include "nodes.h"
#include "shared/config.h"
#include "engine/engine.h"

struct server;

struct daemon_state {
        const struct dkm_config *cfg;
        struct keys *keys;
        struct grants *grants;
        struct engine_info engine;
        size_t engine_max_message; /* 0: only the wire limit applies */
        uint64_t started_usec;
        keyring_serial_t ring;
        bool store_watch; /* a thread follows the store's changes (etcd) */
        struct nodes *nodes; /* this node and the others seen (nodes.h) */
        struct store *store; /* the authenticated store, for backups */
        keyring_serial_t master; /* the master key in ring, for backups */
        /* Who holds the generation keys while dkmd serves: "kernel-held keys
         * (logon, by serial)" or "keys read into dkmd per operation (why)". */
        char custody[320];
};

/* Binds the configured socket (or takes a socket-activated one from
 * systemd: LISTEN_FDS). */
int server_new(const struct daemon_state *st, struct server **ret, char *err, size_t err_size);
/* Serves until server_stop() is called (from a signal handler thread). */
int server_run(struct server *s);
void server_stop(struct server *s);
/* How long the accept loop has not turned, when that is longer than it
 * ever should be (it turns every second, idle or not); 0 while it turns. */
uint64_t server_stuck_usec(const struct server *s);
/* Whether every connection thread has ended, waiting up to wait_ms for
 * those still answering; after server_stop(). */
bool server_drained(struct server *s, unsigned wait_ms);
/* Only once drained: connection threads use it to the end. */
void server_free(struct server *s);

/* Handles one parsed request from peer; builds the reply. */
struct wire_msg;
struct wire_builder;
void handle_request(const struct daemon_state *st, const struct peer *peer,
                    const struct wire_msg *req, const int *fds, size_t n_fds,
                    struct wire_builder *reply);
/* Logs and audits a refused request (op: what was refused) from peer, both
 * rate limited per uid (ratelimit.h). */
void handle_refusal(const struct peer *peer, const char *op, const char *why);
/* Audits the counts of refusal records left out, once their interval has
 * ended (server.c calls it on every turn of its loop). */
void handle_flush_refusals(uint64_t now_usec);
