/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The openssl engine: AES-256-GCM through libcrypto EVP.  This file is the one
 * place that turns OpenSSL's 1/0 convention into negative errno.
 */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "engine/engine.h"
#include "shared/util.h"

/* GCM allows 2^39 - 256 bits of plaintext per nonce. */
#define GCM_MAX_PLAINTEXT ((((uint64_t)1) << 36) - 32)
/* EVP takes int lengths; larger inputs go in pieces of this size. */
#define EVP_CHUNK ((size_t)1 << 30)

struct engine_aead {
        const struct engine_ops *ops; /* guards against mixing engines */
        EVP_CIPHER_CTX *ctx;
        bool have_cipher;             /* ctx already holds the cipher */
};

static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *gcm_cipher;

static void fetch_cipher(void)
{
        /* Fetched once and kept for the life of the process: fetching per
         * call takes a global lock in libcrypto. */
        gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        ERR_clear_error();
}

static const EVP_CIPHER *cipher(void)
{
        pthread_once(&fetch_once, fetch_cipher);
        return gcm_cipher;
}

static pthread_once_t kdf_once = PTHREAD_ONCE_INIT;
static EVP_KDF *hkdf;

static void fetch_kdf(void)
{
        hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        ERR_clear_error();
}

static int openssl_fail(int r)
{
        /* Leave the thread's error queue clean: we report through errno. */
        ERR_clear_error();
        return r;
}

static int openssl_aead_new(struct engine_aead **ret)
{
        struct engine_aead *a;

        if (!cipher())
                return -ENOTSUP;
        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->ops = &engine_openssl_ops;
        a->ctx = EVP_CIPHER_CTX_new();
        if (!a->ctx) {
                free(a);
                return openssl_fail(-ENOMEM);
        }
        *ret = a;
        return 0;
}

static void openssl_aead_free(struct engine_aead *a)
{
        if (!a)
                return;
        /* Frees the provider context, which cleanses the key schedule. */
        EVP_CIPHER_CTX_free(a->ctx);
        free(a);
}

/* Keys the context for one message; forget() takes the key out again when
 * the message is done.  The caller's key bytes are not copied anywhere else. */
static int start(struct engine_aead *a, int enc, const uint8_t *key, const uint8_t *nonce)
{
        const EVP_CIPHER *c = a->have_cipher ? NULL : cipher();

        if (EVP_CipherInit_ex2(a->ctx, c, key, nonce, enc, NULL) != 1)
                return openssl_fail(-EIO);
        a->have_cipher = true;
        return 0;
}

/* An AES-256 key schedule begins with the key itself, and GCM's hash key is
 * derived from it: once a message is done, the context is keyed with zeros,
 * so that the last key a thread used does not stay in dkmd's heap until its
 * next operation (a memory scan of an idle dkmd found the policy key there). */
static void forget(struct engine_aead *a)
{
        static const uint8_t zero[ENGINE_KEY_SIZE];

        if (EVP_CipherInit_ex2(a->ctx, NULL, zero, NULL, -1, NULL) != 1)
                ERR_clear_error();
}

static int update(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in, size_t len)
{
        while (len > 0) {
                size_t n = len < EVP_CHUNK ? len : EVP_CHUNK;
                int outl;

                if (EVP_CipherUpdate(ctx, out, &outl, in, (int)n) != 1 || (out && (size_t)outl != n))
                        return openssl_fail(-EIO);
                in += n;
                if (out)
                        out += n;
                len -= n;
        }
        return 0;
}

static int check_args(const struct engine_aead *a, const uint8_t *key, const uint8_t *nonce,
                      const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t in_len)
{
        if (!a || a->ops != &engine_openssl_ops || !key || !nonce)
                return -EINVAL;
        if ((!aad && aad_len) || (!in && in_len))
                return -EINVAL;
        return 0;
}

static int openssl_seal(struct engine_aead *a, const uint8_t key[ENGINE_KEY_SIZE],
                        const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t in_len, uint8_t *out)
{
        int outl, r;

        r = check_args(a, key, nonce, aad, aad_len, in, in_len);
        if (r < 0)
                return r;
        if (!out)
                return -EINVAL;
        if (in_len > GCM_MAX_PLAINTEXT)
                return -EMSGSIZE;

        r = start(a, 1, key, nonce);
        if (r < 0)
                return r;
        r = update(a->ctx, NULL, aad, aad_len);
        if (r < 0)
                goto fail;
        r = update(a->ctx, out, in, in_len);
        if (r < 0)
                goto fail;
        if (EVP_EncryptFinal_ex(a->ctx, out + in_len, &outl) != 1 ||
            EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_GET_TAG, ENGINE_TAG_SIZE, out + in_len) != 1) {
                r = openssl_fail(-EIO);
                goto fail;
        }
        forget(a);
        return 0;
fail:
        forget(a);
        secure_wipe(out, in_len + ENGINE_TAG_SIZE);
        return r;
}

static int openssl_open(struct engine_aead *a, const uint8_t key[ENGINE_KEY_SIZE],
                        const uint8_t nonce[ENGINE_NONCE_SIZE], const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t in_len, uint8_t *out)
{
        size_t ct_len;
        int outl, r;

        r = check_args(a, key, nonce, aad, aad_len, in, in_len);
        if (r < 0)
                return r;
        if (in_len < ENGINE_TAG_SIZE)
                return -EINVAL;
        ct_len = in_len - ENGINE_TAG_SIZE;
        if (!out && ct_len)
                return -EINVAL;
        if (ct_len > GCM_MAX_PLAINTEXT)
                return -EMSGSIZE;

        r = start(a, 0, key, nonce);
        if (r < 0)
                return r;
        /* OpenSSL copies the tag; the cast only satisfies its void * API. */
        if (EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_SET_TAG, ENGINE_TAG_SIZE,
                                (void *)(uintptr_t)(in + ct_len)) != 1) {
                r = openssl_fail(-EIO);
                goto fail;
        }
        r = update(a->ctx, NULL, aad, aad_len);
        if (r < 0)
                goto fail;
        r = update(a->ctx, out, in, ct_len);
        if (r < 0)
                goto fail;
        if (EVP_DecryptFinal_ex(a->ctx, out ? out + ct_len : NULL, &outl) != 1) {
                r = openssl_fail(-EBADMSG);
                goto fail;
        }
        forget(a);
        return 0;
fail:
        forget(a);
        /* Never hand out plaintext that did not authenticate. */
        secure_wipe(out, ct_len);
        return r;
}

int engine_hkdf_sha256(const uint8_t *ikm, size_t ikm_len, const uint8_t *salt, size_t salt_len,
                       const uint8_t *info, size_t info_len, uint8_t *out, size_t out_len)
{
        OSSL_PARAM params[5], *p = params;
        EVP_KDF_CTX *k;
        int ok;

        if (!ikm || !ikm_len || (!salt && salt_len) || (!info && info_len) || !out || !out_len ||
            out_len > 255 * 32)
                return -EINVAL;
        /* OSSL_PARAM takes void *; libcrypto only reads these.  An empty
         * salt is left out: HKDF then uses zeros, as RFC 5869 says. */
        *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)ikm, ikm_len);
        if (salt_len)
                *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt,
                                                         salt_len);
        if (info_len)
                *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info,
                                                         info_len);
        *p = OSSL_PARAM_construct_end();
        pthread_once(&kdf_once, fetch_kdf);
        if (!hkdf)
                return -ENOTSUP;
        k = EVP_KDF_CTX_new(hkdf);
        if (!k)
                return openssl_fail(-ENOMEM);
        ok = EVP_KDF_derive(k, out, out_len, params);
        EVP_KDF_CTX_free(k);  /* cleanses its copy of the key */
        if (ok != 1) {
                secure_wipe(out, out_len);
                return openssl_fail(-EIO);
        }
        return 0;
}

int engine_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t data_len,
                       uint8_t out[ENGINE_HMAC_SIZE])
{
        unsigned int n = 0;

        if (!key || !key_len || key_len > INT_MAX || (!data && data_len) || !out)
                return -EINVAL;
        /* HMAC() keeps no state of its own beyond the call. */
        if (!HMAC(EVP_sha256(), key, (int)key_len, data ? data : (const uint8_t *)"", data_len, out, &n) ||
            n != ENGINE_HMAC_SIZE) {
                secure_wipe(out, ENGINE_HMAC_SIZE);
                return openssl_fail(-EIO);
        }
        return 0;
}

/* Test case 13 of the GCM spec: zero key, zero nonce, empty input. */
static const uint8_t kat_tag[ENGINE_TAG_SIZE] = {
        0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9,
        0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b,
};

static int openssl_probe(char *ret_reason, size_t reason_size)
{
        static const uint8_t zero[ENGINE_KEY_SIZE];
        struct engine_aead *a;
        uint8_t tag[ENGINE_TAG_SIZE];
        int r;

        if (!cipher()) {
                snprintf(ret_reason, reason_size,
                         "libcrypto: AES-256-GCM cannot be fetched (OpenSSL default provider not available)");
                return -ENOTSUP;
        }
        r = openssl_aead_new(&a);
        if (r < 0) {
                snprintf(ret_reason, reason_size, "libcrypto: cannot allocate a cipher context: %s",
                         strerror(-r));
                return r;
        }
        r = openssl_seal(a, zero, zero, NULL, 0, NULL, 0, tag);
        openssl_aead_free(a);
        if (r < 0 || memcmp(tag, kat_tag, sizeof(tag)) != 0) {
                snprintf(ret_reason, reason_size, "libcrypto: AES-256-GCM known-answer test failed");
                return r < 0 ? r : -EIO;
        }
        return 0;
}

static const char *cpu_note(void)
{
#if defined(__x86_64__) || defined(__i386__)
        /* OpenSSL 3 no longer exports OPENSSL_ia32cap_P; ask the CPU, and say
         * when the OPENSSL_ia32cap variable may have masked the result. */
        if (!__builtin_cpu_supports("aes") || !__builtin_cpu_supports("pclmul"))
                return " (no aes-ni)";
        if (getenv("OPENSSL_ia32cap"))
                return " (aes-ni in cpu; OPENSSL_ia32cap set)";
        return " (aes-ni)";
#else
        return "";
#endif
}

static int openssl_driver(char *ret, size_t size)
{
        const char *v = OpenSSL_version(OPENSSL_VERSION);  /* "OpenSSL 3.0.17 1 Jul 2025" */
        const char *sp, *note = cpu_note();
        size_t n;

        if (!ret || size == 0)
                return -EINVAL;
        /* Short form: the first two words. */
        sp = strchr(v, ' ');
        sp = sp ? strchr(sp + 1, ' ') : NULL;
        n = sp ? (size_t)(sp - v) : strlen(v);
        if (n + strlen(note) >= size)
                return -ENOBUFS;
        snprintf(ret, size, "%.*s%s", (int)n, v, note);
        return 0;
}

const struct engine_ops engine_openssl_ops = {
        .name = "openssl",
        .probe = openssl_probe,
        .driver = openssl_driver,
        .aead_new = openssl_aead_new,
        .aead_free = openssl_aead_free,
        .seal = openssl_seal,
        .open = openssl_open,
};
