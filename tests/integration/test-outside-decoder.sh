#!/bin/bash
# Issue 12 §5, "readable without dkm": an independent reader written from
# dkm-formats(5) alone (README.md's Reference before; the decoder is
# tests/integration/decode/dkm_decode.py,
# Python and python3-cryptography, no dkm code) gets every plaintext back
# from a backup, the master key and the customer's keys (file: keys, and a
# copy of a pkcs11: token's AES key): v1 messages,
# v2 streams and a data key, of a service-managed and a customer-managed
# policy, across rotations and a rekey with a new policy key.  It refuses a
# backup with one byte flipped, and a wrong master key.  Three of five
# recovery shares stand for the master key.  And previous_key:
# a backup taken while a rekey with a new policy key is cut short.
. "$(dirname "$0")/lib.sh"

DECODE=$(cd "$(dirname "$0")/decode" && pwd)/dkm_decode.py
python3 -c 'import cryptography' 2>/dev/null || {
        echo "python3-cryptography is missing (tests/deps.sh installs it)"; exit 1; }

# decode ARGS...: the reader in isolated mode (-I: no PYTHONPATH, no user
# site, not the current directory), from a directory outside the tree.
decode() { (cd / && env -i PATH=/usr/bin:/bin python3 -I "$DECODE" "$@"); }
export DECODE
export -f decode

K=$T/ck
install -d -m 0700 "$K"
for x in 1 2 3 4; do head -c 32 /dev/urandom > "$K/$x.key"; chmod 600 "$K/$x.key"; done
# A pkcs11: customer key too: a SoftHSM2 token's AES key, imported from a
# copy kept outside (the one way to read its blobs without the token).
. "$(dirname "$0")/lib-softhsm.sh"
softhsm_available || { echo "SoftHSM2/opensc/p11-kit missing (tests/deps.sh installs them)"; exit 1; }
softhsm_setup "$T/hsm"
softhsm_token cust-p 1234 || exit 1
SOFTHSM2_CONF=$(softhsm_conf cust-p)
export SOFTHSM2_CONF
head -c 32 /dev/urandom > "$T/hsm-aes.copy"
pkcs11-tool --module "$SOFTHSM_LIB" --token-label cust-p --login --pin 1234 --write-object "$T/hsm-aes.copy" \
        --type secrkey --key-type AES:32 --label root --usage-decrypt >/dev/null 2>&1 || {
        echo "cannot import an AES key into SoftHSM2"; exit 1; }
printf 1234 > "$K/pin"; chmod 600 "$K/pin"
P11="pkcs11:token=cust-p;object=root?module-path=$SOFTHSM_LIB&pin-source=file:$K/pin"
DKM_ENGINE=openssl write_config "[policy]" "key_dirs=$K" "pkcs11_modules=$SOFTHSM_LIB"
# The master key split into recovery shares (3 of 5), as an installation does.
"$DKMD" --config "$CONF" --init --recovery-dir "$T/shares" >> "$T/dkmd.log" 2>&1 || {
        echo "dkmd --init --recovery-dir failed:"; cat "$T/dkmd.log"; exit 1; }
start_dkmd || exit 1
MASTER=$T/state/master.key

check "the reader runs no dkm code" bash -c "! grep -nE '^\s*(import|from)\s+(dkm|ctypes|subprocess)|os\.(system|exec|popen)|cdll' '$DECODE'"

check "a customer-managed policy on two file: keys" bash -c \
        "as op policy create cust --customer-key 'file:$K/1.key' --customer-key 'file:$K/2.key' >/dev/null"
check "a customer-managed policy on a pkcs11: key and a file: key" bash -c \
        "as op policy create hsm --customer-key '$P11' --customer-key 'file:$K/2.key' >/dev/null"

# plain NAME CONTENT: what each ciphertext must give back.
n=0
# enc POLICY KIND [CONTEXT...]: KIND v1 (a short message) or v2 (a stream).
enc() {
        local policy=$1 kind=$2; shift 2
        local args=(--policy "$policy") c
        for c in "$@"; do args+=(--context "$c"); done
        n=$((n + 1))
        if [ "$kind" = v1 ]; then
                printf 'secret %s of %s' "$n" "$policy" > "$W/p$n"
        else
                # Over 64 KiB: streamed, three segments of 64 KiB.
                head -c $((150000 + n)) /dev/urandom > "$W/p$n"
        fi
        as svc encrypt "${args[@]}" --in "$W/p$n" --out "$W/c$n" || { fail "encrypt $n"; return; }
        # The pairs joined with "|" (a value may hold spaces).
        local IFS='|'
        echo "$n $policy $kind $*" >> "$T/made"
}

for _ in 1 2 3; do
        enc default v1
        enc default v1 tenant=acme "path=/a/b c"
        enc default v2
        enc cust v1
        enc cust v2 tenant=acme
        enc hsm v1
        as op key rotate >/dev/null || fail "rotate default"
        as op key rotate --policy hsm >/dev/null || fail "rotate hsm"
        as op key rotate --policy cust >/dev/null || fail "rotate cust"
done
check "every ciphertext of the first rounds has version 1 or 2 as asked" bash -c \
        "while read -r n p k c; do v=\$(head -c 5 '$W'/c\$n | tail -c 1 | od -An -tu1 | tr -d ' '); \
         [ \"\$v\" = \${k#v} ] || exit 1; done < '$T/made'"
check "a data key" bash -c "as svc datakey --policy cust --out '$W/dk.wrapped' --key-out '$W/dk.key'"

# A rekey to two other keys with a new policy key: every generation is
# re-wrapped under it; the old keys open nothing any more.
check "rekey cust to keys 3 and 4 with a new policy key" bash -c \
        "as op policy rekey cust --customer-key 'file:$K/3.key' --customer-key 'file:$K/4.key' --new-policy-key >/dev/null"
enc cust v1 after=rekey
enc cust v2
as op key rotate --policy cust >/dev/null || fail "rotate cust after the rekey"
enc cust v1
enc default v1
check "generation 1 of default is retired (the key stays in the store)" bash -c "as op key retire 1 >/dev/null"

check "an operator takes a backup" bash -c "as op backup --out '$W/backup' >/dev/null"
stop_dkmd

check "the reader checks the backup and every record's MAC" bash -c \
        "decode --backup '$W/backup' --master-key '$MASTER' --check | grep -q 'every MAC verifies'"

# Every ciphertext, decoded without dkm.
ok=0 bad=0
while read -r i policy kind ctx; do
        cargs=()
        IFS='|' read -r -a pairs <<<"$ctx"
        for c in "${pairs[@]}"; do cargs+=(--context "$c"); done
        base=(--backup "$W/backup" --master-key "$MASTER" "${cargs[@]}")
        key=()
        [ "$policy" = cust ] && key=(--customer-key "$K/3.key")
        # Only the copy of the token's key: the pkcs11: blob must open.
        [ "$policy" = hsm ] && key=(--customer-key "$T/hsm-aes.copy")
        if decode "${base[@]}" "${key[@]}" --out "$T/d$i" "$W/c$i" 2> "$T/d$i.err" && cmp -s "$T/d$i" "$W/p$i"; then
                ok=$((ok + 1))
        else
                bad=$((bad + 1)); fail "ciphertext $i ($policy $kind $ctx): $(cat "$T/d$i.err")"
        fi
        if [ "$policy" = cust ]; then
                decode "${base[@]}" --customer-key "$K/4.key" "$W/c$i" 2>/dev/null | cmp -s - "$W/p$i" ||
                        fail "ciphertext $i with the other customer key (4)"
                decode "${base[@]}" --use-availability-key "$W/c$i" 2>/dev/null | cmp -s - "$W/p$i" ||
                        fail "ciphertext $i through the availability key, with the master key alone"
        fi
done < "$T/made"
total=$(wc -l < "$T/made")
check "all $total ciphertexts decode to their plaintexts ($ok ok, $bad failed)" test "$ok" = "$total"
check "v1, v2, all three policies, contexts and the rekey are among them" bash -c \
        "grep -q ' hsm v1' '$T/made' && grep -q ' default v1 tenant=acme|path=/a/b c' '$T/made' && grep -q ' default v2' '$T/made' && grep -q ' cust v1 after=rekey' '$T/made' && grep -q ' cust v2 tenant=acme' '$T/made'"
check "the data key comes back" bash -c \
        "decode --backup '$W/backup' --master-key '$MASTER' --customer-key '$K/4.key' '$W/dk.wrapped' | cmp -s - '$W/dk.key'"
check "the decoded data key is 32 bytes" test "$(stat -c %s "$W/dk.key")" = 32

# What must be refused.
last=$(awk '$2 == "cust" { n = $1 } END { print n }' "$T/made")
refused "the customer's old key opens nothing after the rekey" "none of the given customer keys" \
        decode --backup "$W/backup" --master-key "$MASTER" --customer-key "$K/1.key" "$W/c$last"
refused "a customer-managed policy without its key" "customer-managed" \
        decode --backup "$W/backup" --master-key "$MASTER" "$W/c$last"
refused "the wrong context" "failed authentication" \
        decode --backup "$W/backup" --master-key "$MASTER" --context tenant=evil --context "path=/a/b c" "$W/c7"
head -c 32 /dev/urandom > "$T/other.key"
refused "another master key" "made under another master key" \
        decode --backup "$W/backup" --master-key "$T/other.key" "$W/c1"
size=$(stat -c %s "$W/backup")
# One byte flipped: in a generation's wrapped key, in the header's revision, in the MAC.
wk=$(grep -abo '"wrapped_key":"' "$W/backup" | tail -n 1 | cut -d: -f1)
for off in $((wk + 20)) 24 $((size - 1)); do
        cp "$W/backup" "$T/flipped"
        b=$(od -An -tu1 -j "$off" -N1 "$W/backup" | tr -d ' ')
        # shellcheck disable=SC2059 # the byte, as an octal escape in the format
        printf "$(printf '\\%03o' $((b ^ 1)))" | dd of="$T/flipped" bs=1 seek="$off" conv=notrunc status=none
        check "byte $off of the copy differs" bash -c "! cmp -s '$W/backup' '$T/flipped'"
        refused "a backup with byte $off flipped" "the file was altered" \
                decode --backup "$T/flipped" --master-key "$MASTER" "$W/c1"
done
# Without the master key file: three of the five recovery shares rebuild it.
SH=$T/shares/recovery-share
check "three recovery shares stand for the master key" bash -c \
        "decode --backup '$W/backup' --share '$SH-5' --share '$SH-2' --share '$SH-4' \
                --customer-key '$K/3.key' '$W/c$last' | cmp -s - '$W/p$last'"
refused "two shares are not enough" "the set needs 3" \
        decode --backup "$W/backup" --share "$SH-1" --share "$SH-2" "$W/c1"
sed 's/:\([0-9a-f]\)\([0-9a-f]*\):\([0-9a-f]\{8\}\)$/:\2\1:\3/' "$SH-3" > "$T/share-typo"
check "a mistyped share (its value's first digit moved to the end) differs" bash -c "! cmp -s '$SH-3' '$T/share-typo'"
refused "a mistyped share" "its CRC does not match" \
        decode --backup "$W/backup" --share "$SH-1" --share "$SH-2" --share "$T/share-typo" "$W/c1"

# Damaged ciphertexts: refused with the reason, never a traceback.
v2=$(awk '$3 == "v2" && $2 == "default" { n = $1 } END { print n }' "$T/made")
len2=$(stat -c %s "$W/c$v2")
head -c $((len2 - 1)) "$W/c$v2" > "$T/v2-cut1"
refused "a v2 stream cut by one byte" "failed authentication" \
        decode --backup "$W/backup" --master-key "$MASTER" "$T/v2-cut1"
head -c $((72 + 65536 + 16)) "$W/c$v2" > "$T/v2-cutseg"
refused "a v2 stream cut at a segment boundary" "failed authentication" \
        decode --backup "$W/backup" --master-key "$MASTER" "$T/v2-cutseg"
head -c 60 /dev/urandom > "$T/noise"
refused "random bytes" "not a dkm ciphertext" decode --backup "$W/backup" --master-key "$MASTER" "$T/noise"
head -c 30 "$W/c1" > "$T/v1-short"
refused "a v1 ciphertext cut inside its header" "truncated ciphertext" \
        decode --backup "$W/backup" --master-key "$MASTER" "$T/v1-short"
head -c $((size - 1)) "$W/backup" > "$T/cut"
refused "a truncated backup" "its header announces" decode --backup "$T/cut" --master-key "$MASTER" "$W/c1"
# The backup's MAC once more, by a second implementation (the openssl
# command) from the reference: HKDF of the master key, no salt, info "dkm
# store backup v1", HMAC over every byte before the last 32.
remac() { # IN OUT
        local key len
        key=$(openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:"$(od -An -tx1 -v "$MASTER" | tr -d " \n")" \
                -kdfopt info:"dkm store backup v1" HKDF | tr -d ':\n')
        len=$(($(stat -c %s "$1") - 32))
        head -c "$len" "$1" > "$2"
        head -c "$len" "$1" | openssl dgst -sha256 -mac HMAC -macopt hexkey:"$key" -binary >> "$2"
}
remac "$W/backup" "$T/remac"
check "openssl, from the reference, computes the backup's MAC byte for byte" cmp -s "$W/backup" "$T/remac"
# A generation's wrapped key altered and the file MACed again, as someone
# with the master key could: each record's own MAC still refuses it.
cp "$W/backup" "$T/altered"
c=$(dd if="$W/backup" bs=1 skip=$((wk + 20)) count=1 status=none)
[ "$c" = A ] && c=B || c=A
printf %s "$c" | dd of="$T/altered" bs=1 seek=$((wk + 20)) conv=notrunc status=none
remac "$T/altered" "$T/altered.mac"
refused "a record altered under a valid backup MAC" "its MAC does not verify: altered, moved" \
        decode --backup "$T/altered.mac" --master-key "$MASTER" --check

# previous_key: a rekey with a new policy key cut short right after its
# transaction (dkmd killed where it starts re-wrapping the generations), and
# dkmd restarted where it may not read the customer keys, so that nothing
# finishes the re-wrap: the backup holds the generations under policy key
# version 0 and the previous key wrapped under version 1.
start_dkmd || exit 1
check "a customer-managed policy mid on keys 1 and 2" bash -c \
        "as op policy create mid --customer-key 'file:$K/1.key' --customer-key 'file:$K/2.key' >/dev/null"
: > "$T/made"
enc mid v1
enc mid v2 tenant=acme
as op key rotate --policy mid >/dev/null || fail "rotate mid"
enc mid v1
timeout 120 gdb -q -nx -batch -ex "attach $DKMD_PID" -ex 'break rekey_finish' -ex 'continue' -ex 'kill' \
        > "$T/gdb.log" 2>&1 &
gdb_pid=$!
for _ in $(seq 1 300); do matches 'Breakpoint 1 at' "$T/gdb.log" && break; sleep 0.1; done
as op policy rekey mid --customer-key "file:$K/3.key" --customer-key "file:$K/4.key" --new-policy-key \
        >/dev/null 2>&1
wait "$gdb_pid"
check "dkmd was killed as it began the re-wrap" matches 'hit Breakpoint 1, rekey_finish' "$T/gdb.log"
wait "$DKMD_PID" 2>/dev/null
DKMD_PID=
install -d -m 0700 "$T/nokeys"
DKM_ENGINE=openssl write_config "[policy]" "key_dirs=$T/nokeys"
start_dkmd || exit 1
check "an operator takes a backup mid-rekey" bash -c "as op backup --out '$W/backup2' >/dev/null"
stop_dkmd
check "the backup holds mid's previous key" matches -a '"previous_version":0,"previous_key":"' "$W/backup2"
mid_id=$(sqlite3 "$T/state/dkm.db" "select value from kv where key = 'names/mid'" | head -n1)
check "and its generations still under policy key version 0" test \
        "$(sqlite3 "$T/state/dkm.db" "select count(*) from kv where key like 'policies/$mid_id/gens/%' and value not like '%key_version%'")" = 2
ok=0
while read -r i policy kind ctx; do
        cargs=()
        IFS='|' read -r -a pairs <<<"$ctx"
        for c in "${pairs[@]}"; do cargs+=(--context "$c"); done
        base=(--backup "$W/backup2" --master-key "$MASTER" "${cargs[@]}")
        if decode "${base[@]}" --customer-key "$K/4.key" "$W/c$i" 2> "$T/d$i.err" | cmp -s - "$W/p$i" &&
                decode "${base[@]}" --use-availability-key "$W/c$i" 2>> "$T/d$i.err" | cmp -s - "$W/p$i"; then
                ok=$((ok + 1))
        else
                fail "mid-rekey ciphertext $i ($kind $ctx): $(cat "$T/d$i.err")"
        fi
done < "$T/made"
check "the $(wc -l < "$T/made") ciphertexts of mid decode through previous_key ($ok ok)" \
        test "$ok" = "$(wc -l < "$T/made")"
finish
