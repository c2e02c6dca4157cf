#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Made the store fixtures under tests/integration/data/upgrade/ with the dkmd
# of commit 57c8c38 (main before records were authenticated), for
# tests/integration/test-upgrade.sh.  Kept to show how they were made; run
# it again only with a build of that commit:
#   BUILD=build bash tests/tools/make-upgrade-fixture.sh OUTDIR
#
# In each store (SQLite, and etcd under prefix /dkm-upgrade/): policy
# "default" with generation 1 archived, 2 retired and 3 active; policy
# "tenant" on two file customer keys (under $FIXTURE_KEYS, a path fixed
# because the policy record names it), assigned to the service account; an
# access request that was granted (it has expired by the time the fixture is
# used), one denied and one pending; ciphertexts under generations 1, 2
# and 3 and under tenant.
here=$(cd "$(dirname "$0")/../integration" && pwd)
OUT=$(realpath -m "${1:?usage: make-upgrade-fixture.sh OUTDIR}")
. "$here/lib.sh"
. "$here/lib-etcd.sh"
FIXTURE_KEYS=/tmp/dkm-upgrade-fixture-keys
trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
mkdir -p "$OUT" "$FIXTURE_KEYS"
[ -f "$FIXTURE_KEYS/a.key" ] || { head -c 32 /dev/urandom > "$FIXTURE_KEYS/a.key"; head -c 32 /dev/urandom > "$FIXTURE_KEYS/b.key"; }
chmod 600 "$FIXTURE_KEYS"/*.key
cp "$FIXTURE_KEYS"/a.key "$FIXTURE_KEYS"/b.key "$OUT/"

populate() { # $1: where the ciphertexts go
        local c=$1 id
        mkdir -p "$c"
        printf 'gen1 secret' | as svc encrypt --policy default > "$W/g1" || return 1
        as op key rotate >/dev/null || return 1
        printf 'gen2 secret' | as svc encrypt --policy default > "$W/g2" || return 1
        as op key rotate >/dev/null || return 1
        printf 'gen3 secret' | as svc encrypt --policy default > "$W/g3" || return 1
        as op key retire 2 >/dev/null || return 1
        as op policy create tenant --customer-key "file:$FIXTURE_KEYS/a.key" \
                --customer-key "file:$FIXTURE_KEYS/b.key" >/dev/null || return 1
        printf 'tenant secret' | as svc encrypt --policy tenant > "$W/t1" || return 1
        as op policy assign tenant --uid "$SVC_UID" >/dev/null || return 1
        id=$(as op access request --reason "fixture grant" --duration 10m --policy default) || return 1
        as appr access approve "$id" >/dev/null && as appr2 access approve "$id" >/dev/null || return 1
        id=$(as op access request --reason "fixture denied" --duration 10m) || return 1
        as appr access deny "$id" --reason "fixture" >/dev/null || return 1
        as op access request --reason "fixture pending" --duration 10m >/dev/null || return 1
        cp "$W/g1" "$W/g2" "$W/g3" "$W/t1" "$c/"
}

# SQLite: the state directory as dkmd left it.
write_config "[access]" "approvals_required=2"
start_dkmd || exit 1
populate "$OUT/sqlite" || { cat "$T/dkmd.log"; exit 1; }
stop_dkmd
# One file: what the WAL holds goes into the database.
sqlite3 "$T/state/dkm.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null || exit 1
[ ! -s "$T/state/dkm.db-wal" ] || { echo "the WAL was not checkpointed"; exit 1; }
cp "$T/state/dkm.db" "$T/state/master.key" "$OUT/sqlite/"

# etcd: every key under the prefix, as etcdctl prints it with -w json.
etcd_cluster_start "$T/etcd" || exit 1
rm -rf "$T/state"
write_config "[access]" "approvals_required=2" "[store]" "backend=etcd" \
        "endpoints=$ETCD_ENDPOINTS" "prefix=/dkm-upgrade/"
start_dkmd || exit 1
populate "$OUT/etcd" || { cat "$T/dkmd.log"; exit 1; }
stop_dkmd
cp "$T/state/master.key" "$OUT/etcd/"
etcd_ctl get --prefix /dkm-upgrade/ -w json > "$OUT/etcd/dump.json" || exit 1
echo "fixtures in $OUT"
