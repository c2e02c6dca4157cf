/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* recovery_share_parse() on arbitrary bytes (a share file as a custodian
 * hands it back), and recovery_record_decode() on the same bytes (the
 * store's recovery record): what parses must format and parse the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/recovery.h"
#include "shared/recovery-share.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct recovery_share s, again;
        struct recovery_record rec, rec2;
        char line[RECOVERY_SHARE_TEXT_MAX];
        char *json = NULL;

        if (recovery_share_parse((const char *)data, size, &s) == 0) {
                if (s.threshold < 2 || s.threshold > s.shares || s.shares > RECOVERY_SHARES_MAX ||
                    s.index < 1 || s.index > s.shares)
                        abort();
                if (recovery_share_format(&s, line, sizeof(line)) < 0 ||
                    recovery_share_parse(line, strlen(line), &again) < 0 || memcmp(&s, &again, sizeof(s)) != 0)
                        abort();
        }
        if (recovery_record_decode(data, size, &rec) == 0) {
                if (rec.threshold < 2 || rec.threshold > rec.shares || rec.shares > RECOVERY_SHARES_MAX ||
                    (rec.version != RECOVERY_RECORD_LEGACY && rec.version != RECOVERY_RECORD_WRAPPED))
                        abort();
                if (recovery_record_encode(&rec, &json) < 0 ||
                    recovery_record_decode((const uint8_t *)json, strlen(json), &rec2) < 0 ||
                    memcmp(rec.install_id, rec2.install_id, sizeof(rec.install_id)) != 0 ||
                    memcmp(rec.set_id, rec2.set_id, sizeof(rec.set_id)) != 0 ||
                    memcmp(rec.check, rec2.check, sizeof(rec.check)) != 0 || rec.threshold != rec2.threshold ||
                    rec.shares != rec2.shares || rec.created_usec != rec2.created_usec ||
                    rec.version != rec2.version || memcmp(rec.wrapped, rec2.wrapped, sizeof(rec.wrapped)) != 0)
                        abort();
                free(json);
        }
        return 0;
}
