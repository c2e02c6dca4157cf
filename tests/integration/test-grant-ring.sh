#!/bin/bash
# Who may see and cut grants with keyctl.  dkmd runs as its own uid, as
# dkmd.service has it (User=, SupplementaryGroups=dkm-reviewers, ambient
# CAP_AUDIT_WRITE and CAP_AUDIT_CONTROL, KeyringMode=shared), so that root
# is not the owner of the grant keys.  Then:
#  - a local user in no dkm group tries to read, re-time, revoke and
#    invalidate a live grant with keyctl: all refused, the grant lives;
#  - a reviewer, and root in the reviewers group, follow the README's keyctl
#    recipe exactly as the README prints it;
#  - the kernel's audit records who ran keyctl on a grant (ausearch -k
#    dkm-keyctl), and dkmd's own record points there.
. "$(dirname "$0")/lib.sh"

REVIEWERS_GID=3904 REVIEWER_UID=2907 DKMD_UID=2990
README=$(dirname "$0")/../../README.md

# dkmd as uid $DKMD_UID in the reviewers group, in a session keyring of its
# own with its user keyring linked in (what KeyringMode=shared does).
DKMD_LAUNCH=(setpriv --reuid "$DKMD_UID" --regid "$DKMD_UID" --groups "$REVIEWERS_GID"
        --inh-caps +audit_write,+audit_control --ambient-caps +audit_write,+audit_control
        keyctl session - sh -c 'keyctl link @u @s >/dev/null && exec "$0" "$@"')

fresh_dkmd() {
        stop_dkmd
        rm -rf "$T/state"
        write_config "reviewers=$REVIEWERS_GID" "[access]" "approvals_required=2" "request_ttl=1h"
        mkdir -p "$T/state"
        chown "$DKMD_UID:$DKMD_UID" "$T/state" "$T/run"
        "${DKMD_LAUNCH[@]}" "$DKMD" --config "$CONF" --init >>"$T/dkmd.log" 2>&1 || {
                echo "dkmd --init failed:"; tail "$T/dkmd.log"; exit 1; }
        start_dkmd || exit 1
        DKMD_PIDS+=("$DKMD_PID")
}
DKMD_PIDS=()

grant() {
        local id
        id=$(as op access request --reason "$1" --duration 1h --policy default)
        as appr access approve "$id" >/dev/null && as appr2 access approve "$id" >/dev/null
        echo "$id"
}

# Runs a command as uid 2904, in no dkm group, logged in as itself.
intruder() {
        ( echo "$HUMAN_UID" > /proc/self/loginuid 2>/dev/null
          exec setpriv --reuid "$HUMAN_UID" --regid "$HUMAN_UID" --clear-groups --inh-caps=-all "$@" )
}
reviewer() {
        ( echo "$REVIEWER_UID" > /proc/self/loginuid 2>/dev/null
          exec setpriv --reuid "$REVIEWER_UID" --regid "$REVIEWER_UID" --groups "$REVIEWERS_GID" \
                --inh-caps=-all "$@" )
}

# The README's recipe, as printed: the first ```sh block after its heading.
recipe=$(awk '/^\*\*Watching and cutting grants with keyctl\.\*\*/ { h = 1 }
              h && /^```sh$/ { b = 1; next }
              b && /^```$/ { exit }
              b { print }' "$README")
check "the README has the keyctl recipe" grep -q '^keyctl revoke' <<<"$recipe"
# dkmctl on the PATH and pointed at this instance's socket.
run_recipe() {
        "$@" env PATH="$BUILD:$PATH" DKM_SOCKET="$SOCK" bash -euo pipefail -c "$recipe" >"$T/recipe.out" 2>&1 ||
                { sed 's/^/    | /' "$T/recipe.out"; return 1; }
}

# state ID: the grant's state as its holder's dkmctl access list shows it,
# once dkmd's maintenance (every second) took note.
state_is() {
        for _ in $(seq 1 50); do
                as op access list --json | tr -d '\n ' | grep -q "\"id\":$1,\"state\":\"$2\"" && return 0
                sleep 0.2
        done
        return 1
}

# logged N TEXT: dkmd's log holds TEXT N times, within 10 s (its
# maintenance looks at the grants every second).
logged() {
        for _ in $(seq 1 50); do
                [ "$(grep -cF -- "$2" "$T/dkmd.log")" -ge "$1" ] && return 0
                sleep 0.2
        done
        return 1
}

# Fills request ids up to 6, then grants 7: the README's recipe names grant 7.
grants_up_to_7() {
        local n=0
        while [ "$n" -lt 6 ]; do
                n=$(as op access request --reason "filler" --duration 5m) || return 1
        done
        [ "$(grant "ticket 7")" = 7 ]
}

# denied DESCRIPTION command...: passes when the command fails.
denied() {
        local d=$1; shift
        if "$@" >/dev/null 2>&1; then fail "$d: it succeeded"; else pass "$d"; fi
}

fresh_dkmd
printf 'customer secret' | as svc encrypt > "$W/ct"
audit_mark >/dev/null
id=$(grant "debug ticket 4711")
ring=$(as appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
key=$(reviewer keyctl search "$ring" user "dkm:grant:$id" 2>/dev/null)
check "a reviewer finds the grant key ($key)" test -n "$key"

# --- the attack: a local user in no dkm group --------------------------------
check "the intruder is uid $HUMAN_UID in no group" test "$(intruder id -u):$(intruder id -G)" = "$HUMAN_UID:$HUMAN_UID"
denied "a local user cannot read the grant (holder, scope, approvers)" intruder keyctl print "$key"
denied "nor see it in /proc/keys" intruder grep "^$(printf %08x "${key:-0}") " /proc/keys
denied "nor find it in the grants keyring" intruder keyctl search "$ring" user "dkm:grant:$id"
denied "nor list the grants keyring" intruder keyctl rlist "$ring"
denied "nor shorten it with keyctl timeout" intruder keyctl timeout "$key" 5
denied "nor revoke it" intruder keyctl revoke "$key"
denied "nor invalidate it" intruder keyctl invalidate "$key"
denied "nor set its permissions" intruder keyctl setperm "$key" 0x3f3f3f3f
sleep 1.2 # a maintenance pass
check "the grant is still live for its holder" bash -c "as op decrypt --in '$W/ct' | grep -qx 'customer secret'"
check "and has its full time" bash -c \
        "as op access list --json | tr -d '\n ' | grep -o '\"id\":$id,[^}]*' | grep -Eq '\"remaining_seconds\":3[5-6][0-9][0-9]'"
refused "a local user gets no status, not even the keyring" "not in any dkm group" intruder "$DKMCTL" --socket "$SOCK" status

# --- a reviewer may cut a grant, not pass it on --------------------------------
# setattr lets a reviewer give the key to another group of theirs (here
# their own, 2907); dkmd gives it back to the reviewers within a second.
key_group() { reviewer keyctl rdescribe "$1" | cut -d';' -f3; }
group_is() {
        for _ in $(seq 1 50); do
                [ "$(key_group "$1")" = "$2" ] && return 0
                sleep 0.1
        done
        return 1
}
check "a reviewer gives the grant key to a group of their own" reviewer keyctl chgrp "$key" "$REVIEWER_UID"
check "dkmd gives it back to the reviewers" group_is "$key" "$REVIEWERS_GID"
check "with the reviewers' rights and no others" \
        test "$(reviewer keyctl rdescribe "$key" | cut -d';' -f4)" = 3f3f2b00
check "dkmd logged it" matches "grant $id was given to group $REVIEWER_UID" "$T/dkmd.log"

# --- root not in the reviewers group: no implicit power over dkmd's keys ------
denied "root outside the reviewers group cannot read a grant" setpriv --groups 0 keyctl print "$key"
denied "nor revoke one" setpriv --groups 0 keyctl revoke "$key"
check "root's dkmctl status names the grants keyring" bash -c \
        "as root status --json | grep -q '\"grants_keyring\": $ring'"
denied "but nothing more: no policies, no generations" grep -q '"policies"' <(as root status --json)
refused "and root still may not decrypt" "not in the users group" as root decrypt --in "$W/ct"

# --- root in the reviewers group follows the README ---------------------------
grants_up_to_7
check "grant 7 is live" bash -c "as op access list --json | tr -d '\n ' | grep -q '\"id\":7,\"state\":\"live\"'"
check "root in the reviewers group runs the README's recipe" run_recipe setpriv --groups "0,$REVIEWERS_GID"
check "it printed grant 7's holder, scope and approvers" \
        grep -q "grant=7 uid=$OP_UID scope=decrypt policy=default approvers=$APPR_UID,$APPR2_UID" "$T/recipe.out"
check "dkmd took note: grant 7 revoked by keyctl" logged 1 "grant 7 revoked (keyctl)"
check "and recorded it" state_is 7 revoked

# --- a reviewer follows the README -------------------------------------------
fresh_dkmd
printf 'customer secret' | as svc encrypt > "$W/ct"
grants_up_to_7
check "a reviewer runs the README's recipe" run_recipe reviewer
check "it printed grant 7" grep -q "grant=7 uid=$OP_UID scope=decrypt" "$T/recipe.out"
check "dkmd took note: grant 7 revoked by keyctl" logged 2 "grant 7 revoked (keyctl)"
check "and recorded it" state_is 7 revoked
refused "grant 7 is revoked for its holder" "grant 7 revoked" as op decrypt --in "$W/ct"
check "a reviewer gets dkmctl status, for the keyring" \
        matches grants_keyring <(reviewer "$DKMCTL" --socket "$SOCK" status --json)
refused "but is no operator" "not in the operators" reviewer "$DKMCTL" --socket "$SOCK" key list

# --- the audit trail: who ran keyctl -------------------------------------------
# Since the first mark: the intruder's tries and both recipes.
# (Adding and removing the rules are CONFIG_CHANGE events under the same key.)
# (A file: with every process's keyctl calls in it, the text can be long.)
audit_search -k dkm-keyctl | grep 'type=SYSCALL.* syscall=keyctl ' >"$T/keyctl.recs"
keyctl_recs() { grep "a0=$1 " "$T/keyctl.recs" | grep "$2" | grep -q "auid=unknown($3)"; }
check "the kernel recorded the intruder's refused keyctl revoke (auid $HUMAN_UID)" \
        keyctl_recs 0x3 success=no "$HUMAN_UID"
check "and the reviewer's keyctl revoke (auid $REVIEWER_UID)" keyctl_recs 0x3 success=yes "$REVIEWER_UID"
check "and the reviewer's keyctl timeout" keyctl_recs 0xf success=yes "$REVIEWER_UID"
# This test's dkmds (pid=): a dkmd run elsewhere on the machine at the same
# time, from another path, has rules of its own that record this one's.
denied "but not dkmd's own keyctl calls" grep -qE " pid=($(IFS='|'; echo "${DKMD_PIDS[*]}")) " "$T/keyctl.recs"
# dkmd's own records, of this test's dkmd only (others may run beside it).
audit_search -m USER_ACCT | grep -F "exe=$DKMD " >"$T/dkmd.recs"
check "dkmd audited the regrouping as grant-tamper" \
        grep -qE "op=grant-tamper .*request=$id .*key_group=$REVIEWER_UID .*audit_rule=dkm-keyctl" "$T/dkmd.recs"
check "dkmd's records of grant 7's revocations say keyctl, and where to look" test \
        "$(grep -cE "op=grant-revoke .*request=7 .*source=keyctl audit_rule=dkm-keyctl" "$T/dkmd.recs")" -eq 2

# --- the rules: one set per running dkmd, gone when it stops -------------------
rules_of() { auditctl -l | grep -c -- "pid!=$1 .*dkm-keyctl"; }
old=$DKMD_PID
check "dkmd's audit rules are in place ($(rules_of "$old"))" test "$(rules_of "$old")" -ge 6
crash_dkmd
check "a killed dkmd leaves its rules behind" test "$(rules_of "$old")" -ge 6
start_dkmd || exit 1
check "which the next start removes" test "$(rules_of "$old")" -eq 0
check "and puts its own in place" test "$(rules_of "$DKMD_PID")" -ge 6
new=$DKMD_PID
stop_dkmd
check "a dkmd that stops removes its own" test "$(rules_of "$new")" -eq 0
finish
