/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Key wrapping: AES-256-GCM through the engine, with AAD that binds the
 * wrapped key to its purpose, its policy and its generation, so a wrapped
 * key copied to another slot of the store does not unwrap.
 */
#pragma once

#include <stdint.h>

#include "engine/engine.h"

#define WRAPPED_KEY_SIZE (ENGINE_NONCE_SIZE + ENGINE_KEY_SIZE + ENGINE_TAG_SIZE)

enum wrap_purpose {
        WRAP_POLICY_KEY,     /* policy key under the master key */
        WRAP_GENERATION_KEY, /* generation key under the policy key */
        WRAP_AVAILABILITY_KEY, /* availability key under the master key */
        WRAP_POLICY_KEY_AVAILABILITY, /* policy key under the availability key */
        WRAP_PREVIOUS_POLICY_KEY, /* the previous policy key under the current one, while a
                                   * rekey re-wraps the generations (generation field: its
                                   * key version) */
        WRAP_RECOVERY_MASTER, /* the master key under a share set's recovery key (recovery.h):
                               * policy id field = installation id (8) || set id (4) || 4
                               * zero bytes, generation 0 */
};

/* The engine serving this daemon, and a per-thread AEAD transform of it. */
void crypto_set_engine(const struct engine_ops *ops);
const struct engine_ops *crypto_engine(void);
int crypto_aead(struct engine_aead **ret);
/* Per-thread scratch space for two keys, in the locked secret arena; the
 * caller wipes it after each use. */
int crypto_keybuf(uint8_t **ret);
#define KEYBUF_SIZE (2 * ENGINE_KEY_SIZE)

int key_wrap(const uint8_t kek[ENGINE_KEY_SIZE], enum wrap_purpose purpose,
             const uint8_t policy_id[16], uint32_t generation, const uint8_t key[ENGINE_KEY_SIZE],
             uint8_t out[WRAPPED_KEY_SIZE]);
/* -EBADMSG when the wrapping key is wrong or the record was altered. */
int key_unwrap(const uint8_t kek[ENGINE_KEY_SIZE], enum wrap_purpose purpose,
               const uint8_t policy_id[16], uint32_t generation,
               const uint8_t in[WRAPPED_KEY_SIZE], uint8_t ret_key[ENGINE_KEY_SIZE]);
