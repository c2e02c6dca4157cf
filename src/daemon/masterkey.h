/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "shared/keyring.h"

#define MASTERKEY_RECORD_KEY_SIZE 32

/* Reads the 32-byte master key from path (a file or a systemd credential)
 * straight into locked memory and hands it to the keyring as "dkm:master";
 * the file must not be readable by group or others.  With ret_record_key
 * (locked memory of MASTERKEY_RECORD_KEY_SIZE bytes), also derives the key
 * that authenticates store records (masterkey_derive_record_key). */
int masterkey_load(const char *path, keyring_serial_t ring, keyring_serial_t *ret,
                   uint8_t *ret_record_key, char *err, size_t err_size);

/* HKDF-SHA256 of the 32-byte master key with a label of its own: the key
 * only dkm nodes hold that MACs store records (store/store-auth.h). */
int masterkey_derive_record_key(const uint8_t *master, uint8_t ret[MASTERKEY_RECORD_KEY_SIZE]);

/* Creates a new random master key at path (mode 0600) unless it exists:
 * 1 if created, 0 if it was there. */
int masterkey_create(const char *path, char *err, size_t err_size);
