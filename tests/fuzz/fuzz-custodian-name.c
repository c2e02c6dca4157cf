/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* recovery_custodian_name() on arbitrary directory entry names (the
 * [recovery] custodians= directory is the administrator's, its names are
 * not dkm's): a name it accepts is NAME.pem with NAME of the allowed
 * characters, fits its buffer, and makes share file names without '/'. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/recovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char entry[300], name[RECOVERY_CUSTODIAN_NAME_MAX + 1];
        size_t n;

        /* A directory entry: at most NAME_MAX bytes, no NUL inside. */
        if (size >= sizeof(entry))
                return 0;
        memcpy(entry, data, size);
        entry[size] = 0;
        if (recovery_custodian_name(entry, name) != 0)
                return 0;
        n = strlen(name);
        if (n < 1 || n > RECOVERY_CUSTODIAN_NAME_MAX || name[0] == '.' || strchr(name, '/') ||
            strncmp(entry, name, n) != 0 || strcmp(entry + n, ".pem") != 0)
                abort();
        return 0;
}
