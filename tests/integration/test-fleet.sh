#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A fleet: three dkmd nodes (A, B, C), each with its own state directory and
# socket, one master key and one etcd prefix, on a real three-member etcd
# cluster (lib-etcd.sh).  Data encrypted on one node decrypts on the others;
# a rollover on one is used by the others within a second; concurrent
# rollovers make one generation each round, without gaps; the fleet rides out
# one etcd member down, serves reads from cache without quorum and refuses
# changes cleanly, and catches up afterwards; a node killed during a rollover
# comes back consistent; grants and revocations hold across nodes.
#
# Each node follows the store through one held etcd watch: status says
# "streaming" and the watch is not re-opened over many rotations and a quiet
# spell longer than dkmd's silence bound (etcd sends progress notifications
# every second here).  A fourth node, D, talks to member 3 only: when that
# member stops, D's watch breaks; D applies every generation made meanwhile
# when it comes back, and after a compaction of the history it missed, D
# reloads everything (status full_reloads).  Each node
# heartbeats under an etcd lease (node_ttl=3s here): status lists the others
# with their revisions, a clean stop drops a node at once, a killed one after
# its TTL.  A grant's marker lives under a lease of the grant's duration: at
# expiry etcd deletes it and every node refuses the grant, audited once; a
# lease revoked in etcd revokes the grant everywhere.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }

trap 'stop_nodes; etcd_cluster_stop; cleanup' EXIT
# Progress notifications for quiet watches every second, well within dkmd's
# silence bound (10 s).
# shellcheck disable=SC2034 # read by lib-etcd.sh
ETCD_EXTRA_ARGS="--experimental-watch-progress-notify-interval 1s"
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
PREFIX=/dkm-fleet/

for n in a b c; do
        node_config "$n" "[access]" "approvals_required=2" \
                "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINTS" "prefix=$PREFIX" \
                "node_name=node-$n" "node_ttl=3s"
done
# A first: it creates the default policy; then the others load it.
node_start a || exit 1
node_start b || exit 1
node_start c || exit 1
# The cluster here speaks plain http, which [store] insecure=yes allows.
check "plain http: a warning at start" matches "use plain http (\[store\] insecure=yes)" "$(node_dir a)/dkmd.log"

show_logs() {
        local n
        for n in a b c d; do
                [ -f "$(node_dir $n)/dkmd.log" ] || continue
                echo "--- node $n log (tail)"; tail -n 15 "$(node_dir $n)/dkmd.log"
        done
}

# active NODE: the active generation of policy default on that node.
active() { on "$1" op status --json | sed -n 's/.*"active_generation": \([0-9]*\).*/\1/p' | head -1; }
# gen_of FILE: the generation a ciphertext names.
gen_of() { on a svc inspect --in "$1" --json | sed -n 's/.*"generation": \([0-9]*\).*/\1/p'; }
# The generations of policy default in etcd, one number a line.
etcd_gens() { etcd_ctl get "${PREFIX}policies/" --prefix --keys-only | sed -n 's|.*/gens/0*\([0-9]*\)$|\1|p'; }

# converge: every node has the same active generation within $1 s.
converge() {
        local limit=$(( ${1:-3} * 10 )) i
        for i in $(seq 1 "$limit"); do
                [ "$(active a)" = "$(active b)" ] && [ "$(active b)" = "$(active c)" ] && return 0
                sleep 0.1
        done
        echo "nodes disagree: a=$(active a) b=$(active b) c=$(active c)"
        return 1
}

# sfield NODE FIELD: a field of status --json's store_state (flat: no nesting).
sfield() {
        on "$1" op status --json | tr -d ' \n' |
                sed -n "s/.*\"store_state\":{[^}]*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
# wait_field NODE FIELD VALUE [SECONDS]: until the field has that value.
wait_field() {
        local i
        for i in $(seq 1 $(( ${4:-5} * 10 ))); do
                [ "$(sfield "$1" "$2")" = "$3" ] && return 0
                sleep 0.1
        done
        echo "node $1: $2 is $(sfield "$1" "$2"), not $3"
        return 1
}
# rotate_new NODE: a rotation on NODE that makes a new generation (one less
# than a second after the last activation reports the current one); prints it.
rotate_new() {
        local before g
        sleep 1.1
        before=$(active "$1")
        g=$(on "$1" op key rotate | sed -n 's/generation \([0-9]*\) is now active/\1/p')
        [ -n "$g" ] && [ "$g" -gt "$before" ] || { echo "rotate on $1: generation '$g' after $before" >&2; return 1; }
        echo "$g"
}
# reaches FROM TO...: rotate on FROM; each TO has the new active generation
# within 1 s.  Fails on a query begun 1 s or more after the rotation that still
# sees the old generation: the time a query itself takes (dkmctl, on a loaded
# machine) does not count against the node.
reaches() {
        local from=$1 g t0 n asked; shift
        g=$(rotate_new "$from") || return 1
        t0=$(date +%s%N)
        for n in "$@"; do
                while :; do
                        asked=$(( ($(date +%s%N) - t0) / 1000000 ))
                        [ "$(active "$n")" = "$g" ] && break
                        [ "$asked" -lt 1000 ] ||
                                { echo "$n: generation $(active "$n"), not $g, after 1 s"; return 1; }
                        sleep 0.02
                done
        done
        echo "    generation $g from $from on $* in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}
# lists_all NODE: the node lists every generation in etcd and has A's active one.
lists_all() {
        local n
        n=$(etcd_gens | sort -n | tail -1)
        [ "$(on "$1" op key list --json | grep -o '"generation": [0-9]*' | sort -u | wc -l)" = "$n" ] ||
                { echo "node $1 lists $(on "$1" op key list --json | grep -o '"generation": [0-9]*' | sort -u | wc -l) of $n"; return 1; }
        [ "$(active "$1")" = "$(active a)" ] || { echo "node $1 active $(active "$1"), A $(active a)"; return 1; }
}

# gaps_none: the generations in etcd are exactly 1..N and every node lists N.
gaps_none() {
        local n want
        n=$(etcd_gens | sort -n | tail -1)
        want=$(seq 1 "$n" | tr '\n' ' ')
        [ "$(etcd_gens | sort -n | tr '\n' ' ')" = "$want" ] || { echo "gaps: $(etcd_gens | tr '\n' ' ')"; return 1; }
        for x in a b c; do
                [ "$(on $x op key list --json | grep -o '"generation": [0-9]*' | sort -u | wc -l)" = "$n" ] ||
                        { echo "node $x lists $(on $x op key list --json | grep -o '"generation": [0-9]*' | sort -u | wc -l) of $n"; return 1; }
        done
}

# nodes_seen NODE: the nodes NODE's status lists, sorted, space-separated.
nodes_seen() {
        on "$1" op status --json | tr -d ' \n' | grep -o '"name":"node-[a-z]*","self"' |
                sed 's/"name":"\(node-[a-z]*\)".*/\1/' | sort | tr '\n' ' '
}
# etcd_absent KEY: etcd has no such key.
etcd_absent() { [ -z "$(etcd_ctl get "$1")" ]; }
# wait_nodes NODE WANT SECONDS: NODE's status lists exactly WANT within SECONDS.
wait_nodes() {
        local i
        for i in $(seq 1 $(( $3 * 10 ))); do
                [ "$(nodes_seen "$1")" = "$2" ] && return 0
                sleep 0.1
        done
        echo "node $1 lists '$(nodes_seen "$1")', want '$2'"
        return 1
}

echo "== encrypt on A, decrypt on B and C"
printf 'fleet secret' | on a svc encrypt > "$W/ct-a"
check "B decrypts what A encrypted" bash -c "on b svc decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
check "C decrypts what A encrypted" bash -c "on c svc decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
check "status names the etcd store, watched" bash -c \
        "on a op status --json | tr -d ' \n' | grep -q '\"store_state\":{\"backend\":\"etcd\",\"applied_revision\":[1-9][0-9]*,\"watch\":\"streaming\"'"

echo "== rotate on B: A and C encrypt under the new generation within 1 s"
g=$(on b op key rotate | sed -n 's/generation \([0-9]*\) is now active/\1/p')
check "B rotated to generation 2 ($g)" test "$g" = 2
t0=$(date +%s%N)
# An encryption begun 1 s or more after the rotation under the old generation
# fails; C gets its first try even when A's tries (dkmctl, on a loaded
# machine) used up the second.
for n in a c; do
        ok=0
        while :; do
                asked=$(( ($(date +%s%N) - t0) / 1000000 ))
                printf x | on "$n" svc encrypt > "$W/ct-$n-2"
                [ "$(gen_of "$W/ct-$n-2")" = "$g" ] && { ok=1; break; }
                [ "$asked" -lt 1000 ] || break
                sleep 0.05
        done
        check "$n encrypts under generation $g within 1 s ($(( ($(date +%s%N) - t0) / 1000000 )) ms)" test $ok = 1
done
check "A's old ciphertext still decrypts on C" bash -c "on c svc decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"

echo "== concurrent rotate on all three nodes, 20 rounds"
before=$(etcd_gens | sort -n | tail -1)
for i in $(seq 1 20); do
        on a op key rotate >/dev/null 2>"$W/rot-a" & pa=$!
        on b op key rotate >/dev/null 2>"$W/rot-b" & pb=$!
        on c op key rotate >/dev/null 2>"$W/rot-c" & pc=$!
        wait $pa || { echo "round $i: rotate on a failed: $(cat "$W/rot-a")"; FAILED=1; }
        wait $pb || { echo "round $i: rotate on b failed: $(cat "$W/rot-b")"; FAILED=1; }
        wait $pc || { echo "round $i: rotate on c failed: $(cat "$W/rot-c")"; FAILED=1; }
done
after=$(etcd_gens | sort -n | tail -1)
check "exactly 20 new generations ($before -> $after)" test "$after" = $((before + 20))
check "all nodes agree on the active generation" converge 3
check "the active one is the newest ($(active a))" test "$(active a)" = "$after"
check "no gaps, no duplicates, every node lists them all" gaps_none
check "ciphertexts of generation 1 still decrypt on every node" bash -c \
        "for n in a b c; do on \$n svc decrypt --in '$W/ct-a' | grep -qx 'fleet secret' || exit 1; done"

echo "== one held watch per node"
for n in a b c; do
        check "$n streams the store's changes" test "$(sfield $n watch)" = streaming
        check "$n did not re-open its watch over 21 rotations" test "$(sfield $n watch_restarts)" = 0
done
for i in 1 2 3; do
        check "rotation $i on A reaches B and C within 1 s" reaches a b c
done
# Longer than dkmd's silence bound: progress notifications keep it open.
sleep 11
for n in a b c; do
        check "$n: the same stream after 11 quiet seconds" test "$(sfield $n watch_restarts)" = 0
done
check "rotation on C reaches A and B within 1 s" reaches c a b
echo "== nodes: each heartbeats under a lease; status lists the others"
check "A lists A, B and C" wait_nodes a "node-a node-b node-c " 3
check "C lists A, B and C" wait_nodes c "node-a node-b node-c " 3
check "A's status: B and C with their applied revisions and heartbeat ages" bash -c "
        s=\$(on a op status --json | tr -d ' \n')
        for n in b c; do
                grep -q '\"name\":\"node-'\$n'\",\"self\":false,\"engine\":\"[a-z]*\",\"version\":\"[^\"]*\",\"applied_revision\":[1-9][0-9]*,\"started\":[1-9][0-9]*,\"heartbeat_age_seconds\":[0-2]}' <<<\"\$s\" || exit 1
        done
        grep -q '\"node\":\"node-a\"' <<<\"\$s\" && grep -q '\"name\":\"node-a\",\"self\":true' <<<\"\$s\""
check "dkmctl status prints the nodes" bash -c "
        on a op status | grep -q '^nodes:   node-a .*revision [1-9][0-9]*, heartbeat [0-9]* s ago, .*(this node)' &&
        on a op status | grep -q '^         node-c .*revision [1-9][0-9]*, heartbeat [0-9]* s ago'"
lease_b=$(etcd_ctl get "${PREFIX}nodes/node-b" -w json | grep -o '"lease":[0-9]*' | cut -d: -f2)
check "B's record in etcd carries a lease ($lease_b)" test -n "$lease_b"
# The TTL granted, not what is left of it: a beat late on a loaded machine
# leaves less than 1 s.
ttl=$(etcd_ctl lease timetolive "$(printf %x "${lease_b:-0}")" | sed -n 's/.*granted with TTL(\([0-9]*\)s).*/\1/p')
check "its TTL is node_ttl, 3 s (${ttl:-none})" test "${ttl:-0}" = 3

node_stop c
t0=$(date +%s%N)
check "C stopped cleanly: A drops it at once" wait_nodes a "node-a node-b " 1
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
# Its last beat was at most 1 s before the stop: expiry would take 2 s more.
check "sooner than its lease could have expired ($ms ms)" test "$ms" -lt 1500
check "C revoked its lease on the way out" grep -q "node 'node-c': left the fleet" "$(node_dir c)/dkmd.log"
check "and its record is gone from etcd" etcd_absent "${PREFIX}nodes/node-c"
node_start c || fail "node c did not restart"
check "C back: A lists it again" wait_nodes a "node-a node-b node-c " 3

node_kill c
# C's last beat, from its record: the lease was kept alive just before it was
# written.  Counted from the kill instead, a beat that came late on a loaded
# machine (beats are 1 s apart plus their own etcd round trips) would leave
# less than 2 s of the lease.
hb=$(etcd_ctl get "${PREFIX}nodes/node-c" --print-value-only | sed -n 's/.*"heartbeat": *\([0-9]*\).*/\1/p')
check "C killed: still listed until its lease runs out" test "$(nodes_seen a)" = "node-a node-b node-c "
check "C killed: gone from A's status after its TTL" wait_nodes a "node-a node-b " 8
ms=$(( ($(date +%s%6N) - ${hb:-0}) / 1000 ))
check "not before the TTL of 3 s ($ms ms after C's last beat)" test -n "$hb" -a "$ms" -ge 2000
check "and from B's" wait_nodes b "node-a node-b " 1
node_start c || fail "node c did not restart"
check "C back after the crash: listed again" wait_nodes b "node-a node-b node-c " 3
check "and it agrees with the others" converge 5

echo "== one etcd member down: everything continues"
etcd_member_stop 1
check "encrypt on A" bash -c "printf one | on a svc encrypt > '$W/ct-one'"
check "decrypt on C" bash -c "on c svc decrypt --in '$W/ct-one' | grep -qx one"
check "rotate on C" bash -c "on c op key rotate >/dev/null"
check "the nodes agree" converge 3
for n in a b c; do
        check "$n streams from another member ($(sfield $n watch_restarts) restarts)" wait_field $n watch streaming 5
done
check "rotation on B reaches A and C within 1 s" reaches b a c
# Every node spends its own block of uses of the active generation now, so
# that it can go on encrypting without the store.
for n in a b c; do printf "$n" | on $n svc encrypt > "$W/ct-pre-$n"; done
sleep 0.5

echo "== a second member down: no quorum"
gen_before=$(active a)
etcd_member_stop 2
t0=$(date +%s)
check "encrypt on A from cache" bash -c "printf two | on a svc encrypt > '$W/ct-two'"
check "decrypt on B from cache" bash -c "on b svc decrypt --in '$W/ct-two' | grep -qx two"
check "decrypt on C of old data" bash -c "on c svc decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
ok=0
for _ in $(seq 1 50); do
        on a op status | matches "DEGRADED: store unavailable: no etcd quorum" && { ok=1; break; }
        sleep 0.2
done
check "dkmctl status says the store is unavailable" test $ok = 1
check "status --json: available false" bash -c "on a op status --json | grep -q '\"available\": false'"
ok=0
for _ in $(seq 1 50); do
        on a op status --json | matches '"nodes_error"' && { ok=1; break; }
        sleep 0.2
done
check "status says the nodes listed are as last read" test $ok = 1
t1=$(date +%s%N)
check "and still lists all three" test "$(nodes_seen a)" = "node-a node-b node-c "
ms=$(( ($(date +%s%N) - t1) / 1000000 ))
check "without waiting for etcd ($ms ms)" test "$ms" -lt 1000
check "dkmctl status prints when they were read" bash -c "on a op status | grep -q '^         (as read at [0-9T:Z-]*; now store unavailable: no etcd quorum'"
refused "rotate fails cleanly" "store unavailable: no etcd quorum" on b op key rotate
refused "a grant request fails cleanly" "store unavailable: no etcd quorum" \
        on a op access request --reason "outage" --duration 5m
refused "a policy change fails cleanly" "store unavailable: no etcd quorum" \
        on c op policy create outage-policy
echo "  (refusals took $(( $(date +%s) - t0 )) s)"
check "still the same active generation everywhere" test "$(active a) $(active b) $(active c)" = "$gen_before $gen_before $gen_before"

echo "== members back: catch up, nothing lost"
etcd_member_start 1 || fail "member 1 did not come back"
etcd_member_start 2 || fail "member 2 did not come back"
ok=0
for _ in $(seq 1 100); do
        on c op key rotate >/dev/null 2>&1 && { ok=1; break; }
        sleep 0.2
done
check "rotate works again on C" test $ok = 1
check "the nodes agree after the outage" converge 5
check "no half-done rollover: no gaps" gaps_none
check "status: the store is available again" bash -c "on a op status --json | grep -q '\"available\": true'"
check "every node heartbeats again: B lists all three" wait_nodes b "node-a node-b node-c " 5
check "every ciphertext decrypts on every node" bash -c "
        for f in ct-a ct-one ct-two ct-pre-a ct-pre-b ct-pre-c; do
                for n in a b c; do on \$n svc decrypt --in '$W/'\$f >/dev/null || { echo \"\$f on \$n\"; exit 1; }; done
        done"

echo "== kill -9 a node during a rollover"
on b op key rotate >/dev/null 2>&1 &
rp=$!
sleep 0.01
node_kill b
wait $rp 2>/dev/null
node_start b || fail "node b did not restart"
check "the nodes agree after B's crash" converge 5
check "no gaps after the crash" gaps_none
check "B decrypts everything" bash -c "
        for f in ct-a ct-one ct-two; do on b svc decrypt --in '$W/'\$f >/dev/null || exit 1; done"
printf z | on b svc encrypt > "$W/ct-b"
check "B encrypts under the active generation" test "$(gen_of "$W/ct-b")" = "$(active a)"

echo "== a grant approved on A works on C; a revocation on C holds on A"
id=$(on a op access request --reason "fleet ticket 42" --duration 30m --policy default)
check "request filed on A ($id)" test -n "$id"
check "first approval on A" bash -c "on a appr access approve $id | grep -q pending"
check "second approval on A grants" bash -c "on a appr2 access approve $id | grep -q granted"
check "the grant holder decrypts on C" bash -c "on c op decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
check "and on B" bash -c "on b op decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
check "and on A" bash -c "on a op decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
check "C revokes it" on c appr access revoke "$id"
refused "A refuses the revoked grant at once" "grant $id revoked" on a op decrypt --in "$W/ct-a"
refused "B refuses it too" "grant $id revoked" on b op decrypt --in "$W/ct-a"
ring_a=$(on a appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
ok=0
for _ in $(seq 1 20); do
        keyctl search "$ring_a" user "dkm:grant:$id" >/dev/null 2>&1 || { ok=1; break; }
        sleep 0.1
done
check "the grant key is gone from A's keyring within 2 s" test $ok = 1
marker() { echo "${PREFIX}access/grants/$(printf %010d "$1")"; }
lease_of() { etcd_ctl get "$1" -w json | grep -o '"lease":[0-9]*' | cut -d: -f2; }
check "the revoked grant's marker is gone from etcd" etcd_absent "$(marker "$id")"

echo "== a grant's marker lives under an etcd lease of its duration"
audit_mark >/dev/null
id2=$(on a op access request --reason "fleet ticket 43" --duration 6s --policy default)
check "request filed on A ($id2)" test -n "$id2"
check "approved on A" bash -c "on a appr access approve $id2 | grep -q pending"
check "and on B: granted" bash -c "on b appr2 access approve $id2 | grep -q granted"
lease2=$(lease_of "$(marker "$id2")")
check "its marker in etcd carries a lease ($lease2)" test -n "$lease2"
# The TTL granted (what the grant had left when approved), not what is left
# of it after this test's own commands on a loaded machine.
ttl=$(etcd_ctl lease timetolive "$(printf %x "${lease2:-0}")" | sed -n 's/.*granted with TTL(\([0-9]*\)s).*/\1/p')
check "the lease's TTL is what the grant has left (${ttl:-none} s of 6)" test "${ttl:-9}" -le 6 -a "${ttl:-0}" -ge 3
check "the request record itself has no lease" test -z "$(lease_of "${PREFIX}access/requests/$(printf %010d "$id2")")"
check "the holder decrypts on C" bash -c "on c op decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
ok=0
for _ in $(seq 1 120); do
        etcd_absent "$(marker "$id2")" && { ok=1; break; }
        sleep 0.1
done
check "at expiry etcd deletes the marker" test $ok = 1
# Every node's maintenance runs once a second, one of them records the end:
# wait for that rather than a fixed time (a loaded machine delays it).
ok=0
for _ in $(seq 1 50); do
        on c op access list --json | tr -d ' \n' |
                matches "\"id\":$id2,\"state\":\"expired\".*\"ended_by\":\"expiry\"" && { ok=1; break; }
        sleep 0.2
done
for n in a b c; do
        refused "node $n refuses the expired grant" "grant $id2 expired" on $n op decrypt --in "$W/ct-a"
done
check "the record says expired, ended by expiry" test $ok = 1
# The node that recorded the end audits it just after: wait for the record.
n_exp=$(audit_count "op=grant-expire .*request=$id2 " -m USER_ACCT,CRYPTO_KEY_USER)
recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER)
check "the expiry is audited once, as an expiry ($n_exp)" test "$n_exp" = 1
check "and not as a revocation" test "$(grep -c "op=grant-revoke .*request=$id2 " <<<"$recs")" = 0

echo "== a grant's lease revoked in etcd revokes the grant on every node"
id3=$(on b op access request --reason "fleet ticket 44" --duration 10m --policy default)
on b appr access approve "$id3" >/dev/null
check "granted ($id3)" bash -c "on c appr2 access approve $id3 | grep -q granted"
check "the holder decrypts on A" bash -c "on a op decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
lease3=$(lease_of "$(marker "$id3")")
check "etcdctl lease revoke ($lease3)" bash -c "ETCDCTL_API=3 etcdctl --endpoints '$ETCD_ENDPOINTS' lease revoke $(printf %x "${lease3:-0}") >/dev/null 2>&1"
ok=0
for _ in $(seq 1 30); do
        on a op access list --json | tr -d ' \n' | matches "\"id\":$id3,\"state\":\"revoked\"" && { ok=1; break; }
        sleep 0.1
done
check "recorded as revoked within 3 s" test $ok = 1
sleep 1.5
for n in a b c; do
        refused "node $n refuses it" "grant $id3 revoked" on $n op decrypt --in "$W/ct-a"
done
n_rev=$(audit_count "op=grant-revoke .*request=$id3 .*source=etcd" -m USER_ACCT,CRYPTO_KEY_USER)
check "audited once, source etcd ($n_rev)" test "$n_rev" = 1

echo "== node D on member 3 only: its watch breaks and resumes without missing a change"
node_config d "[access]" "approvals_required=2" \
        "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINT_3" "prefix=$PREFIX"
node_start d || fail "node d did not start"
check "D streams" wait_field d watch streaming 5
check "D has every generation" lists_all d
restarts0=$(sfield d watch_restarts)
gens0=$(etcd_gens | sort -n | tail -1)
etcd_member_stop 3
check "D's status: the watch is failing" wait_field d watch failing 5
check "D's status: the store is unavailable" wait_field d available false 10
for i in 1 2 3; do rotate_new a >/dev/null || fail "rotate on A without member 3"; done
etcd_member_start 3 || fail "member 3 did not come back"
# Two more once it is back.
for i in 1 2; do rotate_new a >/dev/null || fail "rotate on A"; done
check "five new generations ($gens0 -> $(etcd_gens | sort -n | tail -1))" \
        test "$(etcd_gens | sort -n | tail -1)" = $((gens0 + 5))
check "D streams again" wait_field d watch streaming 10
check "D applied every generation made meanwhile" lists_all d
check "D counts the restarts ($restarts0 -> $(sfield d watch_restarts))" test "$(sfield d watch_restarts)" -gt "$restarts0"
check "D's status: the store is available again" wait_field d available true 5
check "rotation on A reaches D within 1 s" reaches a d
check "D did no full reload" test "$(sfield d full_reloads)" = 0

echo "== node D: the history it missed is compacted: a full reload"
etcd_member_stop 3
check "D's watch is failing" wait_field d watch failing 5
for i in 1 2; do rotate_new a >/dev/null || fail "rotate on A"; done
rev=$(etcd_ctl get "${PREFIX}" --prefix --keys-only -w json | sed -n 's/.*"revision":\([0-9]*\).*/\1/p' | head -1)
compact_to() { etcd_ctl compact "$1" --physical >/dev/null; }
check "etcd compacts its history up to revision $rev" compact_to "$rev"
etcd_member_start 3 || fail "member 3 did not come back"
check "D reloads every policy (full_reloads 1)" wait_field d full_reloads 1 10
check "D has every generation after the reload" lists_all d
check "D streams again" wait_field d watch streaming 5
check "rotation on B reaches D within 1 s" reaches b d
check "D decrypts what A encrypted at the start" bash -c "on d svc decrypt --in '$W/ct-a' | grep -qx 'fleet secret'"
t0=$(date +%s%N)
node_stop d
check "D lets go of its watch and stops within 2 s ($(( ($(date +%s%N) - t0) / 1000000 )) ms)" \
        test $(( ($(date +%s%N) - t0) / 1000000 )) -lt 2000

for n in a b c d; do
        if grep -qE 'runtime error|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer' "$(node_dir $n)/dkmd.log"; then
                fail "sanitizer report in node $n's log"
        fi
done
[ "$FAILED" = 0 ] || show_logs
finish
