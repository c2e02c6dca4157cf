#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Crypto-shredding leaves no copy in etcd: after an approved key destroy and
# an approved policy purge, `etcdctl get --rev=N` of the revisions before
# them no longer returns the wrapped generation key, or the purged policy's
# availability key (which only the fleet's master key wraps), because dkmd
# compacted the history; and no member's bbolt file (member/snap/db) holds
# them, in any encoding (lib-shred.sh), because dkmd defragmented each
# member.  The attacker holds etcd credentials, or a copy of a member's disk.
# etcd's own raft log (member/wal) is outside dkm's reach: dkm(7) says
# for how long it keeps a write; the test prints whether it still does.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"
. "$(dirname "$0")/lib-shred.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }
trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
P=/dkm-shred/

mkdir -p "$T/keys"
write_config "[access]" "approvals_required=2" "[policy]" "key_dirs=$T/keys" \
        "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINTS" "prefix=$P"
start_dkmd || exit 1
audit_mark >/dev/null

value() { etcd_ctl get --print-value-only "$P$1"; }
# mod_rev KEY: the revision that last wrote it.
mod_rev() { etcd_ctl get -w json "$P$1" | sed -n 's/.*"mod_revision":\([0-9]*\).*/\1/p'; }
# old_value KEY REV: what `etcdctl get --rev=REV` still answers (nothing once compacted).
old_value() { etcd_ctl get --print-value-only --rev="$2" "$P$1" 2>/dev/null; }
BOLT=("$T"/etcd/m*/member/snap/db)

printf 'generation one' | as svc encrypt > "$W/ct1"
as op key rotate >/dev/null
head -c 32 /dev/urandom > "$T/keys/cust-a.key"
head -c 32 /dev/urandom > "$T/keys/cust-b.key"
chmod 0600 "$T/keys/cust-a.key" "$T/keys/cust-b.key"
check "a customer-managed policy" bash -c \
        "as op policy create acme --customer-key 'file:$T/keys/cust-a.key' --customer-key 'file:$T/keys/cust-b.key' >/dev/null"
printf 'acme data' | as svc encrypt --policy acme > "$W/a1"

# The first line: a name record carries its MAC on the next.
did=$(value names/default | sed -n 1p)
aid=$(value names/acme | sed -n 1p)
gkey=policies/$did/gens/0000000001
gen1=$(json_field "$(value "$gkey")" wrapped_key)
grev=$(mod_rev "$gkey")
avail=$(json_field "$(value "policies/$aid")" availability_key)
arev=$(mod_rev "policies/$aid")
check "the wrapped keys are read from etcd before (${#gen1} and ${#avail} chars, revisions $grev, $arev)" \
        test "${#gen1}" -ge 40 -a "${#avail}" -ge 40 -a -n "$grev" -a -n "$arev"
check "before the destroy, a member's bbolt file holds generation 1's wrapped key" \
        test -n "$(leaks "$gen1" "${BOLT[@]}")"

id=$(as op key destroy 1 --reason "shred test")
as appr access approve "$id" >/dev/null
check "the destroy is approved and carried out" bash -c "as appr2 access approve $id | grep -q done"
refused "generation 1 no longer decrypts" "destroyed" as svc decrypt --in "$W/ct1"
old_value "$gkey" "$grev" > "$T/old-gen"
check "etcdctl get --rev=$grev no longer returns the wrapped generation key" \
        test -z "$(leaks "$gen1" "$T/old-gen")"
found=$(leaks "$gen1" "${BOLT[@]}" | tr "\n" " ")
check "no member's bbolt file holds it${found:+ (found: $found)}" test -z "$found"

pid=$(as op policy purge acme --reason "contract ended")
as appr access approve "$pid" >/dev/null
as appr2 access approve "$pid" >/dev/null
refused "the purged policy's data is unreadable" "purged" as svc decrypt --in "$W/a1"
old_value "policies/$aid" "$arev" > "$T/old-policy"
check "etcdctl get --rev=$arev no longer returns the availability key" \
        test -z "$(leaks "$avail" "$T/old-policy")"
found=$(leaks "$avail" "${BOLT[@]}" | tr "\n" " ")
check "no member's bbolt file holds the availability key${found:+ (found: $found)}" test -z "$found"

# What remains outside dkm's reach, for the record.
found=$(leaks "$avail" "$T"/etcd/m*/member/wal/*.wal | tr '\n' ' ')
echo "  note: etcd's raft log ${found:+still holds it: $found}${found:-does not hold it}"

check "the node still serves" bash -c "printf x | as svc encrypt >/dev/null"
# shellcheck disable=SC2034 # read by lib-audit.sh
AUDIT_WAIT=5
check "audit: the store forgot the earlier copies, twice" \
        test "$(audit_count 'op=store-shred .*res=success' -m CRYPTO_KEY_USER -p "$DKMD_PID")" -ge 2
finish
