/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seen file (<state_dir>/store-seen, store/store-auth.h) on arbitrary
 * bytes: it is read at every start, and a damaged one must neither crash
 * dkmd nor leave it unable to go on.  Whatever it holds, the revision check
 * answers 0 or -ESTALE; once an older store is accepted, the file dkmd
 * writes back reads again without a refusal (one high-water mark, kept). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store-auth.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t key[STORE_AUTH_KEY_SIZE] = { 7 };

static struct store *open_seen(const char *path)
{
        struct store *inner = NULL, *s = NULL;

        if (store_open(&store_sqlite_ops, ":memory:", &inner) < 0 ||
            store_auth_open(inner, key, path, NULL, NULL, &s) < 0)
                abort();
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char dir[] = "/tmp/dkm-fuzz-seen-XXXXXX", path[64];
        uint64_t rev, high;
        char err[1024];
        struct store *s;
        FILE *f;
        int r;

        if (!path[0]) {
                if (!mkdtemp(dir))
                        abort();
                snprintf(path, sizeof(path), "%s/store-seen", dir);
        }
        if (size > 65536)
                return 0;
        f = fopen(path, "we");
        if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
                abort();

        s = open_seen(path);
        r = store_auth_check_revision(s, false, &rev, &high, err, sizeof(err));
        if (r != 0 && r != -ESTALE)
                abort();
        if (r == -ESTALE && (store_auth_check_revision(s, true, &rev, &high, err, sizeof(err)) != 0 ||
                             rev >= high))
                abort();
        store_close(s); /* writes the file back when it changed */

        s = open_seen(path);
        if (store_auth_check_revision(s, false, &rev, &high, err, sizeof(err)) != 0)
                abort();
        (void)store_auth_lost(s, "policies/p/gens/0000000001");
        store_close(s);
        return 0;
}
