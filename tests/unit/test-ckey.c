/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Customer keys: URI parsing (no token needed), the file provider, the error
 * classification, and the hedged unwrap driven by a fake "test:" provider
 * whose delay and error each test sets.  Run under SAN=1: abandoned workers
 * finish after their callers returned and must not touch freed memory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "ckey/ckey.h"
#include "shared/util.h"

#define MS 1000ull

/* --- the fake provider ------------------------------------------------------ */

struct fake {
        const char *name;
        atomic_int delay_ms, err, calls;
};

static struct fake fakes[] = { { .name = "a" }, { .name = "b" }, { .name = "c" } };

static int fake_open(const char *uri, void **ret_state, char **ret_redacted, char *err,
                     size_t err_size)
{
        for (size_t i = 0; i < ARRAY_SIZE(fakes); i++)
                if (strcmp(uri + 5, fakes[i].name) == 0) {
                        *ret_state = &fakes[i];
                        *ret_redacted = strdup(uri);
                        return *ret_redacted ? 0 : -ENOMEM;
                }
        ckey_err(err, err_size, "no fake named %s", uri + 5);
        return -EINVAL;
}

static void fake_close(void *state) { }

static int fake_derive(void *state, const uint8_t nonce[CKEY_NONCE_SIZE],
                       uint8_t ret_kek[CKEY_KEY_SIZE], char *err, size_t err_size)
{
        struct fake *f = state;
        int r = atomic_load(&f->err);

        atomic_fetch_add(&f->calls, 1);
        usleep((useconds_t)atomic_load(&f->delay_ms) * 1000);
        if (r < 0) {
                ckey_err(err, err_size, "fake %s fails: %s", f->name, strerror(-r));
                return r;
        }
        memset(ret_kek, f->name[0], CKEY_KEY_SIZE);
        return 0;
}

static const struct ckey_provider fake_provider = {
        .scheme = "test", .kind = 'T',
        .open = fake_open, .close = fake_close, .derive = fake_derive,
};

static void fake_set(int i, int delay_ms, int err)
{
        atomic_store(&fakes[i].delay_ms, delay_ms);
        atomic_store(&fakes[i].err, err);
        atomic_store(&fakes[i].calls, 0);
}

static int setup(void **state)
{
        int r = ckey_register_provider(&fake_provider);

        return r == 0 || r == -EEXIST ? 0 : -1;
}

static struct ckey *open_ok(const char *uri)
{
        struct ckey *k = NULL;
        char err[256] = "";

        if (ckey_open(uri, &k, err, sizeof(err)) != 0)
                fail_msg("ckey_open(%s): %s", uri, err);
        return k;
}

static const uint8_t policy_key[CKEY_KEY_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                                  15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
                                                  27, 28, 29, 30, 31, 32 };

static void wrap_ok(struct ckey *k, const char *label, uint8_t blob[CKEY_BLOB_MAX], size_t *len)
{
        char err[256] = "";

        *len = CKEY_BLOB_MAX;
        if (ckey_wrap(k, policy_key, label, 0, blob, len, err, sizeof(err)) != 0)
                fail_msg("wrap: %s", err);
        assert_int_equal(*len, CKEY_BLOB_SIZE);
}

/* --- URIs ------------------------------------------------------------------------ */

static void test_uri_good(void **state)
{
        static const struct { const char *uri, *redacted; } good[] = {
                { "file:/etc/dkm/a.key", "file:/etc/dkm/a.key" },
                { "file:///etc/dkm/a%20b.key", "file:/etc/dkm/a%20b.key" },
                { "file://localhost/x/y", "file:/x/y" },
                { "FILE:/x", "file:/x" },
                { "pkcs11:token=A;object=k?module-name=x", "pkcs11:token=A;object=k?module-name=x" },
                { "pkcs11:id=%01%02?module-name=x", "pkcs11:id=%01%02?module-name=x" },
                { "pkcs11:token=My%20Token;object=k;type=secret-key?module-name=x&pin-source=file:/etc/dkm/pin",
                  "pkcs11:token=My%20Token;object=k;type=secret-key?pin-source=file%3A%2Fetc%2Fdkm%2Fpin&module-name=x" },
        };
        struct ckey *k;

        for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
                k = open_ok(good[i].uri);
                assert_string_equal(ckey_uri_redacted(k), good[i].redacted);
                ckey_free(k);
        }

        /* The PIN never shows. */
        k = open_ok("pkcs11:token=A;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=s3cr%65t");
        assert_null(strstr(ckey_uri_redacted(k), "s3cr"));
        assert_null(strstr(ckey_uri_redacted(k), "pin-value"));
        assert_non_null(strstr(ckey_uri_redacted(k), "object=k"));
        ckey_free(k);
        ckey_free(NULL);
}

static void test_uri_bad(void **state)
{
        static const struct { const char *uri, *why; } bad[] = {
                { "", "empty" },
                { "/etc/key", "no scheme" },
                { "http://x", "unknown customer key URI scheme 'http:'" },
                { "file:", "no path" },
                { "file:relative", "absolute" },
                { "file://host/x", "host 'host'" },
                { "file://", "no path" },
                { "file:/a%00b", "%00" },
                { "file:/a%zz", "percent" },
                { "file:/a%2", "percent" },
                { "file:/a?x=1", "query" },
                { "file:/a#frag", "fragment" },
                { "file:/dir/", "directory" },
                { "file:/a b", "space" },
                { "pkcs11:", "no key object" },
                { "pkcs11:token=a?module-name=x", "no key object" },
                { "pkcs11:object=a;object=b?module-name=x", "duplicate attribute 'object'" },
                { "pkcs11:object=a?module-name=x&pin-value=1&pin-value=2", "duplicate attribute 'pin-value'" },
                { "pkcs11:object=a?module-name=x&pinfile=/a&pin-source=/b", "duplicate attribute 'pin-source'" },
                { "pkcs11:object=a;type=secret-key;object-type=secret-key?module-name=x", "duplicate attribute 'type'" },
                { "pkcs11:objekt=a?module-name=x", "unknown path attribute 'objekt'" },
                { "pkcs11:object=a?module-name=x&foo=bar", "unknown query attribute 'foo'" },
                { "pkcs11:object=a", "module-path" },
                { "pkcs11:object=a?module-name=x&module-path=/y", "exactly one" },
                { "pkcs11:object=a?module-name=", "exactly one" },
                { "pkcs11:object=a;type=cert?module-name=x", "not a secret key" },
                { "pkcs11:object=a;type=bogus?module-name=x", "does not recognise" },
                { "pkcs11:object=a?module-name=x&pin-value=1&pin-source=file:/p", "not both" },
                { "pkcs11:object=a?module-name=x&pin-source=tty", "pin-source" },
                { "pkcs11:object=?module-name=x", "empty" },
                { "pkcs11:object=a?module-name=x&pin-value=", "pin-value is empty" },
                { "pkcs11:object=a b?module-name=x", "whitespace" },
                { "pkcs11:object=a%zz?module-name=x", "pkcs11 URI:" },
                { "pkcs11:object?module-name=x", "pkcs11 URI:" },
        };
        char err[256], long_uri[17000];
        struct ckey *k = (struct ckey *)0x1;

        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                err[0] = '\0';
                if (ckey_open(bad[i].uri, &k, err, sizeof(err)) != -EINVAL)
                        fail_msg("%s: accepted", bad[i].uri);
                if (!strstr(err, bad[i].why))
                        fail_msg("%s: message '%s' lacks '%s'", bad[i].uri, err, bad[i].why);
        }
        assert_ptr_equal(k, (struct ckey *)0x1); /* ret_ untouched on failure */
        assert_int_equal(ckey_open(NULL, &k, err, sizeof(err)), -EINVAL);
        memset(long_uri, 'a', sizeof(long_uri) - 1);
        memcpy(long_uri, "file:/", 6);
        long_uri[sizeof(long_uri) - 1] = '\0';
        assert_int_equal(ckey_open(long_uri, &k, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "longer than"));
        /* Error buffers are optional. */
        assert_int_equal(ckey_open("nope:", &k, NULL, 0), -EINVAL);
}

static void test_register(void **state)
{
        static const struct ckey_provider same_kind = {
                .scheme = "other", .kind = 'T',
                .open = fake_open, .close = fake_close, .derive = fake_derive,
        };
        static const struct ckey_provider incomplete = { .scheme = "x", .kind = 'X' };

        assert_int_equal(ckey_register_provider(&fake_provider), -EEXIST);
        assert_int_equal(ckey_register_provider(&same_kind), -EEXIST);
        assert_int_equal(ckey_register_provider(&incomplete), -EINVAL);
}

/* --- the file provider -------------------------------------------------------- */

static char dir[64];

static void write_file(const char *path, const void *data, size_t len)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

static int file_setup(void **state)
{
        uint8_t key[CKEY_KEY_SIZE];
        char path[128];

        char *dirs[] = { dir, NULL };

        strcpy(dir, "/tmp/test-ckey.XXXXXX");
        if (!mkdtemp(dir) || ckey_allow_set(NULL, dirs) < 0)
                return -1;
        memset(key, 0x42, sizeof(key));
        snprintf(path, sizeof(path), "%s/k1", dir);
        write_file(path, key, sizeof(key));
        memset(key, 0x43, sizeof(key));
        snprintf(path, sizeof(path), "%s/k2", dir);
        write_file(path, key, sizeof(key));
        return 0;
}

static int file_teardown(void **state)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static struct ckey *open_file(const char *name)
{
        char uri[128];

        snprintf(uri, sizeof(uri), "file:%s/%s", dir, name);
        return open_ok(uri);
}

static void test_file_roundtrip(void **state)
{
        struct ckey *k1 = open_file("k1"), *k2 = open_file("k2"), *fk = open_ok("test:a");
        uint8_t blob[CKEY_BLOB_MAX], blob2[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        size_t len, len2, small = CKEY_BLOB_SIZE - 1;
        char err[256];

        wrap_ok(k1, "policy-1", blob, &len);
        assert_int_equal(ckey_unwrap(k1, blob, len, "policy-1", 0, key, err, sizeof(err)), 0);
        assert_memory_equal(key, policy_key, sizeof(key));
        /* Also through a worker thread. */
        memset(key, 0, sizeof(key));
        assert_int_equal(ckey_unwrap(k1, blob, len, "policy-1", 5000 * MS, key, err, sizeof(err)), 0);
        assert_memory_equal(key, policy_key, sizeof(key));
        /* Fresh nonce each time. */
        wrap_ok(k1, "policy-1", blob2, &len2);
        assert_memory_not_equal(blob, blob2, len);

        /* Label binding, other key, other kind of key. */
        memset(key, 0xee, sizeof(key));
        assert_int_equal(ckey_unwrap(k1, blob, len, "policy-2", 0, key, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "does not authenticate"));
        assert_int_equal(key[0], 0xee); /* ret_key untouched */
        assert_int_equal(ckey_unwrap(k2, blob, len, "policy-1", 0, key, err, sizeof(err)), -EBADMSG);
        assert_int_equal(ckey_unwrap(fk, blob, len, "policy-1", 0, key, err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "another kind of key"));
        assert_int_equal(ckey_classify(-EBADMSG), CKEY_BAD_INPUT);

        /* Every altered byte is caught; so are lengths and versions. */
        for (size_t i = 0; i < len; i++) {
                blob[i] ^= 0x01;
                int r = ckey_unwrap(k1, blob, len, "policy-1", 0, key, err, sizeof(err));
                if (r != -EBADMSG && r != -EPROTO)
                        fail_msg("flipped byte %zu: %d", i, r);
                blob[i] ^= 0x01;
        }
        assert_int_equal(ckey_unwrap(k1, blob, len - 1, "policy-1", 0, key, err, sizeof(err)), -EBADMSG);
        assert_int_equal(ckey_unwrap(k1, blob, CKEY_BLOB_MAX + 1, "policy-1", 0, key, err, sizeof(err)),
                         -EBADMSG);
        blob[2] = 2;
        assert_int_equal(ckey_unwrap(k1, blob, len, "policy-1", 0, key, err, sizeof(err)), -EPROTO);
        assert_int_equal(ckey_wrap(k1, policy_key, "p", 0, blob, &small, err, sizeof(err)), -ENOBUFS);
        assert_int_equal(ckey_wrap(k1, policy_key, NULL, 0, blob, &len, err, sizeof(err)), -EINVAL);

        ckey_free(k1);
        ckey_free(k2);
        ckey_free(fk);
}

static void test_file_failures(void **state)
{
        uint8_t blob[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE], junk[40] = { 0 };
        char path[128], err[256];
        struct ckey *k, *nodir;
        size_t len;

        snprintf(path, sizeof(path), "%s/k3", dir);
        write_file(path, policy_key, sizeof(policy_key));
        k = open_file("k3");
        wrap_ok(k, "p", blob, &len);

        /* Gone: revoked. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EKEYREVOKED);
        assert_non_null(strstr(err, "is gone"));
        assert_int_equal(ckey_classify(-EKEYREVOKED), CKEY_REVOKED);
        /* Wiped (empty): revoked.  Wrong size: bad input. */
        write_file(path, junk, 0);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EKEYREVOKED);
        write_file(path, junk, 31);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EINVAL);
        write_file(path, junk, 33);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "more than 32"));
        /* Back: works again. */
        write_file(path, policy_key, sizeof(policy_key));
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), 0);
        /* A directory: bad input. */
        unlink(path);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EINVAL);
        rmdir(path);
        ckey_free(k);

        /* The directory itself is missing (storage not mounted): unavailable. */
        nodir = open_file("not-mounted/k");
        assert_int_equal(ckey_unwrap(nodir, blob, len, "p", 0, key, err, sizeof(err)), -ENODEV);
        assert_non_null(strstr(err, "not mounted"));
        assert_int_equal(ckey_classify(-ENODEV), CKEY_UNAVAILABLE);
        ckey_free(nodir);
}

static void test_file_permission(void **state)
{
        uint8_t blob[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        char path[128], err[256];
        struct ckey *k;
        size_t len;

        int status;
        pid_t pid;

        snprintf(path, sizeof(path), "%s/k4", dir);
        write_file(path, policy_key, sizeof(policy_key));
        k = open_file("k4");
        wrap_ok(k, "p", blob, &len);
        assert_int_equal(chmod(path, 0), 0);
        assert_int_equal(ckey_classify(-EACCES), CKEY_REVOKED);
        if (geteuid() != 0) {
                assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EACCES);
                ckey_free(k);
                return;
        }
        /* root reads mode 000 files: ask as nobody, in a child. */
        assert_int_equal(chmod(dir, 0711), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                if (setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(2);
                _exit(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)) == -EACCES ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        chmod(dir, 0700);
        ckey_free(k);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
                skip(); /* cannot drop privileges here */
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* --- pkcs11 without a token ----------------------------------------------- */

static void test_pkcs11_no_module(void **state)
{
        char *modules[] = { "/nonexistent/libnone.so", "no-such-module-configured", NULL };
        char *dirs[] = { dir, NULL };
        struct ckey *k;

        assert_int_equal(ckey_allow_set(modules, dirs), 0);
        k = open_ok("pkcs11:token=t;object=k?module-path=/nonexistent/libnone.so&pin-value=1");
        uint8_t blob[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        char err[512];
        size_t len = CKEY_BLOB_MAX;

        assert_int_equal(ckey_wrap(k, policy_key, "p", 0, blob, &len, err, sizeof(err)), -EHOSTUNREACH);
        assert_non_null(strstr(err, "cannot load PKCS#11 module /nonexistent/libnone.so"));
        assert_int_equal(ckey_classify(-EHOSTUNREACH), CKEY_UNAVAILABLE);
        /* A pkcs11 blob header with any nonce reaches the module too. */
        memset(blob, 0, CKEY_BLOB_SIZE);
        memcpy(blob, "DK\1P", 4);
        assert_int_equal(ckey_unwrap(k, blob, CKEY_BLOB_SIZE, "p", 0, key, err, sizeof(err)), -EHOSTUNREACH);
        ckey_free(k);

        k = open_ok("pkcs11:object=k?module-name=no-such-module-configured");
        assert_int_equal(ckey_unwrap(k, blob, CKEY_BLOB_SIZE, "p", 0, key, err, sizeof(err)), -EHOSTUNREACH);
        assert_non_null(strstr(err, "no-such-module-configured"));
        ckey_free(k);
}

/* SoftHSM with an empty token directory: the module loads, no token matches. */
static void test_pkcs11_no_token(void **state)
{
        static const char *lib = "/usr/lib/softhsm/libsofthsm2.so";
        uint8_t blob[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        char conf[128], tokens[128], text[256], err[512];
        struct ckey *k;
        int r;

        char *modules[] = { (char *)lib, NULL }, *dirs[] = { dir, NULL };

        if (access(lib, R_OK) != 0)
                skip(); /* softhsm2 not installed; the integration test covers tokens */
        assert_int_equal(ckey_allow_set(modules, dirs), 0);
        snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
        snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
        assert_int_equal(mkdir(tokens, 0700), 0);
        r = snprintf(text, sizeof(text), "directories.tokendir = %s\nobjectstore.backend = file\n", tokens);
        write_file(conf, text, (size_t)r);
        setenv("SOFTHSM2_CONF", conf, 1);

        k = open_ok("pkcs11:token=absent;object=k?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234");
        memset(blob, 0, CKEY_BLOB_SIZE);
        memcpy(blob, "DK\1P", 4);
        assert_int_equal(ckey_unwrap(k, blob, CKEY_BLOB_SIZE, "p", 0, key, err, sizeof(err)), -ENODEV);
        assert_non_null(strstr(err, "no token matching"));
        ckey_free(k);
}

/* --- what the administrator allows ------------------------------------------- */

static int unwrap_err(const char *uri, const char *want_msg)
{
        uint8_t blob[CKEY_BLOB_SIZE] = "DK\1F", key[CKEY_KEY_SIZE];
        char err[512] = "";
        struct ckey *k = open_ok(uri);
        int r;

        blob[3] = strncmp(uri, "pkcs11:", 7) == 0 ? 'P' : 'F'; /* reach the provider */
        r = ckey_unwrap(k, blob, sizeof(blob), "p", 0, key, err, sizeof(err));

        if (want_msg && !strstr(err, want_msg))
                fail_msg("%s: '%s' lacks '%s'", uri, err, want_msg);
        ckey_free(k);
        return r;
}

static void test_allow_key_dirs(void **state)
{
        char sub[128], other[128], path[PATH_MAX], uri[PATH_MAX + 8], err[512];
        char *dirs[] = { sub, NULL }, *none[] = { NULL };
        uint8_t blob[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        struct ckey *k;
        size_t len;

        snprintf(sub, sizeof(sub), "%s/allowed", dir);
        snprintf(other, sizeof(other), "%s/other", dir);
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(mkdir(other, 0700), 0);
        snprintf(path, sizeof(path), "%s/k", sub);
        write_file(path, policy_key, sizeof(policy_key));
        snprintf(path, sizeof(path), "%s/k", other);
        write_file(path, policy_key, sizeof(policy_key));
        assert_int_equal(ckey_allow_set(NULL, dirs), 0);

        /* Inside: works, and ckey_check() agrees. */
        snprintf(uri, sizeof(uri), "file:%s/k", sub);
        k = open_ok(uri);
        assert_int_equal(ckey_check(k, err, sizeof(err)), 0);
        wrap_ok(k, "p", blob, &len);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), 0);
        /* Taken off the list: refused at the next use, as bad input (the
         * availability key must not stand in for it). */
        assert_int_equal(ckey_allow_set(NULL, none), 0);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "is not in [policy] key_dirs"));
        assert_int_equal(ckey_check(k, err, sizeof(err)), -EINVAL);
        assert_int_equal(ckey_classify(-EINVAL), CKEY_BAD_INPUT);
        ckey_free(k);
        assert_int_equal(ckey_allow_set(NULL, dirs), 0);

        /* Outside, by name, by "..", by a symlink; a prefix is not a directory. */
        snprintf(uri, sizeof(uri), "file:%s/k", other);
        assert_int_equal(unwrap_err(uri, "is not in [policy] key_dirs"), -EINVAL);
        snprintf(uri, sizeof(uri), "file:%s/../other/k", sub);
        assert_int_equal(unwrap_err(uri, "'..'"), -EINVAL);
        snprintf(uri, sizeof(uri), "file:%s/./k", sub);
        assert_int_equal(unwrap_err(uri, "'..'"), -EINVAL);
        snprintf(path, sizeof(path), "%s/link", sub);
        snprintf(uri, sizeof(uri), "%s/k", other);
        assert_int_equal(symlink(uri, path), 0);
        snprintf(uri, sizeof(uri), "file:%s/link", sub);
        assert_int_equal(unwrap_err(uri, "outside [policy] key_dirs"), -EINVAL);
        k = open_ok(uri);
        assert_int_equal(ckey_check(k, err, sizeof(err)), -EINVAL);
        ckey_free(k);
        snprintf(uri, sizeof(uri), "file:%sx/k", sub);
        assert_int_equal(unwrap_err(uri, "is not in [policy] key_dirs"), -EINVAL);
        /* A directory given with a trailing '/' is the same directory. */
        snprintf(path, sizeof(path), "%s/", sub);
        dirs[0] = path;
        assert_int_equal(ckey_allow_set(NULL, dirs), 0);
        dirs[0] = sub;
        snprintf(uri, sizeof(uri), "file:%s/k", sub);
        assert_int_not_equal(unwrap_err(uri, NULL), -EINVAL);
        assert_int_equal(ckey_allow_set(NULL, dirs), 0);
        /* A symlink that stays inside is the file it names. */
        snprintf(path, sizeof(path), "%s/inner", sub);
        assert_int_equal(symlink("k", path), 0);
        snprintf(uri, sizeof(uri), "file:%s/inner", sub);
        k = open_ok(uri);
        assert_int_equal(ckey_unwrap(k, blob, len, "p", 0, key, err, sizeof(err)), 0);
        ckey_free(k);

        /* Modes: others may not read, group and others may not write. */
        snprintf(path, sizeof(path), "%s/k", sub);
        snprintf(uri, sizeof(uri), "file:%s/k", sub);
        assert_int_equal(chmod(path, 0604), 0);
        assert_int_equal(unwrap_err(uri, "mode 0604"), -EINVAL);
        assert_int_equal(chmod(path, 0620), 0);
        assert_int_equal(unwrap_err(uri, "mode 0620"), -EINVAL);
        assert_int_equal(chmod(path, 0640), 0); /* root:dkm 0640 is fine */
        assert_int_not_equal(unwrap_err(uri, NULL), -EINVAL);
        assert_int_equal(chmod(path, 0600), 0);
        /* A FIFO in its place: refused at once, not a hung worker. */
        snprintf(path, sizeof(path), "%s/fifo", sub);
        assert_int_equal(mkfifo(path, 0600), 0);
        snprintf(uri, sizeof(uri), "file:%s/fifo", sub);
        assert_int_equal(unwrap_err(uri, "not a regular file"), -EINVAL);
        /* Missing files keep their meaning: gone (revoked) or not mounted. */
        snprintf(uri, sizeof(uri), "file:%s/gone", sub);
        assert_int_equal(unwrap_err(uri, "is gone"), -EKEYREVOKED);
        snprintf(uri, sizeof(uri), "file:%s/unmounted/k", sub);
        assert_int_equal(unwrap_err(uri, "not mounted"), -ENODEV);
        /* Nothing configured: nothing allowed. */
        assert_int_equal(ckey_allow_set(NULL, NULL), 0);
        snprintf(uri, sizeof(uri), "file:%s/k", sub);
        assert_int_equal(unwrap_err(uri, "is not in [policy] key_dirs"), -EINVAL);
        /* The other tests use the whole test directory. */
        dirs[0] = dir;
        assert_int_equal(ckey_allow_set(NULL, dirs), 0);
}

static void test_allow_modules(void **state)
{
        char mod[128], link[128], uri[512], err[512], *real = NULL;
        char *modules[] = { "/nonexistent/libnone.so", mod, "named", NULL };
        char *dirs[] = { dir, NULL };
        struct ckey *k;

        snprintf(mod, sizeof(mod), "%s/module.so", dir);
        snprintf(link, sizeof(link), "%s/module-link.so", dir);
        write_file(mod, "x", 1);
        assert_int_equal(symlink(mod, link), 0);
        assert_int_equal(ckey_allow_set(modules, dirs), 0);

        /* Not listed: refused before anything is loaded. */
        assert_int_equal(ckey_allow_module_path("/usr/lib/libc.so.6", NULL, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "module /usr/lib/libc.so.6 is not in [policy] pkcs11_modules"));
        assert_int_equal(ckey_allow_module_path("relative.so", NULL, err, sizeof(err)), -EINVAL);
        assert_int_equal(ckey_allow_module_path("/nonexistent/../libnone.so", NULL, err, sizeof(err)),
                         -EINVAL);
        assert_int_equal(ckey_allow_module_name("other", err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "module name 'other' is not in [policy] pkcs11_modules"));
        assert_int_equal(ckey_allow_module_name("named", err, sizeof(err)), 0);
        /* A name is not a path, and a path is not a name. */
        assert_int_equal(ckey_allow_module_name("/nonexistent/libnone.so", err, sizeof(err)), -EINVAL);
        assert_int_equal(ckey_allow_module_path("/named", NULL, err, sizeof(err)), -EINVAL);
        /* Listed but absent: the service's problem (unavailable), not a refusal. */
        assert_int_equal(ckey_allow_module_path("/nonexistent/libnone.so", NULL, err, sizeof(err)), -ENOENT);
        /* Listed, and through a symlink the same file: but under /tmp, a
         * directory anyone may write to, so refused all the same. */
        assert_int_equal(ckey_allow_module_path(link, &real, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "writable by group or others"));
        assert_null(real);

        snprintf(uri, sizeof(uri), "pkcs11:token=t;object=k?module-path=/usr/lib/libc.so.6");
        assert_int_equal(unwrap_err(uri, "is not in [policy] pkcs11_modules"), -EINVAL);
        k = open_ok(uri);
        assert_int_equal(ckey_check(k, err, sizeof(err)), -EINVAL);
        ckey_free(k);
        /* The PIN file too. */
        k = open_ok("pkcs11:token=t;object=k?module-name=named&pin-source=file:/etc/shadow");
        assert_int_equal(ckey_check(k, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "PIN file /etc/shadow is not in [policy] key_dirs"));
        ckey_free(k);
        k = open_ok("pkcs11:token=t;object=k?module-path=/nonexistent/libnone.so");
        assert_int_equal(ckey_check(k, err, sizeof(err)), 0);
        ckey_free(k);

        /* A system module, root's in root's directories, when there is one. */
        if (access("/usr/lib/softhsm/libsofthsm2.so", R_OK) == 0) {
                modules[0] = "/usr/lib/softhsm/libsofthsm2.so";
                assert_int_equal(ckey_allow_set(modules, dirs), 0);
                assert_int_equal(ckey_allow_module_path(modules[0], &real, err, sizeof(err)), 0);
                assert_non_null(real);
                free(real);
        }
        unlink(link);
        unlink(mod);
}

/* --- classification ---------------------------------------------------------- */

static void test_classify(void **state)
{
        static const struct { int err; enum ckey_failure f; } table[] = {
                { 0, CKEY_OK },
                { -ETIMEDOUT, CKEY_UNAVAILABLE }, { -EHOSTUNREACH, CKEY_UNAVAILABLE },
                { -ENODEV, CKEY_UNAVAILABLE }, { -ECONNREFUSED, CKEY_UNAVAILABLE },
                { -EIO, CKEY_UNAVAILABLE }, { -ENOMEM, CKEY_UNAVAILABLE },
                { -ENOENT, CKEY_UNAVAILABLE }, { -EAGAIN, CKEY_UNAVAILABLE },
                { -EKEYREVOKED, CKEY_REVOKED }, { -EACCES, CKEY_REVOKED },
                { -EPERM, CKEY_REVOKED }, { -ENOKEY, CKEY_REVOKED }, { -EKEYEXPIRED, CKEY_REVOKED },
                { -EINVAL, CKEY_BAD_INPUT }, { -EBADMSG, CKEY_BAD_INPUT },
                { -EPROTO, CKEY_BAD_INPUT }, { -ENOBUFS, CKEY_BAD_INPUT },
                { -EOPNOTSUPP, CKEY_BAD_INPUT },
        };

        for (size_t i = 0; i < ARRAY_SIZE(table); i++)
                if (ckey_classify(table[i].err) != table[i].f)
                        fail_msg("errno %d classified %s", table[i].err,
                                 ckey_failure_name(ckey_classify(table[i].err)));
        assert_string_equal(ckey_failure_name(CKEY_REVOKED), "revoked");
        assert_string_equal(ckey_failure_name(CKEY_UNAVAILABLE), "unavailable");
}

/* --- hedging ---------------------------------------------------------------------- */

struct pair {
        struct ckey *a, *b;
        uint8_t blob_a[CKEY_BLOB_MAX], blob_b[CKEY_BLOB_MAX];
        size_t len_a, len_b;
};

static void pair_open(struct pair *p, const char *label)
{
        fake_set(0, 0, 0);
        fake_set(1, 0, 0);
        p->a = open_ok("test:a");
        p->b = open_ok("test:b");
        wrap_ok(p->a, label, p->blob_a, &p->len_a);
        wrap_ok(p->b, label, p->blob_b, &p->len_b);
        fake_set(0, 0, 0);
        fake_set(1, 0, 0);
}

static void pair_close(struct pair *p)
{
        ckey_free(p->a);
        ckey_free(p->b);
}

static int hedged(struct pair *p, uint64_t hedge_ms, uint64_t timeout_ms, struct ckey_hedge_result *res,
                  uint64_t *elapsed_ms, char *err, size_t err_size)
{
        uint8_t key[CKEY_KEY_SIZE] = { 0 };
        uint64_t t0 = now_mono_usec();
        int r;

        r = ckey_unwrap_hedged(p->a, p->blob_a, p->len_a, p->b, p->blob_b, p->len_b, "pol",
                               hedge_ms * MS, timeout_ms * MS, key, res, err, err_size);
        *elapsed_ms = (now_mono_usec() - t0) / MS;
        if (r == 0)
                assert_memory_equal(key, policy_key, sizeof(key));
        return r;
}

static void test_hedge_fast_a(void **state)
{
        struct ckey_hedge_result res;
        struct pair p;
        uint64_t ms;
        char err[512];

        pair_open(&p, "pol");
        fake_set(0, 10, 0);
        /* A hedge delay far above a's 10 ms: on a loaded machine a's worker
         * may wait for a CPU a while, and b must not be asked then either. */
        assert_int_equal(hedged(&p, 1000, 5000, &res, &ms, err, sizeof(err)), 0);
        assert_int_equal(res.winner, 0);
        assert_true(res.asked[0]);
        assert_false(res.asked[1]);
        assert_int_equal(atomic_load(&fakes[1].calls), 0);
        assert_true(ms < 1000);
        assert_true(res.latency_usec[0] >= 10 * MS);
        pair_close(&p);
}

static void test_hedge_slow_a(void **state)
{
        struct ckey_hedge_result res;
        struct pair p;
        uint64_t ms;
        char err[512];

        pair_open(&p, "pol");
        fake_set(0, 1500, 0);
        fake_set(1, 30, 0);
        assert_int_equal(hedged(&p, 100, 5000, &res, &ms, err, sizeof(err)), 0);
        assert_int_equal(res.winner, 1);
        assert_true(res.asked[0] && res.asked[1]);
        assert_int_equal(atomic_load(&fakes[1].calls), 1);
        /* about hedge + b's latency */
        if (ms < 130 || ms > 900)
                fail_msg("answered after %" PRIu64 " ms, expected about 130", ms);
        assert_int_equal(res.err[1], 0);
        assert_true(res.latency_usec[1] >= 30 * MS);
        /* a is still busy: it is abandoned, and the key may go away now. */
        pair_close(&p);
        assert_int_equal(ckey_wait_idle(10000 * MS), 0);
        assert_int_equal(atomic_load(&fakes[0].calls), 1);
}

static void test_hedge_a_fails_fast(void **state)
{
        struct ckey_hedge_result res;
        struct pair p;
        uint64_t ms;
        char err[512];

        pair_open(&p, "pol");
        fake_set(0, 0, -EHOSTUNREACH);
        assert_int_equal(hedged(&p, 3000, 10000, &res, &ms, err, sizeof(err)), 0);
        assert_int_equal(res.winner, 1);
        assert_int_equal(res.err[0], -EHOSTUNREACH);
        assert_true(ms < 1000); /* b asked at once, not after the hedge */

        /* A revoked a does not stop b from answering. */
        fake_set(0, 0, -EKEYREVOKED);
        assert_int_equal(hedged(&p, 3000, 10000, &res, &ms, err, sizeof(err)), 0);
        assert_int_equal(res.winner, 1);
        pair_close(&p);
}

static void test_hedge_both_fail(void **state)
{
        static const struct { int a, b, want; } cases[] = {
                { -EHOSTUNREACH, -ENODEV, -EHOSTUNREACH },
                { -EKEYREVOKED, -EHOSTUNREACH, -EKEYREVOKED },
                { -ETIMEDOUT, -EACCES, -EACCES },
                { -EBADMSG, -ECONNREFUSED, -ECONNREFUSED },
                { -EBADMSG, -EINVAL, -EBADMSG },
        };
        struct ckey_hedge_result res;
        struct pair p;
        uint64_t ms;
        char err[512];

        pair_open(&p, "pol");
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                int r;

                fake_set(0, 0, cases[i].a);
                fake_set(1, 0, cases[i].b);
                r = hedged(&p, 50, 5000, &res, &ms, err, sizeof(err));
                if (r != cases[i].want)
                        fail_msg("case %zu: got %d, want %d (%s)", i, r, cases[i].want, err);
                assert_int_equal(res.winner, -1);
                assert_int_equal(res.err[0], cases[i].a);
                assert_int_equal(res.err[1], cases[i].b);
                assert_non_null(strstr(err, "test:a: fake a fails"));
                assert_non_null(strstr(err, "test:b: fake b fails"));
        }
        /* Revoked wins over unavailable whichever key says it, and over a
         * key that never answers. */
        fake_set(0, 3000, 0);
        fake_set(1, 0, -EKEYREVOKED);
        /* A timeout well past b's answer (b's worker may wait for a CPU on
         * a loaded machine) and well short of a's. */
        assert_int_equal(hedged(&p, 50, 1000, &res, &ms, err, sizeof(err)), -EKEYREVOKED);
        assert_int_equal(res.err[0], -ETIMEDOUT);
        assert_int_equal(ckey_classify(-EKEYREVOKED), CKEY_REVOKED);
        pair_close(&p);
        assert_int_equal(ckey_wait_idle(10000 * MS), 0);
}

static void test_hedge_timeout(void **state)
{
        struct ckey_hedge_result res;
        uint8_t blob[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        struct pair p;
        uint64_t ms, t0;
        size_t len = sizeof(blob);
        char err[512];

        pair_open(&p, "pol");
        fake_set(0, 2000, 0);
        fake_set(1, 2000, 0);
        assert_int_equal(hedged(&p, 50, 300, &res, &ms, err, sizeof(err)), -ETIMEDOUT);
        assert_int_equal(ckey_classify(-ETIMEDOUT), CKEY_UNAVAILABLE);
        assert_true(ms >= 290 && ms < 1500);
        assert_int_equal(res.winner, -1);
        assert_int_equal(res.err[0], -ETIMEDOUT);
        assert_int_equal(res.err[1], -ETIMEDOUT);
        assert_non_null(strstr(err, "no answer in time"));

        /* While a is stuck, further calls on it wait for it only until their
         * own deadline. */
        t0 = now_mono_usec();
        assert_int_equal(ckey_unwrap(p.a, p.blob_a, p.len_a, "pol", 200 * MS, key, err, sizeof(err)),
                         -ETIMEDOUT);
        assert_int_equal(ckey_wrap(p.b, policy_key, "pol", 200 * MS, blob, &len, err, sizeof(err)),
                         -ETIMEDOUT);
        assert_true(now_mono_usec() - t0 < 1500 * MS);

        /* Free everything while the workers still sleep. */
        pair_close(&p);
        assert_int_equal(ckey_wait_idle(1 * MS), -ETIMEDOUT);
        assert_int_equal(ckey_wait_idle(10000 * MS), 0);
}

struct worker_arg {
        struct pair *p;
        int id, failures;
};

static void *hammer(void *arg)
{
        struct worker_arg *w = arg;
        uint8_t blob_a[CKEY_BLOB_MAX], blob_b[CKEY_BLOB_MAX], key[CKEY_KEY_SIZE];
        size_t la = sizeof(blob_a), lb = sizeof(blob_b);
        struct ckey_hedge_result res;
        char label[32], err[512];

        snprintf(label, sizeof(label), "policy-%d", w->id);
        if (ckey_wrap(w->p->a, policy_key, label, 0, blob_a, &la, err, sizeof(err)) ||
            ckey_wrap(w->p->b, policy_key, label, 0, blob_b, &lb, err, sizeof(err))) {
                w->failures++;
                return NULL;
        }
        for (int i = 0; i < 10; i++) {
                memset(key, 0, sizeof(key));
                if (ckey_unwrap_hedged(w->p->a, blob_a, la, w->p->b, blob_b, lb, label, 2 * MS,
                                       5000 * MS, key, &res, err, sizeof(err)) != 0 ||
                    memcmp(key, policy_key, sizeof(key)) != 0)
                        w->failures++;
        }
        return NULL;
}

static void test_hedge_concurrent(void **state)
{
        struct worker_arg args[8];
        pthread_t t[8];
        struct pair p;

        pair_open(&p, "pol");
        fake_set(0, 3, 0);
        fake_set(1, 1, 0);
        for (int i = 0; i < 8; i++) {
                args[i] = (struct worker_arg){ .p = &p, .id = i };
                assert_int_equal(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
                pthread_join(t[i], NULL);
                assert_int_equal(args[i].failures, 0);
        }
        pair_close(&p);
        assert_int_equal(ckey_wait_idle(10000 * MS), 0);
}

static void test_hedge_single_and_args(void **state)
{
        struct ckey_hedge_result res;
        uint8_t key[CKEY_KEY_SIZE];
        struct pair p;
        char err[512];

        pair_open(&p, "pol");
        /* b may be NULL: one key with a timeout. */
        assert_int_equal(ckey_unwrap_hedged(p.a, p.blob_a, p.len_a, NULL, NULL, 0, "pol", 0, 1000 * MS,
                                            key, &res, err, sizeof(err)), 0);
        assert_int_equal(res.winner, 0);
        assert_false(res.asked[1]);
        assert_int_equal(ckey_unwrap_hedged(NULL, p.blob_a, p.len_a, p.b, p.blob_b, p.len_b, "pol", 0,
                                            0, key, &res, err, sizeof(err)), -EINVAL);
        assert_int_equal(ckey_unwrap_hedged(p.a, NULL, 64, p.b, p.blob_b, p.len_b, "pol", 0, 0, key,
                                            &res, err, sizeof(err)), -EINVAL);
        /* A wrong blob for a is a's failure; b still answers. */
        p.blob_a[10] ^= 1;
        assert_int_equal(ckey_unwrap_hedged(p.a, p.blob_a, p.len_a, p.b, p.blob_b, p.len_b, "pol",
                                            1000 * MS, 0, key, &res, err, sizeof(err)), 0);
        assert_int_equal(res.winner, 1);
        assert_int_equal(res.err[0], -EBADMSG);
        pair_close(&p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uri_good),
                cmocka_unit_test(test_uri_bad),
                cmocka_unit_test(test_register),
                cmocka_unit_test(test_file_roundtrip),
                cmocka_unit_test(test_file_failures),
                cmocka_unit_test(test_file_permission),
                cmocka_unit_test(test_pkcs11_no_module),
                cmocka_unit_test(test_pkcs11_no_token),
                cmocka_unit_test(test_allow_key_dirs),
                cmocka_unit_test(test_allow_modules),
                cmocka_unit_test(test_classify),
                cmocka_unit_test(test_hedge_fast_a),
                cmocka_unit_test(test_hedge_slow_a),
                cmocka_unit_test(test_hedge_a_fails_fast),
                cmocka_unit_test(test_hedge_both_fail),
                cmocka_unit_test(test_hedge_timeout),
                cmocka_unit_test(test_hedge_concurrent),
                cmocka_unit_test(test_hedge_single_and_args),
        };
        int r;

        if (setup(NULL) < 0 || file_setup(NULL) < 0)
                return 1;
        r = cmocka_run_group_tests_name("ckey", tests, NULL, NULL);
        ckey_wait_idle(10000 * MS);
        file_teardown(NULL);
        return r;
}
