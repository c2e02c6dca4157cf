/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* store_etcd_parse_location() on arbitrary bytes (as a NUL-terminated copy). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-etcd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_endpoint(const char *e)
{
        const char *host = strncmp(e, "http://", 7) == 0 ? e + 7 : strncmp(e, "https://", 8) == 0 ? e + 8 : NULL;
        const char *colon;

        /* What the transport relies on: scheme://host:port, nothing else. */
        if (!host || !*host || strchr(e, ';') || strchr(e, ',') || strchr(host, '/') || strchr(e, ' '))
                abort();
        colon = strrchr(host, ':');
        if (!colon || colon == host || atoi(colon + 1) < 1 || atoi(colon + 1) > 65535)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct etcd_location l;
        char *text;

        if (size > 16 * 1024)
                return 0;
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        if (store_etcd_parse_location(text, &l) == 0) {
                if (l.n_endpoints < 1 || l.n_endpoints > STORE_ETCD_ENDPOINTS_MAX || !l.prefix || !*l.prefix ||
                    strlen(l.prefix) > STORE_ETCD_PREFIX_MAX || !l.cert != !l.key || !l.user != !l.password ||
                    (l.cacert && l.cacert[0] != '/'))
                        abort();
                for (size_t i = 0; i < l.n_endpoints; i++)
                        check_endpoint(l.endpoints[i]);
                etcd_location_free(&l);
        }
        free(text);
        return 0;
}
