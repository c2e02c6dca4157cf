/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The authenticated record envelope (store/store-auth.h) on arbitrary
 * bytes: whatever unseals must seal back to exactly the same bytes (one
 * encoding per record), and nothing else may pass. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds in tests/fuzz/corpus/fuzz-store-auth were sealed with this key
 * and name, so the fuzzer starts from values that verify. */
static const uint8_t key[STORE_AUTH_KEY_SIZE] = {
        0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
        0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *value, *again;
        size_t len, again_len;
        uint64_t seq;
        int r;

        if (size > STORE_VALUE_MAX)
                return 0;
        r = store_auth_unseal(key, "k", data, size, &value, &len, &seq);
        if (r != 0) {
                if (r != -ENODATA && r != -EBADMSG && r != -EKEYREJECTED && r != -ENOMEM)
                        abort();
                return 0;
        }
        if (value[len] != 0 || store_auth_seal(key, "k", value, len, seq, &again, &again_len) != 0 ||
            again_len != size || memcmp(again, data, size) != 0)
                abort();
        free(again);
        free(value);
        return 0;
}
