/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dkmd: start-up runs an ordered list of steps and unwinds the finished ones
 * in reverse when a later one fails.  Under systemd (Type=notify) it says
 * READY=1 only when every step passed, keeps STATUS= current, sends the
 * watchdog keep-alives from the maintenance thread, and re-reads its
 * configuration on SIGHUP (ExecReload=).
 */
#include <getopt.h>
#include <json-c/json.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "backup.h"
#include "ckey/ckey.h"
#include "keys.h"
#include "log.h"
#include "masterkey.h"
#include "migrate.h"
#include "records.h"
#include "recovery.h"
#include "shared/secret.h"
#include "store/store-auth.h"
#include "server.h"
#include "shared/audit.h"
#include "shared/config.h"
#include "shared/duration.h"
#include "shared/format.h"
#include "shared/keyring.h"
#include "shared/util.h"
#include "store/store-etcd.h"
#include "store/store.h"
#include "wrap.h"

/* sysexits.h's EX_CONFIG: an error in the configuration (or a missing
 * master key credential) that a restart cannot fix; dkmd.service sets
 * RestartPreventExitStatus=78. */
#define EXIT_CONFIG 78

static struct {
        const char *config_path;
        bool init;
        bool authenticate_store;
        const char *recovery_dir;  /* --init: write recovery shares here */
        bool recover;              /* the arguments are share files */
        const char *recover_out;   /* where --recover writes the key; NULL: [daemon] master_key */
        char **shares;
        unsigned n_shares;
        bool accept_older_store;
        const char *restore;
        const char *migrate_from;  /* the source store's configuration */
} arg = { .config_path = DKM_DEFAULT_CONFIG };

struct daemon {
        struct dkm_config cfg;
        struct daemon_state st;
        const struct engine_ops *engine;
        keyring_serial_t ring, master;
        uint8_t *record_key;     /* locked: authenticates store records until the store has it */
        struct store *store;
        struct keys *keys;
        struct grants *grants;
        struct nodes *nodes;
        struct server *server;
        pthread_t maint, watch;
        bool maint_started, watch_started;
        int watch_stop_fd;       /* readable: the watch thread lets go of the store's watch */
        pthread_mutex_t stop_lock;
        pthread_cond_t stop_cond;
        bool stopping;
        uint64_t watchdog_usec;  /* $WATCHDOG_USEC for this process; 0: none */
        bool config_error;       /* a start-up failure that deserves EXIT_CONFIG */
        bool kernel_custody;     /* generation keys held by the kernel (step_custody) */
        bool store_empty;        /* the store holds no record at all */
        char failure[8192];      /* why start-up failed, for STATUS= */
};

/* STATUS= (and any other assignments before it, e.g. "READY=1\n"). */
static void notify_status(const char *prefix, const char *fmt, ...) _printf_(2, 3);
static void notify_status(const char *prefix, const char *fmt, ...)
{
        char buf[1024];
        va_list ap;
        int n;

        n = snprintf(buf, sizeof(buf), "%sSTATUS=", prefix);
        va_start(ap, fmt);
        vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
        va_end(ap);
        notify(buf);
}

/* Logs a start-up error and keeps it for STATUS=. */
#define fail(d, ...)                                                            \
        do {                                                                    \
                snprintf((d)->failure, sizeof((d)->failure), __VA_ARGS__);      \
                log_err("%s", (d)->failure);                                    \
        } while (0)

static void usage(FILE *f)
{
        fprintf(f, "Usage: dkmd [--config FILE] [--init [--recovery-dir DIR] | --authenticate-store |\n"
                   "                            --accept-older-store | --restore BACKUP |\n"
                   "                            --migrate-from OLD-CONFIG]\n"
                   "       dkmd [--config FILE] --recover [--recover-out PATH|-] SHARE-FILE...\n\n"
                   "  -c, --config FILE  configuration (default " DKM_DEFAULT_CONFIG ")\n"
                   "      --init         create the state directory, the store and, if missing,\n"
                   "                     the master key file, then exit\n"
                   "      --recovery-dir DIR\n"
                   "                     with --init: also split the master key into [recovery]\n"
                   "                     shares= files DIR/recovery-share-N, threshold= of which\n"
                   "                     rebuild it\n"
                   "      --recover      rebuild the master key from the share files, check it\n"
                   "                     against the store and write it to [daemon] master_key\n"
                   "      --recover-out PATH|-\n"
                   "                     write the recovered key to PATH instead (-: standard\n"
                   "                     output, for systemd-creds encrypt)\n"
                   "      --accept-older-store\n"
                   "                     serve a store older than one this node has served\n"
                   "                     (restored from an older copy): what was written since is lost\n"
                   "      --authenticate-store\n"
                   "                     after a rolling upgrade: authenticate the records that\n"
                   "                     older nodes wrote without a MAC, then exit\n"
                   "      --restore BACKUP\n"
                   "                     fill an empty store from a backup (dkmctl backup), then exit\n"
                   "      --migrate-from OLD-CONFIG\n"
                   "                     copy the (stopped) store that OLD-CONFIG names into the empty\n"
                   "                     store of --config (SQLite to etcd or back), verify the copy,\n"
                   "                     then exit; the source is only read\n"
                   "  -h, --help         this text\n"
                   "      --version      print the version\n");
}

static int parse_args(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "init", no_argument, NULL, 'i' },
                { "authenticate-store", no_argument, NULL, 'A' },
                { "recovery-dir", required_argument, NULL, 'R' },
                { "recover", no_argument, NULL, 'r' },
                { "recover-out", required_argument, NULL, 'o' },
                { "accept-older-store", no_argument, NULL, 'O' },
                { "restore", required_argument, NULL, 'S' },
                { "migrate-from", required_argument, NULL, 'M' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) >= 0)
                switch (c) {
                case 'c':
                        arg.config_path = optarg;
                        break;
                case 'i':
                        arg.init = true;
                        break;
                case 'A':
                        arg.authenticate_store = true;
                        break;
                case 'R':
                        arg.recovery_dir = optarg;
                        break;
                case 'r':
                        arg.recover = true;
                        break;
                case 'o':
                        arg.recover_out = optarg;
                        break;
                case 'O':
                        arg.accept_older_store = true;
                        break;
                case 'S':
                        arg.restore = optarg;
                        break;
                case 'M':
                        arg.migrate_from = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                case 'V':
                        puts("dkmd " DKM_VERSION);
                        exit(0);
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        if (arg.recover) {
                arg.shares = argv + optind;
                arg.n_shares = (unsigned)(argc - optind);
                if (arg.init || arg.authenticate_store || arg.recovery_dir || arg.migrate_from ||
                    arg.n_shares == 0) {
                        fprintf(stderr, "dkmd: --recover takes share files and goes with no --init, "
                                        "--recovery-dir, --authenticate-store or --migrate-from\n");
                        return -EINVAL;
                }
                return 0;
        }
        if (arg.recover_out || (arg.recovery_dir && !arg.init)) {
                fprintf(stderr, "dkmd: %s\n", arg.recover_out ? "--recover-out goes with --recover"
                                                               : "--recovery-dir goes with --init");
                return -EINVAL;
        }
        if (optind < argc) {
                fprintf(stderr, "dkmd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (arg.migrate_from && (arg.init || arg.restore || arg.authenticate_store || arg.accept_older_store)) {
                fprintf(stderr, "dkmd: --migrate-from goes with no --init, --restore, --authenticate-store "
                                "or --accept-older-store\n");
                return -EINVAL;
        }
        return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
        char buf[4096];

        if (strlen(path) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, path);
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                                return negative_errno();
                        *p = '/';
                }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return negative_errno();
        return 0;
}

static int do_init(const struct dkm_config *cfg)
{
        char err[512];
        int r;

        r = mkdir_p(cfg->state_dir, 0700);
        if (r < 0) {
                log_err("cannot create state directory %s: %s", cfg->state_dir, strerror(-r));
                return r;
        }
        if (cfg->master_key_credential) {
                log_info("state directory %s ready; the master key is the systemd credential '%s'",
                         cfg->state_dir, cfg->master_key_credential);
                return 0;
        }
        r = masterkey_create(cfg->master_key, err, sizeof(err));
        if (r < 0) {
                log_err("%s", err);
                return r;
        }
        log_info("state directory %s ready; master key %s %s", cfg->state_dir, cfg->master_key,
                 r ? "created" : "already present");
        return 0;
}

/* --- start-up steps ------------------------------------------------------ */

static int step_engine(struct daemon *d)
{
        int r = engine_select(d->cfg.engine, &d->engine, &d->st.engine);

        if (r < 0) {
                /* engine=kernel on a kernel without AF_ALG: a restart will
                 * not change that. */
                fail(d, "crypto engine unavailable: %s", d->st.engine.reason);
                d->config_error = true;
                return r;
        }
        crypto_set_engine(d->engine);
        if (d->engine->max_message)
                d->st.engine_max_message = d->engine->max_message();
        log_info("crypto engine: %s, gcm(aes) served by %s (%s)", d->st.engine.name,
                 d->st.engine.driver, d->st.engine.reason);
        return 0;
}

static int step_audit(struct daemon *d)
{
        int r = audit_open_log();

        if (r < 0) {
                if (d->cfg.audit_fail_closed) {
                        log_err("cannot open the audit socket: %s; privileged operations will be "
                                "refused (fail_closed=yes)", strerror(-r));
                        return 0;
                }
                log_warn("cannot open the audit socket: %s", strerror(-r));
        }
        return 0;
}

static int step_keyring(struct daemon *d)
{
        struct audit_subject self;
        char err[512];
        int r;

        /* A keyring of the process: its keys die with dkmd. */
        r = keyring_open("dkm:dkmd", 1, &d->ring);
        if (r < 0) {
                fail(d, "cannot create the daemon keyring: %s", strerror(-r));
                return r;
        }
        d->st.ring = d->ring;
        r = config_master_key_error(&d->cfg, err, sizeof(err));
        if (r < 0) {
                fail(d, "%s", err);
                d->config_error = true;
                return r;
        }
        d->record_key = secret_alloc(MASTERKEY_RECORD_KEY_SIZE);
        if (!d->record_key) {
                fail(d, "cannot allocate locked memory for the record authentication key");
                return -ENOMEM;
        }
        r = masterkey_load(d->cfg.master_key, d->ring, &d->master, d->record_key, err, sizeof(err));
        if (r < 0) {
                fail(d, "%s", err);
                return r;
        }
        audit_subject_from_peer(&self, getpid(), getuid(), getgid());
        /* Not fatal: without audit dkmd still serves its service accounts,
         * and refuses every privileged operation (fail_closed). */
        r = audit_record(AUDIT_KIND_KEY, "master-key-load", &self, true, "keyring=%d", d->ring);
        if (r < 0)
                log_err("cannot write audit records (%s): privileged operations will be %s",
                        strerror(-r), d->cfg.audit_fail_closed ? "refused" : "unaudited");
        return 0;
}

/* Whether the kernel can hold the generation keys: the kernel engine, and
 * AF_ALG keyed by keyring serial (Linux 6.2+), proven on a throwaway logon
 * key of zeros against a known answer.  Otherwise today's path serves:
 * each operation reads its key into locked memory.  Never fatal. */
static int step_custody(struct daemon *d)
{
        static const uint8_t zero[ENGINE_KEY_SIZE];
        char why[256] = "";
        keyring_serial_t probe;
        int r;

        if (d->engine != &engine_kernel_ops) {
                snprintf(why, sizeof(why), "the %s engine cannot use keys by keyring serial",
                         d->engine->name);
        } else {
                r = keyring_add_logon(d->ring, "dkm:custody-probe", zero, sizeof(zero), 60, &probe);
                if (r < 0) {
                        snprintf(why, sizeof(why), "cannot add a logon key: %s", strerror(-r));
                } else {
                        r = engine_serial_probe(probe, why, sizeof(why));
                        keyring_invalidate(probe);
                        d->kernel_custody = r >= 0;
                }
        }
        if (d->kernel_custody)
                snprintf(d->st.custody, sizeof(d->st.custody), "kernel-held keys (logon, by serial)");
        else
                snprintf(d->st.custody, sizeof(d->st.custody), "keys read into dkmd per operation (%s)",
                         why);
        log_info("key custody: %s", d->st.custody);
        return 0;
}

static int any_record(const struct store_kv *kv, void *userdata)
{
        (void)kv;
        (void)userdata;
        return 1;
}

/* Whether the store holds any record (d->store_empty), read from the
 * backend itself before records are authenticated. */
static int store_look(struct daemon *d)
{
        int r = store_ops_of(d->store)->range(d->store, "", any_record, NULL);

        if (r < 0) {
                fail(d, "cannot read the store: %s", store_strerror(NULL, r));
                return r;
        }
        d->store_empty = r == 0;
        return 0;
}

/* Opens the backend that cfg names into *ret.  readonly: a migration's
 * source, which must exist and is never written (SQLite opens it
 * read-only; etcd is only read). */
static int open_backend(struct daemon *d, const struct dkm_config *cfg, bool readonly, struct store **ret)
{
        char path[4200], why[512];
        struct stat st;
        int r;

        if (strcmp(cfg->store_backend, "etcd") == 0) {
                const char *prefix = cfg->store_prefix ? cfg->store_prefix : STORE_ETCD_DEFAULT_PREFIX;
                bool plain = cfg->store_endpoints && strstr(cfg->store_endpoints, "http://");

                /* Whoever is on the path to a plain-http etcd reads the wrapped
                 * keys and holds the store's credentials. */
                if (plain && !cfg->store_insecure) {
                        fail(d, "[store] endpoints %s use plain http: dkmd talks to etcd over TLS only "
                                "(https://, with cacert=); [store] insecure=yes allows http",
                             cfg->store_endpoints);
                        d->config_error = true;
                        return -EPROTO;
                }
                if (plain)
                        log_warn("store: etcd endpoints %s use plain http ([store] insecure=yes): anyone "
                                 "on the network path can read the wrapped keys and, with the etcd "
                                 "credentials, delete records", cfg->store_endpoints);

                r = store_etcd_open(&(const struct store_etcd_settings){
                                            .endpoints = cfg->store_endpoints,
                                            .prefix = prefix,
                                            .cacert = cfg->store_cacert,
                                            .cert = cfg->store_cert,
                                            .key = cfg->store_key,
                                    },
                                    ret);
                if (r < 0) {
                        fail(d, "cannot open the etcd store at %s (prefix %s): %s", cfg->store_endpoints, prefix,
                                r == -EINVAL ? "bad endpoints or paths" : store_strerror(NULL, r));
                        return r;
                }
                log_info("store: etcd at %s, prefix %s%s", cfg->store_endpoints, prefix,
                         readonly ? " (migration source, read only)" : "");
                return 0;
        }
        snprintf(path, sizeof(path), "%s/dkm.db", cfg->state_dir);
        if (readonly) {
                r = store_sqlite_open_readonly(path, ret);
                if (r == -EBADMSG) {
                        store_sqlite_describe(path, why, sizeof(why));
                        fail(d, "cannot open store %s: %s", path, why);
                } else if (r == -ENODATA)
                        fail(d, "store %s is an empty file, not a dkm store", path);
                else if (r < 0)
                        fail(d, "cannot open store %s: %s", path, strerror(-r));
                return r;
        }
        /* Only --init creates a store: one lost must not come back empty,
         * with a new default policy, as if nothing had been there. */
        if (!arg.init && !arg.restore && !arg.migrate_from && stat(path, &st) < 0 && errno == ENOENT) {
                fail(d, "store %s does not exist: a plain start never creates one; restore it (with its "
                     "-wal file) from a backup, or create a new, empty store with dkmd --init (ciphertexts "
                     "made under a lost store stay unreadable)", path);
                d->config_error = true;
                return -ENOENT;
        }
        r = store_open(&store_sqlite_ops, path, ret);
        if (r == -EBADMSG) {
                store_sqlite_describe(path, why, sizeof(why));
                fail(d, "cannot open store %s: %s; dkmd will not change it (restore it from a backup)",
                     path, why);
                d->config_error = true;
        } else if (r < 0)
                fail(d, "cannot open store %s: %s", path, strerror(-r));
        return r;
}

static int step_store(struct daemon *d)
{
        int r = open_backend(d, &d->cfg, false, &d->store);

        if (r < 0)
                return r;
        d->st.store_watch = strcmp(d->cfg.store_backend, "etcd") == 0;
        return store_look(d);
}

/* The file that keeps what this node has seen of the store cfg names.  One
 * file per store: a node moved from SQLite to an etcd prefix (or between
 * prefixes) must not judge one store by what it saw of another.  The name
 * only tells prefixes apart; it guards nothing. */
static void store_seen_path(const struct dkm_config *cfg, char *buf, size_t size)
{
        if (cfg->store_backend && strcmp(cfg->store_backend, "etcd") == 0) {
                const char *prefix = cfg->store_prefix ? cfg->store_prefix : STORE_ETCD_DEFAULT_PREFIX;
                uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */

                for (const char *c = prefix; *c; c++)
                        h = (h ^ (uint8_t)*c) * UINT64_C(0x100000001b3);
                snprintf(buf, size, "%s/store-seen-etcd-%016" PRIx64, cfg->state_dir, h);
        } else
                snprintf(buf, size, "%s/store-seen", cfg->state_dir);
}

/* dkmd --init: the store, created, and marked as made on purpose, so that
 * a plain start can tell it from one that was lost.  The marker carries no
 * MAC (the master key may be a credential that only the service sees); the
 * first start authenticates it with every other record. */
#define STORE_INIT_KEY "initialized"

static int init_store(struct daemon *d)
{
        char v[64];
        int r;

        r = step_store(d);
        if (r < 0)
                return r;
        if (d->store_empty) {
                const struct store_cmp cmp = { STORE_INIT_KEY, 0 };
                size_t n = (size_t)snprintf(v, sizeof(v), "{\"initialized_usec\":%" PRIu64 "}",
                                            now_real_usec());
                const struct store_op op = { STORE_PUT, STORE_INIT_KEY, v, n };

                r = store_ops_of(d->store)->txn(d->store, &cmp, 1, &op, 1, NULL);
                if (r == -ESTALE)
                        r = 0; /* another node of the fleet initialised it at the same moment */
                if (r < 0)
                        log_err("cannot initialise the store: %s", store_strerror(NULL, r));
                else
                        log_info("store created");
        } else
                log_info("store already initialised; left as it is");
        store_close(d->store);
        d->store = NULL;
        return r;
}

/* A record that fails its authentication is never applied: say so, loudly
 * and once per record and revision (store-auth.h). */
static void on_refused_record(const char *key, uint64_t mod_revision, const char *why, void *userdata)
{
        _cleanup_free_ char *k = audit_value(key), *w = audit_value(why);
        int r;

        (void)userdata;
        log_err("refused store record %s (revision %" PRIu64 "): %s; the node keeps its previous state",
                key, mod_revision, why);
        r = audit_record(AUDIT_KIND_KEY, "store-record-refused", NULL, false, "record=%s revision=%" PRIu64
                         " reason=%s", k ? k : "?", mod_revision, w ? w : "?");
        if (r < 0)
                log_err("cannot audit the refused store record %s: %s", key, strerror(-r));
}

struct master_check {
        const uint8_t *master;
        unsigned tried, good;
};

static int master_check_one(const struct store_kv *kv, void *userdata)
{
        struct master_check *c = userdata;
        struct policy_record rec;
        uint8_t id[16], key[ENGINE_KEY_SIZE];

        /* policies/<id> only, not policies/<id>/gens/... */
        if (strchr(kv->key + RECORDS_LEN(RECORDS_POLICIES), '/'))
                return 0;
        if (policy_record_decode(kv->value, kv->value_len, &rec) < 0 || rec.purged || rec.n_customer_keys ||
            uuid_from_string(rec.id, id) < 0)
                return 0;
        c->tried++;
        if (key_unwrap(c->master, WRAP_POLICY_KEY, id, 0, rec.wrapped_key, key) == 0)
                c->good++;
        secure_wipe(key, sizeof(key));
        return 0;
}

/* The migration seals every record under a key derived from the master
 * key: with the wrong master key it would seal the store so that the right
 * one no longer opens it.  So before a store of before authenticated records
 * is taken over, the master key must unwrap its service-managed policies. */
static int check_master_before_migration(struct daemon *d)
{
        struct master_check c = { 0 };
        struct store_kv kv = { 0 };
        uint8_t *master = NULL;
        int r;

        r = store_ops_of(d->store)->get(d->store, STORE_AUTH_FORMAT_KEY, &kv);
        store_kv_clear(&kv);
        if (r != -ENOENT)
                return 0; /* taken over already (or unreadable: said later) */
        r = crypto_keybuf(&master);
        if (r < 0)
                return r;
        {
                size_t n = 0;

                r = keyring_read(d->master, master, ENGINE_KEY_SIZE, &n);
                if (r >= 0 && n != ENGINE_KEY_SIZE)
                        r = -EBADMSG;
        }
        if (r >= 0) {
                c.master = master;
                r = store_ops_of(d->store)->range(d->store, RECORDS_POLICIES, master_check_one, &c);
        }
        secure_wipe(master, ENGINE_KEY_SIZE); /* the thread's scratch buffer: wiped, never freed */
        if (r < 0) {
                fail(d, "cannot read the store's policies before taking it over: %s", strerror(-r));
                return r;
        }
        if (c.tried > 0 && c.good == 0) {
                fail(d, "the master key unwraps none of the store's %u service-managed policies: wrong "
                     "master key or altered store; the store is left as it was", c.tried);
                return -EKEYREJECTED;
        }
        return 0;
}

/* Every record authenticated under a key derived from the master key; a
 * store from before that is taken over here, at the first start. */
static int step_store_auth(struct daemon *d)
{
        char seen[4200], err[1024];
        uint64_t rev = 0, high = 0;
        size_t n = 0;
        int r;

        r = check_master_before_migration(d);
        if (r < 0) {
                secret_free(d->record_key);
                d->record_key = NULL;
                return r;
        }
        store_seen_path(&d->cfg, seen, sizeof(seen));
        r = store_auth_open(d->store, d->record_key, seen, on_refused_record, NULL, &d->store);
        secret_free(d->record_key);
        d->record_key = NULL;
        if (r < 0) {
                d->store = NULL;
                fail(d, "cannot authenticate the store: %s", strerror(-r));
                return r;
        }
        /* An older store than this node has served: rolled back (a WAL cut
         * short), replaced or restored from an older copy. */
        r = store_auth_check_revision(d->store, arg.accept_older_store, &rev, &high, err, sizeof(err));
        if (r < 0) {
                fail(d, "%s", err);
                d->config_error = true;
                return r;
        }
        if (rev < high) {
                log_notice("store: serving revision %" PRIu64 ", older than revision %" PRIu64 " served "
                           "before, as --accept-older-store asked; what was written since is lost", rev, high);
                r = audit_record(AUDIT_KIND_KEY, "store-accept-older", NULL, true,
                                 "revision=%" PRIu64 " seen=%" PRIu64, rev, high);
                if (r < 0)
                        log_err("cannot audit --accept-older-store: %s", strerror(-r));
        }
        if (d->store_empty) {
                fail(d, "the store is empty (%s): a plain start never creates one; restore it from a "
                     "backup, or run dkmd --init to create a new, empty store",
                     strcmp(d->cfg.store_backend, "etcd") == 0 ? "no record under the etcd prefix" :
                                                                 "no record in dkm.db");
                d->config_error = true;
                return -ENODATA;
        }
        r = store_auth_migrate(d->store, &n, err, sizeof(err));
        if (r < 0) {
                fail(d, "%s", err);
                return r;
        }
        if (n > 0) {
                log_notice("store: authenticated %zu records written before records were authenticated "
                           "(first start of this version)", n);
                r = audit_record(AUDIT_KIND_KEY, "store-migrate", NULL, true, "records=%zu", n);
                if (r < 0)
                        log_err("cannot audit the store's migration: %s", strerror(-r));
        }
        return 0;
}

/* dkmd --authenticate-store: what nodes of before the upgrade wrote after
 * the first new node had taken the store over carries no MAC, and every new
 * node refuses it.  The administrator vouches for it here, once the last
 * old node is gone (README.md, "Authenticated records"). */
static int authenticate_store(struct daemon *d)
{
        char err[512];
        size_t n = 0;
        int r;

        r = store_auth_adopt(d->store, &n, err, sizeof(err));
        if (r < 0) {
                log_err("%s", err);
                return r;
        }
        log_notice("store: authenticated %zu records that carried no MAC (--authenticate-store)", n);
        r = audit_record(AUDIT_KIND_KEY, "store-adopt", NULL, true, "records=%zu", n);
        if (r < 0)
                log_err("cannot audit --authenticate-store: %s", strerror(-r));
        return 0;
}

/* dkmd --init --recovery-dir: the master key split into shares for its
 * custodians, and the store's record to recognise the key by (recovery.h). */
static int init_recovery(struct daemon *d)
{
        _cleanup_secret_ uint8_t *master = secret_alloc(ENGINE_KEY_SIZE);
        _cleanup_free_ char *dir = NULL;
        struct recovery_custodians *custodians = NULL;
        struct recovery_record rec;
        struct audit_subject self;
        char err[1024], id[2 * RECOVERY_INSTALL_ID_SIZE + 1];
        size_t n = 0;
        int r;

        if (!master)
                return -ENOMEM;
        r = keyring_read(d->master, master, ENGINE_KEY_SIZE, &n);
        if (r >= 0 && n != ENGINE_KEY_SIZE)
                r = -EBADMSG;
        if (r < 0) {
                log_err("cannot read the master key back from the keyring: %s", strerror(-r));
                return r;
        }
        audit_subject_from_peer(&self, getpid(), getuid(), getgid());
        dir = audit_value(arg.recovery_dir);
        r = 0;
        if (d->cfg.recovery_custodians)
                r = recovery_custodians_load(d->cfg.recovery_custodians, d->cfg.recovery_shares, &custodians,
                                             err, sizeof(err));
        if (r >= 0)
                r = recovery_create(d->store, master, d->cfg.recovery_shares, d->cfg.recovery_threshold,
                                    arg.recovery_dir, custodians, &rec, err, sizeof(err));
        recovery_custodians_free(custodians);
        if (r < 0) {
                _cleanup_free_ char *why = audit_value(err);

                log_err("%s", err);
                if (audit_record(AUDIT_KIND_KEY, "recovery-shares-create", &self, false, "dir=%s reason=%s",
                                 dir ? dir : "?", why ? why : "?") < 0)
                        log_err("cannot audit the failed share creation");
                return r;
        }
        for (size_t i = 0; i < sizeof(rec.install_id); i++)
                sprintf(id + 2 * i, "%02x", rec.install_id[i]);
        r = audit_record(AUDIT_KIND_KEY, "recovery-shares-create", &self, true,
                         "installation=%s threshold=%u share_count=%u dir=%s", id, rec.threshold, rec.shares,
                         dir ? dir : "?");
        if (r < 0)
                log_err("cannot audit the creation of the recovery shares: %s", strerror(-r));
        if (d->cfg.recovery_custodians)
                log_notice("recovery key split into %u shares (any %u rebuild it) for installation %s, each "
                           "encrypted to one custodian of %s: %s/recovery-share-I.NAME.cms",
                           rec.shares, rec.threshold, id, d->cfg.recovery_custodians, arg.recovery_dir);
        else
                log_notice("recovery key split into %u shares (any %u rebuild it) for installation %s: "
                           "%s/recovery-share-1..%u; give each to its own custodian and delete them here",
                           rec.shares, rec.threshold, id, arg.recovery_dir, rec.shares);
        return 0;
}

/* dkmd --recover: the master key rebuilt from shares, checked against the
 * store before anything is written. */
static int recover(struct daemon *d)
{
        _cleanup_secret_ uint8_t *master = secret_alloc(ENGINE_KEY_SIZE);
        _cleanup_free_ char *out_v = NULL, *why = NULL;
        const char *out = arg.recover_out ? arg.recover_out : d->cfg.master_key;
        struct recovery_record rec;
        struct audit_subject self;
        char err[8400] = "", id[2 * RECOVERY_INSTALL_ID_SIZE + 1], path[4200];
        bool written = false;
        int r;

        if (!master)
                return -ENOMEM;
        if (!out) {
                log_err("[daemon] master_key is the systemd credential '%s': give --recover-out - and "
                        "pipe the key into systemd-creds encrypt", d->cfg.master_key_credential);
                return -EINVAL;
        }
        audit_subject_from_peer(&self, getpid(), getuid(), getgid());
        out_v = audit_value(out);
        step_audit(d);
        /* A set of now opens the master key with the wrap code's AEAD. */
        r = step_engine(d);
        if (r < 0)
                return r;
        /* Opening a SQLite store that is not there would create an empty one. */
        snprintf(path, sizeof(path), "%s/dkm.db", d->cfg.state_dir);
        if (strcmp(d->cfg.store_backend, "sqlite") == 0 && access(path, F_OK) < 0) {
                r = negative_errno();
                snprintf(err, sizeof(err), "store %s: %s: the shares are checked against the store's "
                         "recovery record, so the store comes back first (from a backup)", path, strerror(-r));
        } else {
                r = step_store(d);
                if (r < 0)
                        snprintf(err, sizeof(err), "%s", d->failure);
        }
        if (r >= 0)
                r = recovery_recover(d->store, arg.shares, arg.n_shares, master, &rec, err, sizeof(err));
        store_close(d->store);
        d->store = NULL;
        if (r >= 0) {
                for (size_t i = 0; i < sizeof(rec.install_id); i++)
                        sprintf(id + 2 * i, "%02x", rec.install_id[i]);
                /* Fail closed: no key leaves here unaudited. */
                r = audit_record(AUDIT_KIND_KEY, "recovery-recover", &self, true,
                                 "installation=%s share_files=%u out=%s", id, arg.n_shares, out_v ? out_v : "?");
                if (r < 0 && d->cfg.audit_fail_closed)
                        snprintf(err, sizeof(err), "cannot write the audit record (%s): the recovered key "
                                 "is not written ([audit] fail_closed=yes)", strerror(-r));
                else
                        r = recovery_write_key(out, master, &written, err, sizeof(err));
        }
        if (r < 0) {
                why = audit_value(err);
                log_err("recovery refused: %s", err);
                if (audit_record(AUDIT_KIND_KEY, "recovery-recover", &self, false, "share_files=%u out=%s reason=%s",
                                 arg.n_shares, out_v ? out_v : "?", why ? why : "?") < 0)
                        log_err("cannot audit the refused recovery");
                return r;
        }
        log_notice("master key of installation %s rebuilt from %u shares and checked against the store; %s%s",
                   id, arg.n_shares, strcmp(out, "-") == 0 ? "written to standard output" :
                   written ? "written to " : "the same key is already in ", strcmp(out, "-") == 0 ? "" : out);
        return 0;
}

/* "sqlite:<dkm.db>" or "etcd:<endpoints>;<prefix>", for the log and the audit trail. */
static void store_name(const struct dkm_config *cfg, char *buf, size_t size)
{
        if (strcmp(cfg->store_backend, "etcd") == 0)
                snprintf(buf, size, "etcd:%s;%s", cfg->store_endpoints ? cfg->store_endpoints : "?",
                         cfg->store_prefix ? cfg->store_prefix : STORE_ETCD_DEFAULT_PREFIX);
        else
                snprintf(buf, size, "sqlite:%s/dkm.db", cfg->state_dir);
}

/* The copy as a target node will see it: every policy loaded and every
 * generation unwrapped (dkmctl store verify's check).  *ret_checked: the
 * generations that unwrapped. */
static int migrate_verify(struct daemon *d, uint64_t *ret_checked, char *err, size_t err_size)
{
        struct keys_env env = { &d->cfg, d->store, d->ring, d->master };
        char kerr[KEYS_ERR_MAX] = "";
        _cleanup_free_ char *json = NULL;
        struct keys *k = NULL;
        uint32_t failed = 0;
        json_object *o, *v;
        int r;

        r = keys_new(&env, &k);
        if (r >= 0)
                r = keys_load(k, kerr);
        if (r >= 0)
                r = keys_verify_json(k, &json, &failed, kerr);
        keys_free(k);
        if (r < 0) {
                snprintf(err, err_size, "verify: the copy does not load: %s", kerr[0] ? kerr : strerror(-r));
                return r;
        }
        if (failed) {
                snprintf(err, err_size, "verify: %" PRIu32 " generations of the copy fail: %s", failed, json);
                return -EBADMSG;
        }
        o = json_tokener_parse(json);
        *ret_checked = o && json_object_object_get_ex(o, "checked", &v) ? (uint64_t)json_object_get_int64(v) : 0;
        json_object_put(o);
        return 0;
}

/* dkmd --config NEW --migrate-from OLD (migrate.h): everything that can be
 * refused is checked before the first write to the target. */
static int migrate(struct daemon *d)
{
        _cleanup_secret_ uint8_t *mk = secret_alloc(ENGINE_KEY_SIZE);
        _cleanup_free_ char *src_v = NULL, *dst_v = NULL;
        struct dkm_config sc = { 0 };
        struct store *src = NULL;
        struct backup_set set = { 0 };
        char err[9000] = "", seen[4200], db[4200], sname[4300] = "?", dname[4300] = "?";
        uint64_t checked = 0;
        size_t leased = 0, present = 0, n = 0;
        unsigned policies = 0;
        struct stat st;
        bool loaded = false, seen_there;
        int r;

        store_name(&d->cfg, dname, sizeof(dname));
        if (!mk) {
                r = -ENOMEM;
                goto out;
        }
        /* Its record tells the outcome, so it is written at the end: make
         * sure now that it can be. */
        r = d->cfg.audit_fail_closed ? audit_can_write() : 0;
        if (r < 0) {
                snprintf(err, sizeof(err), "cannot write audit records (%s): a migration is not done unaudited "
                         "([audit] fail_closed=yes)", strerror(-r));
                goto out;
        }
        {
                char why[1024];

                r = config_load(arg.migrate_from, &sc, why, sizeof(why));
                if (r < 0) {
                        snprintf(err, sizeof(err), "the source configuration: %s", why);
                        goto out;
                }
        }
        loaded = true;
        store_name(&sc, sname, sizeof(sname));
        if (migrate_same_store(&sc, &d->cfg)) {
                snprintf(err, sizeof(err), "the source and the target are the same store (%s): --migrate-from "
                         "copies into another, empty store", dname);
                r = -EINVAL;
                goto out;
        }
        {
                size_t len = 0;

                r = keyring_read(d->master, mk, ENGINE_KEY_SIZE, &len);
                if (r >= 0 && len != ENGINE_KEY_SIZE)
                        r = -EBADMSG;
                if (r < 0) {
                        snprintf(err, sizeof(err), "cannot read the master key back: %s", strerror(-r));
                        goto out;
                }
        }
        r = open_backend(d, &sc, true, &src);
        if (r < 0) {
                snprintf(err, sizeof(err), "cannot read the source store: %s", d->failure);
                goto out;
        }
        r = migrate_read(src, d->record_key, &set, &leased, err, sizeof(err));
        if (r >= 0)
                r = migrate_check_master(&set, mk, &policies, err, sizeof(err));
        if (r < 0)
                goto out;
        /* A new node's state directory, as --init makes it: the target's
         * dkm.db and store-seen go there. */
        r = mkdir_p(d->cfg.state_dir, 0700);
        if (r < 0) {
                snprintf(err, sizeof(err), "cannot create the state directory %s: %s", d->cfg.state_dir,
                         strerror(-r));
                goto out;
        }
        /* What this node saw of another store at the same place would
         * refuse the copy's records as replays.  A target that holds
         * records is refused as such first; a SQLite target not there yet
         * is not created when refused here. */
        store_seen_path(&d->cfg, seen, sizeof(seen));
        seen_there = stat(seen, &st) == 0;
        snprintf(db, sizeof(db), "%s/dkm.db", d->cfg.state_dir);
        if (!seen_there || strcmp(d->cfg.store_backend, "etcd") == 0 || access(db, F_OK) == 0) {
                r = step_store(d);
                if (r < 0) {
                        snprintf(err, sizeof(err), "cannot open the target store: %s", d->failure);
                        goto out;
                }
                if (!d->store_empty) {
                        r = backup_store_count(d->store, &present);
                        snprintf(err, sizeof(err), "the target store %s is not empty (%zu records): "
                                 "--migrate-from fills an empty state directory or an empty etcd prefix only",
                                 dname, r < 0 ? 0 : present);
                        r = -ENOTEMPTY;
                        goto out;
                }
        }
        if (seen_there) {
                snprintf(err, sizeof(err), "%s exists: this node has served a store where the target is now; "
                         "move that file away if that store is gone for good", seen);
                r = -EEXIST;
                goto out;
        }
        r = migrate_ensure_marker(&set, STORE_INIT_KEY, now_real_usec());
        if (r < 0)
                goto out;
        r = store_auth_open(d->store, d->record_key, seen, on_refused_record, NULL, &d->store);
        if (r < 0) {
                d->store = NULL;
                snprintf(err, sizeof(err), "cannot authenticate the target store: %s", strerror(-r));
                goto out;
        }
        log_notice("migrate: copying %zu records (%u policies) from %s to %s%s", set.n, policies, sname, dname,
                   leased ? "; records under a lease (heartbeats, grant markers) are left out" : "");
        r = backup_fill(d->store, &set, err, sizeof(err));
        if (r < 0)
                goto out;
        n = set.n;
        r = migrate_verify(d, &checked, err, sizeof(err));
        if (r < 0)
                goto out;
        log_notice("migrate: %zu records copied from %s to %s and read back; %u policies, %" PRIu64
                   " generations unwrap; nothing was re-encrypted and the source is unchanged", n, sname,
                   dname, policies, checked);
out:
        src_v = audit_value(sname);
        dst_v = audit_value(dname);
        if (audit_outcome(AUDIT_KIND_KEY, "store-migration", NULL, r, "source=%s target=%s records=%zu "
                          "generations=%" PRIu64, src_v ? src_v : "?", dst_v ? dst_v : "?", n, checked) < 0)
                log_err("cannot audit the migration");
        if (r < 0)
                log_err("migration refused: %s", err[0] ? err : strerror(-r));
        backup_set_free(&set);
        store_close(src);
        if (loaded)
                config_free(&sc);
        return r;
}

static int step_keys(struct daemon *d)
{
        struct keys_env env = { &d->cfg, d->store, d->ring, d->master };
        char err[KEYS_ERR_MAX] = "";
        int r;

        r = keys_new(&env, &d->keys);
        if (r < 0)
                return r;
        d->st.keys = d->keys;
        keys_set_kernel_custody(d->keys, d->kernel_custody);
        r = keys_load(d->keys, err);
        if (r < 0) {
                fail(d, "cannot load keys: %s", err[0] ? err : strerror(-r));
                return r;
        }
        r = grants_new(&d->cfg, d->store, d->keys, &d->grants, err);
        if (r < 0) {
                fail(d, "%s", err);
                return r;
        }
        d->st.grants = d->grants;
        log_info("grants keyring %d", grants_keyring(d->grants));
        return 0;
}

/* This node in the fleet: its heartbeat under a lease (nodes.h). */
static int step_nodes(struct daemon *d)
{
        char err[NODES_ERR_MAX] = "";
        int r;

        r = nodes_new(&d->cfg, d->store, d->keys, d->st.engine.name, &d->nodes, err);
        if (r >= 0)
                r = nodes_start(d->nodes, err);
        if (r < 0) {
                fail(d, "%s", err[0] ? err : strerror(-r));
                /* A host name that makes no node name: set node_name=. */
                d->config_error = r == -EINVAL;
                nodes_free(d->nodes);
                d->nodes = NULL;
                return r;
        }
        d->st.nodes = d->nodes;
        return 0;
}

/* $WATCHDOG_USEC, when systemd set it for this process (WatchdogSec=). */
static uint64_t watchdog_usec(void)
{
        const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        uint64_t v;

        if (!usec || parse_u64(usec, &v) < 0 || v == 0)
                return 0;
        if (pid && atoi(pid) != getpid())
                return 0;
        return v;
}

/* Grants are checked every second (keyctl changes are audited promptly);
 * cached keys every tenth of their lifetime, between 0.2 s and 30 s.  The
 * systemd watchdog is fed from here at half its interval: a keep-alive says
 * that maintenance (key refresh, grant expiry) still runs and that the accept
 * loop still turns. */
/* How often keys are checked, and how often the loop wakes, from the
 * cache_ttl in force now (SIGHUP may change it). */
static void maint_intervals(const struct daemon *d, uint64_t *ret_keys_every, uint64_t *ret_every)
{
        uint64_t keys_every = CFG(&d->cfg, cache_ttl_usec) / 10, every;

        if (keys_every > 30 * 1000000ULL)
                keys_every = 30 * 1000000ULL;
        if (keys_every < 200000)
                keys_every = 200000;
        every = keys_every < 1000000 ? keys_every : 1000000;
        if (d->watchdog_usec && every > d->watchdog_usec / 4)
                every = d->watchdog_usec / 4;
        *ret_keys_every = keys_every;
        *ret_every = every;
}

static void *maint_thread(void *p)
{
        struct daemon *d = p;
        uint64_t keys_every, every, last_keys = 0, next_ping = 0;

        pthread_mutex_lock(&d->stop_lock);
        while (!d->stopping) {
                struct timespec ts;

                maint_intervals(d, &keys_every, &every);
                clock_gettime(CLOCK_MONOTONIC, &ts); /* stop_cond's clock */
                ts.tv_sec += (time_t)(every / 1000000);
                ts.tv_nsec += (long)(every % 1000000) * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
                if (d->stopping)
                        break;
                pthread_mutex_unlock(&d->stop_lock);
                if (d->watchdog_usec && now_mono_usec() >= next_ping) {
                        uint64_t stuck = server_stuck_usec(d->server);

                        /* No keep-alive while the accept loop is stuck:
                         * systemd then restarts dkmd. */
                        if (!stuck)
                                notify("WATCHDOG=1");
                        else
                                log_err("the accept loop has not turned for %" PRIu64 " s: "
                                        "withholding the watchdog keep-alive", stuck / 1000000);
                        next_ping = now_mono_usec() + d->watchdog_usec / 2;
                }
                /* From the last check, so that a shorter cache_ttl applies at once. */
                if (last_keys == 0 || now_mono_usec() - last_keys >= keys_every - every / 2) {
                        keys_maintain(d->keys);
                        last_keys = now_mono_usec();
                }
                grants_maintain(d->grants);
                pthread_mutex_lock(&d->stop_lock);
        }
        pthread_mutex_unlock(&d->stop_lock);
        return NULL;
}

/* A fleet: follow what the other nodes write.  The watch thread catches up
 * (keys_sync(), which also does the full reload after a compaction), then
 * holds the store's watch and applies each change as it commits
 * (keys_follow()).  When the stream breaks it waits a little, longer while
 * it keeps breaking at once, and starts over from the revision applied. */
#define WATCH_BACKOFF_MIN_MS 100
#define WATCH_BACKOFF_MAX_MS 2000
#define WATCH_STABLE_USEC 5000000 /* a stream that lived this long resets the backoff */

static void watch_on_access(void *userdata)
{
        struct daemon *d = userdata;

        grants_maintain(d->grants); /* revocations by other nodes, at once */
}

/* Waits ms unless stopping; true when stopping. */
static bool watch_wait(struct daemon *d, unsigned ms)
{
        struct timespec ts;
        bool stop;

        clock_gettime(CLOCK_MONOTONIC, &ts); /* stop_cond's clock */
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&d->stop_lock);
        if (!d->stopping)
                pthread_cond_timedwait(&d->stop_cond, &d->stop_lock, &ts);
        stop = d->stopping;
        pthread_mutex_unlock(&d->stop_lock);
        return stop;
}

static void *watch_thread(void *p)
{
        struct daemon *d = p;
        unsigned backoff = WATCH_BACKOFF_MIN_MS;

        while (!watch_wait(d, 0)) {
                uint64_t opened;
                bool access = false;
                int r;

                r = keys_sync(d->keys, &access);
                if (r >= 0 && access)
                        grants_maintain(d->grants);
                if (r >= 0) {
                        opened = now_mono_usec();
                        r = keys_follow(d->keys, d->watch_stop_fd, watch_on_access, d);
                        if (r >= 0)
                                break; /* told to stop */
                        if (now_mono_usec() - opened >= WATCH_STABLE_USEC || r == -ERANGE)
                                backoff = WATCH_BACKOFF_MIN_MS;
                }
                if (r != -ERANGE && watch_wait(d, backoff))
                        break;
                if (r != -ERANGE)
                        backoff = backoff * 2 < WATCH_BACKOFF_MAX_MS ? backoff * 2 : WATCH_BACKOFF_MAX_MS;
        }
        return NULL;
}

static int step_server(struct daemon *d)
{
        char err[512] = "";
        int r;

        r = server_new(&d->st, &d->server, err, sizeof(err));
        if (r < 0) {
                fail(d, "%s", err[0] ? err : strerror(-r));
                return r;
        }
        if (pthread_create(&d->maint, NULL, maint_thread, d) == 0)
                d->maint_started = true;
        if (d->st.store_watch) {
                d->watch_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (d->watch_stop_fd < 0)
                        log_err("cannot follow the store: eventfd: %s", strerror(errno));
                else if (pthread_create(&d->watch, NULL, watch_thread, d) == 0)
                        d->watch_started = true;
        }
        return 0;
}

static void notify_serving(const struct daemon *d, const char *prefix, const char *note)
{
        notify_status(prefix, "serving on %s; engine %s, gcm(aes) by %s (%s)%s%s", d->cfg.socket,
                      d->st.engine.name, d->st.engine.driver, d->st.engine.reason,
                      note[0] ? "; " : "", note);
}

/* What SIGHUP may change while dkmd serves: values that are read afresh on
 * each use.  The other threads read them without a lock; each is one
 * aligned word, stored atomically here. */
#define RELOAD_FIELDS(X)                                                        \
        X(users_gid) X(operators_gid) X(approvers_gid) X(max_age_usec) X(max_uses) \
        X(approvals_required) X(max_duration_usec) X(request_ttl_usec)       \
        X(max_policies) X(hedge_delay_usec) X(cache_ttl_usec) X(audit_fail_closed)  \
        X(max_connections_per_uid) X(read_timeout_usec) X(idle_timeout_usec)         \
        X(stream_timeout_usec) X(stream_threads) X(recovery_shares) X(recovery_threshold)

/* [policy] pkcs11_modules and key_dirs: what customer keys may use. */
static int apply_ckey_allow(const struct dkm_config *c)
{
        size_t m = 0, d = 0;
        int r = ckey_allow_set(c->pkcs11_modules, c->key_dirs);

        if (r < 0) {
                log_err("cannot set what customer keys may use: %s", strerror(-r));
                return r;
        }
        while (c->pkcs11_modules[m])
                m++;
        while (c->key_dirs[d])
                d++;
        log_info("customer keys may use %zu PKCS#11 module%s ([policy] pkcs11_modules) and files in "
                 "%zu director%s ([policy] key_dirs)", m, m == 1 ? "" : "s", d, d == 1 ? "y" : "ies");
        return 0;
}

static bool str_differs(const char *a, const char *b)
{
        return (!a != !b) || (a && strcmp(a, b) != 0);
}

/* SIGHUP: re-read the configuration; a broken one is refused as a whole and
 * the running one stays. */
static void reload(struct daemon *d)
{
        struct dkm_config n;
        char err[512], note[600] = "";
        int r;

        notify_status("RELOADING=1\n", "reloading %s", arg.config_path);
        r = config_load(arg.config_path, &n, err, sizeof(err));
        if (r < 0) {
                log_err("reload: %s; keeping the previous configuration", err);
                snprintf(note, sizeof(note), "reload failed, previous configuration kept: %s", err);
                notify_serving(d, "READY=1\n", note);
                return;
        }
        unsigned old_shares = d->cfg.recovery_shares, old_threshold = d->cfg.recovery_threshold;

#define APPLY(f) __atomic_store_n(&d->cfg.f, n.f, __ATOMIC_RELAXED);
        RELOAD_FIELDS(APPLY)
#undef APPLY
        /* The allowed modules and key directories: ckey keeps its own copy,
         * checked on every use (only this thread reads the lists here). */
        if (apply_ckey_allow(&n) >= 0) {
                char **t;

                t = d->cfg.pkcs11_modules, d->cfg.pkcs11_modules = n.pkcs11_modules, n.pkcs11_modules = t;
                t = d->cfg.key_dirs, d->cfg.key_dirs = n.key_dirs, n.key_dirs = t;
        }
        /* The rest is bound at start-up: the socket, the store, the engine
         * and the master key are in use. */
        static const struct {
                const char *name;
                size_t off;
        } fixed[] = {
                { "[daemon] socket", offsetof(struct dkm_config, socket) },
                { "[daemon] state_dir", offsetof(struct dkm_config, state_dir) },
                { "[daemon] master_key", offsetof(struct dkm_config, master_key) },
                { "[daemon] master_key", offsetof(struct dkm_config, master_key_credential) },
                { "[store] backend", offsetof(struct dkm_config, store_backend) },
                { "[store] endpoints", offsetof(struct dkm_config, store_endpoints) },
                { "[store] cacert", offsetof(struct dkm_config, store_cacert) },
                { "[store] cert", offsetof(struct dkm_config, store_cert) },
                { "[store] key", offsetof(struct dkm_config, store_key) },
                { "[store] node_name", offsetof(struct dkm_config, node_name) },
                { "[store] prefix", offsetof(struct dkm_config, store_prefix) },
                { "[recovery] custodians", offsetof(struct dkm_config, recovery_custodians) },
                { "[recovery] out_dir", offsetof(struct dkm_config, recovery_out_dir) },
        };
        for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
                if (str_differs(*(char **)((char *)&d->cfg + fixed[i].off),
                                *(char **)((char *)&n + fixed[i].off)))
                        log_warn("reload: %s changed; it takes effect when dkmd restarts",
                                 fixed[i].name);
        if (n.engine != d->cfg.engine)
                log_warn("reload: [daemon] engine changed; it takes effect when dkmd restarts");
        if (n.node_ttl_usec != d->cfg.node_ttl_usec)
                log_warn("reload: [store] node_ttl changed; it takes effect when dkmd restarts");
        if (n.recovery_shares != old_shares || n.recovery_threshold != old_threshold)
                log_info("reload: [recovery] shares=%u threshold=%u: the next share set uses them",
                         n.recovery_shares, n.recovery_threshold);
        if (n.store_insecure != d->cfg.store_insecure)
                log_warn("reload: [store] insecure changed; it takes effect when dkmd restarts");
        /* The grants keyring's group is set when it is made. */
        if (n.reviewers_gid != d->cfg.reviewers_gid)
                log_warn("reload: [groups] reviewers changed; it takes effect when dkmd restarts");
        config_free(&n);
        log_info("configuration reloaded from %s", arg.config_path);
        notify_serving(d, "READY=1\n", "");
}

static void *signal_thread(void *p)
{
        struct daemon *d = p;
        sigset_t set;
        int sig;

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        for (;;) {
                if (sigwait(&set, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        reload(d);
                        continue;
                }
                log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                notify("STOPPING=1");
                server_stop(d->server);
                return NULL;
        }
}

int main(int argc, char **argv)
{
        static struct daemon d = {
                .stop_lock = PTHREAD_MUTEX_INITIALIZER,
                .watch_stop_fd = -1,
        };
        pthread_condattr_t ca;
        char err[512];
        pthread_t sigt;
        sigset_t set;
        bool drained;
        int r, r2;

        log_setup();
        /* Timed waits on the monotonic clock: a wall clock stepped back must
         * not stall maintenance, and with it the watchdog keep-alive. */
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&d.stop_cond, &ca);
        pthread_condattr_destroy(&ca);
        /* Keys pass through this process: no core dumps, no ptrace by peers. */
        prctl(PR_SET_DUMPABLE, 0);
        umask(0077);
        if (parse_args(argc, argv) < 0)
                return 2;

        r = config_load(arg.config_path, &d.cfg, err, sizeof(err));
        if (r < 0) {
                log_err("%s", err);
                notify_status("", "configuration error: %s", err);
                return EXIT_CONFIG;
        }
        if (arg.recover) {
                r = recover(&d);
                audit_close_log();
                config_free(&d.cfg);
                return r < 0 ? 1 : 0;
        }
        if (arg.init) {
                r = do_init(&d.cfg);
                if (r >= 0)
                        r = init_store(&d);
                /* With --recovery-dir the start-up below runs too: the
                 * shares' record goes into the store it opens. */
                if (r < 0 || !arg.recovery_dir) {
                        config_free(&d.cfg);
                        return r < 0 ? 1 : 0;
                }
        }
        if (apply_ckey_allow(&d.cfg) < 0) {
                config_free(&d.cfg);
                return 1;
        }

        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);
        d.st.cfg = &d.cfg;
        d.st.started_usec = now_mono_usec();
        d.watchdog_usec = watchdog_usec();
        notify_status("", "starting");

        r = step_engine(&d);
        if (r < 0)
                goto out_config;
        r = step_audit(&d);
        if (r < 0)
                goto out_config;
        r = step_keyring(&d);
        if (r < 0)
                goto out_audit;
        if (arg.migrate_from) {
                /* Both stores are opened there; the target before anything
                 * is written to it. */
                r = migrate(&d);
                secret_free(d.record_key);
                store_close(d.store);
                audit_close_log();
                config_free(&d.cfg);
                return r < 0 ? 1 : 0;
        }
        step_custody(&d);
        r = step_store(&d);
        if (r < 0)
                goto out_keyring;
        if (arg.restore) {
                char seen[4200];

                /* The file a start on this store reads: on etcd, the
                 * prefix's own, never the SQLite store's. */
                store_seen_path(&d.cfg, seen, sizeof(seen));
                /* Before anything (the format record among them) is written. */
                r = backup_restore_file(&d.store, d.master, d.record_key, seen, arg.restore,
                                        on_refused_record);
                secret_free(d.record_key);
                store_close(d.store);
                audit_close_log();
                config_free(&d.cfg);
                return r < 0 ? 1 : 0;
        }
        r = step_store_auth(&d);
        if (r < 0)
                goto out_store;
        if (arg.init) {
                r = init_recovery(&d);
                store_close(d.store);
                audit_close_log();
                config_free(&d.cfg);
                return r < 0 ? 1 : 0;
        }
        d.st.store = d.store;
        d.st.master = d.master;
        if (arg.authenticate_store) {
                r = authenticate_store(&d);
                store_close(d.store);
                audit_close_log();
                config_free(&d.cfg);
                return r < 0 ? 1 : 0;
        }
        r = step_keys(&d);
        if (r < 0)
                goto out_store;
        r = step_nodes(&d);
        if (r < 0)
                goto out_keys;
        r = step_server(&d);
        if (r < 0)
                goto out_nodes;
        if (pthread_create(&sigt, NULL, signal_thread, &d) != 0) {
                r = -EAGAIN;
                goto out_server;
        }
        notify_serving(&d, "READY=1\n", "");
        log_info("ready: listening on %s", d.cfg.socket);

        r = server_run(d.server);
        pthread_join(sigt, NULL);

        pthread_mutex_lock(&d.stop_lock);
        d.stopping = true;
        pthread_cond_broadcast(&d.stop_cond);
        pthread_mutex_unlock(&d.stop_lock);
        if (d.watch_started && eventfd_write(d.watch_stop_fd, 1) < 0)
                log_err("cannot stop the store watch: %s", strerror(errno));
        if (d.maint_started)
                pthread_join(d.maint, NULL);
        if (d.watch_started)
                pthread_join(d.watch, NULL);
        /* Leave the fleet at once: the others stop listing this node. */
        nodes_stop(d.nodes);
        /* Connection threads are detached and may still be inside the key
         * manager or the store, or waiting on a peer or a passed descriptor
         * until its timeout: leave those to the process exit, and with them
         * the server and the configuration they read, unless every one has
         * ended. */
        drained = server_drained(d.server, 1000);
        /* dkm.db alone then holds everything: an administrator who copies
         * it has copied the store. */
        r2 = store_checkpoint(d.store);
        if (r2 < 0)
                log_err("cannot checkpoint the store at stop: %s", strerror(-r2));
        if (drained) {
                server_free(d.server);
                audit_close_log();
                config_free(&d.cfg);
        } else
                log_info("connections still open at stop: they end with the process");
        log_info("stopped");
        return r < 0 ? 1 : 0;

out_server:
        server_free(d.server);
out_nodes:
        nodes_free(d.nodes);
out_keys:
        keys_free(d.keys);
out_store:
        store_close(d.store);
out_keyring:
        /* The process keyring and its keys go away with the process. */
        secret_free(d.record_key);
out_audit:
        audit_close_log();
out_config:
        notify_status("", "failed to start: %s", d.failure[0] ? d.failure : strerror(-r));
        config_free(&d.cfg);
        return d.config_error ? EXIT_CONFIG : 1;
}
