/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The wire protocol parser on arbitrary bytes; what parses must rebuild to
 * the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct wire_msg m;
        struct wire_builder b;
        const char *why = NULL;
        char s[64];
        uint32_t u;

        if (wire_parse(data, size, &m, &why) < 0) {
                if (!why)
                        abort();
                return 0;
        }
        wire_get_string(&m, WIRE_TAG_POLICY, s, sizeof(s));
        wire_get_u32(&m, WIRE_TAG_GENERATION, &u);
        wire_begin(&b, m.type);
        for (size_t i = 0; i < m.n_fields; i++)
                wire_add(&b, m.fields[i].tag, m.fields[i].value, m.fields[i].len);
        if (wire_finish(&b) < 0 || b.len != size || memcmp(b.buf, data, size) != 0)
                abort();
        wire_builder_free(&b);
        return 0;
}
