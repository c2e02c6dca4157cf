#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A crash between a destroy or a purge and its shred: dkmd is killed
# (SIGKILL, from gdb at the entry of the SQLite shred) right after the
# destroyed generation (the purged policy) is stored and before the WAL that
# still holds its wrapped key (the policy's availability key, which the
# master key unwraps) is checkpointed and cut.  The next start must finish
# the shred: after it no SQLite file holds the wrapped key, and what was
# destroyed stays destroyed.  The attacker is a reader of the state
# directory after the restart.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-shred.sh"
. "$(dirname "$0")/lib-crash.sh"

command -v gdb >/dev/null || { echo "SKIPPED: gdb is not installed"; exit 77; }
write_config "[access]" "approvals_required=2"
start_dkmd || exit 1
audit_mark >/dev/null
DB=$T/state/dkm.db
FILES=("$DB" "$DB-wal" "$DB-shm")
record() { sqlite3 -readonly "$DB" "SELECT value FROM kv WHERE key = '$1'"; }

printf 'generation one' | as svc encrypt > "$W/ct1"
for _ in 1 2 3; do as op key rotate >/dev/null; done
did=$(record names/default | sed -n 1p)
gen1=$(json_field "$(record "policies/$did/gens/0000000001")" wrapped_key)
check "generation 1's wrapped key is read from the store (${#gen1} chars)" test "${#gen1}" -ge 40
id=$(as op key destroy 1 --reason "crash before the shred")
as appr access approve "$id" >/dev/null

crash_at sqlite_shred as appr2 access approve "$id"
check "the killed dkmd left the wrapped key in the WAL (what the next start must shred)" \
        test -n "$(leaks "$gen1" "${FILES[@]}")"

start_dkmd || exit 1
refused "generation 1 stays destroyed" "destroyed" as svc decrypt --in "$W/ct1"
found=$(leaks "$gen1" "${FILES[@]}")
check "after the restart no SQLite file holds generation 1's wrapped key${found:+ (found: $found)}" \
        test -z "$found"
check "the note of the pending shred is gone" test ! -e "$T/state/shred-pending"

# A purge: its policy record held the availability key.
mkdir -p "$T/keys"
head -c 32 /dev/urandom > "$T/keys/a.key"
head -c 32 /dev/urandom > "$T/keys/b.key"
chmod 0600 "$T/keys/a.key" "$T/keys/b.key"
stop_dkmd
write_config "[access]" "approvals_required=2" "[policy]" "key_dirs=$T/keys"
start_dkmd || exit 1
as op policy create acme --customer-key "file:$T/keys/a.key" --customer-key "file:$T/keys/b.key" >/dev/null
printf 'acme data' | as svc encrypt --policy acme > "$W/a1"
aid=$(record names/acme | sed -n 1p)
avail=$(json_field "$(record "policies/$aid")" availability_key)
check "acme's availability key is read from the store (${#avail} chars)" test "${#avail}" -ge 40
id=$(as op policy purge acme --reason "crash before the shred")
as appr access approve "$id" >/dev/null
crash_at sqlite_shred as appr2 access approve "$id"
check "the killed dkmd left the availability key in the WAL" test -n "$(leaks "$avail" "${FILES[@]}")"
start_dkmd || exit 1
refused "acme stays purged" "purged" as svc decrypt --in "$W/a1"
found=$(leaks "$avail" "${FILES[@]}")
check "after the restart no SQLite file holds acme's availability key${found:+ (found: $found)}" \
        test -z "$found"
check "store verify passes" bash -c "as op store verify >/dev/null"
check "the restart audited the shred" matches -E 'op=store-shred .*res=success' \
        <<<"$(audit_search -m CRYPTO_KEY_USER -p "$DKMD_PID")"
finish
