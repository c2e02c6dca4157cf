#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Disk full: the state directory is a small tmpfs that fills up while dkmd
# serves.  Rotation, encryption (its use reservation is a store write) and
# access requests fail with one line saying "No space left on device";
# every earlier ciphertext goes on decrypting; nothing stored is damaged
# (store verify, SQLite's integrity check, the same generations); a dkmd
# restarted on the full disk serves decryption; and once space returns the
# same dkmd rotates, encrypts and files requests again, without a restart.
. "$(dirname "$0")/lib.sh"

STATE=$T/state
mkdir -p "$STATE"
mount -t tmpfs -o size=8m,mode=0700 dkm-disk-full "$STATE" ||
        { echo "SKIPPED: cannot mount a tmpfs here (needs CAP_SYS_ADMIN)"; exit 77; }
trap 'stop_dkmd; umount -l "$STATE"; cleanup' EXIT

# Small use blocks (max_uses / 16 = 4): encryption soon needs the store.
write_config "[rotation]" "max_uses=64" "[access]" "approvals_required=2"
start_dkmd || exit 1
n=0
enc() { # a ciphertext of its own name, kept in $W/ct-N
        n=$((n + 1))
        printf 'secret %s' "$n" | as svc encrypt >"$W/ct-$n"
}
decrypts_all() {
        local i
        for i in $(seq 1 "$1"); do
                [ "$(as svc decrypt --in "$W/ct-$i")" = "secret $i" ] || { echo "ct-$i does not decrypt"; return 1; }
        done
}
gens() { as op key list --json | jq -c '[.[] | {policy, generation, created}]'; }
for _ in 1 2 3; do enc; as op key rotate >/dev/null; done
enc
before=$n
gens_before=$(gens)
check "store verify passes before" bash -c "as op store verify >/dev/null"

# The disk fills up.
dd if=/dev/zero of="$STATE/filler" bs=64k 2>/dev/null
check "the state directory is full" bash -c "! head -c 4096 /dev/zero > '$STATE/probe' 2>/dev/null"
rm -f "$STATE/probe"

full() { refused "$1" "No space left on device" "${@:2}"; }
full "a rotation" as op key rotate
# The uses already reserved may serve a few more; then the store must be asked.
for i in $(seq 1 12); do
        printf x | as svc encrypt >/dev/null 2>"$T/enc.err" || break
done
check "encryption stops once it needs the store (after $((i - 1)))" test "$i" -lt 12
check "  saying no space" matches -x "dkmctl: encrypt: .*No space left on device" "$T/enc.err"
full "an access request" as op access request --reason "disk full" --duration 5m
check "the journal names each failure for the administrator" \
        matches -E "key-rotate for uid $OP_UID pid [0-9]+ failed on this host: .*No space left on device" "$T/dkmd.log"
check "  the encryption too" \
        matches -E "encrypt for uid $SVC_UID pid [0-9]+ failed on this host: .*No space left on device" "$T/dkmd.log"
check "every earlier ciphertext decrypts on the full disk" decrypts_all "$before"
check "store verify passes on the full disk" bash -c "as op store verify >/dev/null"
check "the generations are those of before" test "$(gens)" = "$gens_before"

# A restart on the full disk: decryption is served.
stop_dkmd
check "dkmd starts on the full disk" start_dkmd
check "and decrypts" decrypts_all "$before"
full "a rotation, after the restart" as op key rotate

# Space returns: the same dkmd works again, by itself.
rm -f "$STATE/filler"
pid=$DKMD_PID
check "a rotation works again" bash -c "as op key rotate | grep -q 'generation 5 is now active'"
check "encryption works again" enc
check "an access request works again" bash -c "as op access request --reason 'space again' --duration 5m >/dev/null"
check "without a restart" test "$pid" = "$DKMD_PID" -a -d "/proc/$pid"
check "every ciphertext decrypts" decrypts_all "$n"
check "store verify passes" bash -c "as op store verify > '$T/verify.out'"
check "  with 5 generations, no gap" matches -x "policy default: 5 generations checked, 0 destroyed, ok" "$T/verify.out"
stop_dkmd
check "SQLite's integrity check passes" bash -c "[ \"\$(sqlite3 '$STATE/dkm.db' 'pragma integrity_check')\" = ok ]"
start_dkmd || exit 1
check "after a restart, every ciphertext decrypts" decrypts_all "$n"
finish
