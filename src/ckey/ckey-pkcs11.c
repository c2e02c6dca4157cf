/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pkcs11: customer keys (RFC 7512 URIs), through p11-kit.  The URI is parsed
 * by p11-kit; this file only adds what p11-kit lets pass (duplicate or
 * unknown attributes) and checks that the URI names a usable key.
 *
 * The module is chosen by a query attribute:
 *   module-path=FILE  a PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so,
 *                     or p11-kit's client module p11-kit-client.so, which talks
 *                     to the `p11-kit server` named by $P11_KIT_SERVER_ADDRESS
 *                     (read once, when the module is first loaded: one remote
 *                     server per process);
 *   module-name=NAME  a module registered in p11-kit's configuration
 *                     (/etc/pkcs11/modules/NAME.module), where a remote token
 *                     is "remote: unix:path=/run/..." (one file per server, so
 *                     each customer key can have its own).
 * The PIN comes from pin-value= or pin-source=file:/path (read on each use).
 *
 * Per call: open a session on the first present token the URI matches, log
 * in, find the one AES secret key the URI names, encrypt two blocks with
 * CKM_AES_ECB (see ckey.h for why), close the session.  Closing the last
 * session logs out, so a changed PIN or a deleted key shows on the next call.
 * Calls for one key are serialised by ckey.c; the module is loaded on first
 * use and unloaded after a failure that may have broken it (a dropped p11-kit
 * connection), so the next call connects again.
 */
#include <fcntl.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "ckey/ckey-provider.h"
#include "shared/secret.h"
#include "shared/util.h"

#define PIN_MAX 256

struct p11_key {
        P11KitUri *uri;           /* what to match; the PIN is cleared from it */
        char *module_path, *module_name;
        char *pin;                /* secret arena, or NULL */
        char *pin_file;           /* or NULL */
        CK_FUNCTION_LIST *module; /* NULL until first use */
};

static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

/* The daemon logs; p11-kit must not print to stderr on its own. */
static void be_quiet(void)
{
        p11_kit_be_quiet();
}

/* p11-kit's RPC writes to its socket without MSG_NOSIGNAL: a server that
 * went away would kill a process that does not ignore SIGPIPE.  Block it in
 * this thread around module calls and discard what they raised. */
struct sigpipe_guard {
        sigset_t old;
        bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
        sigset_t set, pending;

        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        sigpending(&pending);
        g->was_pending = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
{
        static const struct timespec zero = { 0, 0 };
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        if (!g->was_pending)
                while (sigtimedwait(&set, NULL, &zero) > 0)
                        ;
        pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* --- URI ------------------------------------------------------------------ */

static const char *const path_names[] = {
        "token", "manufacturer", "serial", "model", "library-manufacturer",
        "library-description", "library-version", "slot-description", "slot-manufacturer",
        "slot-id", "object", "id", "type", "pin-source", "pin-value", NULL,
};
static const char *const query_names[] = {
        "pin-source", "pin-value", "module-name", "module-path", NULL,
};

/* The table entry for an attribute name (aliases folded), or NULL. */
static const char *known_name(const char *name, size_t len, bool query)
{
        const char *const *t = query ? query_names : path_names;

        if ((len == 11 && strncmp(name, "object-type", 11) == 0) ||
            (len == 10 && strncmp(name, "objecttype", 10) == 0))
                return query ? NULL : "type";
        if (len == 7 && strncmp(name, "pinfile", 7) == 0)
                name = "pin-source", len = 10;
        for (; *t; t++)
                if (strlen(*t) == len && strncmp(*t, name, len) == 0)
                        return *t;
        return NULL;
}

/* p11-kit keeps the last of a repeated attribute and files unknown query
 * attributes away as vendor attributes: refuse both, naming the culprit. */
static int check_names(const char *uri, char *err, size_t err_size)
{
        const char *seen[32], *p = uri + strlen("pkcs11:");
        size_t nseen = 0, i;
        bool query = false;

        while (*p) {
                size_t len = strcspn(p, query ? "&" : ";?");
                const char *eq = memchr(p, '=', len);

                if (eq) {
                        size_t nlen = (size_t)(eq - p);
                        const char *name = known_name(p, nlen, query);

                        if (!name) {
                                ckey_err(err, err_size, "pkcs11 URI: unknown %s attribute '%.*s'",
                                         query ? "query" : "path", (int)(nlen > 64 ? 64 : nlen), p);
                                return -EINVAL;
                        }
                        for (i = 0; i < nseen; i++)
                                if (seen[i] == name) {
                                        ckey_err(err, err_size, "pkcs11 URI: duplicate attribute '%s'", name);
                                        return -EINVAL;
                                }
                        if (nseen < ARRAY_SIZE(seen))
                                seen[nseen++] = name;
                }
                p += len;
                if (*p == '?')
                        query = true;
                if (*p)
                        p++;
        }
        return 0;
}

static int take_pin(struct p11_key *pk, char *err, size_t err_size)
{
        const char *value = p11_kit_uri_get_pin_value(pk->uri);
        const char *source = p11_kit_uri_get_pin_source(pk->uri);

        if (value && source) {
                ckey_err(err, err_size, "pkcs11 URI: give pin-value or pin-source, not both");
                return -EINVAL;
        }
        if (source) {
                if (strncmp(source, "file:", 5) == 0)
                        source += 5;
                if (source[0] != '/') {
                        ckey_err(err, err_size, "pkcs11 URI: pin-source must be file:/absolute/path");
                        return -EINVAL;
                }
                pk->pin_file = strdup(source);
                return pk->pin_file ? 0 : -ENOMEM;
        }
        if (!value)
                return 0;
        if (!*value || strlen(value) >= PIN_MAX) {
                ckey_err(err, err_size, "pkcs11 URI: pin-value is empty or too long");
                return -EINVAL;
        }
        pk->pin = secret_alloc(strlen(value) + 1);
        if (!pk->pin)
                return -ENOMEM;
        strcpy(pk->pin, value);
        /* p11-kit frees without wiping. */
        secure_wipe((char *)value, strlen(value));
        p11_kit_uri_set_pin_value(pk->uri, NULL);
        return 0;
}

static void p11_close(void *state)
{
        struct p11_key *pk = state;

        if (!pk)
                return;
        if (pk->module) {
                struct sigpipe_guard g;

                sigpipe_block(&g);
                p11_kit_module_finalize(pk->module);
                p11_kit_module_release(pk->module);
                sigpipe_restore(&g);
        }
        if (pk->uri) {
                const char *v = p11_kit_uri_get_pin_value(pk->uri);

                if (v)
                        secure_wipe((char *)v, strlen(v));
                p11_kit_uri_free(pk->uri);
        }
        free(pk->module_path);
        free(pk->module_name);
        free(pk->pin_file);
        secret_free(pk->pin);
        free(pk);
}

static int p11_open(const char *uri, void **ret_state, char **ret_redacted, char *err,
                    size_t err_size)
{
        struct p11_key *pk;
        CK_ATTRIBUTE *a;
        const char *path, *name;
        char *redacted = NULL;
        int r;

        pthread_once(&quiet_once, be_quiet);
        if (uri[strcspn(uri, " \t\r\n\v\f")]) {
                ckey_err(err, err_size, "pkcs11 URI contains whitespace (percent-encode it)");
                return -EINVAL;
        }
        r = check_names(uri, err, err_size);
        if (r < 0)
                return r;

        pk = calloc(1, sizeof(*pk));
        if (!pk)
                return -ENOMEM;
        pk->uri = p11_kit_uri_new();
        if (!pk->uri) {
                r = -ENOMEM;
                goto fail;
        }
        r = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_ANY, pk->uri);
        if (r != P11_KIT_URI_OK) {
                ckey_err(err, err_size, "pkcs11 URI: %s", p11_kit_uri_message(r));
                r = -EINVAL;
                goto fail;
        }
        r = -EINVAL;
        if (p11_kit_uri_any_unrecognized(pk->uri)) {
                ckey_err(err, err_size, "pkcs11 URI has a value p11-kit does not recognise (e.g. type=)");
                goto fail;
        }
        a = p11_kit_uri_get_attribute(pk->uri, CKA_CLASS);
        if (a && (a->ulValueLen != sizeof(CK_OBJECT_CLASS) ||
                  *(CK_OBJECT_CLASS *)a->pValue != CKO_SECRET_KEY)) {
                ckey_err(err, err_size, "pkcs11 URI names an object that is not a secret key (type=secret-key)");
                goto fail;
        }
        a = p11_kit_uri_get_attribute(pk->uri, CKA_LABEL);
        if (a && a->ulValueLen == 0) {
                ckey_err(err, err_size, "pkcs11 URI: object= is empty");
                goto fail;
        }
        if (!a && !p11_kit_uri_get_attribute(pk->uri, CKA_ID)) {
                ckey_err(err, err_size, "pkcs11 URI names no key object (object= or id=)");
                goto fail;
        }
        path = p11_kit_uri_get_module_path(pk->uri);
        name = p11_kit_uri_get_module_name(pk->uri);
        if (!!path == !!name || (path && !*path) || (name && !*name)) {
                ckey_err(err, err_size, "pkcs11 URI needs exactly one of module-path= and module-name=");
                goto fail;
        }
        r = -ENOMEM;
        if (path && !(pk->module_path = strdup(path)))
                goto fail;
        if (name && !(pk->module_name = strdup(name)))
                goto fail;
        r = take_pin(pk, err, err_size);
        if (r < 0)
                goto fail;
        if (p11_kit_uri_format(pk->uri, P11_KIT_URI_FOR_ANY, &redacted) != P11_KIT_URI_OK) {
                ckey_err(err, err_size, "pkcs11 URI cannot be formatted back");
                r = -EINVAL;
                goto fail;
        }
        *ret_state = pk;
        *ret_redacted = redacted;
        return 0;
fail:
        p11_close(pk);
        return r;
}

/* --- calls ---------------------------------------------------------------- */

static int rv_errno(CK_RV rv)
{
        switch (rv) {
        case CKR_OK:
                return 0;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_EXPIRED:
        case CKR_PIN_LOCKED:
        case CKR_USER_PIN_NOT_INITIALIZED:
        case CKR_USER_NOT_LOGGED_IN:
                return -EACCES;
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
        case CKR_KEY_HANDLE_INVALID:
        case CKR_OBJECT_HANDLE_INVALID:
                return -EKEYREVOKED;
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_TOKEN_NOT_RECOGNIZED:
        case CKR_DEVICE_REMOVED:
        case CKR_SLOT_ID_INVALID:
        case CKR_SESSION_CLOSED:
        case CKR_SESSION_HANDLE_INVALID:
                return -ENODEV;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_SIZE_RANGE:
        case CKR_FUNCTION_NOT_SUPPORTED:
                return -EOPNOTSUPP;
        case CKR_HOST_MEMORY:
                return -ENOMEM;
        case CKR_SESSION_COUNT:
                return -EBUSY;
        default: /* CKR_DEVICE_ERROR, CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED, ... */
                return -EHOSTUNREACH;
        }
}

static void module_unload(struct p11_key *pk)
{
        if (!pk->module)
                return;
        p11_kit_module_finalize(pk->module);
        p11_kit_module_release(pk->module);
        pk->module = NULL;
}

/* Maps a failed call; drops a module that may be broken so the next call
 * loads it (and reconnects) afresh. */
static int fail(struct p11_key *pk, const char *what, CK_RV rv, char *err, size_t err_size)
{
        int r = rv_errno(rv);

        ckey_err(err, err_size, "%s: %s (CKR 0x%lx)", what, p11_kit_strerror(rv), (unsigned long)rv);
        if (r == -EHOSTUNREACH || rv == CKR_DEVICE_REMOVED)
                module_unload(pk);
        return r;
}

static int module_load(struct p11_key *pk, char *err, size_t err_size)
{
        const char *what = pk->module_path ?: pk->module_name;
        CK_FUNCTION_LIST *m = NULL, **all;
        const char *msg;
        CK_RV rv;
        size_t i;

        if (pk->module)
                return 0;
        /* Only what [policy] pkcs11_modules allows is loaded: a module's
         * constructor runs inside dkmd with all its keys. */
        if (pk->module_path) {
                _cleanup_free_ char *real = NULL;
                int r = ckey_allow_module_path(pk->module_path, &real, err, err_size);

                if (r < 0)
                        return r == -EINVAL || r == -ENOMEM ? r : -EHOSTUNREACH;
                m = p11_kit_module_load(real, 0);
        } else {
                int r = ckey_allow_module_name(pk->module_name, err, err_size);

                if (r < 0)
                        return r;
                all = p11_kit_modules_load(NULL, 0);
                if (all) {
                        m = p11_kit_module_for_name(all, pk->module_name);
                        for (i = 0; all[i]; i++)
                                if (all[i] != m)
                                        p11_kit_module_release(all[i]);
                        free(all);
                }
        }
        if (!m) {
                msg = p11_kit_message();
                ckey_err(err, err_size, "cannot load PKCS#11 module %s: %s", what,
                         msg ? msg : pk->module_name ? "no such module configured in p11-kit" : "unknown error");
                return -EHOSTUNREACH;
        }
        rv = p11_kit_module_initialize(m);
        if (rv != CKR_OK) {
                p11_kit_module_release(m);
                ckey_err(err, err_size, "cannot initialise PKCS#11 module %s: %s (CKR 0x%lx)", what,
                         p11_kit_strerror(rv), (unsigned long)rv);
                return -EHOSTUNREACH; /* e.g. p11-kit server not reachable */
        }
        pk->module = m;
        return 0;
}

static int find_slot(struct p11_key *pk, CK_SLOT_ID *ret_slot, CK_TOKEN_INFO *ret_info,
                     char *err, size_t err_size)
{
        CK_FUNCTION_LIST *m = pk->module;
        CK_SLOT_ID want = p11_kit_uri_get_slot_id(pk->uri);
        _cleanup_free_ CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0, i;
        CK_INFO info;
        CK_RV rv;

        rv = m->C_GetInfo(&info);
        if (rv != CKR_OK)
                return fail(pk, "C_GetInfo", rv, err, err_size);
        if (!p11_kit_uri_match_module_info(pk->uri, &info)) {
                ckey_err(err, err_size, "module does not match the URI's library-* attributes");
                return -ENODEV;
        }
        rv = m->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv == CKR_OK && n > 0) {
                slots = calloc(n, sizeof(*slots));
                if (!slots)
                        return -ENOMEM;
                rv = m->C_GetSlotList(CK_TRUE, slots, &n);
        }
        if (rv != CKR_OK)
                return fail(pk, "C_GetSlotList", rv, err, err_size);
        for (i = 0; i < n; i++) {
                CK_SLOT_INFO si;
                CK_TOKEN_INFO ti;

                if (want != (CK_SLOT_ID)-1 && slots[i] != want)
                        continue;
                if (m->C_GetSlotInfo(slots[i], &si) != CKR_OK || !p11_kit_uri_match_slot_info(pk->uri, &si))
                        continue;
                if (m->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED) ||
                    !p11_kit_uri_match_token_info(pk->uri, &ti))
                        continue;
                *ret_slot = slots[i];
                *ret_info = ti;
                return 0;
        }
        ckey_err(err, err_size, "no token matching the URI is present (%lu with a token)", (unsigned long)n);
        /* p11-kit's client module answers "no slots" once its server is gone;
         * only a new C_Initialize connects again. */
        module_unload(pk);
        return -ENODEV;
}

/* A service-side file: unreadable is "unavailable" (-ENOENT), not revoked;
 * one the configuration does not allow is refused (-EINVAL). */
static int read_pin_file(const char *path, char pin[PIN_MAX], char *err, size_t err_size)
{
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;
        int r;

        r = ckey_allow_open_file(path, "PIN file", &fd, err, err_size);
        if (r == -EINVAL || r == -ENOMEM)
                return r;
        if (r < 0)
                return -ENOENT;
        n = read(fd, pin, PIN_MAX - 1);
        if (n < 0) {
                ckey_err(err, err_size, "cannot read PIN file %s: %s", path, strerror(errno));
                return -ENOENT;
        }
        pin[n] = '\0';
        pin[strcspn(pin, "\r\n")] = '\0';
        return 0;
}

static int login(struct p11_key *pk, CK_SESSION_HANDLE s, char *err, size_t err_size)
{
        char buf[PIN_MAX];
        const char *pin = pk->pin;
        CK_RV rv;
        int r;

        if (pk->pin_file) {
                r = read_pin_file(pk->pin_file, buf, err, err_size);
                if (r < 0)
                        return r;
                pin = buf;
        }
        rv = pk->module->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
        if (pin == buf)
                secure_wipe(buf, sizeof(buf));
        if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
                return 0;
        return fail(pk, "C_Login", rv, err, err_size);
}

static int find_key(struct p11_key *pk, CK_SESSION_HANDLE s, bool login_required,
                    CK_OBJECT_HANDLE *ret, char *err, size_t err_size)
{
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_AES;
        CK_ATTRIBUTE t[4] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
        }, *a;
        CK_OBJECT_HANDLE found[2];
        CK_ULONG n = 2, count = 0;
        CK_RV rv;

        if ((a = p11_kit_uri_get_attribute(pk->uri, CKA_LABEL)))
                t[n++] = *a;
        if ((a = p11_kit_uri_get_attribute(pk->uri, CKA_ID)))
                t[n++] = *a;
        rv = pk->module->C_FindObjectsInit(s, t, n);
        if (rv != CKR_OK)
                return fail(pk, "C_FindObjectsInit", rv, err, err_size);
        rv = pk->module->C_FindObjects(s, found, 2, &count);
        pk->module->C_FindObjectsFinal(s);
        if (rv != CKR_OK)
                return fail(pk, "C_FindObjects", rv, err, err_size);
        if (count == 0 && login_required && !pk->pin && !pk->pin_file) {
                ckey_err(err, err_size, "token requires login: add pin-value= or pin-source= to the URI");
                return -EACCES;
        }
        if (count == 0) {
                ckey_err(err, err_size, "no AES key object matching the URI on the token (deleted?)");
                return -EKEYREVOKED;
        }
        if (count > 1) {
                ckey_err(err, err_size, "more than one AES key matches the URI (add id=)");
                return -EINVAL;
        }
        *ret = found[0];
        return 0;
}

static int derive(struct p11_key *pk, const uint8_t nonce[CKEY_NONCE_SIZE],
                  uint8_t ret_kek[CKEY_KEY_SIZE], char *err, size_t err_size)
{
        CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
        uint8_t in[2 * 16], out[CKEY_KEY_SIZE];
        CK_ULONG out_len = sizeof(out);
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
        CK_TOKEN_INFO ti = { 0 };
        CK_SLOT_ID slot = 0;
        CK_RV rv;
        int r;

        r = module_load(pk, err, err_size);
        if (r < 0)
                return r;
        r = find_slot(pk, &slot, &ti, err, err_size);
        if (r < 0)
                return r;
        rv = pk->module->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                return fail(pk, "C_OpenSession", rv, err, err_size);

        if (pk->pin || pk->pin_file)
                r = login(pk, s, err, err_size);
        if (r >= 0)
                r = find_key(pk, s, ti.flags & CKF_LOGIN_REQUIRED, &key, err, err_size);
        if (r >= 0) {
                /* Two distinct counter blocks under the nonce: a 32-byte PRF output. */
                memcpy(in, nonce, CKEY_NONCE_SIZE);
                memcpy(in + 12, "dkm\1", 4);
                memcpy(in + 16, nonce, CKEY_NONCE_SIZE);
                memcpy(in + 28, "dkm\2", 4);
                rv = pk->module->C_EncryptInit(s, &ecb, key);
                if (rv == CKR_OK)
                        rv = pk->module->C_Encrypt(s, in, sizeof(in), out, &out_len);
                if (rv != CKR_OK)
                        r = fail(pk, rv == CKR_KEY_FUNCTION_NOT_PERMITTED ?
                                 "key may not encrypt (disabled)" : "C_Encrypt", rv, err, err_size);
                else if (out_len != sizeof(out)) {
                        ckey_err(err, err_size, "C_Encrypt returned %lu bytes, not 32", (unsigned long)out_len);
                        r = -EIO;
                }
        }
        if (pk->module)
                pk->module->C_CloseSession(s);
        if (r >= 0)
                memcpy(ret_kek, out, sizeof(out));
        secure_wipe(out, sizeof(out));
        return r < 0 ? r : 0;
}

static int p11_derive(void *state, const uint8_t nonce[CKEY_NONCE_SIZE],
                      uint8_t ret_kek[CKEY_KEY_SIZE], char *err, size_t err_size)
{
        struct sigpipe_guard g;
        int r;

        sigpipe_block(&g);
        r = derive(state, nonce, ret_kek, err, err_size);
        sigpipe_restore(&g);
        return r;
}

/* The module and the PIN file, as ckey_check() wants them: refused only
 * for what the configuration does not allow. */
static int p11_check(void *state, char *err, size_t err_size)
{
        struct p11_key *pk = state;
        int r;

        r = pk->module_path ? ckey_allow_module_path(pk->module_path, NULL, err, err_size) :
                              ckey_allow_module_name(pk->module_name, err, err_size);
        if (r == -EINVAL || r == -ENOMEM)
                return r;
        if (pk->pin_file) {
                _cleanup_close_ int fd = -EBADF;

                r = ckey_allow_open_file(pk->pin_file, "PIN file", &fd, err, err_size);
                if (r == -EINVAL || r == -ENOMEM)
                        return r;
        }
        ckey_err(err, err_size, "%s", "");
        return 0;
}

const struct ckey_provider ckey_pkcs11_provider = {
        .scheme = "pkcs11",
        .kind = 'P',
        .open = p11_open,
        .close = p11_close,
        .derive = p11_derive,
        .check = p11_check,
};
