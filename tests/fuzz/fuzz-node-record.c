/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* node_record_decode() on arbitrary bytes (another node's heartbeat record
 * as read from the store); what decodes must encode and decode the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/nodes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct node_record r, again;
        char *json = NULL;

        if (node_record_decode(data, size, &r) < 0)
                return 0;
        if (!config_node_name_valid(r.name) || strlen(r.version) >= sizeof(r.version) ||
            strlen(r.engine) >= sizeof(r.engine) || r.applied_revision > INT64_MAX ||
            r.heartbeat_usec > INT64_MAX)
                abort();
        if (node_record_encode(&r, &json) < 0)
                abort();
        if (node_record_decode((const uint8_t *)json, strlen(json), &again) < 0 ||
            memcmp(&r, &again, sizeof(r)) != 0)
                abort();
        free(json);
        return 0;
}
