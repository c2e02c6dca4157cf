/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One recovery share of the master key, as a custodian keeps it: one
 * printable line (README.md, "Recovery share format"):
 *
 *   dkm-share-1:<installation id>:<set id>:<threshold>:<shares>:<index>:<value>:<crc>
 *
 * installation id: 16 lower-case hex digits; set id: 8 (the share set made
 * by one --init); threshold, shares, index: decimal, 2 <= threshold <=
 * shares <= 16, 1 <= index <= shares; value: 64 lower-case hex digits (the
 * Shamir share of the 32-byte master key); crc: 8 lower-case hex digits,
 * CRC-32 (IEEE 802.3, as zlib's crc32()) of everything before the last ':'.
 * A pure parser: no I/O, no allocation.  Everything returns 0 or -errno.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define RECOVERY_SHARE_PREFIX "dkm-share-"
#define RECOVERY_SHARE_VERSION 1
#define RECOVERY_SHARE_VALUE_SIZE 32
#define RECOVERY_INSTALL_ID_SIZE 8
#define RECOVERY_SET_ID_SIZE 4
#define RECOVERY_SHARES_MAX 16
/* The longest line recovery_share_format() writes, with its NUL. */
#define RECOVERY_SHARE_TEXT_MAX 128

struct recovery_share {
        uint8_t install_id[RECOVERY_INSTALL_ID_SIZE];
        uint8_t set_id[RECOVERY_SET_ID_SIZE];
        unsigned threshold, shares, index;
        uint8_t value[RECOVERY_SHARE_VALUE_SIZE];
};

/* Parses text (len bytes; one trailing "\n" or "\r\n" allowed) into *ret,
 * written only on success:
 *   -EPROTONOSUPPORT  a dkm share of another format version
 *   -EBADMSG          not a dkm share, or a malformed one
 *   -EILSEQ           well formed, but the checksum does not match: damaged
 *   -ERANGE           threshold, shares or index out of range */
int recovery_share_parse(const char *text, size_t len, struct recovery_share *ret);

/* The line for *s, without a newline; -EINVAL when *s is out of range. */
int recovery_share_format(const struct recovery_share *s, char *buf, size_t size);

/* One short sentence for an error of recovery_share_parse(). */
const char *recovery_share_strerror(int r);

/* CRC-32 (IEEE 802.3, reflected, as zlib). */
uint32_t recovery_share_crc32(const void *buf, size_t len);
