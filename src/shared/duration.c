/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Durations for the configuration file and the command line: "50ms", "30m",
 * "1h30m".  Deliberately strict, because a typo here sets a key lifetime or
 * an access grant:
 *   - every number carries a unit (a bare "5" could mean seconds or minutes);
 *   - units appear at most once, largest first ("1h30m", not "30m1h");
 *   - no signs, no fractions, no spaces anywhere, no empty string;
 *   - overflow and values above the caller's maximum are -ERANGE.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MIN (60 * USEC_PER_SEC)
#define USEC_PER_HOUR (60 * USEC_PER_MIN)
#define USEC_PER_DAY (24 * USEC_PER_HOUR)
#define USEC_PER_WEEK (7 * USEC_PER_DAY)

/* Largest first; "min" before "m" and "ms" before "m" so the longest
 * spelling wins. */
static const struct unit {
        const char *name;
        uint64_t usec;
} units[] = {
        { "w", USEC_PER_WEEK },
        { "d", USEC_PER_DAY },
        { "h", USEC_PER_HOUR },
        { "min", USEC_PER_MIN },
        { "ms", USEC_PER_MSEC },
        { "m", USEC_PER_MIN },
        { "s", USEC_PER_SEC },
        { "us", 1 },
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

int parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !is_digit(*s))
                return -EINVAL;
        for (; is_digit(*s); s++) {
                unsigned d = (unsigned)(*s - '0');

                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        if (*s)
                return -EINVAL;
        *ret = v;
        return 0;
}

static const struct unit *match_unit(const char *p, size_t *ret_len)
{
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                size_t n = strlen(units[i].name);

                /* The unit must end where the next number (or the string)
                 * starts: "5mx" is not "5m" followed by junk. */
                if (strncmp(p, units[i].name, n) == 0 && (p[n] == '\0' || is_digit(p[n]))) {
                        *ret_len = n;
                        return &units[i];
                }
        }
        return NULL;
}

int duration_parse(const char *s, uint64_t max_usec, uint64_t *ret_usec)
{
        uint64_t total = 0, last_unit = UINT64_MAX;
        bool overflow = false;

        if (!s || !*s)
                return -EINVAL;

        while (*s) {
                uint64_t n = 0;
                const struct unit *u;
                size_t ulen;

                if (!is_digit(*s))
                        return -EINVAL;
                for (; is_digit(*s); s++) {
                        unsigned d = (unsigned)(*s - '0');

                        if (n > (UINT64_MAX - d) / 10)
                                overflow = true; /* keep checking the syntax */
                        else
                                n = n * 10 + d;
                }
                u = match_unit(s, &ulen);
                if (!u)
                        return -EINVAL;
                /* Strictly decreasing units; "min" and "m" are the same one. */
                if (u->usec >= last_unit)
                        return -EINVAL;
                last_unit = u->usec;
                s += ulen;

                if (n > UINT64_MAX / u->usec || total > UINT64_MAX - n * u->usec)
                        overflow = true;
                else
                        total += n * u->usec;
        }

        if (overflow || (max_usec && total > max_usec))
                return -ERANGE;
        *ret_usec = total;
        return 0;
}

const char *duration_format(uint64_t usec, char *buf, size_t size)
{
        /* Weeks are left out so that "30d" prints as it is usually written. */
        static const struct unit out[] = {
                { "d", USEC_PER_DAY }, { "h", USEC_PER_HOUR }, { "m", USEC_PER_MIN },
                { "s", USEC_PER_SEC }, { "ms", USEC_PER_MSEC }, { "us", 1 },
        };
        size_t pos = 0;

        if (!buf || size == 0)
                return "";
        buf[0] = '\0';
        if (usec == 0) {
                snprintf(buf, size, "0s");
                return buf;
        }
        for (size_t i = 0; i < sizeof(out) / sizeof(out[0]) && usec; i++) {
                uint64_t n = usec / out[i].usec;
                int w;

                if (n == 0)
                        continue;
                usec -= n * out[i].usec;
                w = snprintf(buf + pos, size - pos, "%llu%s", (unsigned long long)n, out[i].name);
                if (w < 0 || (size_t)w >= size - pos) {
                        buf[pos] = '\0'; /* whole components only */
                        break;
                }
                pos += (size_t)w;
        }
        return buf;
}
