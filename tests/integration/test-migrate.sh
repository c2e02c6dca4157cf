#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Outgrowing one machine: a SQLite node with 1,000 ciphertexts over 20
# generations of 3 policies is stopped and moved with dkmd --migrate-from
# into an empty prefix of a real three-member etcd cluster; three nodes
# start on that prefix and each decrypts all 1,000.  The source is left as
# it was.  Then back: the etcd prefix into a fresh SQLite state directory,
# where every ciphertext decrypts again.  Refused, each with its reason and
# nothing written: the same store on both sides, the wrong master key, an
# unreadable source, a source that nodes still serve, a non-empty target.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }
trap 'stop_nodes; stop_dkmd; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
PREFIX=/dkm-migrate-$$/

# corpus SOCKET ARGS...: ct-corpus as the service account.
corpus() {
        setpriv --reuid "$SVC_UID" --regid "$SVC_UID" --groups "$USERS_GID" --inh-caps=-all \
                "$BUILD/tools/ct-corpus" "$@"
}
keys_under() { etcd_ctl get --prefix "$1" --keys-only | sed '/^$/d' | wc -l; }
# migrate TARGET-CONF SOURCE-CONF: the output in $T/migrate.out, and in
# dkmd.log too, where finish() looks for sanitizer reports (SAN=1).
migrate() {
        local rc
        "$DKMD" --config "$1" --migrate-from "$2" > "$T/migrate.out" 2>&1
        rc=$?
        cat "$T/migrate.out" >> "$T/dkmd.log"
        return $rc
}
migrate_fails() { ! migrate "$@"; }
says() { matches -- "$1" "$T/migrate.out" || { echo "    got: $(tail -n 3 "$T/migrate.out")"; return 1; }; }

# --- the single SQLite node -------------------------------------------------
write_config
start_dkmd || exit 1
audit_mark >/dev/null
as op policy create payroll >/dev/null
as op policy create mail >/dev/null
made=0
for g in $(seq 1 20); do
        corpus "$SOCK" encrypt "$W/corpus" $(((g - 1) * 50)) 50 default payroll mail >/dev/null || break
        made=$((made + 50))
        [ "$g" -lt 20 ] || break
        for p in default payroll mail; do as op key rotate --policy "$p" >/dev/null || break 2; done
done
check "1,000 ciphertexts over 20 generations of 3 policies" test "$made" -eq 1000
check "  policy mail is at generation 20" bash -c \
        "as op key list --policy mail --json | tr -d ' \n' | grep -q '\"generation\":20,'"
check "  all decrypt on the SQLite node" corpus "$SOCK" decrypt "$W/corpus"
check "  and a backup of it is taken" bash -c "as op backup --out '$W/backup' >/dev/null"
stop_dkmd
src_sum=$(cat "$T/state/dkm.db" "$T/state/dkm.db-wal" 2>/dev/null | sha256sum)

# --- refusals before anything is written ------------------------------------
cp "$T/state/master.key" "$T/fleet-master.key"
for n in a b c; do
        node_config "$n" "[access]" "approvals_required=2" \
                "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINTS" "prefix=$PREFIX" \
                "node_name=node-$n-$$" "node_ttl=3s"
done
A=$(node_dir a)/dkmd.conf
# Node a is the old machine: its state directory stays, beside the old dkm.db.
sed -i "s|^state_dir=.*|state_dir=$T/state|" "$A"

check "the same store on both sides is refused" migrate_fails "$CONF" "$CONF"
check "  saying so" says "the source and the target are the same store"

head -c 32 /dev/urandom > "$T/other.key"
chmod 0600 "$T/other.key"
sed "s|^master_key=.*|master_key=$T/other.key|" "$A" > "$T/wrong-key.conf"
check "the wrong master key is refused" migrate_fails "$T/wrong-key.conf" "$CONF"
check "  saying the master key does not open the source" says "the master key does not open the source store"
check "  and nothing is under the prefix" test "$(keys_under "$PREFIX")" -eq 0

sed "s|^state_dir=.*|state_dir=$T/nowhere|" "$CONF" > "$T/missing.conf"
check "a source store that is not there is refused" migrate_fails "$A" "$T/missing.conf"
check "  saying it cannot be read" says "cannot read the source store: cannot open store $T/nowhere/dkm.db"
check "  and creates nothing there" test ! -e "$T/nowhere/dkm.db"
mkdir -m 0700 "$T/garbage"
head -c 8192 /dev/urandom > "$T/garbage/dkm.db"
sed "s|^state_dir=.*|state_dir=$T/garbage|" "$CONF" > "$T/garbage.conf"
check "a source that is not a store is refused" migrate_fails "$A" "$T/garbage.conf"
check "  saying what it is" says "not a readable SQLite database"
check "  and nothing is under the prefix" test "$(keys_under "$PREFIX")" -eq 0
check "unaudited ([audit] fail_closed) is refused" bash -c "! DKM_AUDIT_FAIL=1 '$DKMD' --config '$A' \
        --migrate-from '$CONF' > '$T/migrate.out' 2>&1"
cat "$T/migrate.out" >> "$T/dkmd.log"
check "  saying why" says "a migration is not done unaudited"
check "  and nothing is under the prefix" test "$(keys_under "$PREFIX")" -eq 0
check "the refusals audited" bash -c "ausearch -m CRYPTO_KEY_USER -i --start $AUDIT_MARK 2>/dev/null |
        grep 'op=store-migration' | grep -q 'res=failed'"

# --- SQLite to a three-member etcd cluster ------------------------------------
check "migrate the SQLite store into the empty etcd prefix" migrate "$A" "$CONF"
check "  it counts what it copied and verified" \
        says "records copied from sqlite:$T/state/dkm.db to etcd:.* 3 policies, 60 generations unwrap"
copied=$(sed -n 's/.*migrate: \([0-9]*\) records copied.*/\1/p' "$T/migrate.out")
check "  every record is under the prefix ($copied)" test "$(keys_under "$PREFIX")" -eq "${copied:-x}"
check "  the source is unchanged" test "$(cat "$T/state/dkm.db" "$T/state/dkm.db-wal" 2>/dev/null | sha256sum)" = "$src_sum"
check "a second migration into the prefix is refused" migrate_fails "$A" "$CONF"
check "  saying the target is not empty" says "is not empty"
for n in a b c; do
        node_start "$n" || exit 1
done
for n in a b c; do
        check "all 1,000 decrypt on node $n" corpus "$(node_sock $n)" decrypt "$W/corpus"
done
check "store verify passes on node b" on b op store verify
check "the fleet rotates on" on c op key rotate --policy payroll
check "the migration audited" bash -c "ausearch -m CRYPTO_KEY_USER -i --start $AUDIT_MARK 2>/dev/null |
        grep 'op=store-migration' | grep 'res=success' | grep -q 'records=$copied '"

# The same move by backup and restore, on the old machine: the SQLite
# store-seen there must not judge the etcd prefix's records.
sed "s|^prefix=.*|prefix=/dkm-restore-$$/|" "$A" > "$T/restore.conf"
check "restore the SQLite node's backup into another prefix, on the old machine" \
        bash -c "'$DKMD' --config '$T/restore.conf' --restore '$W/backup' > '$T/restore.out' 2>&1 || { tail -n 2 '$T/restore.out'; false; }"
cat "$T/restore.out" >> "$T/dkmd.log"
check "  it keeps its marks in that prefix's own store-seen file" \
        bash -c "ls '$T/state'/store-seen-etcd-* | wc -l | grep -qx 2"

# --- and back: etcd to a fresh SQLite state directory -----------------------
BACK=$T/back.conf
sed -e "s|^state_dir=.*|state_dir=$T/state-back|" -e "s|^socket=.*|socket=$T/run/back.sock|" \
        -e "s|^\[daemon\]|[daemon]\nmaster_key=$T/fleet-master.key|" "$CONF" > "$BACK"
check "a source that nodes still serve is refused" migrate_fails "$BACK" "$A"
check "  saying to stop them" says "still serve the source store"
check "  and nothing was written" test ! -e "$T/state-back/dkm.db"
stop_nodes
check "migrate the etcd prefix into a fresh SQLite state directory" migrate "$BACK" "$A"
check "  it verifies every generation" says "3 policies, 61 generations unwrap"
CONF=$BACK SOCK=$T/run/back.sock start_dkmd || exit 1
check "all 1,000 decrypt on the SQLite node" corpus "$T/run/back.sock" decrypt "$W/corpus"
check "store verify passes there" env SOCK="$T/run/back.sock" bash -c 'as op store verify >/dev/null'
stop_dkmd
# The SQLite store lost, its node's store-seen still there: the records of
# a new copy would be judged by what the node saw of the lost one.
rm -f "$T/state-back"/dkm.db*
check "a target where this node served another store is refused" migrate_fails "$BACK" "$A"
check "  naming the store-seen file" says "$T/state-back/store-seen exists"
check "  and nothing was written" test ! -s "$T/state-back/dkm.db"
finish
