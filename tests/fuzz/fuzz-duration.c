/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* duration_parse() and parse_u64() on arbitrary bytes; what parses must
 * format and parse back to the same value. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/duration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char text[256], buf[64];
        uint64_t v, back, n;
        int r;

        if (size >= sizeof(text))
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        r = duration_parse(text, 0, &v);
        if (r == 0) {
                duration_format(v, buf, sizeof(buf));
                if (duration_parse(buf, 0, &back) != 0 || back != v)
                        abort();
                /* A limit just below the value refuses it (0 is "none"). */
                if (v > 1 && duration_parse(text, v - 1, &back) != -ERANGE)
                        abort();
                if (v > 0 && (duration_parse(text, v, &back) != 0 || back != v))
                        abort();
        } else if (r != -EINVAL && r != -ERANGE)
                abort();

        r = parse_u64(text, &n);
        if (r != 0 && r != -EINVAL && r != -ERANGE)
                abort();
        return 0;
}
