#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Crypto-shredding leaves no copy in the SQLite store: after an approved key
# destroy and an approved policy purge, the wrapped keys they removed (the
# generation's, and the purged policy's availability key, its customer-wrapped
# copies and its generations') are in none of dkm.db, dkm.db-wal and
# dkm.db-shm, in any encoding (lib-shred.sh), and a restart does not bring
# them back.  The attacker is a reader of the state directory, e.g. of a
# copy of the disk taken after the shredding.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-shred.sh"

mkdir -p "$T/keys"
write_config "[access]" "approvals_required=2" "[policy]" "key_dirs=$T/keys"
start_dkmd || exit 1
DB=$T/state/dkm.db
FILES=("$DB" "$DB-wal" "$DB-shm" "$DB-journal")

# record KEY: the stored value of one key, read as any reader of the file can.
record() { sqlite3 -readonly "$DB" "SELECT value FROM kv WHERE key = '$1'"; }
# The first line: a name record carries its MAC on the next (dkm(7), "Authenticated records").
policy_id() { record "names/$1" | sed -n 1p; }

printf 'generation one' | as svc encrypt > "$W/ct1"
as op key rotate >/dev/null
printf 'generation two' | as svc encrypt > "$W/ct2"
head -c 32 /dev/urandom > "$T/keys/cust-a.key"
head -c 32 /dev/urandom > "$T/keys/cust-b.key"
chmod 0600 "$T/keys/cust-a.key" "$T/keys/cust-b.key"
check "a customer-managed policy" bash -c \
        "as op policy create acme --customer-key 'file:$T/keys/cust-a.key' --customer-key 'file:$T/keys/cust-b.key' >/dev/null"
printf 'acme data' | as svc encrypt --policy acme > "$W/a1"

did=$(policy_id default)
aid=$(policy_id acme)
gen1=$(json_field "$(record "policies/$did/gens/0000000001")" wrapped_key)
prec=$(record "policies/$aid")
avail=$(json_field "$prec" availability_key)
blob1=$(sed -n 's/.*"customer_keys":\[{[^}]*"blob":"\([^"]*\)".*/\1/p' <<<"$prec" | sed 's#\\/#/#g')
agen1=$(json_field "$(record "policies/$aid/gens/0000000001")" wrapped_key)
check "the wrapped keys are read from the store before (${#gen1}, ${#avail}, ${#blob1}, ${#agen1} chars)" \
        test "${#gen1}" -ge 40 -a "${#avail}" -ge 40 -a "${#blob1}" -ge 40 -a "${#agen1}" -ge 40
check "before the destroy, the file holds generation 1's wrapped key" \
        test -n "$(leaks "$gen1" "${FILES[@]}")"

# Many writes of the same record before the destroy: each leaves a page image
# in the WAL (use counts are reserved in blocks; rotations rewrite records).
for _ in 1 2 3; do as op key rotate >/dev/null; done

id=$(as op key destroy 1 --reason "shred test")
as appr access approve "$id" >/dev/null
check "the destroy is approved and carried out" bash -c "as appr2 access approve $id | grep -q done"
refused "generation 1 no longer decrypts" "destroyed" as svc decrypt --in "$W/ct1"
found=$(leaks "$gen1" "${FILES[@]}")
check "after the destroy no SQLite file holds generation 1's wrapped key${found:+ (found: $found)}" \
        test -z "$found"

pid=$(as op policy purge acme --reason "contract ended")
as appr access approve "$pid" >/dev/null
as appr2 access approve "$pid" >/dev/null
refused "the purged policy's data is unreadable" "purged" as svc decrypt --in "$W/a1"
for what in avail blob1 agen1; do
        found=$(leaks "${!what}" "${FILES[@]}")
        check "after the purge no SQLite file holds $what${found:+ (found: $found)}" test -z "$found"
done
check "generation 2 still decrypts" bash -c "as svc decrypt --in '$W/ct2' | grep -qx 'generation two'"

shredder=$DKMD_PID
stop_dkmd
start_dkmd || exit 1
found=$(leaks "$gen1" "${FILES[@]}")$(leaks "$avail" "${FILES[@]}")
check "after a restart still nothing${found:+ (found: $found)}" test -z "$found"
check "and the store is whole" bash -c "as svc decrypt --in '$W/ct2' | grep -qx 'generation two'"
# shellcheck disable=SC2034 # read by lib-audit.sh
AUDIT_WAIT=5
check "audit: the store forgot the earlier copies, twice" \
        test "$(audit_count 'op=store-shred .*res=success' -m CRYPTO_KEY_USER -p "$shredder")" -ge 2
finish
