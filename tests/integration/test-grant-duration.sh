#!/bin/bash
# An approved grant lasts as long as it was approved for.  /proc/keys, where
# dkmd reads a grant key's remaining time, shows whole minutes, hours, days
# and weeks (rounded down): a 2 h grant reads "1h" a second after it starts.
# That must not read as a keyctl timeout, while a real one still does.
. "$(dirname "$0")/lib.sh"

# cache_ttl=2s makes the maintenance loop, which also checks the grants,
# wake five times a second: a minute's worth of passes in about 12 s.
write_config "[access]" "approvals_required=2" "max_duration=8h" "request_ttl=1h" \
        "[policy]" "cache_ttl=2s"
start_dkmd || exit 1
printf 'customer secret' | as svc encrypt > "$W/ct"
audit_mark >/dev/null

grant() {
        local id
        id=$(as op access request --reason "$1" --duration "$2" --policy default)
        as appr access approve "$id" >/dev/null && as appr2 access approve "$id" >/dev/null
        echo "$id"
}

remaining() {
        as op access list --json | tr -d '\n ' | grep -o "\"id\":$1,[^}]*" |
                grep -o '"remaining_seconds":[0-9]*' | cut -d: -f2
}

g2=$(grant "two hours" 2h)
g8=$(grant "eight hours" 8h)
g1=$(grant "one hour, cut by a reviewer" 1h)
ring=$(as appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
key1=$(keyctl search "$ring" user "dkm:grant:$g1")
check "keyctl timeout cuts the 1 h grant to 30 min" keyctl timeout "$key1" 1800

# A minute of maintenance passes (at least 60, five a second): poll, and stop
# at the first sign of a wrongly shortened grant.
passes=$(( $(date +%s) + 14 ))
while [ "$(date +%s)" -lt "$passes" ]; do
        matches -E "grant ($g2|$g8) shortened" "$T/dkmd.log" && break
        sleep 0.5
done
l2=$(remaining "$g2")
l8=$(remaining "$g8")
l1=$(remaining "$g1")
check "the 2 h grant keeps its time (${l2:-none} s of 7200)" test "${l2:-0}" -gt 7150 -a "${l2:-0}" -le 7200
check "the 8 h grant keeps its time (${l8:-none} s of 28800)" test "${l8:-0}" -gt 28750 -a "${l8:-0}" -le 28800
check "dkmd logged no shortening of either" bash -c "! grep -E 'grant ($g2|$g8) shortened' '$T/dkmd.log'"
check "the keyctl timeout is taken as the grant's end (${l1:-none} s)" \
        test "${l1:-99999}" -le 1800 -a "${l1:-0}" -gt 1700
check "both long grants still decrypt" bash -c "as op decrypt --in '$W/ct' | grep -qx 'customer secret'"

# Shortening within the hours: 8 h cut to 5 h shows as "4h" or "5h", below
# the approved 7 h 59 min by more than the unit.
key8=$(keyctl search "$ring" user "dkm:grant:$g8")
check "keyctl timeout cuts the 8 h grant to 5 h" keyctl timeout "$key8" 18000
for _ in $(seq 1 50); do
        matches "grant $g8 shortened" "$T/dkmd.log" && break
        sleep 0.2
done
l8=$(remaining "$g8")
check "dkmd takes the 5 h as the 8 h grant's end (${l8:-none} s)" \
        test "${l8:-99999}" -le 18000 -a "${l8:-0}" -ge 14000

# Only this dkmd's records (exe=): a test run elsewhere on the machine at the
# same time writes grant records of its own.
recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER | grep -F "exe=$(readlink -f "$DKMD") ")
check "audit: no grant-shorten of the 2 h grant" bash -c "! grep -q 'op=grant-shorten .*request=$g2 ' <<<\"\$0\"" "$recs"
check "audit: the reviewer's cut of the 1 h grant, source=keyctl" \
        grep -qE "op=grant-shorten .*request=$g1 .*source=keyctl" <<<"$recs"
check "audit: the cut of the 8 h grant, once" \
        test "$(grep -cE "op=grant-shorten .*request=$g8 .*source=keyctl" <<<"$recs")" -eq 1
check "audit: no grant-tamper" bash -c "! grep -q 'op=grant-tamper' <<<\"\$0\"" "$recs"
finish
