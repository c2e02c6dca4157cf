#!/bin/bash
# Backup, restore and verify on SQLite: a backup taken by an operator while
# service accounts encrypt and another operator rotates; restored into an
# empty state directory on a fresh dkmd, where every ciphertext made before
# the backup decrypts.  A non-empty store, another installation's backup, an
# altered and a truncated backup are refused, and write nothing.
. "$(dirname "$0")/lib.sh"

# restore_refused DESCRIPTION EXPECTED-FRAGMENT BACKUP: dkmd --restore must
# fail and say why.
restore_refused() {
        if "$DKMD" --config "$CONF" --restore "$3" > "$T/restore.err" 2>&1; then
                fail "$1: succeeded, expected refusal"
        elif ! grep -q -- "$2" "$T/restore.err"; then
                fail "$1: its output lacks '$2': $(cat "$T/restore.err")"
        else
                pass "$1 ($(grep -- "$2" "$T/restore.err" | head -n1))"
        fi
}

write_config "[access]" "approvals_required=2"
start_dkmd || exit 1
audit_mark >/dev/null

# Before the load: ciphertexts over three generations.
for i in 1 2 3 4 5 6; do
        printf 'secret %s' "$i" | as svc encrypt > "$W/pre-$i.ct"
        [ $((i % 2)) -eq 0 ] && as op key rotate >/dev/null
done
gens_before=$(as op key list --json | grep -o '"generation": [0-9]*' | wc -l)

# Who may take one.
refused "a service account cannot take a backup" "not in the operators group" as svc backup --out "$W/x"
refused "an approver cannot take a backup" "not in the operators group" as appr backup --out "$W/x"
refused "a human cannot take a backup" "not in the operators group" as human backup --out "$W/x"
check "nothing was written for the refused ones" test ! -e "$W/x"
refused "store verify is for operators" "not in the operators group" as svc store verify

# The load: encrypts and rotations while the backup is taken.
(
        for i in $(seq 1 40); do
                # Renamed when complete: a listing shows finished ones only.
                printf 'during %s' "$i" | as svc encrypt > "$W/tmp-$i" 2>/dev/null &&
                        mv "$W/tmp-$i" "$W/during-$i.ct"
        done
) &
enc_pid=$!
(
        for _ in $(seq 1 6); do as op key rotate >/dev/null 2>&1; done
) &
rot_pid=$!
# Once the load runs: what was encrypted before the backup must come back.
for _ in $(seq 1 100); do [ -e "$W/during-2.ct" ] && break; sleep 0.05; done
ls "$W"/during-*.ct > "$T/before-backup.list" 2>/dev/null
check "an operator takes a backup under load" bash -c "as op backup --out '$W/backup' > '$T/backup.out'"
wait "$enc_pid" "$rot_pid"
check "backup reports records and revision" matches -E 'records at store revision [0-9]+' "$T/backup.out"
check "the backup file is mode 0600, owned by the operator" \
        test "$(stat -c '%a %u' "$W/backup")" = "600 $OP_UID"
check "no temporary file is left beside it" bash -c "! ls -a '$W' | grep -q '^\.dkmctl'"
check "store verify passes on the live store" bash -c "as op store verify > '$T/verify.out'"
check "store verify counts every generation" matches -E "policy default: [0-9]+ generations checked, 0 destroyed, ok" \
        "$T/verify.out"
check "store verify --json" bash -c "as op store verify --json | grep -q '\"ok\": true'"

# After the backup: generation 1 is destroyed (with approval).
rid=$(as op key destroy 1 --reason "end of retention")
as appr access approve "$rid" >/dev/null
as appr2 access approve "$rid" >/dev/null
refused "a destroyed generation no longer decrypts" "destroyed" as svc decrypt --in "$W/pre-1.ct"
stop_dkmd

# Restore into the store it came from: not empty, refused.
restore_refused "restore into a non-empty store is refused" "not empty" "$W/backup"

# Another installation: a fresh master key and store, and its backup.
mv "$T/state" "$T/state-a"
start_dkmd || exit 1
as op backup --out "$W/foreign" >/dev/null
stop_dkmd
mv "$T/state" "$T/state-f"

# A new machine: the master key of the first installation, an empty state dir.
mkdir -m 0700 "$T/state"
cp "$T/state-a/master.key" "$T/state/master.key"
head -c $(($(stat -c %s "$W/backup") - 100)) "$W/backup" > "$W/truncated"
cp "$W/backup" "$W/altered"
printf 'X' | dd of="$W/altered" bs=1 seek=200 conv=notrunc status=none
restore_refused "another installation's backup is refused" "made under another master key" "$W/foreign"
restore_refused "a truncated backup is refused" "truncated" "$W/truncated"
restore_refused "an altered backup is refused" "altered" "$W/altered"
restore_refused "a file that is no backup is refused" "not a dkm backup" "$W/pre-1.ct"
# The refusals wrote nothing: the store is still empty, and takes the backup.
check "restore into the empty state directory" bash -c \
        "'$DKMD' --config '$CONF' --restore '$W/backup' > '$T/restore.out' 2>&1"
check "restore says which generations the backup holds" \
        matches -E "policy 'default': the backup holds generations 1-[0-9]+" "$T/restore.out"
check "restore warns about ciphertexts made after the backup" \
        matches "after this backup will not decrypt" "$T/restore.out"
check "restore says destroyed material comes back" matches "destroyed and policies purged after the backup" \
        "$T/restore.out"

start_dkmd || exit 1
ok=0 bad=0
for i in 1 2 3 4 5 6; do
        if [ "$(as svc decrypt --in "$W/pre-$i.ct")" = "secret $i" ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
done
check "every ciphertext made before the backup decrypts ($ok of 6)" test "$bad" -eq 0
# Made during the backup: under a generation the snapshot holds, it
# decrypts; under a newer one, it is refused with a clear error.
dok=0 dnew=0 dbad=0
for f in "$W"/during-*.ct; do
        [ -e "$f" ] || continue
        if as svc decrypt --in "$f" > "$T/d.out" 2>"$T/d.err"; then
                dok=$((dok + 1))
        elif grep -q "generation" "$T/d.err"; then
                dnew=$((dnew + 1))
        else
                dbad=$((dbad + 1)); cat "$T/d.err"
        fi
done
check "ciphertexts made during the backup: $dok decrypt, $dnew under newer generations, $dbad otherwise" \
        test "$dbad" -eq 0
lost=0
while read -r f; do
        n=${f##*during-}; n=${n%.ct}
        [ "$(as svc decrypt --in "$f")" = "during $n" ] || lost=$((lost + 1))
done < "$T/before-backup.list"
check "every one made while the load ran but before the backup started decrypts ($(wc -l < "$T/before-backup.list"), $lost lost)" \
        test "$lost" -eq 0 -a -s "$T/before-backup.list"
check "at least the generations from before the load are back" \
        test "$(as op key list --json | grep -o '"generation": [0-9]*' | wc -l)" -ge "$gens_before"
check "store verify passes on the restored store" bash -c "as op store verify > '$T/verify2.out'"
check "it names the default policy" matches "policy default:" "$T/verify2.out"
check "the restored dkmd rotates on" as op key rotate

# Verify reads the store as it is now: a generation record altered behind
# dkmd's back (its MAC no longer holds) is named.
sqlite3 "$T/state/dkm.db" "update kv set value = cast(replace(cast(value as text), '\"generation\":2,', \
        '\"generation\":2 ,') as blob) where key like 'policies/%/gens/0000000002'"
check "store verify fails on a damaged generation" bash -c "! as op store verify > '$T/v3.out' 2> '$T/v3.err'"
check "  with one line on stderr" matches -x "dkmctl: store verify: 1 failure" "$T/v3.err"
check "  naming it" matches "generation 2: its record is missing" "$T/v3.out"

# The audit trail.
recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: backup" grep -q "op=store-backup .*res=success" <<<"$recs"
check "audit: restore" grep -q "op=store-restore .*res=success" <<<"$recs"
check "audit: store verify" grep -q "op=store-verify" <<<"$recs"
finish
