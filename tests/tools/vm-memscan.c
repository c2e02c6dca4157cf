/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The VM test's memory scan: which unwrapped keys lie in a running dkmd's
 * memory.
 *
 *   vm-memscan STATE_DIR MASTER_KEY_FILE PID SECONDS
 *
 * It learns the key bytes itself: the master key from its file, each policy
 * key and generation key by unwrapping the SQLite store's records with it
 * (dkm's own record decoder and unwrap, on the openssl engine), then reads
 * every readable mapping of PID (/proc/PID/maps, /proc/PID/mem) over and
 * over for SECONDS and counts the places each kind of key was seen:
 *
 *   MEMSCAN passes=N bytes=B master=H policy=H generation=H (policies=P generations=G)
 *           reservations-skipped=R
 *
 * R counts mappings over 64 GiB (ASan's shadow): reservations, not data.
 *
 * Exit: 0 scanned, 2 could not set up (the reason on stderr).  Whether a
 * count must be 0 is the caller's to decide: it knows which custody serves.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/masterkey.h"
#include "daemon/records.h"
#include "daemon/wrap.h"
#include "engine/engine.h"
#include "shared/format.h"
#include "shared/keyring.h"
#include "shared/util.h"
#include "store/store.h"

#define MAX_KEYS 256
#define RESERVATION_SIZE (64UL << 30)

struct keyset {
        uint8_t master[ENGINE_KEY_SIZE];
        uint8_t policy[MAX_KEYS][ENGINE_KEY_SIZE];
        uint8_t policy_id[MAX_KEYS][16];
        size_t n_policy;
        uint8_t gen[MAX_KEYS][ENGINE_KEY_SIZE];
        size_t n_gen;
        int cur;  /* the policy whose generations follow, -1: none usable */
};

static int load_record(const struct store_kv *kv, void *userdata)
{
        struct keyset *ks = userdata;
        const char *rest = kv->key + strlen("policies/");

        if (!strchr(rest, '/')) {
                struct policy_record p;

                ks->cur = -1;
                if (policy_record_decode(kv->value, kv->value_len, &p) < 0 || p.purged ||
                    p.n_customer_keys || ks->n_policy == MAX_KEYS)
                        return 0;
                if (uuid_from_string(p.id, ks->policy_id[ks->n_policy]) < 0 ||
                    key_unwrap(ks->master, WRAP_POLICY_KEY, ks->policy_id[ks->n_policy], 0,
                               p.wrapped_key, ks->policy[ks->n_policy]) < 0) {
                        fprintf(stderr, "vm-memscan: policy %s does not unwrap\n", p.id);
                        return 0;
                }
                ks->cur = (int)ks->n_policy++;
                return 0;
        }
        {
                struct gen_record g;

                if (ks->cur < 0 || gen_record_decode(kv->value, kv->value_len, &g) < 0 ||
                    g.state == GEN_DESTROYED || ks->n_gen == MAX_KEYS)
                        return 0;
                if (key_unwrap(ks->policy[ks->cur], WRAP_GENERATION_KEY, ks->policy_id[ks->cur],
                               g.generation, g.wrapped_key, ks->gen[ks->n_gen]) < 0) {
                        fprintf(stderr, "vm-memscan: %s does not unwrap\n", kv->key);
                        return 0;
                }
                ks->n_gen++;
        }
        return 0;
}

static size_t count_in(const uint8_t *buf, size_t len, const uint8_t (*keys)[ENGINE_KEY_SIZE], size_t n)
{
        size_t hits = 0;

        for (size_t k = 0; k < n; k++) {
                const uint8_t *p = buf, *end = buf + len;

                while (p < end && (p = memmem(p, (size_t)(end - p), keys[k], ENGINE_KEY_SIZE))) {
                        hits++;
                        p++;
                }
        }
        return hits;
}

int main(int argc, char **argv)
{
        static struct keyset ks = { .cur = -1 };
        size_t hits_master = 0, hits_policy = 0, hits_gen = 0, bytes = 0, passes = 0, skipped = 0;
        char path[512], err[512] = "", line[512];
        keyring_serial_t ring, master;
        struct store *s = NULL;
        size_t len;
        time_t until;
        int r, mem;

        if (argc != 5) {
                fprintf(stderr, "usage: vm-memscan STATE_DIR MASTER_KEY_FILE PID SECONDS\n");
                return 2;
        }
        crypto_set_engine(&engine_openssl_ops);
        r = keyring_open("dkm:vm-memscan", 1, &ring);
        if (r >= 0)
                r = masterkey_load(argv[2], ring, &master, NULL, err, sizeof(err));
        if (r >= 0)
                r = keyring_read(master, ks.master, sizeof(ks.master), &len);
        if (r < 0) {
                fprintf(stderr, "vm-memscan: master key: %s %s\n", strerror(-r), err);
                return 2;
        }
        snprintf(path, sizeof(path), "%s/dkm.db", argv[1]);
        r = store_open(&store_sqlite_ops, path, &s);
        if (r >= 0)
                r = store_ops_of(s)->range(s, "policies/", load_record, &ks);
        if (r < 0 || ks.n_policy == 0 || ks.n_gen == 0) {
                fprintf(stderr, "vm-memscan: store %s: %s (%zu policy keys, %zu generation keys)\n", path,
                        strerror(r < 0 ? -r : ENOKEY), ks.n_policy, ks.n_gen);
                return 2;
        }
        store_close(s);

        snprintf(path, sizeof(path), "/proc/%s/mem", argv[3]);
        mem = open(path, O_RDONLY | O_CLOEXEC);
        if (mem < 0) {
                fprintf(stderr, "vm-memscan: %s: %m\n", path);
                return 2;
        }
        until = time(NULL) + atoi(argv[4]);
        do {
                FILE *maps;

                snprintf(path, sizeof(path), "/proc/%s/maps", argv[3]);
                maps = fopen(path, "re");
                if (!maps)
                        break;
                while (fgets(line, sizeof(line), maps)) {
                        unsigned long lo, hi;
                        char perms[8];
                        /* Each mapping in pieces, overlapping by a key less a byte. */
                        static uint8_t buf[(1 << 20) + ENGINE_KEY_SIZE];

                        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r' ||
                            strstr(line, "[vvar]") || strstr(line, "[vsyscall]"))
                                continue;
                        /* A mapping of terabytes is an address-space
                         * reservation (ASan's shadow), not program data;
                         * reading it page by page would take hours. */
                        if (hi - lo > RESERVATION_SIZE) {
                                if (passes == 0)
                                        skipped++;
                                continue;
                        }
                        for (unsigned long at = lo; at < hi;) {
                                size_t want = hi - at > (1 << 20) ? (1 << 20) : hi - at;
                                ssize_t n = pread(mem, buf, want + (at + want < hi ? ENGINE_KEY_SIZE - 1 : 0),
                                                  (off_t)at);

                                if (n <= 0)
                                        break;
                                bytes += (size_t)n;
                                hits_master += count_in(buf, (size_t)n, (const uint8_t (*)[ENGINE_KEY_SIZE])ks.master, 1);
                                hits_policy += count_in(buf, (size_t)n, (const uint8_t (*)[ENGINE_KEY_SIZE])ks.policy,
                                                        ks.n_policy);
                                hits_gen += count_in(buf, (size_t)n, (const uint8_t (*)[ENGINE_KEY_SIZE])ks.gen,
                                                     ks.n_gen);
                                at += want;
                        }
                }
                fclose(maps);
                passes++;
        } while (time(NULL) < until);
        close(mem);
        printf("MEMSCAN passes=%zu bytes=%zu master=%zu policy=%zu generation=%zu (policies=%zu "
               "generations=%zu) reservations-skipped=%zu\n", passes, bytes, hits_master, hits_policy,
               hits_gen, ks.n_policy, ks.n_gen, skipped);
        secure_wipe(&ks, sizeof(ks));
        return 0;
}
