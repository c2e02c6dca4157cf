/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "recovery-share.h"

uint32_t recovery_share_crc32(const void *buf, size_t len)
{
        const uint8_t *p = buf;
        uint32_t crc = 0xffffffffu;

        /* Bitwise: a share is a hundred bytes, read once. */
        for (size_t i = 0; i < len; i++) {
                crc ^= p[i];
                for (int b = 0; b < 8; b++)
                        crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
        }
        return ~crc;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1; /* upper case too: one spelling per share, so the checksum tells */
}

/* Exactly 2 * n lower-case hex digits. */
static bool unhex(const char *s, size_t len, uint8_t *out, size_t n)
{
        if (len != 2 * n)
                return false;
        for (size_t i = 0; i < n; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return false;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return true;
}

/* A decimal from 1 to 99, no sign, no leading zero. */
static bool small_number(const char *s, size_t len, unsigned *ret)
{
        if (len < 1 || len > 2 || s[0] == '0')
                return false;
        *ret = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                *ret = *ret * 10 + (unsigned)(s[i] - '0');
        }
        return true;
}

static bool in_range(unsigned threshold, unsigned shares, unsigned index)
{
        return threshold >= 2 && threshold <= shares && shares <= RECOVERY_SHARES_MAX && index >= 1 &&
               index <= shares;
}

int recovery_share_parse(const char *text, size_t len, struct recovery_share *ret)
{
        static const size_t prefix_len = sizeof(RECOVERY_SHARE_PREFIX) - 1;
        const char *field[8];
        size_t flen[8], n = 0, start;
        struct recovery_share s;
        unsigned version;
        uint32_t crc = 0;
        uint8_t crcb[4];

        if (!text || !ret)
                return -EINVAL;
        if (len > 0 && text[len - 1] == '\n')
                len--;
        if (len > 0 && text[len - 1] == '\r')
                len--;
        if (len < prefix_len || memcmp(text, RECOVERY_SHARE_PREFIX, prefix_len) != 0)
                return -EBADMSG;
        /* Split on ':' into exactly eight fields; the first is "dkm-share-V". */
        start = 0;
        for (size_t i = 0; i <= len; i++) {
                if (i < len && text[i] != ':')
                        continue;
                if (n == 8)
                        return -EBADMSG;
                field[n] = text + start;
                flen[n] = i - start;
                n++;
                start = i + 1;
        }
        if (!small_number(field[0] + prefix_len, flen[0] - prefix_len, &version))
                return -EBADMSG;
        if (version != RECOVERY_SHARE_VERSION)
                return -EPROTONOSUPPORT;
        if (n != 8)
                return -EBADMSG;
        memset(&s, 0, sizeof(s));
        if (!unhex(field[1], flen[1], s.install_id, sizeof(s.install_id)) ||
            !unhex(field[2], flen[2], s.set_id, sizeof(s.set_id)) ||
            !small_number(field[3], flen[3], &s.threshold) || !small_number(field[4], flen[4], &s.shares) ||
            !small_number(field[5], flen[5], &s.index) ||
            !unhex(field[6], flen[6], s.value, sizeof(s.value)) || !unhex(field[7], flen[7], crcb, 4))
                return -EBADMSG;
        for (int i = 0; i < 4; i++)
                crc = crc << 8 | crcb[i];
        /* Checked before the ranges: a damaged digit reads as damage. */
        if (crc != recovery_share_crc32(text, (size_t)(field[7] - 1 - text)))
                return -EILSEQ;
        if (!in_range(s.threshold, s.shares, s.index))
                return -ERANGE;
        *ret = s;
        return 0;
}

int recovery_share_format(const struct recovery_share *s, char *buf, size_t size)
{
        char hex[2 * RECOVERY_SHARE_VALUE_SIZE + 1], id[2 * RECOVERY_INSTALL_ID_SIZE + 1],
                set[2 * RECOVERY_SET_ID_SIZE + 1];
        int n;

        if (!s || !buf || !in_range(s->threshold, s->shares, s->index))
                return -EINVAL;
        for (size_t i = 0; i < sizeof(s->value); i++)
                sprintf(hex + 2 * i, "%02x", s->value[i]);
        for (size_t i = 0; i < sizeof(s->install_id); i++)
                sprintf(id + 2 * i, "%02x", s->install_id[i]);
        for (size_t i = 0; i < sizeof(s->set_id); i++)
                sprintf(set + 2 * i, "%02x", s->set_id[i]);
        n = snprintf(buf, size, RECOVERY_SHARE_PREFIX "%d:%s:%s:%u:%u:%u:%s:", RECOVERY_SHARE_VERSION, id,
                     set, s->threshold, s->shares, s->index, hex);
        if (n < 0 || (size_t)n + 9 > size) {
                explicit_bzero(hex, sizeof(hex));
                if (size)
                        explicit_bzero(buf, size);
                return -ENOBUFS;
        }
        snprintf(buf + n, size - (size_t)n, "%08x", recovery_share_crc32(buf, (size_t)n - 1));
        explicit_bzero(hex, sizeof(hex));
        return 0;
}

const char *recovery_share_strerror(int r)
{
        switch (r) {
        case -EPROTONOSUPPORT:
                return "a dkm recovery share of another format version (this dkmd reads dkm-share-1)";
        case -EBADMSG:
                return "not a dkm recovery share (expected one line dkm-share-1:...)";
        case -EILSEQ:
                return "the share is damaged: its checksum does not match (a mistyped or altered character)";
        case -ERANGE:
                return "threshold, shares or index out of range";
        default:
                return strerror(-r);
        }
}
