/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dkmd.conf: INI, with the section and key names fixed by DESIGN.md §11.
 * Unknown sections or keys and bad values are errors that name the file,
 * the line and the problem.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "engine/engine.h"

#define DKM_DEFAULT_CONFIG "/etc/dkm/dkmd.conf"
#define DKM_DEFAULT_SOCKET "/run/dkm/dkmd.sock"
#define DKM_DEFAULT_STATE_DIR "/var/lib/dkm"

/* Reads a setting that SIGHUP may change while other threads run (dkmd's
 * reload stores the new values with __atomic_store_n). */
#define CFG(cfg, field) __atomic_load_n(&(cfg)->field, __ATOMIC_RELAXED)

/* A request records at most this many approvals (grants.h sizes its array
 * by it), so approvals_required may not ask for more: it could never be met. */
#define CONFIG_APPROVALS_MAX 32
/* [recovery] shares: at most this many custodians. */
#define CONFIG_RECOVERY_SHARES_MAX 16
/* [daemon] stream_threads: auto (the CPUs dkmd may run on), or 1 to this. */
#define CONFIG_STREAM_THREADS_AUTO 0u
#define CONFIG_STREAM_THREADS_MAX 64u

struct dkm_config {
        /* [daemon] */
        char *socket;
        char *state_dir;
        enum engine_kind engine;
        char *master_key;           /* path; default <state_dir>/master.key */
        char *master_key_credential; /* systemd credential name, or NULL: see below */
        unsigned max_connections_per_uid; /* a member uid's share (default 64) */
        uint64_t read_timeout_usec;  /* a frame's rest, once begun (default 10s) */
        uint64_t idle_timeout_usec;  /* a member's connection between requests (15min) */
        uint64_t stream_timeout_usec; /* a passed descriptor without progress (60s) */
        unsigned stream_threads;     /* per stream; CONFIG_STREAM_THREADS_AUTO (default) or 1..64 */
        /* [groups]: names are resolved to gids at load time */
        gid_t users_gid, operators_gid, approvers_gid;
        /* who may see and cut grants with keyctl, and read dkmctl status's
         * non-secret part; (gid_t)-1 when the default group does not exist */
        gid_t reviewers_gid;
        /* [rotation] */
        uint64_t max_age_usec;      /* default 30d */
        uint64_t max_uses;          /* default 2^30 */
        /* [access] */
        unsigned approvals_required; /* default 2, 1 to CONFIG_APPROVALS_MAX */
        uint64_t max_duration_usec;  /* default 8h */
        uint64_t request_ttl_usec;   /* default 1h */
        /* [policy] */
        unsigned max_policies;       /* default 50 */
        uint64_t hedge_delay_usec;   /* default 50ms */
        uint64_t cache_ttl_usec;     /* default 2h */
        /* What customer keys may use, decided by the administrator: the
         * PKCS#11 modules (absolute paths, or names p11-kit has registered)
         * and the directories of key and PIN files.  NULL-terminated,
         * never NULL; empty (the default) allows none.  Entries are
         * separated by spaces or commas in the file; paths are absolute,
         * without "." or ".." components or a trailing '/'. */
        char **pkcs11_modules;
        char **key_dirs;
        /* [store] */
        char *store_backend;         /* "sqlite" (default) or "etcd" */
        char *store_endpoints;
        char *store_cacert, *store_cert, *store_key;
        char *store_prefix;          /* etcd: every key under it (default /dkm/) */
        char *node_name;             /* this node in a fleet; NULL: the host name */
        uint64_t node_ttl_usec;      /* etcd: a node's heartbeat lease (default 10s) */
        bool store_insecure;         /* etcd: allow plain http endpoints (default no) */
        /* [audit] */
        bool audit_fail_closed;      /* default yes */
        unsigned recovery_shares;    /* default 5, 2 to CONFIG_RECOVERY_SHARES_MAX */
        unsigned recovery_threshold; /* default 3, 2 to recovery_shares */
        char *recovery_custodians;   /* directory of NAME.pem, one per share; NULL: plain shares */
        char *recovery_out_dir;      /* reshares write here; NULL: <state_dir>/recovery-out */
};

/* Defaults, with groups resolved by name; a default group that does not
 * exist is left as (gid_t)-1 (this cannot fail; config_load does).  Strings
 * are malloc'd: config_free() them. */
void config_init_defaults(struct dkm_config *c);

/* Parses path into c (which config_load initialises with defaults first).
 * On error returns -EINVAL (or -errno for I/O) and writes a one-line message
 * such as "dkmd.conf:7: [rotation] max_age: bad duration '1x'" to err; c is
 * then left untouched (nothing to free).  Errors: unknown section or key,
 * duplicate key, bad or out-of-range value, relative path, indented line,
 * line longer than inih's buffer (197 characters), NUL byte, a group name
 * that does not resolve (also a default group the file did not override),
 * etcd settings that do not fit the backend.  master_key defaults to
 * <state_dir>/master.key.  Resolves group names through NSS. */
int config_load(const char *path, struct dkm_config *c, char *err, size_t err_size);

/* Parses from a memory buffer instead of a file; name is used in messages. */
int config_parse_string(const char *text, const char *name, struct dkm_config *c,
                        char *err, size_t err_size);

void config_free(struct dkm_config *c);
/* Frees a NULL-terminated list such as pkcs11_modules (NULL is fine). */
void config_list_free(char **l);

/* [store] node_name: 1-63 of A-Z a-z 0-9 '.' '_' '-', starting with a letter
 * or digit (a host name fits; it becomes one etcd key component). */
#define DKM_NODE_NAME_MAX 63
bool config_node_name_valid(const char *name);

/* The master key as a systemd credential (LoadCredentialEncrypted= in
 * dkmd.service):
 *  - master_key=credential:NAME names it; master_key is then
 *    $CREDENTIALS_DIRECTORY/NAME, or NULL when that variable is unset (dkmd
 *    was not started with credentials: config_master_key_error() says so);
 *  - master_key unset: the credential "dkm-master-key" when
 *    $CREDENTIALS_DIRECTORY holds it, else <state_dir>/master.key.
 * NAME must be a plain file name (no '/', not "." or "..", at most 255
 * bytes). */
#define DKM_MASTER_KEY_CREDENTIAL "dkm-master-key"

/* What dkmd.service passes as the credential (SetCredential=NAME:missing)
 * when the encrypted file is not there: systemd itself would fail the unit
 * with a bare "No such file or directory". */
#define DKM_MASTER_KEY_MISSING "missing"

/* When the configured master key credential is missing (no
 * $CREDENTIALS_DIRECTORY, no such file in it, or an empty file or the
 * DKM_MASTER_KEY_MISSING fallback), returns -ENOENT and a message that
 * names the credential and how to create it; 0 when it is there or the
 * master key is a plain file. */
int config_master_key_error(const struct dkm_config *c, char *err, size_t err_size);
