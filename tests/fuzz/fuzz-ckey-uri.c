/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ckey_open() on arbitrary bytes: the file: parser and the pkcs11: checks
 * around p11-kit's parser.  A URI that opens has a redacted form without a
 * PIN that opens again to the same redacted form; one that does not open is
 * -EINVAL with a message.  Opening does no I/O, so this is safe to run.
 * ckey_check() then holds the module and files the URI names against
 * [policy] pkcs11_modules and key_dirs: it only resolves paths and opens
 * files read-only (never loads a module), and answers 0 or -EINVAL with a
 * message. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ckey/ckey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char text[4200], err[256], err2[256];
        struct ckey *k, *k2;
        const char *red;
        int r;

        static char *modules[] = { "/usr/lib/softhsm/libsofthsm2.so", "customer-a", NULL };
        static char *dirs[] = { "/nonexistent/dkm-fuzz-keys", "/etc/dkm/keys", NULL };
        static int allowed;

        if (size >= sizeof(text))
                return 0;
        if (!allowed++ && ckey_allow_set(modules, dirs) < 0)
                abort();
        memcpy(text, data, size);
        text[size] = '\0';

        err[0] = '\0';
        r = ckey_open(text, &k, err, sizeof(err));
        if (r < 0) {
                if ((r != -EINVAL || !err[0]) && r != -ENOMEM)
                        abort();
                return 0;
        }
        red = ckey_uri_redacted(k);
        if (!red)
                abort();
        /* The PIN attribute is gone (text that merely says "pin-value"
         * inside a path or an encoded label is fine). */
        for (const char *p = red; (p = strstr(p, "pin-value=")); p++)
                if (p > red && strchr(":;?&", p[-1]))
                        abort();
        err[0] = '\0';
        r = ckey_check(k, err, sizeof(err));
        if (r != 0 && r != -ENOMEM && (r != -EINVAL || !err[0]))
                abort();
        if (ckey_open(red, &k2, err2, sizeof(err2)) != 0)
                abort();
        if (strcmp(ckey_uri_redacted(k2), red) != 0)
                abort();
        ckey_free(k2);
        ckey_free(k);
        return 0;
}
