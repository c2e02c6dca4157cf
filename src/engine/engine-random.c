/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Random bytes, for every engine and above: a file of its own, below
 * engine.c, so that an engine can use it without calling back up into the
 * code that chooses engines. */
#include <sys/random.h>

#include "engine/engine.h"
#include "shared/util.h"

int engine_random(void *buf, size_t len)
{
        uint8_t *p = buf;

        if (!buf && len)
                return -EINVAL;
        while (len > 0) {
                ssize_t n = getrandom(p, len, 0);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                /* Large requests come back in pieces (at most 32 MiB each). */
                p += n;
                len -= (size_t)n;
        }
        return 0;
}
