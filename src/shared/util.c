/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <time.h>

#include "util.h"

void secure_wipe(void *p, size_t n)
{
        if (p && n)
                explicit_bzero(p, n);
}

static uint64_t clock_usec(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t now_mono_usec(void) { return clock_usec(CLOCK_MONOTONIC); }
uint64_t now_real_usec(void) { return clock_usec(CLOCK_REALTIME); }
