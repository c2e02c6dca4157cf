/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Parses the etcd backend's location string (grammar in store-etcd.h), and
 * checks the same values when dkmd.conf gives them one by one.
 * Strict on purpose: it comes from a configuration file, and a typo in an
 * endpoint or a TLS path should stop the daemon at startup, not send key
 * material to the wrong place or in the clear.  Depends on libc only, so the
 * fuzz target can link it alone.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/util.h"
#include "store/etcd-http.h"
#include "store/store-etcd.h"

#define LOCATION_MAX 65536u
#define VALUE_MAX 4096u
#define DEFAULT_PORT "2379"


static bool is_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_hex(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Checks one endpoint URL and returns it as "scheme://host:port". */
static int parse_endpoint(const char *p, size_t n, bool *ret_https, char **ret)
{
        const char *host, *end = p + n, *q;
        size_t host_len, port_len;
        char port[6];
        bool https;
        char *s;

        if (n > 5 + 3 + 255 + 7 + 1)
                return -EINVAL;
        if (n > 7 && memcmp(p, "http://", 7) == 0)
                https = false, host = p + 7;
        else if (n > 8 && memcmp(p, "https://", 8) == 0)
                https = true, host = p + 8;
        else
                return -EINVAL;
        if (end[-1] == '/') /* one trailing slash, as in "http://h:2379/" */
                end--;

        q = host;
        if (q < end && *q == '[') {
                for (q++; q < end && *q != ']'; q++)
                        if (!is_hex(*q) && *q != ':' && *q != '.')
                                return -EINVAL;
                if (q >= end || q == host + 1)
                        return -EINVAL;
                q++;
        } else {
                for (; q < end && (is_alnum(*q) || *q == '-' || *q == '.'); q++)
                        ;
                if (q == host || *host == '-' || *host == '.')
                        return -EINVAL;
        }
        host_len = (size_t)(q - host);
        if (host_len > 255)
                return -EINVAL;

        if (q == end)
                strcpy(port, DEFAULT_PORT);
        else {
                unsigned long v = 0;

                if (*q != ':')
                        return -EINVAL;
                q++;
                port_len = (size_t)(end - q);
                if (port_len < 1 || port_len > 5 || *q == '0')
                        return -EINVAL;
                for (size_t i = 0; i < port_len; i++) {
                        if (q[i] < '0' || q[i] > '9')
                                return -EINVAL;
                        v = v * 10 + (unsigned long)(q[i] - '0');
                }
                if (v > 65535)
                        return -EINVAL;
                memcpy(port, q, port_len);
                port[port_len] = 0;
        }

        if (asprintf(&s, "%s://%.*s:%s", https ? "https" : "http", (int)host_len, host, port) < 0)
                return -ENOMEM;
        *ret_https = https;
        *ret = s;
        return 0;
}

static int parse_endpoints(const char *v, struct etcd_location *l, bool *ret_https)
{
        bool any_https = false;
        const char *p = v;

        for (;;) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t)(comma - p) : strlen(p);
                bool https;
                int r;

                if (n == 0 || l->n_endpoints >= STORE_ETCD_ENDPOINTS_MAX)
                        return -EINVAL;
                r = parse_endpoint(p, n, &https, &l->endpoints[l->n_endpoints]);
                if (r < 0)
                        return r;
                l->n_endpoints++;
                /* Mixed schemes would make TLS depend on which member answers. */
                if (l->n_endpoints > 1 && https != any_https)
                        return -EINVAL;
                any_https = https;
                if (!comma)
                        break;
                p = comma + 1;
        }
        *ret_https = any_https;
        return 0;
}

/* Copies the value that starts at *pp, up to an unescaped ';' or the end,
 * and moves *pp past it (and past the ';'). */
static int take_value(const char **pp, char **ret)
{
        const char *p = *pp;
        char *buf, *o;

        buf = malloc(VALUE_MAX + 1);
        if (!buf)
                return -ENOMEM;
        o = buf;
        for (; *p && *p != ';'; p++) {
                char c = *p;

                if (c == '\\') {
                        p++;
                        if (*p != ';' && *p != '\\')
                                goto bad;
                        c = *p;
                } else if ((unsigned char)c < 0x20 || c == 0x7f)
                        goto bad;
                if ((size_t)(o - buf) >= VALUE_MAX)
                        goto bad;
                *o++ = c;
        }
        *o = 0;
        if (o == buf)
                goto bad;
        *pp = *p == ';' ? p + 1 : p;
        *ret = buf;
        return 0;
bad:
        secure_wipe(buf, VALUE_MAX + 1); /* it may have been a password */
        free(buf);
        return -EINVAL;
}

static void free_wiped(char *s)
{
        if (s) {
                secure_wipe(s, strlen(s));
                free(s);
        }
}

void etcd_location_free(struct etcd_location *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n_endpoints; i++)
                free(l->endpoints[i]);
        free(l->prefix);
        free(l->cacert);
        free(l->cert);
        free(l->key);
        free(l->user);
        free_wiped(l->password);
        *l = (struct etcd_location){ 0 };
}

static int check_path(const char *v)
{
        return v[0] == '/' && store_utf8_valid((const unsigned char *)v, strlen(v)) ? 0 : -EINVAL;
}

/* A value as the string's grammar allows it, once unescaped. */
static int check_value(const char *v)
{
        size_t n = strnlen(v, VALUE_MAX + 1);

        if (n == 0 || n > VALUE_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
                        return -EINVAL;
        return 0;
}

static int copy_value(const char *v, char **ret)
{
        if (!v)
                return 0;
        if (check_value(v) < 0)
                return -EINVAL;
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

/* The checks of a location, on its values however they came. */
static int from_settings(const struct store_etcd_settings *in, struct etcd_location *l)
{
        bool https = false;
        int r;

        if (!in->endpoints || check_value(in->endpoints) < 0)
                return -EINVAL;
        r = parse_endpoints(in->endpoints, l, &https);
        if (r < 0)
                return r;
        r = copy_value(in->prefix ? in->prefix : STORE_ETCD_DEFAULT_PREFIX, &l->prefix);
        if (r >= 0)
                r = copy_value(in->cacert, &l->cacert);
        if (r >= 0)
                r = copy_value(in->cert, &l->cert);
        if (r >= 0)
                r = copy_value(in->key, &l->key);
        if (r >= 0)
                r = copy_value(in->user, &l->user);
        if (r >= 0)
                r = copy_value(in->password, &l->password);
        if (r < 0)
                return r;

        if (strlen(l->prefix) > STORE_ETCD_PREFIX_MAX ||
            !store_utf8_valid((const unsigned char *)l->prefix, strlen(l->prefix)))
                return -EINVAL;
        if ((l->cacert && check_path(l->cacert) < 0) || (l->cert && check_path(l->cert) < 0) ||
            (l->key && check_path(l->key) < 0))
                return -EINVAL;
        if (!l->cert != !l->key || !l->user != !l->password)
                return -EINVAL;
        if (!https && (l->cacert || l->cert))
                return -EINVAL;
        return 0;
}

/* Splits the string into its values, then checks them as any settings. */
static int parse(const char *location, struct etcd_location *l)
{
        static const char *const names[] = { "endpoints", "prefix", "cacert", "cert",
                                             "key",       "user",   "password" };
        char *v[ARRAY_SIZE(names)] = { 0 };
        const char *p = location;
        int r = 0;

        if (strnlen(location, LOCATION_MAX + 1) > LOCATION_MAX)
                return -EINVAL;

        while (*p) {
                const char *eq = strchr(p, '=');
                size_t n, i;

                if (!eq)
                        goto bad;
                n = (size_t)(eq - p);
                for (i = 0; i < ARRAY_SIZE(names); i++)
                        if (strlen(names[i]) == n && memcmp(p, names[i], n) == 0)
                                break;
                if (i == ARRAY_SIZE(names) || v[i])
                        goto bad;
                p = eq + 1;
                r = take_value(&p, &v[i]);
                if (r < 0)
                        goto done;
        }
        r = from_settings(&(const struct store_etcd_settings){
                                  .endpoints = v[0], .prefix = v[1], .cacert = v[2], .cert = v[3],
                                  .key = v[4], .user = v[5], .password = v[6] },
                          l);
        goto done;
bad:
        r = -EINVAL;
done:
        for (size_t i = 0; i < ARRAY_SIZE(v); i++)
                free_wiped(v[i]); /* one may be the password */
        return r;
}

int store_etcd_parse_location(const char *location, struct etcd_location *ret)
{
        struct etcd_location l = { 0 };
        int r;

        if (!location || !ret)
                return -EINVAL;
        r = parse(location, &l);
        if (r < 0) {
                etcd_location_free(&l);
                return r;
        }
        *ret = l;
        return 0;
}

int store_etcd_location_from_settings(const struct store_etcd_settings *in, struct etcd_location *ret)
{
        struct etcd_location l = { 0 };
        int r;

        if (!in || !ret)
                return -EINVAL;
        r = from_settings(in, &l);
        if (r < 0) {
                etcd_location_free(&l);
                return r;
        }
        *ret = l;
        return 0;
}
