/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ckey-tool: drives src/ckey/ckey.c from the shell, for
 * tests/integration/test-ckey-pkcs11.sh.
 *
 *   ckey-tool redact URI
 *   ckey-tool wrap URI LABEL KEYHEX BLOBFILE [TIMEOUT_MS]
 *   ckey-tool unwrap URI LABEL BLOBFILE [TIMEOUT_MS]
 *   ckey-tool hedge URI_A BLOB_A URI_B BLOB_B LABEL HEDGE_MS TIMEOUT_MS
 *   ckey-tool loop URI LABEL BLOBFILE TIMEOUT_MS   (one unwrap per stdin line,
 *                                                   on the same open key)
 *   ckey-tool disable MODULE TOKEN PIN LABEL       (as a customer would: clear
 *                                                   CKA_ENCRYPT on the key; raw
 *                                                   PKCS#11, not the ckey API)
 *
 * Results go to stdout, one line: "ok [KEYHEX]" or "CLASS ERRNO MESSAGE";
 * hedge adds "winner=N a=ERR/MSms b=ERR/MSms elapsed=MSms".  Exit status: 0
 * ok, 2 unavailable, 3 revoked, 4 bad input, 1 usage.
 *
 * DKM_TEST_P11_MODULES=DIR makes p11-kit read module configs (NAME.module)
 * from DIR only, so tests can use module-name= with "remote:" without
 * touching /etc/pkcs11.  DKM_TEST_CKEY_MODULES and DKM_TEST_CKEY_KEY_DIRS
 * (space-separated) are what dkmd.conf's [policy] pkcs11_modules and key_dirs
 * would allow; unset, nothing is.  The tool ends with _exit(): a worker abandoned in a
 * stopped p11-kit server must not hold up (or crash) library destructors.
 */
#define P11_KIT_FUTURE_UNSTABLE_API 1
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckey/ckey.h"
#include "shared/util.h"

static void quit(int code)
{
        fflush(stdout);
        fflush(stderr);
        _exit(code);
}

static int exit_code(int r)
{
        switch (ckey_classify(r)) {
        case CKEY_OK: return 0;
        case CKEY_UNAVAILABLE: return 2;
        case CKEY_REVOKED: return 3;
        default: return 4;
        }
}

static void report(int r, const uint8_t *key, const char *err)
{
        size_t i;

        if (r == 0) {
                printf("ok ");
                for (i = 0; key && i < CKEY_KEY_SIZE; i++)
                        printf("%02x", key[i]);
                printf("\n");
        } else
                printf("%s %d %s\n", ckey_failure_name(ckey_classify(r)), r, err);
        fflush(stdout);
}

static struct ckey *open_or_die(const char *uri)
{
        struct ckey *k;
        char err[512] = "";
        int r = ckey_open(uri, &k, err, sizeof(err));

        if (r < 0) {
                report(r, NULL, err);
                quit(exit_code(r));
        }
        return k;
}

static size_t read_blob(const char *path, uint8_t *buf, size_t size)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, size);

        if (n < 0) {
                fprintf(stderr, "ckey-tool: cannot read %s: %m\n", path);
                quit(1);
        }
        close(fd);
        return (size_t)n;
}

/* Clears CKA_ENCRYPT on the AES key LABEL of token TOKEN. */
static int disable_key(const char *module, const char *token, const char *pin, const char *label)
{
        CK_FUNCTION_LIST *m = p11_kit_module_load(module, 0);
        CK_SLOT_ID slots[16];
        CK_ULONG n = 16, i, count = 0;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE key;
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE find[] = { { CKA_CLASS, &cls, sizeof(cls) },
                                { CKA_LABEL, (void *)label, strlen(label) } };
        CK_ATTRIBUTE off[] = { { CKA_ENCRYPT, &no, sizeof(no) } };
        CK_TOKEN_INFO ti;
        CK_RV rv;

        if (!m || p11_kit_module_initialize(m) != CKR_OK || m->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
                return -EIO;
        for (i = 0; i < n; i++)
                if (m->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
                    p11_kit_space_strlen(ti.label, sizeof(ti.label)) == strlen(token) &&
                    memcmp(ti.label, token, strlen(token)) == 0)
                        break;
        if (i == n || m->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK ||
            m->C_Login(s, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin)) != CKR_OK ||
            m->C_FindObjectsInit(s, find, 2) != CKR_OK || m->C_FindObjects(s, &key, 1, &count) != CKR_OK ||
            m->C_FindObjectsFinal(s) != CKR_OK || count != 1)
                return -ENOENT;
        rv = m->C_SetAttributeValue(s, key, off, 1);
        m->C_CloseSession(s);
        p11_kit_module_finalize(m);
        p11_kit_module_release(m);
        return rv == CKR_OK ? 0 : -EPERM;
}

/* A space-separated list from the environment, NULL-terminated. */
static char **env_list(const char *name)
{
        const char *v = getenv(name);
        char **l = calloc(65, sizeof(*l)), *copy, *tok, *save = NULL;
        size_t n = 0;

        if (!l || !(copy = strdup(v ? v : "")))
                quit(1);
        for (tok = strtok_r(copy, " ", &save); tok && n < 64; tok = strtok_r(NULL, " ", &save))
                l[n++] = tok;
        return l;
}

static uint64_t ms_arg(const char *s)
{
        return strtoull(s, NULL, 10) * 1000;
}

int main(int argc, char **argv)
{
        uint8_t key[CKEY_KEY_SIZE], blob[CKEY_BLOB_MAX], blob2[CKEY_BLOB_MAX];
        const char *cmd = argc > 1 ? argv[1] : "";
        const char *dir = getenv("DKM_TEST_P11_MODULES");
        char err[1024] = "";
        struct ckey *k, *k2;
        size_t len, len2, i;
        int r;

        if (dir && *dir)
                p11_kit_override_system_files(NULL, NULL, dir, dir, dir);
        if (ckey_allow_set(env_list("DKM_TEST_CKEY_MODULES"), env_list("DKM_TEST_CKEY_KEY_DIRS")) < 0)
                quit(1);

        if (strcmp(cmd, "redact") == 0 && argc == 3) {
                k = open_or_die(argv[2]);
                printf("%s\n", ckey_uri_redacted(k));
                quit(0);
        }
        if (strcmp(cmd, "disable") == 0 && argc == 6) {
                r = disable_key(argv[2], argv[3], argv[4], argv[5]);
                printf("%s\n", r == 0 ? "ok" : strerror(-r));
                quit(r == 0 ? 0 : 1);
        }
        if (strcmp(cmd, "wrap") == 0 && (argc == 6 || argc == 7)) {
                int fd;

                if (strlen(argv[4]) != 2 * CKEY_KEY_SIZE)
                        quit(1);
                for (i = 0; i < CKEY_KEY_SIZE; i++)
                        if (sscanf(argv[4] + 2 * i, "%2hhx", &key[i]) != 1)
                                quit(1);
                k = open_or_die(argv[2]);
                len = sizeof(blob);
                r = ckey_wrap(k, key, argv[3], argc == 7 ? ms_arg(argv[6]) : 0, blob, &len, err,
                              sizeof(err));
                if (r == 0) {
                        fd = open(argv[5], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                        if (fd < 0 || write(fd, blob, len) != (ssize_t)len || close(fd) < 0) {
                                fprintf(stderr, "ckey-tool: cannot write %s: %m\n", argv[5]);
                                quit(1);
                        }
                }
                report(r, NULL, err);
                quit(exit_code(r));
        }
        if (strcmp(cmd, "unwrap") == 0 && (argc == 5 || argc == 6)) {
                k = open_or_die(argv[2]);
                len = read_blob(argv[4], blob, sizeof(blob));
                r = ckey_unwrap(k, blob, len, argv[3], argc == 6 ? ms_arg(argv[5]) : 0, key, err,
                                sizeof(err));
                report(r, key, err);
                quit(exit_code(r));
        }
        if (strcmp(cmd, "loop") == 0 && argc == 6) {
                char line[64];

                k = open_or_die(argv[2]);
                len = read_blob(argv[4], blob, sizeof(blob));
                while (fgets(line, sizeof(line), stdin)) {
                        r = ckey_unwrap(k, blob, len, argv[3], ms_arg(argv[5]), key, err, sizeof(err));
                        report(r, key, err);
                }
                quit(0);
        }
        if (strcmp(cmd, "hedge") == 0 && argc == 9) {
                struct ckey_hedge_result res;
                uint64_t t0;

                k = open_or_die(argv[2]);
                k2 = open_or_die(argv[4]);
                len = read_blob(argv[3], blob, sizeof(blob));
                len2 = read_blob(argv[5], blob2, sizeof(blob2));
                t0 = now_mono_usec();
                r = ckey_unwrap_hedged(k, blob, len, k2, blob2, len2, argv[6], ms_arg(argv[7]),
                                       ms_arg(argv[8]), key, &res, err, sizeof(err));
                printf("winner=%d a=%d/%" PRIu64 "ms b=%d/%" PRIu64 "ms elapsed=%" PRIu64 "ms\n",
                       res.winner, res.err[0], res.latency_usec[0] / 1000, res.err[1],
                       res.latency_usec[1] / 1000, (now_mono_usec() - t0) / 1000);
                report(r, key, err);
                quit(exit_code(r));
        }
        fprintf(stderr, "usage: ckey-tool redact|wrap|unwrap|hedge|loop|disable ... (see the source)\n");
        quit(1);
}
