# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Crash consistency: dkmd killed with SIGKILL at random points of its
# writes, over and over.  Sourced after lib.sh (and lib-etcd.sh for etcd) by
# tests/integration/test-crash.sh (a short run) and tests/soak/crash.sh
# (`make soak`, 1,000 kills and more).  It defines:
#
#   crash_setup            config, customer keys, the policies the run uses
#   crash_run N            N rounds of: start dkmd, a random mix of
#                          operations from two callers in the background,
#                          SIGKILL after a random delay (ms), restart, check
#   crash_summary          kills per operation in flight, what was checked
#   crash_at FUNC CMD...   runs CMD while gdb holds dkmd at the entry of
#                          FUNC, where it kills it (SIGKILL): a crash at one
#                          chosen point rather than a random one
#
# After each kill: dkmd starts again; `store verify` passes; every
# ciphertext dkmctl acknowledged before the kill decrypts (all those of the
# last round, a sample of the older ones, all of them at the end); the
# generations of each policy run 1..n with no gap, n never goes down nor
# below a rotation dkmctl acknowledged, and a generation number keeps its
# key: a probe encrypted under each generation when it was first seen still
# decrypts, and its creation time has not changed.
#
# CRASH_MAX_DELAY_MS (default 1500) bounds the delay before the kill.
# CRASH_KEEP=DIR keeps a copy of the state directory of the first failure;
# CRASH_SECONDS stops the run after that long, with its summary.
# CRASH_SAMPLE (default 5) older ciphertexts and probes are decrypted per round.

C=$T/crash
CT=$W/ct
mkdir -p "$C" "$CT"
chmod 1777 "$CT"
for f in acked acked.new rotated probes created; do : >"$C/$f"; done
declare -A CRASH_KILLS=() CRASH_MAXGEN=()
CRASH_ROUNDS=0 CRASH_DECRYPTS=0 CRASH_VERIFIES=0 CRASH_PROBES=0

crash_setup() {
        local x extra=()
        mkdir -p "$T/keys"
        for x in a b c; do
                mkdir -p "$T/keys/$x/store"
                head -c 32 /dev/urandom >"$T/keys/$x/store/key"
                chmod 600 "$T/keys/$x/store/key"
        done
        # Small use blocks (max_uses / 16 = 4) make encryptions write their
        # reservations often, and roll over by use about every 64.
        [ "${CRASH_STORE:-sqlite}" = etcd ] &&
                extra=("[store]" "backend=etcd" "endpoints=$ETCD_ENDPOINTS" "prefix=/dkm-crash/" "insecure=yes")
        write_config "[rotation]" "max_uses=64" "[access]" "approvals_required=2" "max_duration=1h" \
                "[policy]" "key_dirs=$T/keys" "max_policies=50" "${extra[@]}"
        start_dkmd || return 1
        as op policy create tenant --customer-key "file:$T/keys/a/store/key" \
                --customer-key "file:$T/keys/b/store/key" >/dev/null || return 1
        as op policy create scratch >/dev/null || return 1
        crash_probe default && crash_probe tenant
}

# crash_probe POLICY: a ciphertext under POLICY's active generation, kept as
# that generation's probe when it has none yet.
crash_probe() {
        local p=$1 f g
        f=$CT/probe-$p-$RANDOM$RANDOM
        printf '%s' "$(basename "$f")" | as svc encrypt --policy "$p" >"$f" || return 1
        g=$(as svc inspect --in "$f" --json | jq -r .generation) || return 1
        if matches -E "^$p $g " "$C/probes"; then
                rm -f "$f"
        else
                echo "$p $g $f" >>"$C/probes"
                CRASH_PROBES=$((CRASH_PROBES + 1))
        fi
}

# What each caller is doing, for counting the kills.
_crash_doing() { echo "$2" >"$C/doing.$1.tmp" && mv -f "$C/doing.$1.tmp" "$C/doing.$1"; }

# The service account: encryptions (each use block a store write, and
# rollover by use) under the two policies that keep their data.
_crash_worker_svc() {
        local n=0 p f
        while [ ! -e "$C/stop" ]; do
                p=default
                [ $((RANDOM % 3)) -eq 0 ] && p=tenant
                f=$CT/r$CRASH_ROUNDS-$n
                n=$((n + 1))
                _crash_doing svc encrypt
                printf '%s' "$(basename "$f")" | as svc encrypt --policy "$p" >"$f" 2>/dev/null || break
                echo "$f" >>"$C/acked.new"
        done
        _crash_doing svc idle
}

_crash_pair() { # two different customer keys in random order
        local k=(a b c) i j
        i=$((RANDOM % 3)); j=$(((i + 1 + RANDOM % 2) % 3))
        echo "--customer-key file:$T/keys/${k[$i]}/store/key --customer-key file:$T/keys/${k[$j]}/store/key"
}

# approve2 ID: the two approvals a request needs.
_crash_approve2() {
        as appr access approve "$1" >/dev/null 2>&1 && as appr2 access approve "$1" >/dev/null 2>&1
}

# The operators and approvers: one life-cycle change after another.
_crash_worker_admin() {
        local out id g p f
        while [ ! -e "$C/stop" ]; do
                case $((RANDOM % 8)) in
                0 | 1)
                        p=default
                        [ $((RANDOM % 2)) -eq 0 ] && p=tenant
                        _crash_doing admin rotate
                        out=$(as op key rotate --policy "$p" 2>/dev/null) || break
                        g=$(sed -n 's/^generation \([0-9]*\) is now active$/\1/p' <<<"$out")
                        echo "$p $g" >>"$C/rotated"
                        ;;
                2)
                        _crash_doing admin grant-request
                        id=$(as op access request --reason "crash soak" --duration 2m 2>/dev/null) || break
                        _crash_doing admin grant-approve
                        _crash_approve2 "$id" || break
                        _crash_doing admin grant-use
                        f=$(shuf -n 1 "$C/acked" 2>/dev/null)
                        [ -n "$f" ] && { as op decrypt --in "$f" >/dev/null 2>&1 || break; }
                        ;;
                3)
                        _crash_doing admin rekey
                        # shellcheck disable=SC2046
                        as op policy rekey tenant $(_crash_pair) --new-policy-key >/dev/null 2>"$C/rekey.err" ||
                                matches 'already uses these customer keys' "$C/rekey.err" || break
                        ;;
                4)
                        # A generation of the scratch policy retired, then destroyed.
                        _crash_doing admin destroy-rotate
                        as op key rotate --policy scratch >/dev/null 2>&1 || break
                        g=$(as op key list --policy scratch --json 2>/dev/null |
                                jq -r '[.[] | select(.state == "archived" or .state == "retired")][0].generation // empty') || break
                        [ -n "$g" ] || continue
                        _crash_doing admin destroy-retire
                        as op key retire "$g" --policy scratch >/dev/null 2>&1
                        _crash_doing admin destroy-request
                        id=$(as op key destroy "$g" --reason "crash soak" --policy scratch 2>/dev/null) || break
                        _crash_doing admin destroy-approve
                        _crash_approve2 "$id" || break
                        ;;
                5)
                        # A throwaway policy, purged; while max_policies allows.
                        g=$(as op policy list --json 2>/dev/null | jq length) || break
                        [ "${g:-0}" -lt 48 ] || continue
                        p=gone$CRASH_ROUNDS-$RANDOM
                        _crash_doing admin purge-create
                        as op policy create "$p" >/dev/null 2>&1 || break
                        printf x | as svc encrypt --policy "$p" >/dev/null 2>&1 || break
                        _crash_doing admin purge-request
                        id=$(as op policy purge "$p" --reason "crash soak" 2>/dev/null) || break
                        _crash_doing admin purge-approve
                        _crash_approve2 "$id" || break
                        ;;
                6 | 7)
                        _crash_doing admin backup
                        as op backup --out "$W/backup-$CRASH_ROUNDS" >/dev/null 2>&1 || break
                        mv -f "$W/backup-$CRASH_ROUNDS" "$C/backup.last"
                        ;;
                esac
        done
        _crash_doing admin idle
}

_crash_fail() {
        fail "round $CRASH_ROUNDS (killed during $1): $2"
        if [ -n "${CRASH_KEEP:-}" ] && [ ! -e "$CRASH_KEEP" ]; then
                mkdir -p "$CRASH_KEEP" && cp -a "$T/state" "$T/dkmd.log" "$C" "$CRASH_KEEP/" &&
                        echo "  state kept in $CRASH_KEEP"
        fi
}

# decrypts FILE: the plaintext is the file's own name.
_crash_decrypts() {
        CRASH_DECRYPTS=$((CRASH_DECRYPTS + 1))
        [ "$(as svc decrypt --in "$1" 2>&1)" = "$(basename "$1")" ]
}

# _crash_check WHAT: everything that must hold after a restart.
_crash_check() {
        local what=$1 p g gens max f bad=0
        as op store verify --json >"$C/verify.json" 2>"$C/verify.err"
        CRASH_VERIFIES=$((CRASH_VERIFIES + 1))
        if [ "$(jq -r .ok "$C/verify.json" 2>/dev/null)" != true ]; then
                _crash_fail "$what" "store verify: $(cat "$C/verify.err") $(jq -c '.policies[] | select(.ok != true)' "$C/verify.json" 2>/dev/null)"
                bad=1
        fi
        as op key list --json >"$C/keys.json" || { _crash_fail "$what" "key list failed"; return 1; }
        for p in default tenant scratch; do
                gens=$(jq -r --arg p "$p" '[.[] | select(.policy == $p) | .generation] | sort | map(tostring) | join(" ")' "$C/keys.json")
                max=$(wc -w <<<"$gens")
                if [ "$gens" != "$(seq -s ' ' 1 "$max")" ]; then
                        _crash_fail "$what" "policy $p: generations '$gens' have a gap"
                        bad=1
                fi
                if [ "$max" -lt "${CRASH_MAXGEN[$p]:-0}" ]; then
                        _crash_fail "$what" "policy $p: $max generations, $((CRASH_MAXGEN[$p])) before the kill"
                        bad=1
                fi
                CRASH_MAXGEN[$p]=$max
        done
        # Creation times never change: a generation number keeps its key.
        jq -r '.[] | "\(.policy) \(.generation) \(.created)"' "$C/keys.json" |
                awk -v new="$C/created.new" 'NR == FNR { was[$1 " " $2] = $3; next }
                        !(($1 " " $2) in was) { print >new; next }
                        was[$1 " " $2] != $3 { print "policy " $1 " generation " $2 ": created " $3 ", was " was[$1 " " $2] }' \
                        "$C/created" - >"$C/reissued"
        [ -e "$C/created.new" ] && cat "$C/created.new" >>"$C/created" && rm -f "$C/created.new"
        if [ -s "$C/reissued" ]; then
                _crash_fail "$what" "a generation number reissued: $(head -n 3 "$C/reissued")"
                bad=1
        fi
        while read -r p g; do
                [ -n "$g" ] || continue
                if [ "$g" -gt "${CRASH_MAXGEN[$p]}" ]; then
                        _crash_fail "$what" "policy $p: rotation to generation $g was acknowledged, now $((CRASH_MAXGEN[$p]))"
                        bad=1
                fi
        done <"$C/rotated"
        : >"$C/rotated"
        # Every new ciphertext, a sample of older ones and of the probes.
        {
                cat "$C/acked.new"
                shuf -n "${CRASH_SAMPLE:-5}" "$C/acked" 2>/dev/null
                awk '{ print $3 }' "$C/probes" | shuf -n "${CRASH_SAMPLE:-5}"
        } >"$C/todo"
        cat "$C/acked.new" >>"$C/acked"
        : >"$C/acked.new"
        while read -r f; do
                if ! _crash_decrypts "$f"; then
                        _crash_fail "$what" "$(basename "$f") no longer decrypts: $(as svc decrypt --in "$f" 2>&1 >/dev/null)"
                        bad=1
                fi
        done <"$C/todo"
        if ! crash_probe default || ! crash_probe tenant; then
                _crash_fail "$what" "cannot encrypt after the restart"
                bad=1
        fi
        return $bad
}

crash_run() {
        local rounds=$1 delay ms svc admin what i a e
        local until=$((SECONDS + ${CRASH_SECONDS:-0}))
        for i in $(seq 1 "$rounds"); do
                if [ -n "${CRASH_SECONDS:-}" ] && [ "$SECONDS" -ge "$until" ]; then
                        echo "  stopped after $CRASH_SECONDS s (CRASH_SECONDS)"
                        break
                fi
                CRASH_ROUNDS=$i
                rm -f "$C/stop"
                _crash_worker_svc &
                svc=$!
                _crash_worker_admin &
                admin=$!
                ms=$((RANDOM % ${CRASH_MAX_DELAY_MS:-1500}))
                delay=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
                sleep "$delay"
                a=$(cat "$C/doing.admin" 2>/dev/null) e=$(cat "$C/doing.svc" 2>/dev/null)
                what=${a:-starting}+${e:-starting}
                crash_dkmd
                touch "$C/stop"
                wait "$svc" "$admin"
                CRASH_KILLS[${what%%+*}]=$((${CRASH_KILLS[${what%%+*}]:-0} + 1))
                CRASH_KILLS[svc:${what#*+}]=$((${CRASH_KILLS[svc:${what#*+}]:-0} + 1))
                rm -f "$C/doing.admin" "$C/doing.svc"
                if ! start_dkmd; then
                        _crash_fail "$what" "dkmd does not start after the kill"
                        return 1
                fi
                _crash_check "$what" || [ "${CRASH_GO_ON:-0}" = 1 ] || return 1
                [ $((i % 50)) -eq 0 ] && echo "  ... $i kills"
        done
        return 0
}

# The final check: every ciphertext acknowledged during the run.
crash_final() {
        local f bad=0
        cat "$C/acked.new" >>"$C/acked"
        while read -r f; do
                _crash_decrypts "$f" || { fail "at the end, $(basename "$f") does not decrypt"; bad=1; }
        done < <(cat "$C/acked"; awk '{ print $3 }' "$C/probes")
        return $bad
}

crash_summary() {
        local k
        echo "crash: $CRASH_ROUNDS kills (${CRASH_STORE:-sqlite}), $CRASH_VERIFIES store verifies," \
                "$CRASH_DECRYPTS decryptions of $(wc -l <"$C/acked") acknowledged ciphertexts and" \
                "$(wc -l <"$C/probes") generation probes"
        echo "crash: generations at the end: default ${CRASH_MAXGEN[default]:-?}, tenant ${CRASH_MAXGEN[tenant]:-?}," \
                "scratch ${CRASH_MAXGEN[scratch]:-?}"
        echo "crash: kills by what was in flight:"
        for k in "${!CRASH_KILLS[@]}"; do
                printf '  %-24s %5d\n' "$k" "${CRASH_KILLS[$k]}"
        done | sort
}

crash_at() {
        local func=$1 gdb_pid
        shift
        gdb -p "$DKMD_PID" -batch -nx -ex 'handle all nostop noprint pass' -ex "break $func" \
                -ex 'continue' -ex 'kill' >"$T/gdb.log" 2>&1 &
        gdb_pid=$!
        for _ in $(seq 1 300); do
                matches '^Continuing' "$T/gdb.log" && break
                sleep 0.1
        done
        check "gdb holds a breakpoint on $func" matches "^Breakpoint 1 at" "$T/gdb.log"
        "$@" >/dev/null 2>&1
        wait "$gdb_pid"
        wait "$DKMD_PID" 2>/dev/null
        check "dkmd was killed at $func" bash -c "! kill -0 $DKMD_PID 2>/dev/null && grep -q 'hit Breakpoint 1.*$func' '$T/gdb.log'"
        DKMD_PID=
}
