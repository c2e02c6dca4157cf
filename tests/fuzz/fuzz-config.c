/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* config_parse_string() on arbitrary bytes (as a NUL-terminated copy). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct dkm_config c;
        char err[256];
        char *text;

        if (size > 64 * 1024)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        if (config_parse_string(text, "fuzz.conf", &c, err, sizeof(err)) == 0) {
                /* What the daemon relies on after a successful load. */
                if (!c.socket || c.socket[0] != '/' || !c.state_dir || !c.master_key ||
                    c.master_key[0] != '/' || c.approvals_required < 1 || c.max_uses < 1 ||
                    c.max_uses > (UINT64_C(1) << 32) || c.users_gid == (gid_t)-1 ||
                    (c.node_name && !config_node_name_valid(c.node_name)) ||
                    c.node_ttl_usec < 2000000 || c.node_ttl_usec > 3600000000ULL ||
                    c.stream_threads > CONFIG_STREAM_THREADS_MAX)
                        abort();
                config_free(&c);
        } else if (!memchr(err, '\0', sizeof(err)) || err[0] == '\0') {
                abort(); /* every error says something */
        }
        free(text);
        return 0;
}
