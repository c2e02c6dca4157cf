#!/bin/bash
# Start-up with many live grants reads /proc/keys once, not once per grant
# (1,424 grants took dkmd 2.9 s to start; each read lists every key).  The
# grants are made through dkmd's own request/approve flow (grant-fill),
# dkmd restarts under strace, and its opens of /proc/keys are counted: a
# count, not a time (the time is in make bench).  The grants must come
# through the restart alive, one shortened with keyctl while dkmd was down
# is seen as shortened, and one extended is put back.
. "$(dirname "$0")/lib.sh"

N=${DKM_STARTUP_GRANTS:-400}

ring_cleanup() {
        local ring
        # The grant keys count against root's key quota for their hour:
        # give them back.
        ring=$(keyctl search @u keyring "dkm:grants:$T/state" 2>/dev/null) &&
                keyctl clear "$ring" >/dev/null 2>&1 && keyctl invalidate "$ring" >/dev/null 2>&1
}
trap 'ring_cleanup; cleanup' EXIT

command -v strace >/dev/null || { echo "strace is missing (tests/deps.sh installs it)"; exit 1; }

write_config "[access]" "approvals_required=2" "max_duration=8h" "request_ttl=1h"
start_dkmd || exit 1
made=$("$BUILD/tools/grant-fill" "$SOCK" "$N" 1h "$OP_UID" "$OPERATORS_GID" "$APPR_UID" "$APPR2_UID" \
        "$APPROVERS_GID")
check "$N grants made through request and two approvals (made: $made)" test "$made" = "$N"
live() { as appr access list --json | grep -c '"state": "live"'; }
check "dkmd lists $N live grants" test "$(live)" = "$N"

ring=$(as appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
stop_dkmd
# While dkmd is down: the first grant cut to 10 minutes, the second made
# permanent.  Ids are given in order from 1.
first=$(keyctl search "$ring" user "dkm:grant:1" 2>/dev/null)
second=$(keyctl search "$ring" user "dkm:grant:2" 2>/dev/null)
check "the grant keys outlive dkmd" test -n "$first" -a -n "$second"
keyctl timeout "$first" 600
keyctl timeout "$second" 0

DKMD_LAUNCH=(strace -f -qq -e trace=openat -o "$T/trace")
start_dkmd || exit 1
opens=$(grep -c '"/proc/keys"' "$T/trace")
check "start-up with $N live grants opens /proc/keys at most twice (opened: $opens)" test "$opens" -le 2
check "every grant is still live after the restart" test "$(live)" = "$N"
check "the grant cut with keyctl while dkmd was down is seen as shortened" \
        matches 'grant 1 shortened to' "$T/dkmd.log"
check "the grant made permanent is put back" matches 'grant 2 was extended outside dkm' "$T/dkmd.log"
check "nothing else was taken for tampering" \
        test "$(grep -c 'extended outside dkm\|shortened to' "$T/dkmd.log")" = 2

# strace's child is dkmd: stop it by its own pid, then strace ends.
child=$(pgrep -P "$DKMD_PID" | head -1)
[ -n "$child" ] && kill "$child"
wait "$DKMD_PID" 2>/dev/null
DKMD_PID=
exit $FAILED
