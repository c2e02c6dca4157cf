/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Choosing an engine; it reaches the engines through their ops tables only. */
#include <stdio.h>

#include "engine/engine.h"
#include "shared/util.h"

int engine_kind_from_string(const char *s, enum engine_kind *ret)
{
        static const struct {
                const char *name;
                enum engine_kind kind;
        } table[] = {
                { "auto", ENGINE_AUTO },
                { "kernel", ENGINE_KERNEL },
                { "openssl", ENGINE_OPENSSL },
        };

        if (!s || !ret)
                return -EINVAL;
        for (size_t i = 0; i < ARRAY_SIZE(table); i++)
                if (strcmp(s, table[i].name) == 0) {
                        *ret = table[i].kind;
                        return 0;
                }
        return -EINVAL;
}

static void fill_driver(const struct engine_ops *ops, struct engine_info *info)
{
        int r = ops->driver(info->driver, sizeof(info->driver));

        if (r < 0)
                snprintf(info->driver, sizeof(info->driver), "unknown (%s)", strerror(-r));
}

int engine_select(enum engine_kind want, const struct engine_ops **ret_ops,
                  struct engine_info *ret_info)
{
        char kreason[112] = "", oreason[112] = "";
        struct engine_info info = {};
        const struct engine_ops *ops;
        int r;

        if (!ret_ops || !ret_info)
                return -EINVAL;

        switch (want) {
        case ENGINE_KERNEL:
        case ENGINE_OPENSSL:
                ops = want == ENGINE_KERNEL ? &engine_kernel_ops : &engine_openssl_ops;
                r = ops->probe(kreason, sizeof(kreason));
                if (r < 0) {
                        /* The caller needs the reason most when we fail. */
                        info.name = ops->name;
                        snprintf(info.reason, sizeof(info.reason), "%s engine requested but unavailable: %s",
                                 ops->name, kreason);
                        *ret_info = info;
                        return -ENOTSUP;
                }
                snprintf(info.reason, sizeof(info.reason), "%s engine requested", ops->name);
                break;

        case ENGINE_AUTO:
                ops = &engine_kernel_ops;
                r = ops->probe(kreason, sizeof(kreason));
                if (r >= 0) {
                        snprintf(info.reason, sizeof(info.reason),
                                 "auto: kernel serves gcm(aes) through AF_ALG");
                        break;
                }
                ops = &engine_openssl_ops;
                r = ops->probe(oreason, sizeof(oreason));
                if (r < 0) {
                        info.name = "none";
                        snprintf(info.reason, sizeof(info.reason), "no engine: kernel: %s; openssl: %s",
                                 kreason, oreason);
                        *ret_info = info;
                        return -ENOTSUP;
                }
                snprintf(info.reason, sizeof(info.reason), "kernel: %s; using openssl", kreason);
                break;

        default:
                return -EINVAL;
        }

        info.name = ops->name;
        fill_driver(ops, &info);
        *ret_ops = ops;
        *ret_info = info;
        return 0;
}
