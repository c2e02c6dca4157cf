#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Backup and restore on etcd: a backup of one prefix taken while service
# accounts encrypt and an operator rotates, restored by a new machine into
# an empty prefix of a real three-member cluster, where every ciphertext
# made before the backup decrypts.  A prefix that holds keys and an altered
# backup are refused, and write nothing.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }
trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }

# on_prefix P: the configuration of a node on prefix P (plain http on loopback).
on_prefix() {
        write_config "[access]" "approvals_required=2" \
                "[store]" "backend=etcd" "endpoints=$ETCD_ENDPOINTS" "prefix=$1" "insecure=yes"
}
keys_under() { etcd_ctl get --prefix "$1" --keys-only | sed '/^$/d' | wc -l; }

on_prefix /dkm-a/
start_dkmd || exit 1
audit_mark >/dev/null
for i in 1 2 3 4; do
        printf 'secret %s' "$i" | as svc encrypt > "$W/pre-$i.ct"
        as op key rotate >/dev/null
done

( for i in $(seq 1 20); do printf 'during %s' "$i" | as svc encrypt > /dev/null 2>&1; done ) &
enc_pid=$!
( for _ in 1 2 3; do as op key rotate >/dev/null 2>&1; done ) &
rot_pid=$!
sleep 0.3
check "an operator takes a backup of the etcd prefix under load" \
        bash -c "as op backup --out '$W/backup' > '$T/backup.out'"
wait "$enc_pid" "$rot_pid"
check "it names the records and the revision" matches -E 'records at store revision [0-9]+' "$T/backup.out"
check "store verify passes on etcd" as op store verify
stop_dkmd

restore() { "$DKMD" --config "$CONF" --restore "$1" > "$T/restore.out" 2>&1; }
restore_fails() { ! restore "$1"; }
check "restore into the prefix it came from is refused" restore_fails "$W/backup"
check "  saying the store is not empty" matches "not empty" "$T/restore.out"

# A new machine: the master key, an empty state directory, an empty prefix.
mv "$T/state" "$T/state-a"
mkdir -m 0700 "$T/state"
cp "$T/state-a/master.key" "$T/state/master.key"
on_prefix /dkm-b/
cp "$W/backup" "$W/altered"
printf 'X' | dd of="$W/altered" bs=1 seek=300 conv=notrunc status=none
check "an altered backup is refused" restore_fails "$W/altered"
check "  saying it was altered" matches "altered" "$T/restore.out"
check "  and nothing was written under the prefix" test "$(keys_under /dkm-b/)" -eq 0
check "restore into the empty prefix" restore "$W/backup"
check "restore says which generations the backup holds" \
        matches -E "policy 'default': the backup holds generations 1-[0-9]+" "$T/restore.out"
n=$(sed -n 's/.* \([0-9]*\) records restored.*/\1/p' "$T/restore.out")
check "every restored record is under the new prefix ($n)" test "$(keys_under /dkm-b/)" -eq "$n"

start_dkmd || exit 1
bad=0
for i in 1 2 3 4; do
        [ "$(as svc decrypt --in "$W/pre-$i.ct")" = "secret $i" ] || bad=$((bad + 1))
done
check "every ciphertext made before the backup decrypts on the new machine" test "$bad" -eq 0
check "store verify passes on the restored prefix" as op store verify
check "the restored node rotates on" as op key rotate
recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: backup" grep -q "op=store-backup .*res=success" <<<"$recs"
check "audit: restore" grep -q "op=store-restore .*res=success" <<<"$recs"
finish
