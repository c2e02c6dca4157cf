/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Secrets live in one locked, page-aligned arena that is excluded from core
 * dumps (MADV_DONTDUMP) and wiped on free.  Locking the arena once avoids the
 * mlock-per-allocation trap where unlocking one secret unlocks its neighbour.
 * Thread-safe.
 */
#pragma once

#include <stddef.h>

/* Optional: size the arena before first use (default 1 MiB).  -EBUSY after
 * the first allocation. */
int secret_arena_init(size_t size);

/* Zeroed, locked memory, or NULL with errno set (ENOMEM when the arena is
 * full). Allocations are 16-byte aligned. */
void *secret_alloc(size_t size);

/* Wipes and returns the memory to the arena.  NULL is fine. */
void secret_free(void *p);

static inline void secret_freep(void *p) { secret_free(*(void **)p); }
#define _cleanup_secret_ __attribute__((cleanup(secret_freep)))

/* For tests: whether p lies inside the arena, and bytes in use. */
int secret_is_locked(const void *p);
size_t secret_in_use(void);
