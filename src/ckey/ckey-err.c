/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The error helper of the Customer Key files, below ckey.c and the
 * providers alike, so that a provider need not call up into ckey.c. */
#include <stdarg.h>
#include <stdio.h>

#include "ckey/ckey-provider.h"

void ckey_err(char *err, size_t err_size, const char *fmt, ...)
{
        va_list ap;

        if (!err || err_size == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
}
