/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <time.h>

#include "util.h"

void secure_wipe(void *p, size_t n)
{
        if (p && n)
                explicit_bzero(p, n);
}

int unhexchar(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

int read_full(int fd, void *buf, size_t size, size_t *ret_len)
{
        uint8_t *p = buf;
        size_t got = 0;

        while (got < size) {
                ssize_t n = read(fd, p + got, size - got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return negative_errno();
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        *ret_len = got;
        return 0;
}

static uint64_t clock_usec(clockid_t id)
{
        struct timespec ts;

        clock_gettime(id, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t now_mono_usec(void) { return clock_usec(CLOCK_MONOTONIC); }
uint64_t now_real_usec(void) { return clock_usec(CLOCK_REALTIME); }

bool path_is_clean(const char *s)
{
        if (s[0] != '/')
                return false;
        for (const char *c = s; *c; c++)
                if (c[0] == '/' && c[1] == '.' &&
                    (c[2] == '/' || !c[2] || (c[2] == '.' && (c[3] == '/' || !c[3]))))
                        return false;
        return true;
}
