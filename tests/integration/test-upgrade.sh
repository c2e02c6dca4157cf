#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Upgrade in place: stores written by the dkmd of before authenticated
# records (tests/integration/data/upgrade/, made by
# tests/tools/make-upgrade-fixture.sh from main at 57c8c38), one SQLite and
# one etcd, are taken over at the first start: every record gains its MAC,
# every earlier ciphertext decrypts as before (the retired generation still
# does not), the requests are all there, and a new grant works.  After the
# migration an unauthenticated record is refused, an edited one stops dkmd
# from starting, and so does a store whose format record was removed to
# have dkmd authenticate forged records.  Then a rolling upgrade (below).
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

FIX=$(cd "$(dirname "$0")/data/upgrade" && pwd)
# The customer-key policy's record names these paths.
KEYS=/tmp/dkm-upgrade-fixture-keys
trap 'stop_dkmd; etcd_cluster_stop; rm -rf "$KEYS"; cleanup' EXIT
mkdir -p "$KEYS"
install -m 0600 "$FIX/a.key" "$KEYS/a.key"
install -m 0600 "$FIX/b.key" "$KEYS/b.key"

# takeover DIR: the checks after the first start of the new dkmd on the
# store the fixture DIR goes with.
takeover() {
        local d=$1 n
        check "the first start authenticated the old records" \
                matches -E "store: authenticated [0-9]+ records written before" "$T/dkmd.log"
        check "generation 1 (archived) decrypts" bash -c "as svc decrypt --in '$d/g1' | grep -qx 'gen1 secret'"
        check "generation 3 (active) decrypts" bash -c "as svc decrypt --in '$d/g3' | grep -qx 'gen3 secret'"
        check "the customer-key policy decrypts" bash -c "as svc decrypt --in '$d/t1' | grep -qx 'tenant secret'"
        refused "generation 2 stays retired" "retired" as svc decrypt --in "$d/g2"
        check "the assignment holds: new data goes to tenant" bash -c \
                "printf new | as svc encrypt > '$W/new' && as svc inspect --in '$W/new' | grep -q tenant"
        n=$(as op access list --all --json 2>/dev/null | grep -c '"reason"')
        [ "$n" -gt 0 ] || n=$(as op access list --json | grep -c '"reason"')
        check "the old requests are listed ($n)" test "$n" -ge 1
        id=$(as op access request --reason "after the upgrade" --duration 10m --policy default)
        as appr access approve "$id" >/dev/null; as appr2 access approve "$id" >/dev/null
        check "a new grant decrypts" bash -c "as op decrypt --in '$d/g3' | grep -qx 'gen3 secret'"
        refused "no grant for the human" "" as human decrypt --in "$d/g1"
}

# --- SQLite ------------------------------------------------------------------
mkdir -p "$T/state"
chmod 0700 "$T/state"
install -m 0600 "$FIX/sqlite/dkm.db" "$T/state/dkm.db"
write_config "[access]" "approvals_required=2" "request_ttl=10m" "[policy]" "key_dirs=$KEYS"
# The migration seals every record under a key derived from the master key:
# with the wrong one it would lock the right one out.  It is refused first.
head -c 32 /dev/urandom > "$T/state/master.key"; chmod 600 "$T/state/master.key"
sum_before=$(sha256sum < "$T/state/dkm.db")
out=$("$DKMD" --config "$CONF" 2>&1)
check "a wrong master key does not take the old store over" test $? -ne 0
check "and says so" grep -q "wrong master key" <<<"$out"
check "and leaves dkm.db as it was" test "$(sha256sum < "$T/state/dkm.db")" = "$sum_before"
rm -f "$T/state/store-seen"
install -m 0600 "$FIX/sqlite/master.key" "$T/state/master.key"
start_dkmd || exit 1
echo "SQLite store of before:"
takeover "$FIX/sqlite"
check "every record in dkm.db carries its MAC" test "$(sqlite3 "$T/state/dkm.db" \
        "select count(*) from kv where cast(value as text) not like '%\"dkm_auth\":\"1.%'")" = 0
stop_dkmd
# A record put in after the migration, by someone with the disk only.
sqlite3 "$T/state/dkm.db" "insert into kv(key, value, mod_revision, create_revision) select 'assign/uid/$HUMAN_UID', 'default', max(mod_revision) + 1, max(mod_revision) + 1 from kv" 2>"$T/sql.err" ||
        sqlite3 "$T/state/dkm.db" ".schema kv" >>"$T/sql.err"
start_dkmd || exit 1
check "the second start migrates nothing" test "$(grep -c 'store: authenticated' "$T/dkmd.log")" = 1
check "a record written to the disk without the key is refused" \
        matches "refused store record assign/uid/$HUMAN_UID" "$T/dkmd.log"
check "everything still decrypts" bash -c "as svc decrypt --in '$FIX/sqlite/g1' | grep -qx 'gen1 secret'"
stop_dkmd
# Someone with the disk only edits the retired generation back to archived:
# the record fails its MAC, the policy does not load, and dkmd does not
# start rather than serve without it (it fails closed).
g2="key like 'policies/%/gens/0000000002' and cast(value as text) like '%\"state\":\"retired\"%'"
sqlite3 "$T/state/dkm.db" "select count(*) from kv where $g2" | matches -x 1 || fail "no retired generation 2 in dkm.db"
cp "$T/state/dkm.db" "$T/dkm.db.good"
sqlite3 "$T/state/dkm.db" "update kv set value = cast(replace(cast(value as text), '\"retired\"', '\"archived\"') as blob) where $g2"
check "dkmd does not start on a generation edited back to archived" \
        bash -c "! timeout 30 '$DKMD' --config '$CONF' >'$T/edited.log' 2>&1"
check "saying which record it refused" matches "refused store record policies/.*/gens/0000000002 .*MAC does not match" \
        "$T/edited.log"
cp "$T/dkm.db.good" "$T/state/dkm.db"
sqlite3 "$T/state/dkm.db" "delete from kv where key = 'format'"
check "a store whose format record was removed does not start" \
        bash -c "! timeout 30 '$DKMD' --config '$CONF' >'$T/noformat.log' 2>&1"
check "saying why" matches "format record (format) is missing" "$T/noformat.log"

# --- etcd --------------------------------------------------------------------
if ! { etcd_available && etcd --version >/dev/null 2>&1; }; then
        [ "$FAILED" -eq 0 ] || finish
        echo "SKIPPED: etcd is not installed or does not run here (the SQLite upgrade passed)"
        exit 77
fi
echo "etcd store of before:"
ETCD_TLS_DIR=$T/tls
etcd_tls_make "$ETCD_TLS_DIR" || exit 1
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
# etcdctl's json: base64 keys and values, in key order; leases are not kept
# (the fixture's grant has long expired).
grep -o '"key":"[^"]*"\|"value":"[^"]*"' "$FIX/etcd/dump.json" | cut -d'"' -f4 | paste - - |
        while read -r k v; do
                etcd_ctl put "$(base64 -d <<<"$k")" -- "$(base64 -d <<<"$v")" >/dev/null || exit 1
        done || { echo "FAIL: cannot load the etcd fixture"; exit 1; }
rm -rf "$T/state" "$T/dkmd.log"
mkdir -p "$T/state"
chmod 0700 "$T/state"
install -m 0600 "$FIX/etcd/master.key" "$T/state/master.key"
write_config "[access]" "approvals_required=2" "request_ttl=10m" "[policy]" "key_dirs=$KEYS" \
        "[store]" "backend=etcd" "endpoints=$ETCD_ENDPOINTS" "prefix=/dkm-upgrade/" \
        "cacert=$ETCD_TLS_DIR/ca.pem" "cert=$ETCD_TLS_DIR/client.pem" "key=$ETCD_TLS_DIR/client.key"
start_dkmd || exit 1
takeover "$FIX/etcd"
# (A value that is no JSON object carries its MAC on a line of its own.)
keys=$(etcd_ctl get --prefix /dkm-upgrade/ --keys-only | grep -c .)
macs=$(etcd_ctl get --prefix /dkm-upgrade/ --print-value-only | grep -c '"dkm_auth":"1\.')
check "every value in etcd carries its MAC ($macs of $keys)" test "$macs" = "$keys"

# A rolling upgrade, in the order dkm(7) recommends: the first new node
# took the store over above; an old node still running writes as it always
# did, without a MAC (here: its use reservation of generation 3, put as it
# would).  The new node refuses it and keeps its state; once the last old
# node is gone the administrator runs dkmd --authenticate-store, and the
# record is accepted.
pid=$(etcd_ctl get /dkm-upgrade/names/default --print-value-only | head -1)
g3=/dkm-upgrade/policies/$pid/gens/0000000003
old=$(etcd_ctl get "$g3" --print-value-only | sed 's/,"dkm_auth":"[^"]*"//; s/"uses_reserved":[0-9]*/"uses_reserved":999936/')
etcd_ctl put "$g3" -- "$old" >/dev/null
for _ in $(seq 1 50); do matches "refused store record policies/$pid/gens/0000000003" "$T/dkmd.log" && break; sleep 0.1; done
check "the new node refuses what an old node wrote after the takeover" \
        matches "refused store record policies/$pid/gens/0000000003 .*not authenticated" "$T/dkmd.log"
check "and still serves generation 3" bash -c "as svc decrypt --in '$FIX/etcd/g3' | grep -qx 'gen3 secret'"
stop_dkmd
check "dkmd --authenticate-store vouches for it" "$DKMD" --config "$CONF" --authenticate-store 2>"$T/adopt.log"
check "for one record" matches "authenticated 1 records that carried no MAC" "$T/adopt.log"
before=$(grep -c "refused store record" "$T/dkmd.log")
start_dkmd || exit 1
check "after it, the record is accepted" test "$(grep -c "refused store record" "$T/dkmd.log")" = "$before"
reserved() { etcd_ctl get "$g3" --print-value-only | matches '"uses_reserved":999936,.*dkm_auth'; }
check "with the old node's reservation" reserved
check "generation 3 decrypts" bash -c "as svc decrypt --in '$FIX/etcd/g3' | grep -qx 'gen3 secret'"
finish
