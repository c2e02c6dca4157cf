/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "engine/engine.h"
#include "keys-internal.h"
#include "log.h"
#include "records.h"
#include "shared/format.h"
#include "shared/secret.h"
#include "shared/util.h"
#include "store/store-auth.h"
#include "wrap.h"

void keys_seterr(char *err, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(err, KEYS_ERR_MAX, fmt, ap);
        va_end(ap);
}

static uint64_t use_block(const struct keys *k)
{
        uint64_t b = CFG(k->cfg, max_uses) / 16;

        return b < 1 ? 1 : b > USE_BLOCK_MAX ? USE_BLOCK_MAX : b;
}


int keys_new(const struct keys_env *env, struct keys **ret)
{
        struct keys *k = calloc(1, sizeof(*k));

        if (!k)
                return -ENOMEM;
        k->env = *env;
        k->cfg = env->cfg;
        /* A store that can be out of reach: reserve a block of uses ahead. */
        k->standby = env->store && store_backend_ops(env->store)->unavailable;
        audit_subject_from_peer(&k->self, getpid(), getuid(), getgid());
        pthread_rwlock_init(&k->lock, NULL);
        pthread_mutex_init(&k->reserve, NULL);
        pthread_mutex_init(&k->alert_lock, NULL);
        pthread_mutex_init(&k->shred_lock, NULL);
        pthread_mutex_init(&k->sync.run, NULL);
        pthread_mutex_init(&k->sync.lock, NULL);
        *ret = k;
        return 0;
}


void policy_free(struct policy *p)
{
        for (int i = 0; i < 2; i++)
                ckey_free(p->ckeys[i]);
        pthread_mutex_destroy(&p->status_lock);
        for (size_t i = 0; i < p->n_gens; i++) {
                engine_serial_free(p->gens[i]->tfm);
                pthread_mutex_destroy(&p->gens[i]->tfm_lock);
                free(p->gens[i]);
        }
        free(p->gens);
        free(p);
}


void keys_set_kernel_custody(struct keys *k, bool on)
{
        k->kernel_custody = on;
}


void keys_free(struct keys *k)
{
        if (!k)
                return;
        for (size_t i = 0; i < k->n_policies; i++)
                policy_free(k->policies[i]);
        free(k->policies);
        free(k->assignments);
        pthread_rwlock_destroy(&k->lock);
        free(k);
}


struct policy *find_policy(struct keys *k, const char *name)
{
        for (size_t i = 0; i < k->n_policies; i++)
                if (strcmp(k->policies[i]->rec.name, name) == 0)
                        return k->policies[i];
        return NULL;
}


struct policy *find_policy_id(struct keys *k, const uint8_t id[16])
{
        for (size_t i = 0; i < k->n_policies; i++)
                if (memcmp(k->policies[i]->id, id, 16) == 0)
                        return k->policies[i];
        return NULL;
}


struct generation *find_gen(struct policy *p, uint32_t n)
{
        return n >= 1 && n <= p->n_gens ? p->gens[n - 1] : NULL;
}


int add_gen(struct policy *p, const struct gen_record *rec, uint64_t mod_revision)
{
        struct generation *g, **gens;

        if (rec->generation != p->n_gens + 1)
                return -EBADMSG; /* generations are numbered without gaps */
        gens = realloc(p->gens, (p->n_gens + 1) * sizeof(*gens));
        if (!gens)
                return -ENOMEM;
        p->gens = gens;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        pthread_mutex_init(&g->tfm_lock, NULL);
        g->rec = *rec;
        g->mod_revision = mod_revision;
        /* After a restart every reserved use counts as spent. */
        atomic_store(&g->uses, rec->uses_reserved);
        p->gens[p->n_gens++] = g;
        return 0;
}


/* --- keys in the keyring ------------------------------------------------ */

void clear_alert(struct keys *k)
{
        pthread_mutex_lock(&k->alert_lock);
        k->alert[0] = 0;
        pthread_mutex_unlock(&k->alert_lock);
}

void raise_alert(struct keys *k, const char *fmt, ...)
{
        va_list ap;

        pthread_mutex_lock(&k->alert_lock);
        va_start(ap, fmt);
        vsnprintf(k->alert, sizeof(k->alert), fmt, ap);
        va_end(ap);
        k->alert_usec = now_real_usec();
        log_err("%s", k->alert);
        pthread_mutex_unlock(&k->alert_lock);
}


int read_cached(keyring_serial_t s, uint8_t key[ENGINE_KEY_SIZE])
{
        size_t n;
        int r;

        if (s <= 0)
                return -ENOKEY;
        r = keyring_read(s, key, ENGINE_KEY_SIZE, &n);
        if (r < 0)
                return r;
        return n == ENGINE_KEY_SIZE ? 0 : -EBADMSG;
}


unsigned cache_ttl_sec(const struct keys *k)
{
        uint64_t s = CFG(k->cfg, cache_ttl_usec) / 1000000;

        return s < 1 ? 1 : s > UINT32_MAX ? UINT32_MAX : (unsigned)s;
}


/* Unwraps the policy key with the master key and caches it. */
static int policy_key_load(struct keys *k, struct policy *p, uint8_t key[ENGINE_KEY_SIZE],
                           char *err)
{
        uint8_t *master = key; /* reuse the caller's buffer, then overwrite */
        keyring_serial_t s;
        char desc[64];
        int r;

        if (p->rec.purged || p->rec.n_customer_keys) {
                r = policy_key_customer(k, p, key, false, err);
                if (r < 0)
                        return r;
                goto cache;
        }
        r = read_cached(k->env.master, master);
        if (r < 0) {
                keys_seterr(err, "master key not available in the keyring: %s", strerror(-r));
                return r;
        }
        {
                uint8_t tmp[ENGINE_KEY_SIZE];

                r = key_unwrap(master, WRAP_POLICY_KEY, p->id, 0, p->rec.wrapped_key, tmp);
                memcpy(key, tmp, sizeof(tmp));
                secure_wipe(tmp, sizeof(tmp));
        }
        if (r < 0) {
                secure_wipe(key, ENGINE_KEY_SIZE);
                keys_seterr(err, "policy '%s': policy key does not unwrap with the master key (%s)",
                       p->rec.name, r == -EBADMSG ? "wrong master key or altered store" : strerror(-r));
                return r;
        }
cache:
        snprintf(desc, sizeof(desc), "dkm:policy:%s", p->rec.id);
        r = keyring_add(k->env.ring, desc, key, ENGINE_KEY_SIZE, cache_ttl_sec(k), &s);
        if (r < 0) {
                secure_wipe(key, ENGINE_KEY_SIZE);
                keys_seterr(err, "cannot cache policy key in the keyring: %s", strerror(-r));
                return r;
        }
        atomic_store(&p->serial, s);
        audit_record(AUDIT_KIND_KEY, "policy-key-load", &k->self, true, "policy=%s policy_id=%s",
                     p->rec.name, p->rec.id);
        return 0;
}


int policy_key(struct keys *k, struct policy *p, uint8_t key[ENGINE_KEY_SIZE], char *err)
{
        if (read_cached(atomic_load(&p->serial), key) == 0)
                return 0;
        return policy_key_load(k, p, key, err);
}


int gen_wrapping_key(struct keys *k, struct policy *p, const struct generation *g,
                     uint8_t key[ENGINE_KEY_SIZE], char *err)
{
        uint8_t tmp[ENGINE_KEY_SIZE];
        int r = policy_key(k, p, key, err);

        if (r < 0 || g->rec.key_version == p->rec.key_version)
                return r;
        if (!p->rec.has_previous || g->rec.key_version != p->rec.previous_version) {
                secure_wipe(key, ENGINE_KEY_SIZE);
                keys_seterr(err, "policy '%s' generation %u: wrapped under policy key version %u, "
                            "which the policy no longer has", p->rec.name, g->rec.generation,
                            g->rec.key_version);
                return -EBADMSG;
        }
        /* A rekey is re-wrapping the generations: the previous key serves. */
        r = key_unwrap(key, WRAP_PREVIOUS_POLICY_KEY, p->id, p->rec.previous_version,
                       p->rec.previous_key, tmp);
        memcpy(key, tmp, sizeof(tmp));
        secure_wipe(tmp, sizeof(tmp));
        if (r < 0) {
                secure_wipe(key, ENGINE_KEY_SIZE);
                keys_seterr(err, "policy '%s': the previous policy key does not unwrap (%s)",
                            p->rec.name, strerror(-r));
        }
        return r;
}


static void gen_desc(const struct policy *p, const struct generation *g, char *buf, size_t size)
{
        snprintf(buf, size, "dkm:gen:%s:%u", p->rec.id, g->rec.generation);
}

/* In kernel custody: 0 when g's logon key is cached and alive (its serial
 * in *ret_serial). */
static int gen_cached_logon(struct keys *k, const struct policy *p, const struct generation *g,
                            keyring_serial_t *ret_serial)
{
        char desc[80];

        if (atomic_load(&g->serial) <= 0)
                return -ENOKEY;
        gen_desc(p, g, desc, sizeof(desc));
        return keyring_find(k->env.ring, "logon", desc, ret_serial);
}

/* g's key unwrapped into buf's first half (buf: KEYBUF_SIZE bytes). */
static int gen_unwrap(struct keys *k, struct policy *p, struct generation *g, uint8_t *buf, char *err)
{
        uint8_t *pkey = buf + ENGINE_KEY_SIZE;
        int r;

        r = gen_wrapping_key(k, p, g, pkey, err);
        if (r < 0)
                return r;
        r = key_unwrap(pkey, WRAP_GENERATION_KEY, p->id, g->rec.generation, g->rec.wrapped_key, buf);
        secure_wipe(pkey, ENGINE_KEY_SIZE);
        if (r < 0)
                keys_seterr(err, "policy '%s' generation %u: key does not unwrap (%s)", p->rec.name,
                       g->rec.generation, strerror(-r));
        return r;
}


/* buf holds KEYBUF_SIZE bytes: the generation key ends up in its first half. */
int gen_key_load(struct keys *k, struct policy *p, struct generation *g, uint8_t *buf,
                        char *err)
{
        keyring_serial_t s;
        char desc[80];
        int r;

        r = gen_unwrap(k, p, g, buf, err);
        if (r < 0)
                return r;
        gen_desc(p, g, desc, sizeof(desc));
        /* In kernel custody a logon key: from here on nobody reads it back,
         * dkmd included; transforms are keyed from its serial. */
        if (k->kernel_custody)
                r = keyring_add_logon(k->env.ring, desc, buf, ENGINE_KEY_SIZE, cache_ttl_sec(k), &s);
        else
                r = keyring_add(k->env.ring, desc, buf, ENGINE_KEY_SIZE, cache_ttl_sec(k), &s);
        if (r == -EDQUOT) {
                /* The user's key quota is full: serve this request with the
                 * key just unwrapped and leave it uncached. */
                log_warn("key quota reached: generation %u of policy '%s' is not cached "
                         "(raise kernel.keys.maxkeys/maxbytes)", g->rec.generation, p->rec.name);
                return 0;
        }
        if (r < 0) {
                secure_wipe(buf, ENGINE_KEY_SIZE);
                keys_seterr(err, "cannot cache generation key in the keyring: %s", strerror(-r));
                return r;
        }
        atomic_store(&g->serial, s);
        return 0;
}


int gen_key(struct keys *k, struct policy *p, struct generation *g, uint8_t *buf, char *err)
{
        if (!k->kernel_custody && read_cached(atomic_load(&g->serial), buf) == 0)
                return 0;
        /* A logon key does not read back: a caller that needs the bytes
         * (a stream's subkey) gets a fresh unwrap, the cached key stays. */
        if (k->kernel_custody) {
                keyring_serial_t s;

                if (gen_cached_logon(k, p, g, &s) == 0)
                        return gen_unwrap(k, p, g, buf, err);
        }
        return gen_key_load(k, p, g, buf, err);
}


void gen_drop_cached(struct generation *g)
{
        keyring_serial_t s = atomic_exchange(&g->serial, 0);

        if (s > 0)
                keyring_invalidate(s);
        pthread_mutex_lock(&g->tfm_lock);
        engine_serial_free(g->tfm);
        g->tfm = NULL;
        g->tfm_serial = 0;
        pthread_mutex_unlock(&g->tfm_lock);
}


/* The operation socket a thread keeps for the transform it used last,
 * known by the transform's id (never by pointer): a run of requests under
 * one generation costs one sendmsg() and one recvmsg() each.  Closed at
 * thread exit, or when the thread moves to another transform. */
struct kept_op {
        uint64_t id;
        struct engine_serial_op op;
};
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;

static void kept_free(void *p)
{
        struct kept_op *kept = p;

        engine_serial_op_close(&kept->op);
        free(kept);
}

static void kept_init(void)
{
        pthread_key_create(&kept_key, kept_free);
}

static struct kept_op *kept_op(void)
{
        struct kept_op *kept;

        pthread_once(&kept_once, kept_init);
        kept = pthread_getspecific(kept_key);
        if (!kept) {
                kept = calloc(1, sizeof(*kept));
                if (!kept)
                        return NULL;
                kept->op.fd = -1;
                if (pthread_setspecific(kept_key, kept) != 0) {
                        free(kept);
                        return NULL;
                }
        }
        return kept;
}

/* Kernel custody: this thread's operation socket on g's transform, keyed
 * once from the serial of g's logon key; the key is loaded first when it is
 * not cached or has died (expired, revoked: then the transform keyed from it
 * is replaced too, so that the kernel's expiry holds for the data path).
 * 1: it could not be cached (key quota full): use the bytes path. */
static int gen_op_socket(struct keys *k, struct policy *p, struct generation *g,
                         struct kept_op **ret, char *err)
{
        keyring_serial_t s;
        struct kept_op *kept = kept_op();
        int r;

        if (!kept)
                return -ENOMEM;
        if (gen_cached_logon(k, p, g, &s) < 0) {
                uint8_t *buf;

                r = crypto_keybuf(&buf);
                if (r < 0)
                        return r;
                r = gen_key_load(k, p, g, buf, err);
                secure_wipe(buf, KEYBUF_SIZE);
                if (r < 0)
                        return r;
                if (gen_cached_logon(k, p, g, &s) < 0)
                        return 1;
        }
        pthread_mutex_lock(&g->tfm_lock);
        if (g->tfm && g->tfm_serial != s) {
                engine_serial_free(g->tfm);
                g->tfm = NULL;
        }
        r = 0;
        if (!g->tfm) {
                r = engine_serial_new(s, &g->tfm);
                if (r < 0)
                        g->tfm = NULL;
                else
                        g->tfm_serial = s;
        }
        if (r >= 0 && (kept->op.fd < 0 || kept->id != engine_serial_id(g->tfm))) {
                engine_serial_op_close(&kept->op);
                r = engine_serial_accept(g->tfm, &kept->op);
                kept->id = r >= 0 ? engine_serial_id(g->tfm) : 0;
        }
        pthread_mutex_unlock(&g->tfm_lock);
        if (r < 0) {
                keys_seterr(err, "policy '%s' generation %u: the kernel transform keyed from its "
                            "key failed: %s", p->rec.name, g->rec.generation, strerror(-r));
                return r;
        }
        *ret = kept;
        return 0;
}


/* One v1 seal (enc) or open under g in kernel custody; 1: take the bytes
 * path (gen_op_socket).  *ret_engine: the error is the operation's (err not
 * set yet), not the key's. */
static int crypt_kernel(struct keys *k, struct policy *p, struct generation *g, bool enc,
                        const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *in,
                        size_t in_len, uint8_t *out, bool *ret_engine, char *err)
{
        struct kept_op *kept;
        int r;

        *ret_engine = false;
        r = gen_op_socket(k, p, g, &kept, err);
        if (r != 0)
                return r;
        r = enc ? engine_serial_seal(&kept->op, nonce, aad, aad_len, in, in_len, out)
                : engine_serial_open(&kept->op, nonce, aad, aad_len, in, in_len, out);
        /* After anything but a result or a bad tag the socket may hold half
         * a message. */
        if (r < 0 && r != -EBADMSG)
                engine_serial_op_close(&kept->op);
        *ret_engine = true;
        return r;
}


/* --- creating policies and generations ---------------------------------- */

int new_wrapped_gen(struct keys *k, struct policy *p, uint32_t n, struct gen_record *ret,
                           char *err)
{
        _cleanup_secret_ uint8_t *buf = secret_alloc(KEYBUF_SIZE);
        struct gen_record rec = { .generation = n, .state = GEN_ACTIVE,
                                  .key_version = p->rec.key_version };
        int r;

        if (!buf)
                return -ENOMEM;
        r = policy_key(k, p, buf + ENGINE_KEY_SIZE, err);
        if (r < 0)
                return r;
        r = engine_random(buf, ENGINE_KEY_SIZE);
        if (r >= 0)
                r = key_wrap(buf + ENGINE_KEY_SIZE, WRAP_GENERATION_KEY, p->id, n, buf, rec.wrapped_key);
        if (r < 0) {
                keys_seterr(err, "cannot create a key for generation %u: %s", n, strerror(-r));
                return r;
        }
        rec.created_usec = rec.activated_usec = now_real_usec();
        *ret = rec;
        return 0;
}


/* --- loading ------------------------------------------------------------- */

struct load_ctx {
        struct keys *k;
        struct policy *cur;
        char *err;
        int r;
        bool only_new;  /* a second pass: skip the policies loaded already */
        bool skipping;  /* the generations of one of those */
};

static int load_assignment_cb(const struct store_kv *kv, void *userdata)
{
        return load_assignment(userdata, kv);
}

static int load_one(const struct store_kv *kv, void *userdata)
{
        struct load_ctx *c = userdata;
        const char *rest = kv->key + RECORDS_LEN(RECORDS_POLICIES);
        const char *slash = strchr(rest, '/');
        int r;

        if (!slash) {
                struct policy *p, **ps;
                uint8_t id[16];

                c->skipping = false;
                if (c->only_new && uuid_from_string(rest, id) >= 0 && find_policy_id(c->k, id)) {
                        c->skipping = true;
                        return 0;
                }
                p = calloc(1, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                pthread_mutex_init(&p->status_lock, NULL);
                r = policy_record_decode(kv->value, kv->value_len, &p->rec);
                if (r >= 0)
                        r = uuid_from_string(p->rec.id, p->id);
                if (r < 0) {
                        keys_seterr(c->err, "store record %s is damaged", kv->key);
                        policy_free(p);
                        return -EBADMSG;
                }
                r = policy_open_ckeys(p, c->err);
                if (r < 0) {
                        policy_free(p);
                        return r;
                }
                p->mod_revision = kv->mod_revision;
                ps = realloc(c->k->policies, (c->k->n_policies + 1) * sizeof(*ps));
                if (!ps) {
                        policy_free(p);
                        return -ENOMEM;
                }
                c->k->policies = ps;
                ps[c->k->n_policies++] = p;
                c->cur = p;
                return 0;
        }
        {
                struct gen_record g;

                if (c->skipping)
                        return 0;
                /* Keys sort so that a policy precedes its generations. */
                if (!c->cur || strncmp(rest, c->cur->rec.id, 36) != 0 ||
                    gen_record_decode(kv->value, kv->value_len, &g) < 0 ||
                    add_gen(c->cur, &g, kv->mod_revision) < 0) {
                        keys_seterr(c->err, "store record %s is damaged", kv->key);
                        return -EBADMSG;
                }
        }
        return 0;
}


int keys_load(struct keys *k, char *err)
{
        struct load_ctx c = { .k = k, .err = err };
        uint64_t rev = 0;
        int r;

        /* Changes after this revision are applied by keys_sync(); reading
         * it first may apply some twice, which merging allows. */
        r = store_ops_of(k->env.store)->revision(k->env.store, &rev);
        if (r < 0) {
                keys_seterr(err, "cannot read the store: %s", store_strerror(k->env.store, r));
                return r;
        }
        atomic_store(&k->sync.applied, rev);
        pthread_rwlock_wrlock(&k->lock);
        r = store_ops_of(k->env.store)->range(k->env.store, RECORDS_POLICIES, load_one, &c);
        if (r < 0) {
                if (!*err)
                        keys_seterr(err, "cannot read the store: %s", strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < k->n_policies; i++) {
                struct policy *p = k->policies[i];
                if (p->n_gens != p->rec.n_generations || !find_gen(p, p->rec.active)) {
                        keys_seterr(err, "policy '%s' has %zu generations in the store, expected %u",
                               p->rec.name, p->n_gens, p->rec.n_generations);
                        r = -EBADMSG;
                        goto out;
                }
        }
        r = store_ops_of(k->env.store)->range(k->env.store, RECORDS_ASSIGN, load_assignment_cb, k);
        if (r < 0) {
                if (!*err)
                        keys_seterr(err, "cannot read policy assignments: %s", strerror(-r));
                goto out;
        }
        if (!find_policy(k, DEFAULT_POLICY)) {
                r = create_policy(k, DEFAULT_POLICY, NULL, &k->self, err);
                if (r == -EEXIST) {
                        /* Nodes of a fleet that start at once all try to
                         * create it; one wins, and the others serve the
                         * winner's policy: read it in. */
                        err[0] = 0;
                        c.only_new = true;
                        c.cur = NULL;
                        r = store_ops_of(k->env.store)->range(k->env.store, RECORDS_POLICIES, load_one, &c);
                        if (r >= 0 && !find_policy(k, DEFAULT_POLICY)) {
                                keys_seterr(err, "policy '%s' was created on another node, but it "
                                            "cannot be read from the store", DEFAULT_POLICY);
                                r = -EBADMSG;
                        } else if (r >= 0)
                                log_info("policy '%s' was created by another node at the same moment: "
                                         "serving that one", DEFAULT_POLICY);
                }
                if (r < 0)
                        goto out;
        }
        /* Unwrap every active generation of the service-managed policies now:
         * this proves the master key matches the store before dkmd says it is
         * ready.  Customer-managed ones are tried too, but their customers'
         * key stores being away does not keep dkmd from starting. */
        {
                uint8_t *buf;

                r = crypto_keybuf(&buf);
                for (size_t i = 0; r >= 0 && i < k->n_policies; i++) {
                        struct policy *p = k->policies[i];

                        if (p->rec.purged)
                                continue;
                        r = gen_key_load(k, p, find_gen(p, p->rec.active), buf, err);
                        if (r < 0 && p->rec.n_customer_keys) {
                                log_warn("policy '%s' not loaded at start: %s", p->rec.name, err);
                                err[0] = 0;
                                r = 0;
                        }
                }
                if (r >= 0)
                        secure_wipe(buf, KEYBUF_SIZE);
        }
out:
        pthread_rwlock_unlock(&k->lock);
        if (r >= 0 && store_ops_of(k->env.store)->revision(k->env.store, &rev) >= 0)
                keys_shred_resume(k, rev);
        return r;
}


/* Rolls over if the active generation is too old or used too often; the
 * check repeats under the write lock because another thread may have won.
 * The policy is read from the store first, so that a rollover another node
 * made counts (nodes never roll over one generation twice); a rotation that
 * loses a compare-and-swap reads it again and looks once more. */
int rollover_if_due(struct keys *k, const uint8_t policy_id[16], char *err)
{
        int r = 0;

        for (int attempt = 0; attempt < 8; attempt++) {
                struct generation *g;
                struct policy *p;
                const char *why = NULL;

                policy_refresh(k, policy_id, err); /* unreachable: the rotation says so */
                err[0] = 0;
                pthread_rwlock_wrlock(&k->lock);
                p = find_policy_id(k, policy_id);
                r = 0;
                if (p && !p->rec.purged) {
                        g = find_gen(p, p->rec.active);
                        if (atomic_load(&g->uses) >= CFG(k->cfg, max_uses))
                                why = "use-limit";
                        else if (now_real_usec() - g->rec.activated_usec >= CFG(k->cfg, max_age_usec))
                                why = "age-limit";
                        if (why)
                                r = rotate_locked(k, p, &k->self, why, err);
                }
                pthread_rwlock_unlock(&k->lock);
                if (r != -ESTALE)
                        return r;
        }
        return r;
}




/* Whether uses u - weight + 1 .. u lie in our block.  The block's start is
 * read on both sides of its end, so that a block being replaced (start
 * first, then end) is never seen half old, half new. */
static bool in_own(struct generation *g, uint64_t u, uint64_t weight)
{
        uint64_t s1 = atomic_load(&g->own_start), e = atomic_load(&g->own_end);
        uint64_t s2 = atomic_load(&g->own_start);

        return s1 == s2 && u - weight >= s1 && u <= e;
}

static void set_own(struct generation *g, uint64_t start, uint64_t end)
{
        uint64_t cur;

        atomic_store(&g->own_start, start);
        atomic_store(&g->own_end, end);
        /* Jump over the blocks of other nodes. */
        cur = atomic_load(&g->uses);
        while (cur < start && !atomic_compare_exchange_weak(&g->uses, &cur, start))
                ;
}

/* Reserves n uses of g in the store (fewer when fewer are left, but at
 * least weight), from the store's reservation (other nodes hold what lies
 * below it) or our own count, whichever is higher.  0 with the range; 1: g
 * is spent or no longer active in the store, roll over first (spent: our
 * count is moved to the limit so that rollover_if_due() sees it; for a
 * standby, 0 with nothing reserved); or the store's error, err set. */
static int reserve_in_store(struct keys *k, struct policy *p, struct generation *g, uint64_t weight,
                            uint64_t n, bool standby, uint64_t *ret_start, uint64_t *ret_n, char *err)
{
        char kg[160];
        int r = 0;

        key_generation(kg, sizeof(kg), p->rec.id, g->rec.generation);
        for (int attempt = 0; attempt < 8; attempt++) {
                _cleanup_free_ char *json = NULL;
                struct gen_record rec = g->rec;
                uint64_t start = rec.uses_reserved, cur = atomic_load(&g->uses), rev, m = n;

                if (cur >= weight && cur - weight > start)
                        start = cur - weight;
                if (rec.state != GEN_ACTIVE)
                        return 1;
                if (start + weight > CFG(k->cfg, max_uses) && standby) {
                        *ret_start = start; /* nothing left to hold in reserve */
                        *ret_n = 0;
                        return 0;
                }
                if (start + weight > CFG(k->cfg, max_uses)) {
                        /* The fleet spent it: make rollover_if_due() see that. */
                        while (cur < CFG(k->cfg, max_uses) &&
                               !atomic_compare_exchange_weak(&g->uses, &cur, CFG(k->cfg, max_uses)))
                                ;
                        return 1;
                }
                if (start + m > CFG(k->cfg, max_uses))
                        m = CFG(k->cfg, max_uses) - start;
                rec.uses_reserved = start + m;
                r = gen_record_encode(&rec, &json);
                secure_wipe(&rec, sizeof(rec));
                if (r >= 0) {
                        const struct store_cmp cmp = { kg, g->mod_revision };
                        const struct store_op op = { STORE_PUT, kg, json, strlen(json) };
                        r = store_ops_of(k->env.store)->txn(k->env.store, &cmp, 1, &op, 1, &rev);
                }
                if (r >= 0) {
                        g->rec.uses_reserved = start + m;
                        g->mod_revision = rev;
                        *ret_start = start;
                        *ret_n = m;
                        return 0;
                }
                if (r != -ESTALE)
                        break;
                /* Another node reserved (or changed the generation): read it. */
                {
                        struct store_kv kv = { 0 };
                        struct gen_record fresh;

                        r = store_ops_of(k->env.store)->get(k->env.store, kg, &kv);
                        if (r >= 0)
                                r = gen_record_decode(kv.value, kv.value_len, &fresh);
                        if (r >= 0) {
                                if (fresh.state != GEN_ACTIVE || fresh.key_version != g->rec.key_version ||
                                    memcmp(fresh.wrapped_key, g->rec.wrapped_key,
                                           sizeof(fresh.wrapped_key)) != 0) {
                                        /* Rolled over or re-wrapped (rekey) elsewhere:
                                         * the merge under the write lock
                                         * (rollover_if_due) applies it first, so that
                                         * what we write back is never older. */
                                        secure_wipe(&fresh, sizeof(fresh));
                                        if (kv.value)
                                                secure_wipe(kv.value, kv.value_len);
                                        store_kv_clear(&kv);
                                        return 1;
                                }
                                g->rec.uses_reserved = fresh.uses_reserved;
                                g->mod_revision = kv.mod_revision;
                                secure_wipe(&fresh, sizeof(fresh));
                        }
                        if (kv.value)
                                secure_wipe(kv.value, kv.value_len);
                        store_kv_clear(&kv);
                        if (r < 0)
                                break;
                }
        }
        if (r >= 0)
                r = -EAGAIN;
        keys_seterr(err, "cannot record key use in the store: %s", store_strerror(k->env.store, r));
        return r;
}


/* Gives a block of uses to g (k->reserve and the read lock held).  0: we
 * have one, take a use again; 1: roll over first; or an error.
 *
 * On a shared store a node holds two blocks: the one it spends and the
 * next one, reserved ahead (the standby).  When the first runs out, the
 * standby takes its place without asking the store, and the store is then
 * asked for a new standby.  So when the store is unavailable (no etcd
 * quorum) a node goes on encrypting for up to two blocks, and every use it
 * makes was counted in the store beforehand: the generation's use limit
 * holds across the fleet even when the other side of a partition goes on
 * working.  When the standby is spent too, encryption is refused until the
 * store answers again; the next reservation then takes two blocks. */
static int reserve_block(struct keys *k, struct policy *p, struct generation *g, uint64_t u,
                         uint64_t weight, char *err)
{
        uint64_t block = use_block(k) > weight ? use_block(k) : weight, start, n;
        int r;

        /* Our number lies below the block: it was taken before another
         * thread, while we queued on k->reserve, put a new block in place
         * (set_own() moved the counter past it).  Take a new number in that
         * block instead of reserving one more: every thread that queued
         * would otherwise reserve a block of its own, and the counter jumps
         * over each (64 clients counted 9.66 uses per use made). */
        if (in_own(g, u, weight) || u - weight < atomic_load(&g->own_start))
                return 0;
        if (atomic_load(&g->sb_end) > atomic_load(&g->sb_start)) {
                set_own(g, atomic_load(&g->sb_start), atomic_load(&g->sb_end));
                atomic_store(&g->sb_end, atomic_load(&g->sb_start));
                r = reserve_in_store(k, p, g, weight, block, true, &start, &n, err);
                if (r == 0) {
                        atomic_store(&g->sb_start, start);
                        atomic_store(&g->sb_end, start + n);
                } else if (r < 0) {
                        log_warn("policy '%s' generation %u: encrypting from this node's reserved "
                                 "uses (%" PRIu64 " left): %s", p->rec.name, g->rec.generation,
                                 atomic_load(&g->own_end) - atomic_load(&g->own_start), err);
                        err[0] = 0;
                        r = 0;
                }
                return r;
        }
        r = reserve_in_store(k, p, g, weight, k->standby ? 2 * block : block, false, &start, &n, err);
        if (r < 0 && store_unavailable(k->env.store, r))
                keys_seterr(err, "store unavailable: use reservation exhausted (policy '%s' generation "
                            "%u: this node spent the uses it had reserved; %s)", p->rec.name,
                            g->rec.generation, store_strerror(k->env.store, r));
        if (r != 0)
                return r;
        if (n > block && n - block >= weight) {
                atomic_store(&g->sb_start, start + block);
                atomic_store(&g->sb_end, start + n);
                n = block;
        }
        set_own(g, start, start + n);
        return 0;
}


/* Takes weight uses of g, reserving a further block in the store when
 * needed.  1 means the generation is spent: roll over first. */
int take_use(struct keys *k, struct policy *p, struct generation *g, uint64_t weight, char *err)
{
        if (now_real_usec() - g->rec.activated_usec >= CFG(k->cfg, max_age_usec))
                return 1;
        uint64_t u = atomic_fetch_add(&g->uses, weight) + weight;

        for (int attempt = 0; attempt < 16; attempt++) {
                int r;

                if (u > CFG(k->cfg, max_uses))
                        return 1;
                if (in_own(g, u, weight))
                        return 0;
                pthread_mutex_lock(&k->reserve);
                r = reserve_block(k, p, g, u, weight, err);
                pthread_mutex_unlock(&k->reserve);
                if (r < 0) {
                        /* Not used: give it back unless others took uses
                         * since (refusals must not eat the generation). */
                        uint64_t cur = u;
                        atomic_compare_exchange_strong(&g->uses, &cur, u - weight);
                }
                if (r != 0)
                        return r;
                /* Outside the new block (the counter jumped): take again. */
                if (!in_own(g, u, weight))
                        u = atomic_fetch_add(&g->uses, weight) + weight;
        }
        keys_seterr(err, "cannot reserve key uses: the store keeps changing");
        return -EAGAIN;
}


/* Uses of the active generation this node may still spend without asking
 * the store (its block and the standby); with the read lock held. */
uint64_t reserved_uses_left(struct generation *g)
{
        uint64_t u = atomic_load(&g->uses), e = atomic_load(&g->own_end), s = atomic_load(&g->own_start);
        uint64_t left = u >= s && u < e ? e - u : 0;

        return left + atomic_load(&g->sb_end) - atomic_load(&g->sb_start);
}


/* --- data --------------------------------------------------------------- */

/* What sealing or opening one v1 message under g takes: its AAD (the
 * header hdr, then the context), the engine's AEAD handle, and g's key in
 * the thread's key buffer (*ret_key: the caller wipes it after use). */
static uint8_t *message_aad(const uint8_t hdr[FORMAT_HEADER_SIZE], const uint8_t *ctx, size_t ctx_len)
{
        uint8_t *aad = malloc(FORMAT_HEADER_SIZE + ctx_len);

        if (!aad)
                return NULL;
        memcpy(aad, hdr, FORMAT_HEADER_SIZE);
        if (ctx_len)
                memcpy(aad + FORMAT_HEADER_SIZE, ctx, ctx_len);
        return aad;
}

static int message_setup(struct keys *k, struct policy *p, struct generation *g,
                         const uint8_t hdr[FORMAT_HEADER_SIZE], const uint8_t *ctx, size_t ctx_len,
                         uint8_t **ret_aad, struct engine_aead **ret_a, uint8_t **ret_key, char *err)
{
        uint8_t *aad = message_aad(hdr, ctx, ctx_len), *key;
        struct engine_aead *a;
        int r;

        if (!aad)
                return -ENOMEM;
        r = crypto_aead(&a);
        if (r >= 0)
                r = crypto_keybuf(&key);
        if (r >= 0)
                r = gen_key(k, p, g, key, err);
        if (r < 0) {
                free(aad);
                return r;
        }
        *ret_aad = aad;
        *ret_a = a;
        *ret_key = key;
        return 0;
}

/* Words an engine's failure to seal or open (what: "encryption" or
 * "decryption") for the caller. */
static void seterr_engine(char *err, int r, const char *what)
{
        if (r == -EMSGSIZE)
                keys_seterr(err, "message too large for the %s engine (at most %zu bytes of "
                       "data and context in one message)", crypto_engine()->name,
                       crypto_engine()->max_message() - FORMAT_OVERHEAD);
        else
                keys_seterr(err, "%s failed in the %s engine: %s", what, crypto_engine()->name,
                            strerror(-r));
}


static int seal_with(struct keys *k, struct policy *p, struct generation *g, const uint8_t *ctx,
                     size_t ctx_len, const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len,
                     char *err)
{
        struct format_header h = { .version = FORMAT_VERSION, .algorithm = FORMAT_ALG_AES256GCM };
        _cleanup_free_ uint8_t *aad = NULL;
        struct engine_aead *a;
        uint8_t *out, *buf;
        int r;

        memcpy(h.policy_id, p->id, 16);
        h.generation = g->rec.generation;
        r = engine_random(h.nonce, sizeof(h.nonce));
        if (r < 0)
                return r;
        out = malloc(FORMAT_OVERHEAD + len);
        if (!out)
                return -ENOMEM;
        format_header_write(&h, out);
        r = 1;
        if (k->kernel_custody) {
                bool eng = false;

                aad = message_aad(out, ctx, ctx_len);
                r = aad ? crypt_kernel(k, p, g, true, h.nonce, aad, FORMAT_HEADER_SIZE + ctx_len, in,
                                       len, out + FORMAT_HEADER_SIZE, &eng, err)
                        : -ENOMEM;
                if (r < 0 && eng)
                        seterr_engine(err, r, "encryption");
                free(aad);
                aad = NULL;
        }
        if (r == 1)
                r = message_setup(k, p, g, out, ctx, ctx_len, &aad, &a, &buf, err);
        else
                goto done;
        if (r >= 0) {
                r = crypto_engine()->seal(a, buf, h.nonce, aad, FORMAT_HEADER_SIZE + ctx_len, in,
                                          len, out + FORMAT_HEADER_SIZE);
                secure_wipe(buf, ENGINE_KEY_SIZE);
                if (r < 0)
                        seterr_engine(err, r, "encryption");
        }
done:
        if (r < 0) {
                free(out);
                return r;
        }
        *ret = out;
        *ret_len = FORMAT_OVERHEAD + len;
        return 0;
}


int with_active_gen(struct keys *k, const uint8_t *policy_id, const char *policy,
                    int (*use)(struct keys *k, struct policy *p, struct generation *g, void *userdata,
                               char *err),
                    void *userdata, char *err)
{
        for (int attempt = 0; attempt < 3; attempt++) {
                struct policy *p;
                struct generation *g;
                uint8_t id[16];
                int r;

                pthread_rwlock_rdlock(&k->lock);
                p = policy_id ? find_policy_id(k, policy_id) : find_policy(k, policy);
                if (!p) {
                        pthread_rwlock_unlock(&k->lock);
                        keys_seterr(err, "no such policy '%s'", policy ? policy : "(by id)");
                        return -ENOENT;
                }
                if (p->rec.purged) {
                        pthread_rwlock_unlock(&k->lock);
                        keys_seterr(err, "policy '%s' was purged", p->rec.name);
                        return -EKEYREVOKED;
                }
                g = find_gen(p, p->rec.active);
                memcpy(id, p->id, 16);
                r = take_use(k, p, g, 1, err);
                if (r == 0)
                        r = use(k, p, g, userdata, err);
                pthread_rwlock_unlock(&k->lock);
                if (r != 1)
                        return r;
                r = rollover_if_due(k, id, err);
                if (r < 0)
                        return r;
        }
        keys_seterr(err, "the active generation could not be rolled over");
        return -EAGAIN;
}


struct seal_args {
        const uint8_t *ctx, *in;
        size_t ctx_len, len;
        uint8_t **ret;
        size_t *ret_len;
};

static int seal_use(struct keys *k, struct policy *p, struct generation *g, void *userdata, char *err)
{
        struct seal_args *a = userdata;

        return seal_with(k, p, g, a->ctx, a->ctx_len, a->in, a->len, a->ret, a->ret_len, err);
}

static int encrypt_under(struct keys *k, const uint8_t *policy_id, const char *policy,
                         const uint8_t *ctx, size_t ctx_len, const uint8_t *in, size_t len,
                         uint8_t **ret, size_t *ret_len, char *err)
{
        struct seal_args a = { .ctx = ctx, .in = in, .ctx_len = ctx_len, .len = len, .ret = ret,
                               .ret_len = ret_len };

        return with_active_gen(k, policy_id, policy, seal_use, &a, err);
}


int keys_encrypt(struct keys *k, const char *policy, const uint8_t *ctx, size_t ctx_len,
                 const uint8_t *in, size_t len, uint8_t **ret, size_t *ret_len, char *err)
{
        return encrypt_under(k, NULL, policy ? policy : DEFAULT_POLICY, ctx, ctx_len, in, len, ret,
                             ret_len, err);
}


/* Finds what a ciphertext names; with the read lock held. */
int lookup(struct keys *k, const uint8_t *in, size_t len, struct format_header *h,
                  struct policy **ret_p, struct generation **ret_g, char *err)
{
        const char *why;
        char id[37];
        int r;

        r = format_parse(in, len, h, &why);
        if (r < 0) {
                keys_seterr(err, "%s", why);
                return r;
        }
        *ret_p = find_policy_id(k, h->policy_id);
        if (!*ret_p) {
                uuid_to_string(h->policy_id, id);
                keys_seterr(err, "ciphertext belongs to unknown policy %s", id);
                return -ENOKEY;
        }
        *ret_g = find_gen(*ret_p, h->generation);
        if (!*ret_g) {
                keys_seterr(err, "ciphertext names unknown generation %u of policy '%s'", h->generation,
                       (*ret_p)->rec.name);
                return -ENOKEY;
        }
        return 0;
}


static int open_locked(struct keys *k, const uint8_t *ctx, size_t ctx_len, const uint8_t *in,
                       size_t len, uint8_t **ret, size_t *ret_len, uint8_t ret_policy_id[16],
                       char *err)
{
        _cleanup_free_ uint8_t *aad = NULL;
        struct format_header h;
        struct policy *p;
        struct generation *g;
        struct engine_aead *a;
        uint8_t *out, *buf;
        size_t n;
        int r;

        r = lookup(k, in, len, &h, &p, &g, err);
        if (r < 0)
                return r;
        if (p->rec.purged) {
                keys_seterr(err, "policy '%s' was purged: its data can no longer be decrypted", p->rec.name);
                return -EKEYREVOKED;
        }
        if (g->rec.state == GEN_RETIRED) {
                keys_seterr(err, "generation %u of policy '%s' is retired", g->rec.generation, p->rec.name);
                return -EKEYREVOKED;
        }
        if (g->rec.state == GEN_DESTROYED) {
                keys_seterr(err, "generation %u of policy '%s' was destroyed", g->rec.generation, p->rec.name);
                return -EKEYREVOKED;
        }
        n = len - FORMAT_OVERHEAD;
        out = malloc(n ? n : 1);
        if (!out)
                return -ENOMEM;
        r = 1;
        if (k->kernel_custody) {
                bool eng = false;

                aad = message_aad(in, ctx, ctx_len);
                r = aad ? crypt_kernel(k, p, g, false, h.nonce, aad, FORMAT_HEADER_SIZE + ctx_len,
                                       in + FORMAT_HEADER_SIZE, len - FORMAT_HEADER_SIZE, out, &eng, err)
                        : -ENOMEM;
                if (r == -EBADMSG)
                        keys_seterr(err, "ciphertext failed authentication (altered, truncated, or wrong context)");
                else if (r < 0 && eng)
                        seterr_engine(err, r, "decryption");
                free(aad);
                aad = NULL;
        }
        if (r == 1)
                r = message_setup(k, p, g, in, ctx, ctx_len, &aad, &a, &buf, err);
        else
                goto done;
        if (r >= 0) {
                r = crypto_engine()->open(a, buf, h.nonce, aad, FORMAT_HEADER_SIZE + ctx_len,
                                          in + FORMAT_HEADER_SIZE, len - FORMAT_HEADER_SIZE, out);
                secure_wipe(buf, ENGINE_KEY_SIZE);
                if (r == -EBADMSG)
                        keys_seterr(err, "ciphertext failed authentication (altered, truncated, or wrong context)");
                else if (r < 0)
                        seterr_engine(err, r, "decryption");
        }
done:
        if (r < 0) {
                secure_wipe(out, n);
                free(out);
                return r;
        }
        if (ret_policy_id)
                memcpy(ret_policy_id, p->id, 16);
        *ret = out;
        *ret_len = n;
        return 0;
}


int keys_decrypt(struct keys *k, const uint8_t *ctx, size_t ctx_len, const uint8_t *in,
                 size_t len, uint8_t **ret, size_t *ret_len, char *err)
{
        int r;

        pthread_rwlock_rdlock(&k->lock);
        r = open_locked(k, ctx, ctx_len, in, len, ret, ret_len, NULL, err);
        pthread_rwlock_unlock(&k->lock);
        return r;
}


int keys_rewrap(struct keys *k, const uint8_t *ctx, size_t ctx_len, const uint8_t *in,
                size_t len, uint8_t **ret, size_t *ret_len, char *err)
{
        uint8_t *plain = NULL, id[16];
        size_t n;
        int r;

        pthread_rwlock_rdlock(&k->lock);
        r = open_locked(k, ctx, ctx_len, in, len, &plain, &n, id, err);
        pthread_rwlock_unlock(&k->lock);
        if (r < 0)
                return r;
        r = encrypt_under(k, id, NULL, ctx, ctx_len, plain, n, ret, ret_len, err);
        secure_wipe(plain, n);
        free(plain);
        return r;
}


int keys_inspect_json(struct keys *k, const uint8_t *in, size_t len, char **ret, char *err)
{
        struct format_header h;
        struct policy *p;
        struct generation *g;
        json_object *o;
        char id[37];
        const char *why;
        int r;

        r = format_parse(in, len, &h, &why);
        if (r < 0) {
                keys_seterr(err, "%s", why);
                return r;
        }
        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        uuid_to_string(h.policy_id, id);
        json_object_object_add(o, "version", json_object_new_int(h.version));
        json_object_object_add(o, "algorithm", json_object_new_string("AES-256-GCM"));
        json_object_object_add(o, "policy_id", json_object_new_string(id));
        json_object_object_add(o, "generation", json_object_new_int64(h.generation));
        json_object_object_add(o, "payload_bytes", json_object_new_int64((int64_t)(len - FORMAT_OVERHEAD)));
        pthread_rwlock_rdlock(&k->lock);
        p = find_policy_id(k, h.policy_id);
        g = p ? find_gen(p, h.generation) : NULL;
        json_object_object_add(o, "policy", p ? json_object_new_string(p->rec.name) : NULL);
        json_object_object_add(o, "state", json_object_new_string(g ? gen_state_to_string(g->rec.state) : "unknown"));
        json_object_object_add(o, "decryptable", json_object_new_boolean(g && g->rec.state != GEN_RETIRED &&
                                                                g->rec.state != GEN_DESTROYED));
        pthread_rwlock_unlock(&k->lock);
        *ret = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        return *ret ? 0 : -ENOMEM;
}


keyring_serial_t keys_master_key(const struct keys *k)
{
        return k->env.master;
}

bool keys_policy_exists(struct keys *k, const char *policy)
{
        bool found;

        pthread_rwlock_rdlock(&k->lock);
        found = find_policy(k, policy) != NULL;
        pthread_rwlock_unlock(&k->lock);
        return found;
}


int keys_policy_of(struct keys *k, const uint8_t *in, size_t len, char name[65], char *err)
{
        struct format_header h;
        struct policy *p;
        struct generation *g;
        int r;

        pthread_rwlock_rdlock(&k->lock);
        r = lookup(k, in, len, &h, &p, &g, err);
        if (r >= 0)
                snprintf(name, 65, "%s", p->rec.name);
        pthread_rwlock_unlock(&k->lock);
        return r;
}
