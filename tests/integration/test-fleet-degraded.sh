#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A fleet without etcd quorum, and changes that meet each other.  Three dkmd
# nodes on a real three-member etcd cluster (lib-etcd.sh), max_uses=320 so
# that a block of uses is 20:
#  - without quorum a node encrypts through the block it spends and the one
#    it reserved ahead (past one block), then refuses with "store
#    unavailable: use reservation exhausted"; refusals take no uses; when
#    quorum returns the next reservation follows on from what was counted,
#    and no generation is ever used more than max_uses times;
#  - a grant approved before the outage serves on every node from the key in
#    its keyring (audited); one revoked there with keyctl is refused; with
#    quorum back a revocation on one node holds on the others at once;
#  - policy changes on two nodes at once (rotate and rekey, assign and
#    assign, rekey with a new policy key while another node encrypts, purge
#    and rotate) all succeed, whole.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }

trap 'stop_nodes; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
PREFIX=/dkm-degraded/
MAX_USES=320 # blocks of 20

for n in a b c; do
        node_config "$n" "[access]" "approvals_required=2" "[rotation]" "max_uses=$MAX_USES" \
                "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINTS" "prefix=$PREFIX" \
                "[policy]" "key_dirs=$T/ck"
done
node_start a || exit 1
node_start b || exit 1
node_start c || exit 1

show_logs() {
        local n
        for n in a b c; do
                echo "--- node $n log (tail)"; tail -n 25 "$(node_dir $n)/dkmd.log"
        done
}

# policy_id NAME: the id of a policy, as node a has it.
policy_id() {
        on a op status --json | tr -d ' \n' | grep -o "\"name\":\"$1\",\"id\":\"[0-9a-f-]*\"" |
                sed 's/.*"id":"//; s/"$//'
}
# reserved POLICY GEN: uses_reserved of a generation, as etcd has it.
reserved() {
        etcd_ctl get "${PREFIX}policies/$(policy_id "$1")/gens/$(printf %010u "$2")" --print-value-only |
                grep -o '"uses_reserved":[0-9]*' | cut -d: -f2
}
# The generations of a policy in etcd, one number a line.
gens_of() {
        etcd_ctl get "${PREFIX}policies/$(policy_id "$1")/gens/" --prefix --keys-only |
                sed -n 's|.*/gens/0*\([0-9]*\)$|\1|p'
}
# left NODE: reserved_uses_left of policy default on that node.
left() {
        on "$1" op status --json | tr -d ' \n' |
                sed -n 's/.*"name":"default",[^}]*"reserved_uses_left":\([0-9]*\).*/\1/p'
}
gen_of() { on a svc inspect --in "$1" --json | sed -n 's/.*"generation": \([0-9]*\).*/\1/p'; }
active() {
        on "$1" op status --json | tr -d ' \n' |
                sed -n "s/.*\"name\":\"${2:-default}\",[^}]*\"active_generation\":\([0-9]*\).*/\1/p"
}
# Waits up to $2 s for node $1's status to say the store is (un)available ($3 = true|false).
wait_available() {
        local i
        for i in $(seq 1 $(($2 * 5))); do
                on "$1" op status --json | matches "\"available\": $3" && return 0
                sleep 0.2
        done
        return 1
}

echo "== before the outage: every node reserves two blocks"
printf 'pre' | on a svc encrypt > "$W/ct-pre" || fail "encrypt on A"
check "A holds 39 uses in reserve (the rest of its block and the next)" test "$(left a)" = 39
check "etcd counts A's two blocks" test "$(reserved default 1)" = 40
printf b | on b svc encrypt > /dev/null
printf c | on c svc encrypt > /dev/null
check "etcd counts two blocks per node" test "$(reserved default 1)" = 120

echo "== a grant approved before the outage"
id=$(on a op access request --reason "outage ticket 9" --duration 30m --policy default)
check "request filed on A ($id)" test -n "$id"
on a appr access approve "$id" >/dev/null
check "approved on A" bash -c "on a appr2 access approve $id | grep -q granted"
check "the holder decrypts on C" bash -c "on c op decrypt --in '$W/ct-pre' | grep -qx pre"
# The maintenance pass (every second) mirrors the grant into every node's
# keyring: wait for it (a loaded machine delays a pass), then check.
for n in a b c; do
        ring=$(on $n appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
        for _ in $(seq 1 50); do
                keyctl search "$ring" user "dkm:grant:$id" >/dev/null 2>&1 && break
                sleep 0.2
        done
        check "the grant key is in node $n's keyring" keyctl search "$ring" user "dkm:grant:$id"
done

echo "== no quorum"
etcd_member_stop 1
etcd_member_stop 2
check "A says the store is unavailable" wait_available a 15 false
wait_available b 15 false
wait_available c 15 false
audit_mark >/dev/null
ok=0
for i in $(seq 1 39); do
        printf "deg-$i" | on a svc encrypt > "$W/ct-deg-$i" || { echo "  encryption $i failed"; break; }
        ok=$i
done
check "A encrypted 39 times without quorum, past one block of 20 ($ok)" test "$ok" = 39
check "all under generation 1" bash -c "[ \"\$(on a svc inspect --in '$W/ct-deg-39' --json | sed -n 's/.*\"generation\": \([0-9]*\).*/\1/p')\" = 1 ]"
check "A's reserve is spent" test "$(left a)" = 0
refused "the next one is refused clearly" "store unavailable: use reservation exhausted" \
        on a svc encrypt --in "$W/ct-pre"
for _ in $(seq 1 20); do printf x | on a svc encrypt >/dev/null 2>&1; done
check "B decrypts A's degraded ciphertexts" bash -c "on b svc decrypt --in '$W/ct-deg-39' | grep -qx deg-39"
check "B still encrypts from its own reserve" bash -c "printf bb | on b svc encrypt > '$W/ct-deg-b'"
refused "rotate is refused cleanly" "store unavailable: no etcd quorum" on b op key rotate

echo "== grants without quorum"
for n in a b c; do
        check "the holder decrypts on $n" bash -c "on $n op decrypt --in '$W/ct-pre' | grep -qx pre"
done
recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER)
check "grant uses audited without the store" \
        test "$(grep -c "op=grant-use .*request=$id " <<<"$recs")" -ge 3
ring_b=$(on b appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
keyctl revoke "$(keyctl search "$ring_b" user "dkm:grant:$id")"
refused "B refuses the grant revoked there with keyctl" "grant $id revoked" on b op decrypt --in "$W/ct-pre"
check "A still serves it" bash -c "on a op decrypt --in '$W/ct-pre' | grep -qx pre"
refused "a grant revocation needs the store" "store unavailable" on a appr access revoke "$id"

echo "== quorum back: catch up"
etcd_member_start 1 || fail "member 1 did not come back"
etcd_member_start 2 || fail "member 2 did not come back"
check "A sees the store again" wait_available a 20 true
ok=0
for _ in $(seq 1 50); do
        printf after | on a svc encrypt > "$W/ct-after" 2>/dev/null && { ok=1; break; }
        sleep 0.2
done
check "A encrypts again" test $ok = 1
# Two more blocks on from the 120 counted: 160.  More (by blocks of 20) when
# a reservation A asked for as the outage began timed out and etcd committed
# it when quorum returned: uses counted and not spent, never the reverse.
r=$(reserved default 1)
check "A reserved two blocks on from the 120 counted ($r)" \
        test "$r" -ge 160 -a "$r" -le $MAX_USES -a $((r % 20)) = 0
check "every degraded ciphertext decrypts on C" bash -c "
        for i in \$(seq 1 39); do on c svc decrypt --in '$W/ct-deg-'\$i | grep -qx deg-\$i || exit 1; done"
# B's keyctl revocation reaches the store with quorum: the grant ends on every node.
ok=0
for _ in $(seq 1 30); do
        on c appr access list --json | tr -d ' \n' | matches "\"id\":$id,\"state\":\"revoked\"" && { ok=1; break; }
        sleep 0.1
done
check "the revocation made with keyctl on B during the outage is in the store" test $ok = 1
refused "A refuses the grant now" "grant $id revoked" on a op decrypt --in "$W/ct-pre"
refused "C refuses it too" "grant $id revoked" on c op decrypt --in "$W/ct-pre"

echo "== spend generations across the fleet: none past max_uses"
declare -A per_gen=()
for i in $(seq 1 420); do
        n=$(printf 'a\nb\nc' | sed -n "$(( i % 3 + 1 ))p")
        printf u | on $n svc encrypt > "$W/ct-u" || { fail "encryption $i on $n"; break; }
        g=$(gen_of "$W/ct-u")
        per_gen[$g]=$(( ${per_gen[$g]:-0} + 1 ))
done
echo "  ciphertexts per generation: $(for g in "${!per_gen[@]}"; do printf '%s:%s ' "$g" "${per_gen[$g]}"; done)"
check "more than one generation used" test "${#per_gen[@]}" -gt 1
for g in $(gens_of default); do
        r=$(reserved default "$g")
        check "generation $g: $r uses counted in etcd, at most $MAX_USES" test "$r" -le $MAX_USES
done
# Generation 1 carries the 1+1+1+39+1+1 uses made before and during the outage.
for g in "${!per_gen[@]}"; do
        extra=0
        [ "$g" = 1 ] && extra=44
        check "generation $g: $(( ${per_gen[$g]} + extra )) uses, at most $MAX_USES" \
                test $(( ${per_gen[$g]} + extra )) -le $MAX_USES
done

echo "== policy changes on two nodes at once"
K=$T/ck
mkdir -p "$K"
for x in 1 2 3 4; do head -c 32 /dev/urandom > "$K/$x.key"; chmod 600 "$K/$x.key"; done
check "create conc on A" bash -c "on a op policy create conc >/dev/null"
for _ in $(seq 1 30); do [ -n "$(active b conc)" ] && [ -n "$(active c conc)" ] && break; sleep 0.1; done
printf conc0 | on b svc encrypt --policy conc > "$W/ct-conc0"
for i in $(seq 1 6); do
        if [ $((i % 2)) = 1 ]; then p1="file:$K/1.key" p2="file:$K/2.key"; else p1="file:$K/3.key" p2="file:$K/4.key"; fi
        on a op key rotate --policy conc >/dev/null 2>"$W/rot" & pa=$!
        on b op policy rekey conc --customer-key "$p1" --customer-key "$p2" >/dev/null 2>"$W/rekey" & pb=$!
        wait $pa || { fail "round $i: rotate on A: $(cat "$W/rot")"; }
        wait $pb || { fail "round $i: rekey on B: $(cat "$W/rekey")"; }
done
ok=0
for _ in $(seq 1 30); do
        ok=1
        for n in a b c; do
                on $n op policy show conc | tr -d ' \n' | matches '"managed_by":"customer"' || ok=0
        done
        [ $ok = 1 ] && break
        sleep 0.1
done
check "conc is customer-managed on every node" test $ok = 1
[ $ok = 1 ] || on c op policy show conc
check "6 rotations, no gaps ($(gens_of conc | sort -n | tr '\n' ' '))" \
        test "$(gens_of conc | sort -n | tr '\n' ' ')" = "$(seq 1 7 | tr '\n' ' ')"
check "old conc data decrypts on C" bash -c "on c svc decrypt --in '$W/ct-conc0' | grep -qx conc0"

echo "== assign the same uid on two nodes at once"
for i in 1 2 3 4 5; do
        on a op policy assign conc --uid 7001 >/dev/null 2>"$W/as-a" & pa=$!
        on b op policy assign default --uid 7001 >/dev/null 2>"$W/as-b" & pb=$!
        wait $pa || fail "round $i: assign on A: $(cat "$W/as-a")"
        wait $pb || fail "round $i: assign on B: $(cat "$W/as-b")"
done
# (A value that is no JSON object carries its MAC on a second line.)
want=$(etcd_ctl get "${PREFIX}assign/uid/7001" --print-value-only | head -n 1)
check "etcd holds one of the two ($want)" bash -c "[ '$want' = conc ] || [ '$want' = default ]"
ok=0
for _ in $(seq 1 30); do
        agree=1
        for n in a b c; do
                on $n op policy show "$want" | matches '"uid:7001"' || agree=0
        done
        [ $agree = 1 ] && { ok=1; break; }
        sleep 0.1
done
check "every node assigns uid 7001 to $want" test $ok = 1

echo "== rekey with a new policy key while another node encrypts"
( for i in $(seq 1 60); do printf "n$i" | on a svc encrypt --policy conc > "$W/ct-nk-$i" || exit 1; done ) & pe=$!
sleep 0.2
check "rekey --new-policy-key on B" bash -c \
        "on b op policy rekey conc --customer-key 'file:$K/4.key' --customer-key 'file:$K/1.key' --new-policy-key >/dev/null"
wait $pe || fail "encryption on A during the rekey"
check "every ciphertext of the run decrypts on C" bash -c "
        for i in \$(seq 1 60); do on c svc decrypt --in '$W/ct-nk-'\$i | grep -qx n\$i || exit 1; done"
g=$(active a conc)
check "etcd still counts A's uses of generation $g ($(reserved conc "$g"))" test "$(reserved conc "$g")" -ge 20

echo "== purge on B while A rotates"
check "create gone on A" bash -c "on a op policy create gone >/dev/null"
for _ in $(seq 1 30); do [ -n "$(active b gone)" ] && break; sleep 0.1; done
printf gone | on a svc encrypt --policy gone > "$W/ct-gone"
pid=$(on b op policy purge gone --reason "end of test")
on b appr access approve "$pid" >/dev/null
on a op key rotate --policy gone >/dev/null 2>&1 & pa=$!
check "the second approval on B purges" bash -c "on b appr2 access approve $pid | grep -q done"
wait $pa
ok=0
for _ in $(seq 1 30); do
        # (pipefail: the refused decrypt's status would count)
        grep -q purged <<<"$(on a svc decrypt --in "$W/ct-gone" 2>&1)" &&
                grep -q purged <<<"$(on c svc decrypt --in "$W/ct-gone" 2>&1)" && { ok=1; break; }
        sleep 0.1
done
check "A and C refuse purged data" test $ok = 1
[ $ok = 1 ] || { on a svc decrypt --in "$W/ct-gone"; on c svc decrypt --in "$W/ct-gone"; on a op policy show gone; }

echo "== rekey with a new policy key of a policy with 140 generations (etcd: 128 operations a transaction)"
check "create big on A" bash -c "on a op policy create big >/dev/null"
for i in $(seq 2 140); do
        on a op key rotate --policy big >/dev/null || { fail "rotation $i of big"; break; }
        case $i in 2|70|140) printf "big-$i" | on a svc encrypt --policy big > "$W/ct-big-$i" ;; esac
done
for _ in $(seq 1 50); do [ "$(active b big)" = 140 ] && [ "$(active c big)" = 140 ] && break; sleep 0.1; done
check "B and C have all 140 generations" test "$(active b big) $(active c big)" = "140 140"
for n in a c; do on $n svc decrypt --in "$W/ct-big-70" >/dev/null; done # cached there
check "rekey --new-policy-key on B" bash -c \
        "on b op policy rekey big --customer-key 'file:$K/2.key' --customer-key 'file:$K/3.key' --new-policy-key >/dev/null"
big_id=$(policy_id big)
check "etcd: every generation is wrapped under policy key version 1" test \
        "$(etcd_ctl get "${PREFIX}policies/$big_id/gens/" --prefix --print-value-only | grep -c '"key_version":1')" = 140
prec=$(etcd_ctl get "${PREFIX}policies/$big_id" --print-value-only)
check "etcd: the policy record has version 1" grep -q '"key_version":1' <<<"$prec"
check "etcd: and no previous key" test "$(grep -c previous_key <<<"$prec")" = 0
check "B's log: re-wrapped in several transactions" \
        grep -qE "policy 'big': every generation re-wrapped under the new policy key \(([2-9]|[1-9][0-9]+) transactions" \
        "$(node_dir b)/dkmd.log"
ok=0
for _ in $(seq 1 30); do
        ok=1
        for n in a b c; do
                for i in 2 70 140; do
                        [ "$(on $n svc decrypt --in "$W/ct-big-$i" 2>/dev/null)" = "big-$i" ] || ok=0
                done
        done
        [ $ok = 1 ] && break
        sleep 0.1
done
check "every node decrypts big's old data after the rekey" test $ok = 1
check "C encrypts under big again" bash -c "printf big-new | on c svc encrypt --policy big > '$W/ct-big-new'"
check "A decrypts it" bash -c "on a svc decrypt --in '$W/ct-big-new' | grep -qx big-new"

for n in a b c; do
        if grep -qE 'runtime error|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer' "$(node_dir $n)/dkmd.log"; then
                fail "sanitizer report in node $n's log"
        fi
done
[ "$FAILED" = 0 ] || show_logs
finish
