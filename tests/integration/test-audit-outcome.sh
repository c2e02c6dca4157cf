#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The audit trail tells the outcome the caller saw, on a real full disk: the
# state directory is a small tmpfs, filled to ENOSPC with a filler file.
# Every life-cycle change dkmctl then reports as failed (approve, the grant
# it would create, deny, revoke, request, rotate, retire, destroy, policy
# create and assign) is recorded res=failed error=ENOSPC and never
# res=success; nothing is left half-done: no grant key for the request the
# store kept pending, and the grant whose revocation failed works as it did.
# With the filler gone, each works and is recorded res=success, and the
# revoked grant is refused.
. "$(dirname "$0")/lib.sh"

STATE=$T/state
mkdir -p "$STATE"
mount -t tmpfs -o size=8m,mode=0700 dkm-test-full "$STATE" ||
        { echo "SKIPPED: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)"; exit 77; }
trap 'stop_dkmd; umount -l "$STATE"; cleanup' EXIT

write_config "[access]" "approvals_required=2" "request_ttl=10m"
start_dkmd || exit 1
printf 'customer secret' | as svc encrypt > "$W/ct"
as op key rotate >/dev/null
ring=$(as appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')

# A grant of boss's (to revoke), a request of op's with one approval (to
# approve), a destroy request with one approval, and one to deny.
g=$(as boss access request --reason "live grant" --duration 30m)
as appr access approve "$g" >/dev/null
as appr2 access approve "$g" >/dev/null
check "boss's grant works" bash -c "as boss decrypt --in '$W/ct' | grep -qx 'customer secret'"
r=$(as op access request --reason "to approve" --duration 30m)
as appr access approve "$r" >/dev/null
d=$(as op key destroy 1 --reason "to destroy")
as appr access approve "$d" >/dev/null
n=$(as op access request --reason "to deny" --duration 5m)

# The disk fills up.
dd if=/dev/zero of="$STATE/filler" bs=64k 2>/dev/null
check "the state directory is full" bash -c "! head -c 4096 /dev/zero > '$STATE/probe' 2>/dev/null"
rm -f "$STATE/probe"
audit_mark >/dev/null

# failed DESCRIPTION command...: dkmctl fails, with one line that says why.
failed() {
        local d=$1; shift
        refused "$d" "No space left on device" "$@"
}
failed "the second approval" as appr2 access approve "$r"
key=$(keyctl search "$ring" user "dkm:grant:$r" 2>/dev/null)
check "no grant key for the request the store kept pending" \
        bash -c "[ -z '$key' ] || ! keyctl print '$key' >/dev/null 2>&1"
refused "and no decryption under it" "no live grant" as op decrypt --in "$W/ct"
failed "the revocation" as appr access revoke "$g"
check "the grant whose revocation failed works as it did" \
        bash -c "as boss decrypt --in '$W/ct' | grep -qx 'customer secret'"
failed "a denial" as appr access deny "$n" --reason no
failed "a request" as op access request --reason "more" --duration 5m
failed "a rotation" as op key rotate
failed "a retirement" as op key retire 1
failed "the approval that would destroy" as appr2 access approve "$d"
failed "a policy" as op policy create other
failed "an assignment" as op policy assign default --uid 4242

recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER,USYS_CONFIG -p "$DKMD_PID")
for op in access-approve grant-create grant-revoke access-deny access-request generation-rotate \
        generation-retire generation-destroy policy-create policy-assign; do
        check "audit: $op res=failed error=ENOSPC" matches -E "op=$op .*error=ENOSPC.* res=failed" <<<"$recs"
        check "audit: no $op res=success" bash -c "! grep -qE 'op=$op .* res=success' <<<\"\$1\"" _ "$recs"
done

# Space again: each works, and says so.
rm -f "$STATE/filler"
audit_mark >/dev/null
check "the second approval grants now" bash -c "as appr2 access approve $r | grep -q granted"
check "op decrypts under it" bash -c "as op decrypt --in '$W/ct' | grep -qx 'customer secret'"
check "the revocation works now" as appr access revoke "$g"
refused "the revoked grant is refused" "grant $g revoked" as boss decrypt --in "$W/ct"
check "the rotation works now" bash -c "as op key rotate >/dev/null"
check "the destroy is carried out now" bash -c "as appr2 access approve $d | grep -q done"
recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER -p "$DKMD_PID")
for op in access-approve grant-create grant-revoke generation-rotate generation-destroy; do
        check "audit: $op res=success" matches -E "op=$op .* res=success" <<<"$recs"
done
finish
