/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ciphertext header parser and the context encoder on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct format_header h;
        const char *why = NULL;
        uint8_t out[FORMAT_HEADER_SIZE];

        if (format_parse(data, size, &h, &why) == 0) {
                /* What parses must write back to the same header bytes. */
                format_header_write(&h, out);
                if (memcmp(out, data, FORMAT_HEADER_SIZE) != 0)
                        abort();
        } else if (!why)
                abort();

        /* Split the rest into context pairs at NUL bytes. */
        {
                struct context_pair pairs[CONTEXT_MAX_PAIRS + 2];
                char *copy = malloc(size + 2), *p;
                size_t n = 0;
                uint8_t *enc;
                size_t enc_len;

                if (!copy)
                        return 0;
                memcpy(copy, data, size);
                copy[size] = copy[size + 1] = 0;
                p = copy;
                while (p < copy + size && n < CONTEXT_MAX_PAIRS + 2) {
                        pairs[n].key = p;
                        p += strlen(p) + 1;
                        pairs[n].value = p < copy + size + 1 ? p : copy + size;
                        p += strlen(pairs[n].value) + 1;
                        n++;
                }
                if (format_context_encode(pairs, n, &enc, &enc_len, &why) == 0)
                        free(enc);
                free(copy);
        }
        return 0;
}
