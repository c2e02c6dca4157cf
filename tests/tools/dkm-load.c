/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Load generator for make bench: N client threads, each with its own
 * connection, encrypt a secret of SIZE bytes in a loop for SECONDS through
 * libdkm; prints ops/s and latency percentiles.
 *
 *   dkm-load SOCKET CLIENTS SECONDS [SIZE [BATCH]]
 *   dkm-load SOCKET CLIENTS SECONDS status
 *
 * With BATCH > 0 each request carries BATCH secrets (dkm_batch) and the
 * figures count secrets, with the latency of a whole batch.  "status"
 * sends dkmctl status's request instead, the cheapest that dkmd answers
 * on the same socket path: the floor the encryptions are compared with
 * (its figures are requests, counted as secrets=).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkm/dkm.h"
#include "shared/util.h"

struct worker {
        const char *socket;
        size_t size, batch;
        bool status;
        uint64_t until;
        uint64_t *lat; /* microseconds */
        size_t n, cap, items;
        int error;
};

static void *run(void *p)
{
        struct worker *w = p;
        dkm_client *c;
        uint8_t *msg = calloc(1, w->size), *out;
        size_t out_len;

        if (!msg || dkm_connect(w->socket, &c) < 0) {
                w->error = 1;
                free(msg);
                return NULL;
        }
        dkm_batch_item *items = w->batch ? calloc(w->batch, sizeof(*items)) : NULL;

        while (now_mono_usec() < w->until) {
                uint64_t t0 = now_mono_usec();

                if (w->status) {
                        char *json;

                        if (dkm_status_json(c, &json) < 0) {
                                fprintf(stderr, "dkm-load: %s\n", dkm_last_error(c));
                                w->error = 1;
                                break;
                        }
                        free(json);
                        w->items++;
                } else if (w->batch) {
                        for (size_t i = 0; i < w->batch; i++)
                                items[i] = (dkm_batch_item){ .op = DKM_BATCH_ENCRYPT, .in = msg,
                                                             .in_len = w->size };
                        if (dkm_batch(c, items, w->batch) < 0 || items[0].error) {
                                fprintf(stderr, "dkm-load: %s\n", dkm_last_error(c));
                                w->error = 1;
                                break;
                        }
                        for (size_t i = 0; i < w->batch; i++)
                                free(items[i].out);
                        w->items += w->batch;
                } else {
                        if (dkm_encrypt(c, NULL, NULL, 0, msg, w->size, &out, &out_len) < 0) {
                                fprintf(stderr, "dkm-load: %s\n", dkm_last_error(c));
                                w->error = 1;
                                break;
                        }
                        free(out);
                        w->items++;
                }
                if (w->n == w->cap) {
                        w->cap = w->cap ? w->cap * 2 : 4096;
                        w->lat = realloc(w->lat, w->cap * sizeof(*w->lat));
                }
                w->lat[w->n++] = now_mono_usec() - t0;
        }
        dkm_disconnect(c);
        free(items);
        free(msg);
        return NULL;
}

static int cmp(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        int clients, secs;
        size_t size, total = 0, secrets = 0, batch;
        bool status;
        struct worker *w;
        pthread_t *t;
        uint64_t *all, start;

        if (argc < 4) {
                fprintf(stderr, "usage: dkm-load SOCKET CLIENTS SECONDS [SIZE [BATCH] | status]\n");
                return 2;
        }
        clients = atoi(argv[2]);
        secs = atoi(argv[3]);
        status = argc > 4 && strcmp(argv[4], "status") == 0;
        size = argc > 4 && !status ? (size_t)atol(argv[4]) : 1024;
        batch = argc > 5 ? (size_t)atol(argv[5]) : 0;
        if (clients < 1 || secs < 1)
                return 2;
        w = calloc((size_t)clients, sizeof(*w));
        t = calloc((size_t)clients, sizeof(*t));
        start = now_mono_usec();
        for (int i = 0; i < clients; i++) {
                w[i] = (struct worker){ .socket = argv[1], .size = size, .batch = batch, .status = status,
                                        .until = start + (uint64_t)secs * 1000000 };
                pthread_create(&t[i], NULL, run, &w[i]);
        }
        for (int i = 0; i < clients; i++) {
                pthread_join(t[i], NULL);
                if (w[i].error)
                        return 1;
                total += w[i].n;
                secrets += w[i].items;
        }
        all = malloc((total ? total : 1) * sizeof(*all));
        for (int i = 0, k = 0; i < clients; i++) {
                memcpy(all + k, w[i].lat, w[i].n * sizeof(*all));
                k += (int)w[i].n;
                free(w[i].lat);
        }
        qsort(all, total, sizeof(*all), cmp);
        printf("clients=%d size=%zu batch=%zu requests=%zu secrets=%zu secrets/s=%.0f p50_us=%llu p99_us=%llu\n",
               clients, size, batch, total, secrets, (double)secrets / ((double)(now_mono_usec() - start) / 1e6),
               total ? (unsigned long long)all[total / 2] : 0ULL,
               total ? (unsigned long long)all[total * 99 / 100] : 0ULL);
        free(all);
        free(w);
        free(t);
        return 0;
}
