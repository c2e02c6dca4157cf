#!/bin/bash
# dkmctl recovery reshare (dkmd(8), "RECOVERY SHARES"): an operator asks
# for a new recovery share set, two approvers other than the requester
# approve it, and dkmd makes it, each share encrypted to one custodian's
# certificate.  Afterwards 3 new shares (decrypted by their custodians with
# openssl cms) rebuild the lost master key and every earlier ciphertext
# decrypts; 3 shares of the old set are refused and write nothing.  Without
# custodians a reshare is refused.  Every step is in the audit trail.
. "$(dirname "$0")/lib.sh"

SHARES=$T/shares
KEY=$T/state/master.key
CUST=$T/custodians
KEYS=$T/custodian-keys
OUT=$T/recovery-out
mkdir -p "$CUST" "$KEYS"
# Custodian certificates as a custodian makes them with openssl(1): one RSA,
# the others EC, sorted by name: alice gets share 1, erin share 5.
NAMES=(alice bob carol dave erin)
for n in "${NAMES[@]}"; do
        if [ "$n" = alice ]; then kt=(-newkey rsa:2048); else kt=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); fi
        openssl req -x509 "${kt[@]}" -nodes -days 2 -subj "/CN=$n" -keyout "$KEYS/$n.key" \
                -out "$CUST/$n.pem" 2>/dev/null || { echo "openssl req failed"; exit 1; }
done
base_config=("[recovery]" "shares=5" "threshold=3")
write_config "${base_config[@]}"
audit_mark >/dev/null
dkmd_logged() { "$DKMD" "$@" >>"$T/dkmd.log" 2>&1; }

# --- the first set, at init, without custodians: plain shares ------------
check "dkmd --init --recovery-dir writes the first set" \
        dkmd_logged --config "$CONF" --init --recovery-dir "$SHARES"
keysum=$(sha256sum < "$KEY")
install=$(cut -d: -f2 "$SHARES/recovery-share-1")
oldset=$(cut -d: -f3 "$SHARES/recovery-share-1")
start_dkmd || exit 1
for i in 1 2 3; do printf "before-$i" | as svc encrypt > "$W/ct$i"; done
as op key rotate >/dev/null
for i in 4 5; do printf "before-$i" | as svc encrypt > "$W/ct$i"; done

# --- no custodians: no reshare --------------------------------------------
refused "a reshare without [recovery] custodians= is refused" "needs [recovery] custodians=" \
        as op recovery reshare --reason "custodian-change"
refused "a reshare needs a reason" "--reason is required" as op recovery reshare
refused "access request cannot ask for scope reshare" "recovery reshare for a new share set" \
        as op access request --reason x --duration 5m --scope reshare
refused "a service account cannot ask for a reshare" "not in the operators group" \
        as svc recovery reshare --reason "custodian-change"
stop_dkmd

# --- with custodians --------------------------------------------------------
write_config "${base_config[@]}" "custodians=$CUST" "out_dir=$OUT"
start_dkmd || exit 1
id=$(as boss recovery reshare --reason "custodian-change-$$" 2>>"$T/stderr.log")
check "an operator files a reshare request ($id)" test -n "$id"
refused "an operator who is no approver cannot approve it" "not in the approvers group" as op access approve "$id"
refused "nobody approves their own reshare request" "nobody approves their own request" as boss access approve "$id"
check "first approval is not enough" bash -c "as appr access approve $id | grep -q 'pending (1 of 2'"
check "no set is made before the last approval" test ! -e "$OUT"
refused "the same approver counts once" "already approved" as appr access approve "$id"
check "second approval makes the new set" bash -c "as appr2 access approve $id | grep -qx 'request $id: done'"
check "the request is listed as done" bash -c "as op access list | grep -qE '^$id +done +$BOSS_UID +reshare '"
newset=$(ls "$OUT")
check "one new set directory, a new set id ($oldset -> $newset)" \
        test "$(ls "$OUT" | wc -l)" = 1 -a -n "$newset" -a "$newset" != "$oldset"
SET=$OUT/$newset
check "set directory: mode 0750, group operators" \
        test "$(stat -c '%a %g' "$SET")" = "750 $OPERATORS_GID"
for i in 1 2 3 4 5; do
        n=${NAMES[$((i - 1))]}
        f=$SET/recovery-share-$i.$n.cms
        check "share $i is for $n: mode 0640, group operators, CMS" bash -c \
                "test \"\$(stat -c '%a %g' '$f')\" = '640 $OPERATORS_GID' &&
                 head -1 '$f' | grep -qx -- '-----BEGIN CMS-----' && ! grep -q dkm-share '$f'"
        # The custodian opens it with openssl, nothing of dkm's.
        check "custodian $n decrypts share $i with openssl cms" bash -c \
                "openssl cms -decrypt -in '$f' -inform PEM -recip '$CUST/$n.pem' -inkey '$KEYS/$n.key' \
                        -out '$W/new-$i' && grep -qE '^dkm-share-1:$install:$newset:3:5:$i:' '$W/new-$i'"
done
check "an operator may read the encrypted shares to carry them" raw op cat "$SET/recovery-share-1.alice.cms" \
        >/dev/null
check "alice's share does not open with bob's key" bash -c \
        "! openssl cms -decrypt -in '$SET/recovery-share-1.alice.cms' -inform PEM -recip '$CUST/bob.pem' \
                -inkey '$KEYS/bob.key' >/dev/null 2>&1"
stop_dkmd

# --- a reshare that cannot be carried out ends failed, and changes nothing --
touch "$T/not-a-dir"
write_config "${base_config[@]}" "custodians=$CUST" "out_dir=$T/not-a-dir"
start_dkmd || exit 1
fid=$(as op recovery reshare --reason "custodian-change-fail-$$" 2>>"$T/stderr.log")
as appr access approve "$fid" >/dev/null
refused "a reshare whose out_dir is no directory fails on the last approval" "recovery reshare failed: cannot" \
        as appr2 access approve "$fid"
check "the request is listed as failed" bash -c "as op access list | grep -qE '^$fid +failed +$OP_UID +reshare '"
stop_dkmd
write_config "${base_config[@]}" "custodians=$CUST" "out_dir=$OUT"

# --- the master key is lost -------------------------------------------------
rm -f "$KEY"
out=$("$DKMD" --config "$CONF" --recover "$SHARES/recovery-share-1" "$SHARES/recovery-share-2" \
        "$SHARES/recovery-share-3" 2>&1)
rc=$?
check "3 shares of the old set are refused ($(grep 'refused' <<<"$out"))" \
        test "$rc" -ne 0 -a -n "$(grep 'an older set, no longer valid' <<<"$out")"
check "and nothing was written" test ! -e "$KEY"
check "3 shares of the new set rebuild the master key" \
        dkmd_logged --config "$CONF" --recover "$W/new-2" "$W/new-4" "$W/new-5"
check "the key file is the original key" test "$(sha256sum < "$KEY")" = "$keysum"
start_dkmd || exit 1
check "every earlier ciphertext decrypts" bash -c \
        'for i in 1 2 3 4 5; do as svc decrypt --in "$W/ct$i" | grep -qx "before-$i" || exit 1; done'

# --- the audit trail -----------------------------------------------------------
recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the refused request (no custodians)" \
        matches "op=recovery-reshare-request .*error=EINVAL reason=.*res=failed" <<<"$recs"
check "audit: the request" matches "op=recovery-reshare-request .*request=$id .*res=success" <<<"$recs"
check "audit: the refused self-approval" \
        matches "op=recovery-reshare-approve .*request=$id error=self-approval.*res=failed" <<<"$recs"
check "audit: both approvals" \
        test "$(grep -c "op=recovery-reshare-approve .*request=$id approval=[12] of=2 .*res=success" <<<"$recs")" = 2
check "audit: the reshare, old and new set" matches \
        "op=recovery-reshare .*request=$id installation=$install old_set=$oldset new_set=$newset .*old_shares_valid=no .*res=success" \
        <<<"$recs"
check "audit: the failed reshare" \
        matches "op=recovery-reshare .*request=$fid approvers=$APPR_UID,$APPR2_UID error=E[A-Z]* reason=.*res=failed" \
        <<<"$recs"
check "audit: the refused recovery with old shares" \
        matches "op=recovery-recover .*res=failed" <<<"$recs"
finish
