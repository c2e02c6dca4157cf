#!/bin/bash
# Only the users group encrypts and decrypts; only operators administer
# keys; root has no implicit right; every refusal is audited.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1
audit_mark >/dev/null

printf 'x' | as svc encrypt > "$W/ct" || fail "service account cannot encrypt"

refused "a human cannot encrypt" "not in the users group" \
        bash -c "printf x | as human encrypt"
refused "a human cannot decrypt" "not in the users group" as human decrypt --in "$W/ct"
refused "an operator cannot decrypt" "not in the users group" as op decrypt --in "$W/ct"
refused "an approver cannot encrypt" "not in the users group" bash -c "printf x | as appr encrypt"
refused "root is not in the security group" "not in the users group" as root decrypt --in "$W/ct"
refused "a service account cannot rotate keys" "not in the operators group" as svc key rotate
refused "a service account cannot list keys" "not in the operators group" as svc key list
refused "a human cannot see status" "not in any dkm group" as human status
check "an operator can list keys" bash -c "as op key list --json | grep -q '\"state\": \"active\"'"
check "an operator can read status" bash -c "as op status >/dev/null"
check "an approver can read status" bash -c "as appr status >/dev/null"

# The refusals reach the audit trail, attributed to the requester.
recs=$(audit_search -m USER_ACCT --success no)
check "refused decrypt by the human is audited" grep -q "op=decrypt .*id=unknown(${HUMAN_UID})" <<<"$recs"
check "refused rotate by the service account is audited" \
        grep -q "op=key-rotate .*id=unknown(${SVC_UID})" <<<"$recs"
check "the refusal names the requesting program" grep -q 'ocomm=dkmctl' <<<"$recs"
check "refusals are res=failed" grep -q "op=decrypt .*res=failed" <<<"$recs"
check "dkmd still serves after the refusals" bash -c "printf y | as svc encrypt | as svc decrypt | grep -qx y"
finish
