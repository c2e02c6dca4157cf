#!/bin/bash
# The audit trail names the person who connected, not whoever holds the
# connecting pid when a request is served.  An operator's client connects
# from a child process, lets it exit and be reaped, and sends a privileged
# request on the same connection from the parent; meanwhile the child's pid
# is given to a process of an approver (another login uid), as pid reuse
# would.  dkmd takes the subject when the peer connects, holds it with a
# pidfd, and says subj_verified=no when it could not tell who connected.
. "$(dirname "$0")/lib.sh"

HANDOFF=$BUILD/tools/handoff-client
[ -x "$HANDOFF" ] || { echo "FAIL: $HANDOFF is not built (make tests)"; exit 1; }

write_config
start_dkmd || exit 1

REUSER=
end_reuser() { [ -n "$REUSER" ] && kill "$REUSER" 2>/dev/null && wait "$REUSER" 2>/dev/null; REUSER=; }
trap 'end_reuser; cleanup' EXIT

# reuse_pid PID: starts a process of the approver (login uid APPR_UID) that
# gets PID, by setting the kernel's last pid just below it (as pid wrap-around
# would do over time).  Other processes on the host may take the pid first:
# a few tries.  Returns 1 when the pid could not be had.
reuse_pid() {
        local want=$1 i
        for ((i = 0; i < 20; i++)); do
                echo $((want - 1)) 2>/dev/null > /proc/sys/kernel/ns_last_pid || return 1
                ( echo "$APPR_UID" > /proc/self/loginuid
                  exec setpriv --reuid "$APPR_UID" --regid "$APPR_UID" --groups "$APPROVERS_GID" \
                        --inh-caps=-all sleep 60 ) &
                REUSER=$!
                if [ "$REUSER" = "$want" ]; then
                        # Until it has exec'd, it is a copy of this shell.
                        for ((j = 0; j < 100; j++)); do
                                [ "$(cat "/proc/$want/comm" 2>/dev/null)" = sleep ] && return 0
                                sleep 0.05
                        done
                        return 1
                fi
                end_reuser
                sleep 0.1
        done
        return 1
}

# handoff MODE VERB [ARG]: runs handoff-client as the operator, logged in as
# the operator; its child's pid goes to the approver before the request.
# Sets OUT (the tool's output) and RC.  With STOP_DKMD=1 dkmd is stopped
# while the child connects and exits, so that it accepts a connection whose
# peer is already gone.
handoff() {
        local fifo=$T/go.$RANDOM peer= i
        mkfifo "$fifo"
        exec 7<>"$fifo"
        [ "${STOP_DKMD:-0}" = 1 ] && kill -STOP "$DKMD_PID"
        ( echo "$OP_UID" > /proc/self/loginuid
          exec setpriv --reuid "$OP_UID" --regid "$OP_UID" --groups "$OPERATORS_GID" --inh-caps=-all \
                "$HANDOFF" "$SOCK" "$@" ) <"$fifo" >"$T/handoff.out" 2>&1 &
        local tool=$!
        for ((i = 0; i < 200; i++)); do
                peer=$(sed -n 's/^peer \([0-9]*\)$/\1/p' "$T/handoff.out")
                [ -n "$peer" ] && break
                kill -0 "$tool" 2>/dev/null || break
                sleep 0.05
        done
        PEER=$peer
        REUSED=no
        if [ -n "$peer" ] && reuse_pid "$peer"; then REUSED=yes; fi
        [ "${STOP_DKMD:-0}" = 1 ] && kill -CONT "$DKMD_PID"
        echo go >&7
        wait "$tool"
        RC=$?
        exec 7>&-
        rm -f "$fifo"
        OUT=$(tail -n 1 "$T/handoff.out")
        echo "    (child pid $PEER, reused by the approver: $REUSED)"
}

# This dkmd's records only: the host's auditd may serve other instances.
own_records() { audit_search "$@" | grep " : pid=$DKMD_PID "; }

audit_mark >/dev/null

# 1. The child connected and was served, then exited; its pid went to the
#    approver.  The rotate must be recorded as the operator's.
handoff warm rotate
check "the operator's rotate through the handed-off connection is served ($OUT)" test "$RC" = 0
recs=$(own_records -m CRYPTO_KEY_USER | grep "op=generation-rotate .*opid=$PEER ")
echo "$recs" | sed 's/^/    /'
check "the rotate is recorded with the operator's login uid" \
        grep -q "oauid=unknown($OP_UID) " <<<"$recs"
check "and not with the approver's, who holds the pid now" \
        bash -c "! grep -q 'oauid=unknown($APPR_UID)' <<<\"\$1\"" _ "$recs"
check "and the client's command, not the approver's" grep -q "ocomm=handoff-client " <<<"$recs"
check "a subject read while the connector lived is not marked unverified" \
        bash -c "! grep -q 'subj_verified=no' <<<\"\$1\"" _ "$recs"
end_reuser

# 2. dkmd is stopped while the child connects and exits: when it accepts,
#    the peer is gone and its pid belongs to the approver.  The record must
#    not name the approver, and must say that the subject is unverified.
nonce="handoff$$x$RANDOM"
STOP_DKMD=1 handoff cold request "$nonce"
check "the operator's request through the handed-off connection is served ($OUT)" test "$RC" = 0
recs=$(own_records -m USER_ACCT | grep "op=access-request .*$nonce")
echo "$recs" | sed 's/^/    /'
check "the request's record is found" test -n "$recs"
check "it does not name the approver, who holds the pid now" \
        bash -c "! grep -q 'oauid=unknown($APPR_UID)\|ocomm=sleep' <<<\"\$1\"" _ "$recs"
check "it says the subject could not be verified" grep -q "subj_verified=no" <<<"$recs"
check "and leaves the login uid unset rather than guess" grep -q "oauid=unset " <<<"$recs"
check "the uid from the socket credentials stays the operator's" grep -q " id=unknown($OP_UID) " <<<"$recs"
end_reuser

# 3. The ordinary case is untouched: dkmctl's own records are verified.
audit_mark >/dev/null
as op key rotate >/dev/null
recs=$(own_records -m CRYPTO_KEY_USER | grep "op=generation-rotate ")
check "dkmctl's rotate names the operator" grep -q "oauid=unknown($OP_UID) .*ocomm=dkmctl " <<<"$recs"
check "and is not marked unverified" bash -c "! grep -q 'subj_verified=no' <<<\"\$1\"" _ "$recs"
finish
