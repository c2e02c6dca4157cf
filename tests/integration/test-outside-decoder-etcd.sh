#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The outside reader (decode/dkm_decode.py, see test-outside-decoder.sh) on a
# backup of an etcd prefix: the records' keys and MACs are without the
# prefix, as dkm-formats(5) says.  v1 and v2 ciphertexts of the default and a
# customer-managed policy, across a rotation.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "etcd is not installed (tests/deps.sh installs it)"; exit 1; }
python3 -c 'import cryptography' 2>/dev/null || {
        echo "python3-cryptography is missing (tests/deps.sh installs it)"; exit 1; }
trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }

DECODE=$(cd "$(dirname "$0")/decode" && pwd)/dkm_decode.py
decode() { (cd / && env -i PATH=/usr/bin:/bin python3 -I "$DECODE" "$@"); }
export DECODE
export -f decode

K=$T/ck
install -d -m 0700 "$K"
for x in 1 2; do head -c 32 /dev/urandom > "$K/$x.key"; chmod 600 "$K/$x.key"; done
DKM_ENGINE=openssl write_config "[policy]" "key_dirs=$K" \
        "[store]" "backend=etcd" "endpoints=$ETCD_ENDPOINTS" "prefix=/dkm-od/" "insecure=yes"
start_dkmd || exit 1
MASTER=$T/state/master.key
check "a customer-managed policy on two file: keys" bash -c \
        "as op policy create cust --customer-key 'file:$K/1.key' --customer-key 'file:$K/2.key' >/dev/null"
n=0
for round in 1 2; do
        for policy in default cust; do
                n=$((n + 1)); printf 'etcd secret %s' "$n" > "$W/p$n"
                as svc encrypt --policy "$policy" --context "round=$round" --in "$W/p$n" --out "$W/c$n" ||
                        fail "encrypt $n"
                echo "$n $policy $round" >> "$T/made"
                n=$((n + 1)); head -c $((100000 + n)) /dev/urandom > "$W/p$n"
                as svc encrypt --policy "$policy" --in "$W/p$n" --out "$W/c$n" || fail "encrypt $n"
                echo "$n $policy" >> "$T/made"
        done
        as op key rotate >/dev/null || fail "rotate default"
        as op key rotate --policy cust >/dev/null || fail "rotate cust"
done
check "an operator takes a backup of the etcd prefix" bash -c "as op backup --out '$W/backup' >/dev/null"
stop_dkmd
check "etcd holds the records under the prefix" test "$(etcd_ctl get --prefix /dkm-od/policies/ --keys-only | sed '/^$/d' | wc -l)" -ge 8
check "the reader checks the backup: etcd, its prefix, every record's MAC" bash -c \
        "decode --backup '$W/backup' --master-key '$MASTER' --check | grep -q '^backup of etcd /dkm-od/ .*every MAC verifies'"
ok=0
while read -r i policy round; do
        args=(--backup "$W/backup" --master-key "$MASTER")
        [ -n "$round" ] && args+=(--context "round=$round")
        [ "$policy" = cust ] && args+=(--customer-key "$K/2.key")
        if decode "${args[@]}" "$W/c$i" 2> "$T/d.err" | cmp -s - "$W/p$i"; then
                ok=$((ok + 1))
        else
                fail "ciphertext $i ($policy): $(cat "$T/d.err")"
        fi
done < "$T/made"
check "all $(wc -l < "$T/made") ciphertexts decode ($ok ok)" test "$ok" = "$(wc -l < "$T/made")"
finish
