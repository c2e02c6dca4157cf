/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The dkmd wire protocol, spoken over a SOCK_STREAM Unix socket (seqpacket
 * would cap messages at the socket buffer size).  Each message is preceded
 * by its length as a u32; then (little-endian):
 *
 *   offset size  field
 *        0    4  magic "DKMW"
 *        4    2  type: a request verb, or WIRE_REPLY_OK / WIRE_REPLY_ERROR
 *        6    2  number of fields (at most WIRE_MAX_FIELDS)
 *        8    ..  fields, each: u16 tag, u32 length, length bytes
 *
 * Every tag has its own size limit and says whether it may repeat; unknown
 * tags, oversize fields, trailing bytes and repeats of single fields are
 * rejected with a specific message.  A whole message is at most
 * WIRE_MAX_MESSAGE bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC "DKMW"
#define WIRE_HEADER_SIZE 8
#define WIRE_FIELD_HEADER 6
#define WIRE_MAX_DATA (1024 * 1024)
#define WIRE_MAX_MESSAGE (WIRE_MAX_DATA + 128 * 1024)
#define WIRE_MAX_FIELDS 1040
#define WIRE_MAX_BATCH 1024   /* items in one batch request */
#define WIRE_MAX_ITEM (64 * 1024 + 8192)

enum wire_type {
        WIRE_REPLY_OK = 0,
        WIRE_REPLY_ERROR = 1,
        WIRE_STATUS = 10,
        WIRE_ENCRYPT = 11,
        WIRE_DECRYPT = 12,
        WIRE_INSPECT = 13,
        WIRE_REWRAP = 14,
        WIRE_DATAKEY = 15,       /* a fresh data key and its wrapped form */
        WIRE_BATCH = 16,         /* many encrypt/decrypt items, answered one by one */
        WIRE_ENCRYPT_FD = 17,    /* streams between two passed descriptors */
        WIRE_DECRYPT_FD = 18,
        WIRE_KEY_LIST = 20,
        WIRE_KEY_ROTATE = 21,
        WIRE_KEY_RETIRE = 22,
        WIRE_KEY_DESTROY = 23,   /* files a destroy request for approval */
        WIRE_ACCESS_REQUEST = 30,
        WIRE_ACCESS_APPROVE = 31,
        WIRE_ACCESS_DENY = 32,
        WIRE_ACCESS_LIST = 33,
        WIRE_ACCESS_REVOKE = 34,
        WIRE_POLICY_CREATE = 40,
        WIRE_POLICY_LIST = 41,
        WIRE_POLICY_SHOW = 42,
        WIRE_POLICY_ASSIGN = 43,
        WIRE_POLICY_REKEY = 44,
        WIRE_POLICY_PURGE = 45,  /* files a purge request for approval */
        WIRE_BACKUP = 50,        /* a snapshot of the store, written to one passed descriptor */
        WIRE_STORE_VERIFY = 51,  /* unwraps every generation, reveals nothing */
        WIRE_RECOVERY_RESHARE = 52, /* files a reshare request for approval */
        _WIRE_TYPE_MAX,
};

enum wire_tag {
        WIRE_TAG_POLICY = 1,     /* policy name, text */
        WIRE_TAG_DATA = 2,       /* plaintext or ciphertext bytes */
        WIRE_TAG_CONTEXT = 3,    /* repeatable: "key" NUL "value" */
        WIRE_TAG_GENERATION = 4, /* u32 */
        WIRE_TAG_JSON = 5,       /* JSON text in a reply */
        WIRE_TAG_ERRNO = 6,      /* u32: positive errno in an error reply */
        WIRE_TAG_MESSAGE = 7,    /* human-readable reason in an error reply */
        WIRE_TAG_REASON = 8,     /* why elevated access is asked for or denied */
        WIRE_TAG_DURATION = 9,   /* text, e.g. "30m" (parsed by dkmd) */
        WIRE_TAG_SCOPE = 10,     /* "decrypt" or "inspect" */
        WIRE_TAG_REQUEST = 11,   /* u32 access request id */
        WIRE_TAG_CUSTOMER_KEY = 12, /* repeatable: a customer key URI */
        WIRE_TAG_UID = 13,       /* u32 */
        WIRE_TAG_GID = 14,       /* u32 */
        WIRE_TAG_FLAGS = 15,     /* u32: WIRE_FLAG_* */
        WIRE_TAG_KEY = 16,       /* a plaintext data key (32 bytes) in a reply */
        WIRE_TAG_ITEM = 17,      /* repeatable: one inner message of a batch */
        WIRE_TAG_SEGMENT = 18,   /* u32 segment size of a stream */
        _WIRE_TAG_MAX,
};

#define WIRE_FLAG_NEW_POLICY_KEY 1u

struct wire_field {
        uint16_t tag;
        uint32_t len;
        const uint8_t *value; /* points into the message buffer */
};

struct wire_msg {
        uint16_t type;
        size_t n_fields;
        struct wire_field fields[WIRE_MAX_FIELDS];
};

/* Parses buf (not copied: fields point into it).  -EBADMSG with *ret_error
 * naming the problem. */
int wire_parse(const uint8_t *buf, size_t len, struct wire_msg *ret, const char **ret_error);

/* Field access on a parsed message. */
const struct wire_field *wire_get(const struct wire_msg *m, uint16_t tag);
/* Copies a text field into a NUL-terminated string; -EBADMSG on embedded NUL
 * or oversize for buf, -ENOENT when absent. */
int wire_get_string(const struct wire_msg *m, uint16_t tag, char *buf, size_t size);
int wire_get_u32(const struct wire_msg *m, uint16_t tag, uint32_t *ret);

/* A growing message being built. */
struct wire_builder {
        uint8_t *buf;
        size_t len, cap;
        uint16_t n_fields;
        int error; /* first error (-ENOMEM, -E2BIG), reported by wire_finish */
};

void wire_begin(struct wire_builder *b, uint16_t type);
void wire_add(struct wire_builder *b, uint16_t tag, const void *value, size_t len);
void wire_add_string(struct wire_builder *b, uint16_t tag, const char *s);
void wire_add_u32(struct wire_builder *b, uint16_t tag, uint32_t v);
/* On success the message is b->buf / b->len (the caller frees b->buf with
 * wire_builder_free, which wipes it since messages carry plaintext). */
int wire_finish(struct wire_builder *b);
void wire_builder_free(struct wire_builder *b);

const char *wire_type_name(uint16_t type);

/* Framed I/O on a stream socket: a u32 length, then the message.
 * wire_recv allocates *ret (free with wire_free_buf, which wipes it);
 * -EPIPE on a clean end of stream before a frame, -EMSGSIZE when the peer
 * announces a frame above WIRE_MAX_MESSAGE, -EIO on a short frame. */
int wire_send(int fd, const uint8_t *buf, size_t len);
int wire_recv(int fd, uint8_t **ret, size_t *ret_len);
/* The same, with file descriptors passed along (SCM_RIGHTS, close-on-exec
 * on receipt); at most WIRE_MAX_FDS. */
#define WIRE_MAX_FDS 2
int wire_send_fds(int fd, const uint8_t *buf, size_t len, const int *fds, size_t n_fds);
int wire_recv_fds(int fd, uint8_t **ret, size_t *ret_len, int *fds, size_t max_fds, size_t *ret_n_fds);
void wire_free_buf(uint8_t *buf, size_t len);

/* What a server allows one peer while it receives a frame. */
struct wire_recv_limits {
        uint64_t idle_usec;  /* for a frame's first byte (-ETIME); 0: no limit */
        uint64_t frame_usec; /* for the rest, from its first byte (-ETIMEDOUT); 0: no limit */
        /* Asked with the announced length before the frame is allocated or
         * read: 0 goes on; a negative errno refuses the frame unread and is
         * returned.  NULL: every frame up to WIRE_MAX_MESSAGE. */
        int (*check)(void *userdata, uint32_t len);
        void *userdata;
};

/* wire_recv_fds under lim (NULL: no limits).  No recv blocks: a peer that
 * stalls is given up at the deadline whatever it sends in between. */
int wire_recv_limited(int fd, const struct wire_recv_limits *lim, uint8_t **ret, size_t *ret_len,
                      int *fds, size_t max_fds, size_t *ret_n_fds);
