/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The stream header parser (both layouts: 40 bytes, and 72 with the salt)
 * and the segment decoder on arbitrary bytes, with a fixed key and an empty
 * context (the seed corpus holds streams of both layouts made with them, so
 * the fuzzer starts past the tags and, for the salted one, the subkey).  The input is a whole v2
 * ciphertext, split into segments by position as stream_decrypt_fd does.
 * Then the same bytes go once through encoder and decoder as plaintext.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "shared/stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[ENGINE_KEY_SIZE] = {
        0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
        0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
};

static void decode(struct engine_aead *a, const uint8_t *data, size_t size)
{
        struct stream_header h;
        struct stream_dec *d = NULL;
        const char *why = NULL;
        uint8_t hdr[STREAM_HEADER_MAX], *out;
        size_t full, off, total = 0, hlen;
        int r;

        r = stream_parse_header(data, size, &h, &why);
        if (r < 0) {
                if (!why || (r != -EBADMSG && r != -EPROTONOSUPPORT))
                        abort();
                return;
        }
        /* What parses writes back to the same bytes, as long as the reader's
         * early guess from the first 40 bytes said. */
        hlen = stream_header_size(&h);
        if (hlen > size || hlen != stream_header_length(data))
                abort();
        stream_header_write(&h, hdr);
        if (memcmp(hdr, data, hlen) != 0)
                abort();
        if (stream_dec_new(&engine_openssl_ops, a, fuzz_key, &h, NULL, 0, &d, &why) < 0)
                abort();
        full = (size_t)h.segment_size + STREAM_TAG_SIZE;
        out = malloc(h.segment_size);
        if (!out)
                abort();
        off = hlen;
        for (;;) {
                size_t len = size - off < full ? size - off : full, n = 0;
                bool last = off + len == size;

                r = stream_dec_segment(d, data + off, len, last, out, &n, &why);
                if (r < 0) {
                        if (r != -EBADMSG || !why || stream_dec_done(d))
                                abort();
                        break;
                }
                if (n != len - STREAM_TAG_SIZE)
                        abort();
                total += n;
                off += len;
                if (last) {
                        /* Accepted: exactly the canonical length for its plaintext. */
                        size_t segs = total ? (total + h.segment_size - 1) / h.segment_size : 1;

                        if (!stream_dec_done(d) || hlen + segs * STREAM_TAG_SIZE + total != size)
                                abort();
                        break;
                }
        }
        free(out);
        stream_dec_free(d);
}

/* Encrypts data as plaintext in the smallest segments and decrypts it back. */
static void roundtrip(struct engine_aead *a, const uint8_t *data, size_t size)
{
        const uint32_t seg = STREAM_SEGMENT_MIN;
        uint8_t hdr[STREAM_HEADER_MAX], ct[STREAM_SEGMENT_MIN + STREAM_TAG_SIZE], pt[STREAM_SEGMENT_MIN];
        static const uint8_t policy[FORMAT_POLICY_ID_SIZE] = { 1 };
        struct stream_enc *e = NULL;
        struct stream_dec *d = NULL;
        struct stream_header h;
        const char *why = NULL;
        size_t off = 0, hlen = 0;

        if (stream_enc_new(&engine_openssl_ops, a, fuzz_key, policy, 1, data, size > 64 ? 64 : size, seg,
                           &e, hdr, &hlen) < 0 ||
            stream_parse_header(hdr, hlen, &h, &why) < 0 || h.flags != STREAM_FLAG_SALTED ||
            stream_dec_new(&engine_openssl_ops, a, fuzz_key, &h, data, size > 64 ? 64 : size, &d, &why) < 0)
                abort();
        do {
                size_t len = size - off > seg ? seg : size - off, n, m;
                bool last = off + len == size;

                if (stream_enc_segment(e, data + off, len, last, ct, &n) < 0 ||
                    stream_dec_segment(d, ct, n, last, pt, &m, &why) < 0 || m != len ||
                    memcmp(pt, data + off, len) != 0)
                        abort();
                off += len;
        } while (off < size);
        if (!stream_dec_done(d))
                abort();
        stream_enc_free(e);
        stream_dec_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct engine_aead *a = NULL;

        if (engine_openssl_ops.aead_new(&a) < 0)
                abort();
        decode(a, data, size);
        roundtrip(a, data, size);
        engine_openssl_ops.aead_free(a);
        return 0;
}
