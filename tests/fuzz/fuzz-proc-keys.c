/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* keyring_proc_parse_line() on arbitrary bytes: a line that parses has a
 * serial, a known state and, when live, a range that is not upside down. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/keyring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char line[512];
        struct keyring_proc_entry e;
        int r;

        if (size >= sizeof(line))
                return 0;
        memcpy(line, data, size);
        line[size] = '\0';

        r = keyring_proc_parse_line(line, &e);
        if (r == 0) {
                if (e.serial <= 0)
                        abort();
                if (e.state != 0 && e.state != -EKEYEXPIRED && e.state != -EKEYREVOKED && e.state != -ENOKEY)
                        abort();
                if (e.state == 0 && (e.min_sec > e.max_sec || (e.min_sec == 0) != (e.max_sec == 0)))
                        abort();
        } else if (r != -EBADMSG)
                abort();
        return 0;
}
