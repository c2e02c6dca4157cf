/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Parses durations such as "50ms", "30m", "8h", "30d", "1h30m", "90s", "2w".
 * Units: us, ms, s, m (or min), h, d, w; each at most once, largest first.
 * Every number needs a unit: a bare "5" is rejected (seconds or minutes?).
 * Rejects empty input, spaces, signs, fractions and unknown units with
 * -EINVAL; overflow and values above max_usec (0 = no limit) with -ERANGE. */
int duration_parse(const char *s, uint64_t max_usec, uint64_t *ret_usec);

/* Formats as e.g. "1h30m", "30d" or "50ms" (0 is "0s") into buf; the
 * result parses back to the same value.  Returns buf ("" when size is 0). */
const char *duration_format(uint64_t usec, char *buf, size_t size);

/* Parses a decimal unsigned integer with no sign and no trailing junk. */
int parse_u64(const char *s, uint64_t *ret);
