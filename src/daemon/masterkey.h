/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

#include "shared/keyring.h"

/* Reads the 32-byte master key from path (a file or a systemd credential)
 * straight into locked memory and hands it to the keyring as "dkm:master";
 * the file must not be readable by group or others. */
int masterkey_load(const char *path, keyring_serial_t ring, keyring_serial_t *ret,
                   char *err, size_t err_size);

/* Creates a new random master key at path (mode 0600) unless it exists:
 * 1 if created, 0 if it was there. */
int masterkey_create(const char *path, char *err, size_t err_size);
