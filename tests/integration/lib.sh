#!/bin/bash
# Shared by the integration tests: a private dkmd instance with numeric
# groups, and callers with real, distinct uids (setpriv).
set -uo pipefail

# grep -q stops reading at its first match, and under pipefail the writer's
# SIGPIPE then fails the whole pipeline: matches() reads to the end.
matches() { grep "$@" >/dev/null; }

BUILD=${BUILD:?BUILD must name the build directory}
BUILD=$(cd "$BUILD" && pwd)
DKMD=$BUILD/dkmd
DKMCTL=$BUILD/dkmctl

# Identities: a service account, an operator, an approver and a human.
USERS_GID=3901 OPERATORS_GID=3902 APPROVERS_GID=3903
SVC_UID=2901 OP_UID=2902 APPR_UID=2903 HUMAN_UID=2904 APPR2_UID=2905 BOSS_UID=2906

T=$(mktemp -d /tmp/dkm-it.XXXXXX)
chmod 0755 "$T"
# Files the callers write (dkmctl --out needs a directory it may write to).
W=$T/w
mkdir -p "$W"
chmod 1777 "$W"
CONF=$T/dkmd.conf
SOCK=$T/run/dkmd.sock
DKMD_PID=
FAILED=0

. "$(dirname "${BASH_SOURCE[0]}")/lib-audit.sh"

# dkmd keeps its grants keyring (dkm:grants:<state_dir>) in its uid's user
# keyring across restarts, as it must; a test's are dropped with the test,
# or root's user keyring gathers thousands and every search walks them.
drop_grant_rings() {
        local s
        for s in $(awk -v p="dkm:grants:$1" '$8 == "keyring" && index($9, p) == 1 { print $1 }' /proc/keys); do
                keyctl invalidate $((16#$s)) >/dev/null 2>&1
        done
}

cleanup() {
        stop_nodes
        stop_dkmd
        audit_stop
        drop_grant_rings "$T/"
        rm -rf "$T"
}
trap cleanup EXIT

# dkmd writes every key life-cycle event to the audit trail and refuses
# privileged operations when it cannot (fail_closed): run with a real auditd.
audit_start
case $? in
0) ;;
77) echo "SKIPPED: auditd cannot run here"; exit 77 ;;
*) echo "auditd did not start"; exit 1 ;;
esac

# write_config [extra INI lines...]: the extra lines are appended verbatim.
write_config() {
        mkdir -p "$T/run"
        chmod 0755 "$T/run"
        {
                echo "[daemon]"
                echo "socket=$SOCK"
                echo "state_dir=$T/state"
                echo "engine=${DKM_ENGINE:-auto}"
                echo "[groups]"
                echo "users=$USERS_GID"
                echo "operators=$OPERATORS_GID"
                echo "approvers=$APPROVERS_GID"
                for l in "$@"; do echo "$l"; done
        } > "$CONF"
}

# A command prefix for dkmd, e.g. to give it an environment (test-watchdog.sh);
# it must exec dkmd, so that $DKMD_PID is dkmd's own pid.
DKMD_LAUNCH=()

start_dkmd() {
        [ -f "$T/state/master.key" ] || "$DKMD" --config "$CONF" --init >>"$T/dkmd.log" 2>&1 || {
                echo "dkmd --init failed:"; cat "$T/dkmd.log"; return 1; }
        # Wait for this instance's own "ready" line, not an earlier one.
        local before
        before=$(grep -c 'ready:' "$T/dkmd.log" 2>/dev/null)
        "${DKMD_LAUNCH[@]}" "$DKMD" --config "$CONF" >>"$T/dkmd.log" 2>&1 &
        DKMD_PID=$!
        for _ in $(seq 1 200); do
                [ "$(grep -c 'ready:' "$T/dkmd.log")" -gt "${before:-0}" ] && return 0
                kill -0 "$DKMD_PID" 2>/dev/null || break
                sleep 0.05
        done
        echo "dkmd did not start:"; cat "$T/dkmd.log"
        return 1
}

stop_dkmd() {
        if [ -n "$DKMD_PID" ]; then
                kill "$DKMD_PID" 2>/dev/null
                wait "$DKMD_PID" 2>/dev/null
                DKMD_PID=
        fi
}

# Kills dkmd without letting it clean up, as a crash would.
crash_dkmd() {
        [ -n "$DKMD_PID" ] && kill -9 "$DKMD_PID" 2>/dev/null
        wait "$DKMD_PID" 2>/dev/null
        DKMD_PID=
}

dkmd_alive() { [ -n "$DKMD_PID" ] && kill -0 "$DKMD_PID" 2>/dev/null; }

# identity WHO: sets uid, gid and groups for a test identity.
identity() {
        case $1 in
        svc) uid=$SVC_UID gid=$SVC_UID groups=$USERS_GID ;;
        op) uid=$OP_UID gid=$OP_UID groups=$OPERATORS_GID ;;
        appr) uid=$APPR_UID gid=$APPR_UID groups=$APPROVERS_GID ;;
        appr2) uid=$APPR2_UID gid=$APPR2_UID groups=$APPROVERS_GID ;;
        human) uid=$HUMAN_UID gid=$HUMAN_UID groups=$HUMAN_UID ;;
        boss) uid=$BOSS_UID gid=$BOSS_UID groups=$OPERATORS_GID,$APPROVERS_GID ;;
        *) echo "unknown identity $1" >&2; return 2 ;;
        esac
}

# as ROLE dkmctl-args...: runs dkmctl as that identity.
as() {
        local who=$1; shift
        local uid gid groups
        if [ "$who" = root ]; then "$DKMCTL" --socket "$SOCK" "$@"; return; fi
        identity "$who" || return
        # As if that user had logged in: the audit trail names the login uid.
        ( echo "$uid" > /proc/self/loginuid 2>/dev/null
          exec setpriv --reuid "$uid" --regid "$gid" --groups "$groups" --inh-caps=-all \
                "$DKMCTL" --socket "$SOCK" "$@" )
}

# raw WHO COMMAND...: a test tool (not dkmctl) as that identity.
raw() {
        local who=$1 uid gid groups; shift
        identity "$who" || return
        setpriv --reuid "$uid" --regid "$gid" --groups "$groups" --inh-caps=-all "$@"
}

# wait_for FILE REGEX SECONDS: polls until a line of FILE matches.
wait_for() {
        local i
        for i in $(seq 1 $(($3 * 10))); do
                matches -E "$2" "$1" 2>/dev/null && return 0
                sleep 0.1
        done
        return 1
}

# flip FILE OFFSET OUT: OUT is FILE with one bit of the byte at OFFSET
# inverted (-1: the last byte), so the byte always changes.
flip() {
        local off=$2 b
        [ "$off" -ge 0 ] || off=$(( $(stat -c %s "$1") + off ))
        cp "$1" "$3"; chmod --reference="$1" "$3"
        b=$(od -An -tu1 -j "$off" -N1 "$1" | tr -d ' ')
        printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$3" bs=1 seek="$off" conv=notrunc status=none
}

pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILED=1; }

# check DESCRIPTION command...: passes when the command succeeds.
check() {
        local d=$1; shift
        if "$@"; then pass "$d"; else fail "$d"; fi
}

# refused DESCRIPTION EXPECTED-STDERR-FRAGMENT command...: the command must
# fail, print nothing on stdout and one line on stderr containing the text.
refused() {
        local d=$1 want=$2; shift 2
        local out err rc
        out=$("$@" 2>"$T/stderr")
        rc=$?
        err=$(cat "$T/stderr")
        if [ $rc -eq 0 ]; then
                fail "$d: succeeded, expected refusal"
        elif [ -n "$out" ]; then
                fail "$d: printed on stdout: $(printf %q "$out" | head -c 100)"
        elif [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then
                fail "$d: expected one line on stderr, got: $err"
        elif [[ "$err" != *"$want"* ]]; then
                fail "$d: stderr '$err' lacks '$want'"
        else
                pass "$d ($err)"
        fi
}

finish() {
        stop_dkmd
        # Under SAN=1 a sanitizer report in dkmd fails the test even when
        # the requests around it happened to succeed.
        if grep -qE 'runtime error|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer' "$T/dkmd.log" 2>/dev/null; then
                fail "sanitizer report in dkmd's log"
                grep -A 20 -E 'runtime error|Sanitizer' "$T/dkmd.log" | head -40
        fi
        if [ "$FAILED" -ne 0 ]; then
                echo "--- dkmd log ---"; tail -n 30 "$T/dkmd.log" 2>/dev/null
                exit 1
        fi
        exit 0
}

# --- several dkmd instances (a fleet) --------------------------------------
# Each node NAME has its own state directory, socket, config and log under
# $T/nodes/NAME; all share the master key $T/fleet-master.key.
declare -A NODE_PID=()

node_dir() { echo "$T/nodes/$1"; }
node_sock() { echo "$T/nodes/$1/run/dkmd.sock"; }

# node_config NAME [extra INI lines...]
node_config() {
        local n=$1 d; shift
        d=$(node_dir "$n")
        mkdir -p "$d/run"
        chmod 0755 "$T/nodes" "$d" "$d/run"
        {
                echo "[daemon]"
                echo "socket=$d/run/dkmd.sock"
                echo "state_dir=$d/state"
                echo "master_key=$T/fleet-master.key"
                echo "engine=${DKM_ENGINE:-auto}"
                echo "[groups]"
                echo "users=$USERS_GID"
                echo "operators=$OPERATORS_GID"
                echo "approvers=$APPROVERS_GID"
                for l in "$@"; do echo "$l"; done
        } > "$d/dkmd.conf"
}

node_start() {
        local n=$1 d before
        d=$(node_dir "$n")
        "$DKMD" --config "$d/dkmd.conf" --init >>"$d/dkmd.log" 2>&1 || {
                echo "dkmd --init ($n) failed:"; cat "$d/dkmd.log"; return 1; }
        before=$(grep -c 'ready:' "$d/dkmd.log" 2>/dev/null)
        "$DKMD" --config "$d/dkmd.conf" >>"$d/dkmd.log" 2>&1 &
        NODE_PID[$n]=$!
        for _ in $(seq 1 400); do
                [ "$(grep -c 'ready:' "$d/dkmd.log")" -gt "${before:-0}" ] && return 0
                kill -0 "${NODE_PID[$n]}" 2>/dev/null || break
                sleep 0.05
        done
        echo "dkmd $n did not start:"; tail -n 20 "$d/dkmd.log"
        return 1
}

node_stop() {
        local pid=${NODE_PID[$1]:-}
        [ -n "$pid" ] || return 0
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        NODE_PID[$1]=
}

# As a crash would: no clean-up.
node_kill() {
        local pid=${NODE_PID[$1]:-}
        [ -n "$pid" ] || return 0
        kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        NODE_PID[$1]=
}

stop_nodes() {
        local n
        for n in "${!NODE_PID[@]}"; do
                node_stop "$n"
        done
}

# on NAME ROLE dkmctl-args...: `as` against node NAME's socket.
on() {
        local n=$1; shift
        SOCK=$(node_sock "$n") as "$@"
}

# Pipelines in `check` run under bash -c: give them the identities too.
export DKMCTL SOCK T W USERS_GID OPERATORS_GID APPROVERS_GID SVC_UID OP_UID APPR_UID HUMAN_UID APPR2_UID BOSS_UID
export -f as identity raw on node_sock
