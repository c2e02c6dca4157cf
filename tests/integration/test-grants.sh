#!/bin/bash
# Elevated access: reasoned requests, N distinct approvals, grants that the
# kernel expires, cut with keyctl, every step audited with the actor.
. "$(dirname "$0")/lib.sh"

# request_ttl: short, for the expiry below, but long enough for the five
# dkmctl calls between a request and its second approval on a loaded machine.
write_config "[access]" "approvals_required=2" "max_duration=8h" "request_ttl=5s"
start_dkmd || exit 1
printf 'customer secret' | as svc encrypt > "$W/ct"
audit_mark >/dev/null

# An operator is not a service account: no implicit access.
refused "an operator cannot decrypt without a grant" "no live grant" as op decrypt --in "$W/ct"

# Request -> one approval (not enough) -> second approval -> decrypt works.
id=$(as op access request --reason "debug ticket 4711" --duration 30m --policy default)
check "the request prints its id ($id)" test -n "$id"
check "first approval is not enough" bash -c "as appr access approve $id | grep -q 'pending (1 of 2'"
refused "not yet granted" "no live grant" as op decrypt --in "$W/ct"
refused "the same approver counts once" "already approved" as appr access approve "$id"
refused "an operator who is no approver cannot approve" "not in the approvers group" as op access approve "$id"
check "second approval grants" bash -c "as appr2 access approve $id | grep -q granted"
check "the grant holder decrypts" bash -c "as op decrypt --in '$W/ct' | grep -qx 'customer secret'"
check "access list shows it live with time left" bash -c \
        "as op access list --json | grep -q '\"state\": \"live\"' && as op access list --json | grep -q remaining_seconds"

# The kernel holds the grant: a root shell sees it and cuts it with keyctl.
ring=$(as appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')
key=$(keyctl search "$ring" user "dkm:grant:$id" 2>/dev/null)
check "keyctl finds the grant key in the grants keyring" test -n "$key"
check "keyctl shows its payload" bash -c "keyctl print $key | grep -q 'grant=$id uid=$OP_UID scope=decrypt'"
check "keyctl revoke" keyctl revoke "$key"
refused "after keyctl revoke the next request is refused" "grant $id revoked" as op decrypt --in "$W/ct"

# A short grant ends by itself: nothing in dkmd has to act.
id2=$(as op access request --reason "quick look" --duration 3s)
as appr access approve "$id2" >/dev/null; as appr2 access approve "$id2" >/dev/null
check "the short grant works at first" bash -c "as op decrypt --in '$W/ct' >/dev/null"
sleep 4
refused "past its duration the grant is expired" "expired" as op decrypt --in "$W/ct"

# keyctl timeout shortens a grant, and dkmd takes note.
id3=$(as op access request --reason "timeout test" --duration 1h)
as appr access approve "$id3" >/dev/null; as appr2 access approve "$id3" >/dev/null
key3=$(keyctl search "$ring" user "dkm:grant:$id3")
check "keyctl timeout shortens the grant" keyctl timeout "$key3" 2
sleep 3
refused "the shortened grant has ended" "grant $id3" as op decrypt --in "$W/ct"

# Denial ends a request; approvals of ended or unknown requests are refused.
id4=$(as op access request --reason "will be denied" --duration 10m)
check "an approver denies" as appr access deny "$id4" --reason "not justified"
refused "no approval after denial" "denied, not pending" as appr2 access approve "$id4"
refused "unknown request id" "no access request 999" as appr access approve 999
refused "not an id" "is not a request id" as appr access approve 12x
refused "a service account cannot request" "not in the operators group" \
        as svc access request --reason x --duration 1m
refused "a human cannot approve" "not in the approvers group" as human access approve "$id"
sid=$(as boss access request --reason "self service" --duration 5m)
refused "nobody approves their own request" "nobody approves their own request" as boss access approve "$sid"

# Requests that nobody approves in time expire (request_ttl=5s).
id5=$(as op access request --reason "too slow" --duration 10m)
sleep 6
refused "approval after the request expired" "expired" as appr access approve "$id5"

# Bad input changes nothing.
refused "negative duration" "bad duration '-5m'" as op access request --reason r --duration -5m
refused "duration over max_duration" "longer than max_duration" as op access request --reason r --duration 99999h
refused "unknown unit" "bad duration '1x'" as op access request --reason r --duration 1x
refused "empty reason" "a reason is required" as op access request --reason "" --duration 1m
refused "blank reason" "a reason is required" as op access request --reason "   " --duration 1m
refused "oversize reason" "reason too long" as op access request --reason "$(head -c 2000 /dev/zero | tr '\0' r)" --duration 1m
refused "missing duration" "--duration is required" as op access request --reason r
refused "unknown scope" "unknown scope" as op access request --reason r --duration 1m --scope everything
refused "unknown policy" "no such policy" as op access request --reason r --duration 1m --policy nope

# Restart: a live grant keeps its remaining time, ended ones stay ended.
id6=$(as op access request --reason "across a restart" --duration 1h --scope decrypt)
as appr access approve "$id6" >/dev/null; as appr2 access approve "$id6" >/dev/null
stop_dkmd
start_dkmd || exit 1
check "after restart the live grant still works" bash -c "as op decrypt --in '$W/ct' >/dev/null"
left=$(as op access list --json | tr -d '\n ' | grep -o "\"id\":$id6,[^}]*" | grep -o '"remaining_seconds":[0-9]*' | cut -d: -f2)
check "and has its remaining time ($left s of 3600)" test "${left:-0}" -gt 3000 -a "${left:-0}" -le 3600
check "the expired grant stays expired" bash -c \
        "as op access list --json | tr -d '\n ' | grep -q '\"id\":$id2,\"state\":\"expired\"'"
check "the revoked grant stays revoked" bash -c \
        "as op access list --json | tr -d '\n ' | grep -q '\"id\":$id,\"state\":\"revoked\"'"
# A use that fails is recorded as failed: the record is written once the
# decryption has answered, not when the grant is checked.
flip "$W/ct" -1 "$W/ct-bad"
refused "a tampered ciphertext under a grant" "authentic" as op decrypt --in "$W/ct-bad"
head -c 100000 /dev/zero > "$W/big"
chmod 644 "$W/big"
as svc encrypt --in "$W/big" > "$W/st"
check "a stream under the grant" bash -c "as op decrypt --in '$W/st' | cmp -s - '$W/big'"
flip "$W/st" -1 "$W/st-bad"
refused "a tampered stream under the grant" "authentic" as op decrypt --in "$W/st-bad"
recs6=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the failed use says res=failed with its error" \
        matches -E "op=grant-use .*request=$id6 use=decrypt .* error=EBADMSG .*res=failed" <<<"$recs6"
check "audit: the good uses say res=success" \
        matches -E "op=grant-use .*request=$id6 use=decrypt .*res=success" <<<"$recs6"
check "audit: the stream's end, with its bytes" \
        matches -E "op=grant-use-end .*request=$id6 use=decrypt-stream .*bytes=100000 .*res=success" <<<"$recs6"
check "audit: the tampered stream's end says res=failed" \
        matches -E "op=grant-use-end .*request=$id6 use=decrypt-stream .* error=EBADMSG .*res=failed" <<<"$recs6"
check "dkmctl access revoke" as appr access revoke "$id6"
refused "revoked by dkmctl" "grant $id6 revoked" as op decrypt --in "$W/ct"

# Destroying a generation needs approval too.
as op key rotate >/dev/null
printf 'second' | as svc encrypt > "$W/ct2"
did=$(as op key destroy 1 --reason "crypto-shred test data")
check "key destroy files a request ($did)" test -n "$did"
check "generation 1 still decrypts before approval" bash -c "as svc decrypt --in '$W/ct' >/dev/null"
as appr access approve "$did" >/dev/null
check "second approval carries out the destroy" bash -c "as appr2 access approve $did | grep -q done"
refused "a destroyed generation does not decrypt" "was destroyed" as svc decrypt --in "$W/ct"
refused "the active generation cannot be destroyed" "rotate first" as op key destroy 2 --reason x

# The audit trail of the first grant: request, approvals, grant, use, end,
# each with the acting user's login uid.
recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER)
check "audit: the request, by the operator" grep -q "op=access-request .*oauid=unknown($OP_UID).*request=$id " <<<"$recs"
# Only this dkmd's records (exe=): a test run elsewhere on the machine at the
# same time has request ids of its own.
check "audit: both approvals" test "$(grep -F "exe=$(readlink -f "$DKMD") " <<<"$recs" |
        grep -c "op=access-approve .*request=$id .*res=success")" -eq 2
check "audit: the grant" grep -q "op=grant-create .*request=$id .*approvers=$APPR_UID,$APPR2_UID" <<<"$recs"
check "audit: the use, with reason and approvers" grep -q "op=grant-use .*oauid=unknown($OP_UID).*request=$id use=decrypt policy=default generation=1 approvers=$APPR_UID,$APPR2_UID reason=$(printf 'debug ticket 4711' | od -An -tx1 | tr -d ' \n' | tr a-f A-F)" <<<"$recs"
check "audit: the revocation by keyctl" grep -q "op=grant-revoke .*request=$id .*source=keyctl" <<<"$recs"
check "audit: the expiry" grep -q "op=grant-expire .*request=$id2 " <<<"$recs"
check "audit: the shortening by keyctl" grep -qE "op=grant-(shorten|expire) .*request=$id3 .*source=keyctl" <<<"$recs"
check "audit: the denial" grep -q "op=access-deny .*oauid=unknown($APPR_UID).*request=$id4 " <<<"$recs"
check "audit: the destroy" grep -q "op=generation-destroy .*request=$did" <<<"$recs"
check "audit: the self-approval attempt" grep -q "op=access-approve .*res=failed" <<<"$recs" 
stop_dkmd

# Audit unavailable: privileged operations are refused and nothing is granted.
start_dkmd || exit 1
id7=$(as op access request --reason "audit down" --duration 10m)
as appr access approve "$id7" >/dev/null
stop_dkmd
DKM_AUDIT_FAIL=1 start_dkmd || exit 1
refused "approval refused when audit cannot be written" "audit record could not be written" \
        as appr2 access approve "$id7"
refused "a new request is refused too" "audit record could not be written" \
        as op access request --reason r --duration 1m
refused "and the operator has no live grant" "permission denied: grant" as op decrypt --in "$W/ct2"
stop_dkmd
start_dkmd || exit 1
check "the request is still pending with one approval" bash -c \
        "as op access list --json | tr -d '\n ' | grep -q '\"id\":$id7,\"state\":\"pending\"'"
finish
