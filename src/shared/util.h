/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers shared by every part of dkm. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _public_ __attribute__((visibility("default")))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}
#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Turns a libc-style "-1 and errno" failure into -errno, never 0. */
static inline int negative_errno(void) { return errno > 0 ? -errno : -EIO; }

static inline void put_le16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static inline void put_le32(uint8_t *p, uint32_t v)
{
        p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
        put_le32(p, (uint32_t)v);
        put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
        return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Wipes memory in a way the compiler may not drop. */
void secure_wipe(void *p, size_t n);

/* An absolute path without "." or ".." components: what the administrator
 * named is what gets matched, not a parent reached through it. */
bool path_is_clean(const char *s);

/* The value of one hex digit (either case), -EINVAL for any other character. */
int unhexchar(char c);

/* Reads from fd until size bytes or end of file, retrying on EINTR;
 * *ret_len < size means end of file came first. */
int read_full(int fd, void *buf, size_t size, size_t *ret_len);

/* Monotonic and wall clocks in microseconds. */
uint64_t now_mono_usec(void);
uint64_t now_real_usec(void);
