/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inside the etcd transport: what etcd-http.c (unary calls, failover,
 * authentication), etcd-watch.c (watch streams) and etcd-errors.c (the
 * error mapping) share.  Nothing outside those files includes it.
 */
#pragma once

#include <curl/curl.h>
#include <pthread.h>

#include "store/etcd-http.h"

#define ETCD_POOL_MAX 8

struct etcd_client {
        char *endpoints[STORE_ETCD_ENDPOINTS_MAX];
        size_t n_endpoints;
        char *cacert, *cert, *key, *user;
        char *password;       /* secret_alloc() */
        pthread_mutex_t lock; /* for what follows */
        char *token;          /* secret_alloc(); "" when etcd has auth disabled */
        size_t preferred;     /* the endpoint that answered last */
        const char *api;      /* "/v3/" or "/v3beta/" */
        CURL *pool[ETCD_POOL_MAX];
        size_t n_pool;
        int connect_refused;  /* errno of the last connect this host refused, or 0 */
};

/* What happened to one attempt on one endpoint. */
enum etcd_outcome {
        ETCD_OUT_OK,
        ETCD_OUT_UNSENT,   /* nothing reached etcd: the next endpoint may be asked */
        ETCD_OUT_REJECTED, /* etcd refused before proposing: likewise */
        ETCD_OUT_UNKNOWN,  /* sent, then timed out or broke: a write may have applied */
        ETCD_OUT_TOKEN,    /* the auth token expired: authenticate and repeat */
        ETCD_OUT_FINAL,    /* a definite answer, the same from any member */
};

/* How far a failed transfer got. */
enum etcd_phase {
        ETCD_PHASE_NONE,      /* not connected */
        ETCD_PHASE_CONNECTED, /* TCP up (for https also the TLS handshake, as
                               * far as we could tell), nothing sent */
        ETCD_PHASE_SENT,      /* the request went out: it may have reached etcd */
};

/* etcd-errors.c: an error reply (unary or streamed) and a libcurl failure
 * (message: libcurl's error buffer) to -errno and an outcome. */
int etcd_reply_error(struct json_object *o, enum etcd_outcome *ret_outcome);
int etcd_curl_error(CURLcode cc, enum etcd_phase phase, bool tls, const char *message,
                    enum etcd_outcome *ret_outcome);
/* Of two failures, the one to report when every endpoint failed. */
int etcd_more_telling(int have, int r);

/* A reply body: collected whole, or (tok set) cut into JSON objects that
 * go to on_object as they complete. */
struct etcd_body {
        char *p;
        size_t n, cap;
        json_tokener *tok;
        int (*on_object)(struct json_object *o, void *userdata);
        void *userdata;
        int err;   /* why the write callback stopped the transfer */
        bool stop; /* on_object asked to stop */
        uint64_t last_usec;
        char error[CURL_ERROR_SIZE]; /* libcurl's words for a failure */
};

/* libcurl's write callback, userdata a struct etcd_body. */
size_t etcd_write_body(char *data, size_t size, size_t nmemb, void *userdata);

/* Sets h up for one POST of body to url, its reply going to out; free
 * *ret_headers with etcd_headers_free() after the transfer. */
int etcd_setup_post(struct etcd_client *c, CURL *h, const char *url, const char *body, size_t body_len,
                    const char *token, long timeout_ms, struct etcd_body *out,
                    struct curl_slist **ret_headers);
void etcd_headers_free(struct curl_slist *l);
enum etcd_phase etcd_transfer_phase(CURL *h);

char *etcd_secret_strdup(const char *s);
/* A copy of the current token in locked memory (secret_free() it), or NULL
 * when there is none (*oom says whether that was a failure). */
char *etcd_token_copy(struct etcd_client *c, bool *oom);
int etcd_authenticate(struct etcd_client *c, uint64_t deadline);
int etcd_ensure_token(struct etcd_client *c, uint64_t deadline);
/* req as JSON text (json-c's, valid while req lives), once the client has
 * the token it needs (etcd_ensure_token()). */
int etcd_request_body(struct etcd_client *c, struct json_object *req, uint64_t deadline,
                      const char **ret_body);
void etcd_endpoint_answered(struct etcd_client *c, size_t idx);
/* The endpoint to ask first: the one that answered last (a call goes round
 * the others from there). */
size_t etcd_endpoint_preferred(struct etcd_client *c);
