/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The etcd v3 store backend (store_etcd_ops, declared in store.h), and the
 * parser of its location string.
 *
 * Location: items "name=value" separated by ';' (a trailing ';' is fine):
 *
 *   endpoints=http://127.0.0.1:2379,http://127.0.0.1:22379   required
 *   prefix=/dkm/                     every dkm key lives under it (default /dkm/)
 *   cacert=/etc/dkm/etcd-ca.pem      CA bundle for https endpoints
 *   cert=/etc/dkm/etcd.pem           client certificate (with key=)
 *   key=/etc/dkm/etcd.key            its private key (with cert=)
 *   user=dkm                         etcd user, with password=
 *   password=...
 *
 * Endpoints are tried in order (up to STORE_ETCD_ENDPOINTS_MAX), each
 * "http://host[:port]" or "https://host[:port]" with no path; host is a
 * name, an IPv4 address or a bracketed IPv6 address; the port defaults to
 * 2379.  All endpoints use the same scheme.  Paths are absolute; TLS options
 * need https endpoints; cert and key, and user and password, come in pairs.
 * In a value, "\;" stands for ';' and "\\" for '\'; any other backslash,
 * a control character, an unknown or repeated name, an empty value or a
 * missing '=' is -EINVAL.  Names are case-sensitive; nothing is trimmed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define STORE_ETCD_ENDPOINTS_MAX 16u
#define STORE_ETCD_PREFIX_MAX 256u
#define STORE_ETCD_DEFAULT_PREFIX "/dkm/"

struct etcd_location {
        char *endpoints[STORE_ETCD_ENDPOINTS_MAX]; /* "scheme://host:port", no trailing '/' */
        size_t n_endpoints;
        char *prefix;
        char *cacert, *cert, *key; /* NULL when not given */
        char *user, *password;     /* NULL when not given; password wiped on free */
};

/* 0 and *ret filled (free with etcd_location_free()), or -EINVAL for
 * malformed input, -ENOMEM. */
int store_etcd_parse_location(const char *location, struct etcd_location *ret);
void etcd_location_free(struct etcd_location *l);

/* The location as separate values, as dkmd.conf's [store] gives them, so
 * that nobody writes a location string only to have it parsed back:
 * endpoints comma-separated; the others NULL when not given (prefix then
 * STORE_ETCD_DEFAULT_PREFIX).  Held to the string's rules, less its
 * escapes. */
struct store_etcd_settings {
        const char *endpoints, *prefix, *cacert, *cert, *key, *user, *password;
};

/* As store_etcd_parse_location(), from settings. */
int store_etcd_location_from_settings(const struct store_etcd_settings *in, struct etcd_location *ret);
/* Opens an etcd store from settings, as store_open(&store_etcd_ops, ...)
 * opens one from a location string: same checks, same errors. */
int store_etcd_open(const struct store_etcd_settings *in, struct store **ret);

/* Compacts the etcd history up to revision (etcd's Compaction RPC): later
 * changes() calls with since + 1 < revision give -ERANGE.  dkm compacts
 * when it shreds (store.h's shred()) and otherwise leaves compaction to
 * etcd's --auto-compaction-* settings. */
int store_etcd_compact(struct store *s, uint64_t revision);

/* follow(): a held watch asks etcd for progress notifications, which etcd
 * sends to a quiet watcher every --experimental-watch-progress-notify-interval
 * (etcd 3.4; --watch-progress-notify-interval in 3.5; default 10 minutes).
 * A stream silent for longer than this many milliseconds counts as broken
 * (-ETIMEDOUT): set etcd's interval below it.  Read when follow() starts
 * (tests lower it). */
extern unsigned store_etcd_follow_idle_ms;
