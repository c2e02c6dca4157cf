/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shamir's secret sharing over GF(2^8): the one place that calls libgfshare
 * (Debian's libgfshare-dev).  Share numbers are 1..n (the x coordinate);
 * each share is as long as the secret.  Combining fewer than the threshold,
 * or a wrong share, gives a wrong secret without any error: callers check
 * the result against a check value.  Everything returns 0 or -errno.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Splits secret (len bytes) into n shares, any k of which rebuild it:
 * share i (number i + 1) goes to ret_shares + i * len.  2 <= k <= n <= 255
 * (-EINVAL otherwise); the coefficients come from getrandom() (-EIO when
 * it fails).  On failure ret_shares is wiped. */
int shamir_split(const uint8_t *secret, size_t len, unsigned n, unsigned k, uint8_t *ret_shares);

/* Rebuilds the secret from count shares: numbers[i] is the number of
 * shares[i], each len bytes; numbers distinct and non-zero (-EINVAL). */
int shamir_combine(const uint8_t *const *shares, const uint8_t *numbers, unsigned count, size_t len,
                   uint8_t *ret_secret);
