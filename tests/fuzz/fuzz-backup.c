/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The backup file parser (daemon/backup.h) on arbitrary bytes: it either
 * refuses with -EBADMSG or accepts a file that the writer, given the same
 * header and records, writes back byte for byte (less the key check and
 * MAC, which only the right master key makes).  With the seeds' master key
 * the MAC is checked too. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/backup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seeds in tests/fuzz/corpus/fuzz-backup were made under this master
 * key (tests/unit/test-backup.c's). */
static const uint8_t master[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static int add(const char *key, const uint8_t *value, size_t len, void *userdata)
{
        backup_writer_add(userdata, key, value, len);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct backup_header h;
        uint8_t key[BACKUP_KEY_SIZE];
        struct backup_writer w;
        char err[BACKUP_ERR_MAX];
        int r;

        if (backup_derive_key(master, key) < 0)
                abort();
        r = backup_parse(data, size, key, &h, NULL, NULL, err, sizeof(err));
        if (r != 0 && r != -EBADMSG)
                abort();
        r = backup_parse(data, size, NULL, &h, NULL, NULL, err, sizeof(err));
        if (r == -EBADMSG)
                return 0;
        if (r != 0)
                abort();
        backup_writer_begin(&w, h.revision, h.created, h.backend, h.source);
        if (backup_parse(data, size, NULL, &h, add, &w, err, sizeof(err)) != 0 ||
            backup_writer_finish(&w, key) != 0)
                abort();
        if (w.len != size || memcmp(w.buf, data, 48) != 0 ||
            memcmp(w.buf + BACKUP_FIXED_HEADER, data + BACKUP_FIXED_HEADER, size - BACKUP_FIXED_HEADER - 32) != 0)
                abort();
        backup_writer_free(&w);
        return 0;
}
