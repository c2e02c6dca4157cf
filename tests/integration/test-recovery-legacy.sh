#!/bin/bash
# A share set made by the dkmd before record version 2 (shares of the master
# key itself; tests/integration/data/recovery-legacy/, made by `dkmd --init
# --recovery-dir` of main at fce98ab): this dkmd still recovers from it, and
# a reshare replaces it, saying loudly (reply, log, audit) that the old
# shares still rebuild the master key until the master key is rotated.
# After it dkmd refuses the old shares and the new ones recover.
. "$(dirname "$0")/lib.sh"

FIX=$(cd "$(dirname "$0")/data/recovery-legacy" && pwd)
KEY=$T/state/master.key
CUST=$T/custodians
KEYS=$T/custodian-keys
OUT=$T/recovery-out
mkdir -p "$CUST" "$KEYS"
keysum=$(sha256sum < "$FIX/master.key")
NAMES=(ann ben cid dan eve)
for n in "${NAMES[@]}"; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$n" \
                -keyout "$KEYS/$n.key" -out "$CUST/$n.pem" 2>/dev/null || { echo "openssl req failed"; exit 1; }
done
write_config "[recovery]" "shares=5" "threshold=3" "custodians=$CUST" "out_dir=$OUT"
audit_mark >/dev/null

# An installation without any share set has nothing to reshare.
start_dkmd || exit 1
refused "no share set, no reshare" "has no recovery share set to replace" \
        as op recovery reshare --reason "nothing-to-replace"
stop_dkmd
rm -rf "$T/state"

mkdir -p "$T/state"
chmod 0700 "$T/state"
install -m 0600 "$FIX/dkm.db" "$FIX/master.key" "$T/state/"
dkmd_logged() { "$DKMD" "$@" >>"$T/dkmd.log" 2>&1; }
install=$(cut -d: -f2 "$FIX/recovery-share-1")
oldset=$(cut -d: -f3 "$FIX/recovery-share-1")

check "3 legacy shares still rebuild the master key" bash -c \
        "'$DKMD' --config '$CONF' --recover --recover-out - '$FIX/recovery-share-1' '$FIX/recovery-share-3' \
                '$FIX/recovery-share-4' 2>>'$T/dkmd.log' | sha256sum | grep -qx '$keysum'"

start_dkmd || exit 1
printf 'legacy-secret' | as svc encrypt > "$W/ct"
id=$(as op recovery reshare --reason "replace-legacy-set-$$" 2>>"$T/stderr.log")
check "an operator files a reshare request ($id)" test -n "$id"
as appr access approve "$id" >/dev/null
reply=$(as appr2 access approve "$id")
check "the approver is told the old shares still rebuild the master key ($reply)" \
        matches "^request $id: done; WARNING: the old share set $oldset split the master key itself .*until the master key is rotated" \
        <<<"$reply"
check "dkmd logs it" matches "set $oldset was of an older dkm and split the master key itself" "$T/dkmd.log"
newset=$(ls "$OUT")
stop_dkmd

rm -f "$KEY"
out=$("$DKMD" --config "$CONF" --recover "$FIX/recovery-share-1" "$FIX/recovery-share-2" \
        "$FIX/recovery-share-3" 2>&1)
rc=$?
check "dkmd refuses the legacy shares after the reshare ($(grep refused <<<"$out"))" \
        test "$rc" -ne 0 -a -n "$(grep 'an older set, no longer valid' <<<"$out")" -a ! -e "$KEY"
for i in 1 3 5; do
        n=${NAMES[$((i - 1))]}
        openssl cms -decrypt -in "$OUT/$newset/recovery-share-$i.$n.cms" -inform PEM -recip "$CUST/$n.pem" \
                -inkey "$KEYS/$n.key" -out "$W/new-$i"
done
check "3 shares of the new set rebuild the master key" \
        dkmd_logged --config "$CONF" --recover "$W/new-1" "$W/new-3" "$W/new-5"
check "the key file is the original key" test "$(sha256sum < "$KEY")" = "$keysum"
start_dkmd || exit 1
check "the ciphertext decrypts" bash -c 'as svc decrypt --in "$W/ct" | grep -qx legacy-secret'

recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the reshare says the old shares stay valid until a master key rotation" matches \
        "op=recovery-reshare .*request=$id installation=$install old_set=$oldset new_set=$newset .*old_shares_valid=until-master-key-rotation .*res=success" \
        <<<"$recs"
finish
