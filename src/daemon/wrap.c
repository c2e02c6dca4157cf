/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>

#include "shared/secret.h"
#include "shared/util.h"
#include "wrap.h"

static const struct engine_ops *engine;
static pthread_key_t aead_key, keybuf_key;
static pthread_once_t aead_once = PTHREAD_ONCE_INIT;

static void aead_destroy(void *p)
{
        if (p && engine)
                engine->aead_free(p);
}

static void keybuf_destroy(void *p)
{
        secret_free(p);
}

static void aead_key_init(void)
{
        pthread_key_create(&aead_key, aead_destroy);
        pthread_key_create(&keybuf_key, keybuf_destroy);
}

int crypto_keybuf(uint8_t **ret)
{
        uint8_t *b;

        pthread_once(&aead_once, aead_key_init);
        b = pthread_getspecific(keybuf_key);
        if (!b) {
                b = secret_alloc(KEYBUF_SIZE);
                if (!b)
                        return -ENOMEM;
                pthread_setspecific(keybuf_key, b);
        }
        *ret = b;
        return 0;
}

void crypto_set_engine(const struct engine_ops *ops)
{
        engine = ops;
}

const struct engine_ops *crypto_engine(void)
{
        return engine;
}

int crypto_aead(struct engine_aead **ret)
{
        struct engine_aead *a;
        int r;

        if (!engine)
                return -ENXIO;
        pthread_once(&aead_once, aead_key_init);
        a = pthread_getspecific(aead_key);
        if (!a) {
                r = engine->aead_new(&a);
                if (r < 0)
                        return r;
                pthread_setspecific(aead_key, a);
        }
        *ret = a;
        return 0;
}

#define WRAP_AAD_SIZE (12 + 1 + 16 + 4)

static void wrap_aad(enum wrap_purpose purpose, const uint8_t policy_id[16], uint32_t generation,
                     uint8_t aad[WRAP_AAD_SIZE])
{
        memcpy(aad, "dkm-wrap-v1:", 12);
        aad[12] = (uint8_t)purpose;
        memcpy(aad + 13, policy_id, 16);
        put_le32(aad + 29, generation);
}

int key_wrap(const uint8_t kek[ENGINE_KEY_SIZE], enum wrap_purpose purpose,
             const uint8_t policy_id[16], uint32_t generation, const uint8_t key[ENGINE_KEY_SIZE],
             uint8_t out[WRAPPED_KEY_SIZE])
{
        uint8_t aad[WRAP_AAD_SIZE];
        struct engine_aead *a;
        int r;

        r = crypto_aead(&a);
        if (r < 0)
                return r;
        r = engine_random(out, ENGINE_NONCE_SIZE);
        if (r < 0)
                return r;
        wrap_aad(purpose, policy_id, generation, aad);
        return engine->seal(a, kek, out, aad, sizeof(aad), key, ENGINE_KEY_SIZE,
                            out + ENGINE_NONCE_SIZE);
}

int key_unwrap(const uint8_t kek[ENGINE_KEY_SIZE], enum wrap_purpose purpose,
               const uint8_t policy_id[16], uint32_t generation,
               const uint8_t in[WRAPPED_KEY_SIZE], uint8_t ret_key[ENGINE_KEY_SIZE])
{
        uint8_t aad[WRAP_AAD_SIZE];
        struct engine_aead *a;
        int r;

        r = crypto_aead(&a);
        if (r < 0)
                return r;
        wrap_aad(purpose, policy_id, generation, aad);
        return engine->open(a, kek, in, aad, sizeof(aad), in + ENGINE_NONCE_SIZE,
                            ENGINE_KEY_SIZE + ENGINE_TAG_SIZE, ret_key);
}
