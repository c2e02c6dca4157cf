/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The store's policy and generation records on arbitrary bytes: what
 * decodes must encode and decode back to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/records.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct policy_record p, pb;
        struct gen_record g, gb;
        char *json;

        memset(&p, 0, sizeof(p));
        if (policy_record_decode(data, size, &p) == 0) {
                if (policy_record_encode(&p, &json) != 0)
                        abort();
                memset(&pb, 0, sizeof(pb));
                if (policy_record_decode((const uint8_t *)json, strlen(json), &pb) != 0 ||
                    strcmp(p.id, pb.id) || strcmp(p.name, pb.name) || p.active != pb.active ||
                    p.n_generations != pb.n_generations || p.purged != pb.purged ||
                    (!p.purged && (p.key_version != pb.key_version || p.has_previous != pb.has_previous ||
                                   p.n_customer_keys != pb.n_customer_keys)))
                        abort();
                free(json);
        }
        memset(&g, 0, sizeof(g));
        if (gen_record_decode(data, size, &g) == 0) {
                if (gen_record_encode(&g, &json) != 0)
                        abort();
                if (gen_record_decode((const uint8_t *)json, strlen(json), &gb) != 0 ||
                    g.generation != gb.generation || g.state != gb.state ||
                    g.uses_reserved != gb.uses_reserved || g.key_version != gb.key_version ||
                    (g.state != GEN_DESTROYED && memcmp(g.wrapped_key, gb.wrapped_key, sizeof(g.wrapped_key))))
                        abort();
                free(json);
        }
        return 0;
}
