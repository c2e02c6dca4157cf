#!/bin/bash
# Refusals and malformed requests must not flood the journal or the audit
# trail (issue 11, item 10): a uid in no dkm group sends thousands of
# malformed frames and refused requests; dkmd writes a bounded number of
# lines and records per uid, then says how many it left out.
. "$(dirname "$0")/lib.sh"

FLOOD=$BUILD/tools/conn-flood
[ -x "$FLOOD" ] || { echo "missing $FLOOD (make tests)"; exit 1; }

write_config
start_dkmd || exit 1
printf 'precious data' | as svc encrypt > "$W/ct"

# At most 10 lines (and 10 records) per uid in each 5 s: the bound grows
# with the time the burst took on a loaded machine, and stays far below it.
bound() { echo $((10 * ((SECONDS - $1) / 5 + 2))); }
before=$(grep -c 'malformed request' "$T/dkmd.log")
audit_mark >/dev/null
t0=$SECONDS
out=$(raw human "$FLOOD" garbage "$SOCK" 3000)
check "the garbage went out ($out)" test "$out" = "sent 3000"
lines=$(($(grep -c 'malformed request' "$T/dkmd.log") - before))
max=$(bound $t0)
check "3000 malformed requests wrote $lines log lines (at most $max)" test "$lines" -le "$max" -a "$max" -lt 300
t0=$SECONDS
out=$(raw human "$FLOOD" request "$SOCK" 10 500)
check "a non-member's status is refused ($out)" matches "permission denied" <<<"$out"
max=$(bound $t0)
if wait_for "$T/dkmd.log" "suppressed [0-9]+ similar messages from uid $HUMAN_UID" 20; then
        pass "the log says how many were suppressed: $(grep -Eo "suppressed [0-9]+ similar messages from uid $HUMAN_UID" "$T/dkmd.log" | head -n1)"
else
        fail "no 'suppressed N similar messages from uid $HUMAN_UID' line"
fi
n=$(audit_count 'op=status ' -m USER_ACCT)
check "500 refused requests wrote $n audit records (at most $max)" test "$n" -ge 1 -a "$n" -le "$max" -a "$max" -lt 100
n=$(AUDIT_WAIT=20 audit_count 'op=refusals-suppressed .*suppressed=[1-9]' -m USER_ACCT)
check "an audit record carries the count of suppressed refusals ($n)" test "$n" -ge 1
check "a member is still served" bash -c "as svc decrypt --in '$W/ct' | grep -qx 'precious data'"

finish
