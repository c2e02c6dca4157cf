/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A VM test's eyes inside dkmd (LD_PRELOAD): what code running in dkmd
 * itself, possessing its keyring, can read of the keys cached there.  Only
 * the VM test loads it, into a dkmd it started.
 *
 * With DKM_KEYPROBE_DIR set, a thread waits for DIR/go; then it lists every
 * key of dkmd's keyring "dkm:dkmd" (in the process keyring, so possessed by
 * this thread as by any of dkmd), tries to read each, and writes one line
 * per key to DIR/out:
 *     KEYPROBE <description> type=<type> read=<bytes>|<errno name> serial=<n>
 * (never the bytes themselves), then waits for the next DIR/go.  DIR/revoke
 * instead revokes every generation key ("dkm:gen:...") there, as a
 * reviewer cutting one short would, and lists them the same way.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyutils.h>

static char dir[256];

static void scan(int revoke)
{
        char tmp[300], out[300];
        key_serial_t ring, *keys = NULL;
        long n;
        FILE *f;

        snprintf(tmp, sizeof(tmp), "%s/out.tmp", dir);
        snprintf(out, sizeof(out), "%s/out", dir);
        f = fopen(tmp, "we");
        if (!f)
                return;
        ring = (key_serial_t)keyctl_search(KEY_SPEC_PROCESS_KEYRING, "keyring", "dkm:dkmd", 0);
        n = ring < 0 ? -1 : keyctl_read_alloc(ring, (void **)&keys);
        if (n < 0)
                fprintf(f, "KEYPROBE-ERROR no keyring dkm:dkmd: %s\n", strerror(errno));
        for (long i = 0; n > 0 && i < n / (long)sizeof(key_serial_t); i++) {
                char *desc = NULL, *type, *d;
                void *payload = NULL;
                long m;

                if (keyctl_describe_alloc(keys[i], &desc) < 0)
                        continue;
                /* "type;uid;gid;perm;description" */
                type = desc;
                d = strrchr(desc, ';');
                *strchr(desc, ';') = 0;
                if (revoke && d && strncmp(d + 1, "dkm:gen:", 8) == 0)
                        fprintf(f, "KEYPROBE-REVOKE %s serial=%d: %s\n", d + 1, keys[i],
                                keyctl_revoke(keys[i]) == 0 ? "revoked" : strerror(errno));
                m = keyctl_read_alloc(keys[i], &payload);
                if (m >= 0) {
                        fprintf(f, "KEYPROBE %s type=%s read=%ld serial=%d\n", d ? d + 1 : "?", type, m,
                                keys[i]);
                        explicit_bzero(payload, (size_t)m);
                        free(payload);
                } else {
                        fprintf(f, "KEYPROBE %s type=%s read=%s serial=%d\n", d ? d + 1 : "?", type,
                                errno == EOPNOTSUPP ? "EOPNOTSUPP" : errno == EACCES ? "EACCES"
                                                                                      : strerror(errno),
                                keys[i]);
                }
                free(desc);
        }
        free(keys);
        fclose(f);
        rename(tmp, out);
}

static void *probe_thread(void *arg)
{
        char go[300], revoke[300];

        (void)arg;
        snprintf(go, sizeof(go), "%s/go", dir);
        snprintf(revoke, sizeof(revoke), "%s/revoke", dir);
        for (;;) {
                if (unlink(go) == 0)
                        scan(0);
                if (unlink(revoke) == 0)
                        scan(1);
                usleep(100 * 1000);
        }
        return NULL;
}

__attribute__((constructor)) static void keyprobe_start(void)
{
        const char *d = getenv("DKM_KEYPROBE_DIR");
        pthread_t t;

        if (!d || !*d || strlen(d) >= sizeof(dir))
                return;
        snprintf(dir, sizeof(dir), "%s", d);
        /* A process keyring lives in the credentials of the thread that
         * makes it, and threads started later share them: make it now,
         * before this thread starts, so that it is the one dkmd then finds
         * and links its keyring into. */
        if (keyctl_get_keyring_ID(KEY_SPEC_PROCESS_KEYRING, 1) < 0)
                return;
        if (pthread_create(&t, NULL, probe_thread, NULL) == 0)
                pthread_detach(t);
}
