#!/bin/bash
# Recovery shares (dkm(7), "Recovery shares"): a machine whose master key
# is gone gets it back from 3 of its 5 custodians' shares, and every earlier
# ciphertext decrypts again.  Too few shares, a damaged share, a wrong share
# and another installation's share are each refused by name, and nothing is
# written.  Every step is in the audit trail.
. "$(dirname "$0")/lib.sh"

SHARES=$T/shares
KEY=$T/state/master.key
write_config "[recovery]" "shares=5" "threshold=3"
audit_mark >/dev/null
# dkmd ARGS...: its lines go to the log, check's own to the terminal.
dkmd_logged() { "$DKMD" "$@" >>"$T/dkmd.log" 2>&1; }

# --- init with shares ------------------------------------------------------
check "dkmd --init --recovery-dir writes the shares" \
        dkmd_logged --config "$CONF" --init --recovery-dir "$SHARES"
for i in 1 2 3 4 5; do
        f=$SHARES/recovery-share-$i
        check "share $i: mode 0600, one printable line" bash -c \
                "test \"\$(stat -c %a '$f')\" = 600 && test \"\$(wc -l < '$f')\" = 1 &&
                 grep -qE '^dkm-share-1:[0-9a-f]{16}:[0-9a-f]{8}:3:5:$i:[0-9a-f]{64}:[0-9a-f]{8}\$' '$f'"
done
check "shares differ from each other" test "$(sort -u "$SHARES"/recovery-share-* | wc -l)" = 5
keysum=$(sha256sum < "$KEY")

# --- encrypt, over several generations --------------------------------------
start_dkmd || exit 1
for i in 1 2 3; do printf "before-$i" | as svc encrypt > "$W/ct$i"; done
as op key rotate >/dev/null
for i in 4 5; do printf "before-$i" | as svc encrypt > "$W/ct$i"; done
stop_dkmd

# --- the master key is lost -----------------------------------------------
rm -f "$KEY"
check "without the master key dkmd does not start" bash -c \
        "! '$DKMD' --config '$CONF' >>'$T/dkmd.log' 2>&1"

# recover_refused DESCRIPTION EXPECTED-TEXT SHARE...: refused with the text,
# and no key file written.
recover_refused() {
        local d=$1 want=$2 out
        shift 2
        out=$("$DKMD" --config "$CONF" --recover "$@" 2>&1)
        if [ $? -eq 0 ]; then
                fail "$d: recovery succeeded"
        elif [[ "$out" != *"$want"* ]]; then
                fail "$d: output lacks '$want': $out"
        elif [ -e "$KEY" ]; then
                fail "$d: a key file was written"
        else
                pass "$d ($(grep 'recovery refused' <<<"$out"))"
        fi
}

recover_refused "two shares of three" "2 distinct shares given; this installation's master key needs 3 of its 5" \
        "$SHARES/recovery-share-1" "$SHARES/recovery-share-4"
recover_refused "the same share twice counts once" "needs 3 of its 5" \
        "$SHARES/recovery-share-1" "$SHARES/recovery-share-1" "$SHARES/recovery-share-4"

# One character of share 2 mistyped: its checksum says so.
awk -F: -v OFS=: '{ c = substr($7, 1, 1); $7 = (c == "0" ? "1" : "0") substr($7, 2); print }' \
        "$SHARES/recovery-share-2" > "$W/corrupt"
check "the corrupted share differs from the original" bash -c "! cmp -s '$W/corrupt' '$SHARES/recovery-share-2'"
recover_refused "a corrupted share" "share $W/corrupt: the share is damaged: its checksum does not match" \
        "$SHARES/recovery-share-1" "$W/corrupt" "$SHARES/recovery-share-4"

# A wrong share that is well formed, checksum and all (a forger, or a share
# mixed up between sets): the store's check value refuses what it rebuilds.
line=$(cat "$SHARES/recovery-share-2")
body=${line%:*}
v=${body##*:}
body="${body%:*}:$(printf '%s' "$v" | tr '0-9a-f' '1-9a-f0')"
printf '%s:%s\n' "$body" "$(printf '%s' "$body" | gzip -c | tail -c8 | od -An -tx4 -N4 | tr -d ' \n')" > "$W/wrong"
recover_refused "a well-formed wrong share" "do not rebuild this installation's master key" \
        "$SHARES/recovery-share-1" "$W/wrong" "$SHARES/recovery-share-4"

# Another installation, with its own master key, store and shares.
sed "s|$T/state|$T/other-state|; s|$T/run|$T/other-run|" "$CONF" > "$T/other.conf"
check "a second installation makes its own shares" \
        dkmd_logged --config "$T/other.conf" --init --recovery-dir "$T/other-shares"
recover_refused "a share of another installation" "share $T/other-shares/recovery-share-2 belongs to another installation" \
        "$SHARES/recovery-share-1" "$T/other-shares/recovery-share-2" "$SHARES/recovery-share-4"

# --- recover from 3 of 5 ----------------------------------------------------
check "--recover-out - prints the key for systemd-creds encrypt" bash -c \
        "'$DKMD' --config '$CONF' --recover --recover-out - '$SHARES/recovery-share-2' \
                '$SHARES/recovery-share-3' '$SHARES/recovery-share-5' 2>>'$T/dkmd.log' |
         sha256sum | grep -qx '$keysum'"
check "--recover-out - did not write the key file" test ! -e "$KEY"
check "shares 1, 3 and 5 rebuild the master key" \
        dkmd_logged --config "$CONF" --recover "$SHARES/recovery-share-1" "$SHARES/recovery-share-3" \
        "$SHARES/recovery-share-5"
check "the key file is the original key, mode 0600" bash -c \
        "test \"\$(sha256sum < '$KEY')\" = '$keysum' && test \"\$(stat -c %a '$KEY')\" = 600"
# A different key already in place is never replaced.
cp "$T/other-state/master.key" "$W/other.key"
chmod 600 "$W/other.key"
out=$("$DKMD" --config "$CONF" --recover --recover-out "$W/other.key" "$SHARES/recovery-share-1" \
        "$SHARES/recovery-share-3" "$SHARES/recovery-share-5" 2>&1)
rc=$?
check "a different existing key is refused ($(grep 'refused' <<<"$out"))" \
        test "$rc" -ne 0 -a -n "$(grep 'exists and holds another key: it is not replaced' <<<"$out")"
check "and left as it was" cmp -s "$W/other.key" "$T/other-state/master.key"

start_dkmd || exit 1
check "every earlier ciphertext decrypts" bash -c \
        'for i in 1 2 3 4 5; do as svc decrypt --in "$W/ct$i" | grep -qx "before-$i" || exit 1; done'

# --- the audit trail ---------------------------------------------------------
recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the shares were made" grep -q "op=recovery-shares-create .*threshold=3 share_count=5 .*res=success" <<<"$recs"
check "audit: the refused recoveries" test "$(grep -c "op=recovery-recover .*res=failed" <<<"$recs")" -ge 5
check "audit: the successful recovery" grep -q "op=recovery-recover .*share_files=3 .*res=success" <<<"$recs"
finish
