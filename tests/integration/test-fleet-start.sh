#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A fleet that starts all at once, on a real three-member etcd cluster
# (lib-etcd.sh): three nodes run dkmd --init and then dkmd at the same
# moment on an empty prefix, six times over, each round on a new prefix.
# Each time the three race to create the default policy; every node must
# serve, with the one policy the winner created (none exits with "it already
# exists"), and a ciphertext made on one decrypts on the others.  An empty
# prefix at a plain start (no --init) is refused, never filled: it is what a
# wiped or mistyped prefix looks like.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }

trap 'stop_nodes; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
head -c 32 /dev/urandom >"$T/fleet-master.key"
chmod 0600 "$T/fleet-master.key"

conf_for() { # NAME PREFIX
        node_config "$1" "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINTS" \
                "prefix=$2" "node_name=node-$1" "node_ttl=3s"
}
default_id() { on "$1" op policy list | awk '$1 == "default" { print $3 }'; }

# An empty prefix, no --init: refused, and left empty.
conf_for lone /dkm-empty/
d=$(node_dir lone)
if timeout 20 "$DKMD" --config "$d/dkmd.conf" >"$d/dkmd.log" 2>&1; then
        fail "a plain start on an empty prefix: dkmd exited 0"
elif matches "the store is empty (no record under the etcd prefix).*dkmd --init" "$d/dkmd.log"; then
        pass "a plain start on an empty prefix is refused ($(grep -m1 -o 'the store is empty.*' "$d/dkmd.log" | cut -c1-120))"
else
        fail "a plain start on an empty prefix: $(tail -n 1 "$d/dkmd.log")"
fi
check "and the prefix stays empty" test -z "$(etcd_ctl get /dkm-empty/ --prefix --keys-only)"

ROUNDS=6
served=0 lost=0
for round in $(seq 1 "$ROUNDS"); do
        names=("r${round}a" "r${round}b" "r${round}c")
        for n in "${names[@]}"; do conf_for "$n" "/dkm-race-$round/"; done
        # Each node as a fleet's unit would run it: --init, then the
        # daemon, all three launched at once.
        for n in "${names[@]}"; do
                d=$(node_dir "$n")
                ("$DKMD" --config "$d/dkmd.conf" --init && exec "$DKMD" --config "$d/dkmd.conf") \
                        >>"$d/dkmd.log" 2>&1 &
                NODE_PID[$n]=$!
        done
        for n in "${names[@]}"; do
                d=$(node_dir "$n")
                for _ in $(seq 1 400); do
                        matches 'ready:' "$d/dkmd.log" && break
                        kill -0 "${NODE_PID[$n]}" 2>/dev/null || break
                        sleep 0.05
                done
                if matches 'ready:' "$d/dkmd.log"; then
                        served=$((served + 1))
                else
                        lost=$((lost + 1))
                        echo "  round $round, node $n: $(grep -m1 -E 'cannot|refus' "$d/dkmd.log")"
                fi
        done
        ids=$(for n in "${names[@]}"; do default_id "$n"; done | sort -u)
        if [ "$(wc -w <<<"$ids")" != 1 ]; then
                fail "round $round: the nodes serve different default policies or none: '$ids'"
        fi
        printf 'round %s' "$round" | on "${names[0]}" svc encrypt >"$W/ct$round"
        for n in "${names[@]:1}"; do
                on "$n" svc decrypt --in "$W/ct$round" 2>/dev/null | matches -x "round $round" ||
                        fail "round $round: node $n does not decrypt what ${names[0]} encrypted"
        done
        for n in "${names[@]}"; do node_stop "$n"; done
done
adopted=$(cat "$T"/nodes/r*/dkmd.log | grep -c "was created by another node at the same moment")
check "all $((3 * ROUNDS)) simultaneous node starts serve ($served served, $lost exited; $adopted lost the race and adopted the winner's policy)" \
        test "$served" = $((3 * ROUNDS))
finish
