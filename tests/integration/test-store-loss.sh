#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A lost or damaged SQLite store is refused, never replaced, as an
# administrator (or a crash, or a disk) would leave it:
#   - a clean stop checkpoints the WAL: dkm.db alone holds every generation;
#   - dkm.db deleted with master.key kept: a plain start refuses, creates
#     nothing, and the store put back serves every earlier ciphertext;
#   - the WAL truncated to nothing after a crash, or cut in half after many
#     rotations: the store is older than the one this node served; dkmd
#     refuses, naming both revisions, and leaves dkm.db and the WAL as they
#     were; --accept-older-store serves it deliberately (logged, audited),
#     and the generation numbers it lost are never issued again;
#   - a damaged dkm.db: the refusal names the file and what is wrong.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1
DB=$T/state/dkm.db

# plain_start [dkmd options]: dkmd as the service starts it, without --init.
# 0 (DKMD_PID set) once it serves; 1 when it exits, its output in start.log.
plain_start() {
        "$DKMD" --config "$CONF" "$@" >"$T/start.log" 2>&1 &
        DKMD_PID=$!
        for _ in $(seq 1 400); do
                matches 'ready:' "$T/start.log" && return 0
                if ! kill -0 "$DKMD_PID" 2>/dev/null; then
                        wait "$DKMD_PID"
                        DKMD_PID=
                        cat "$T/start.log" >>"$T/dkmd.log"
                        return 1
                fi
                sleep 0.05
        done
        return 2
}
# refused_start DESCRIPTION REGEX [dkmd options]: the start must fail and
# its output match.
refused_start() {
        local d=$1 re=$2; shift 2
        if plain_start "$@"; then
                fail "$d: dkmd started and serves"
                stop_dkmd
        elif ! matches -E "$re" "$T/start.log"; then
                fail "$d: the refusal lacks /$re/: $(tail -n 1 "$T/start.log")"
        else
                pass "$d ($(grep -m1 -E "$re" "$T/start.log" | sed 's/^.*dkmd[^:]*: //' | cut -c1-240))"
        fi
}
# decrypts_all FILE...: every ciphertext gives back its plaintext (FILE.txt).
decrypts_all() {
        local f
        for f in "$@"; do
                as svc decrypt --in "$f" 2>/dev/null | cmp -s - "$f.txt" || return 1
        done
}
enc() { # NAME TEXT
        printf '%s' "$2" >"$W/$1.txt"
        printf '%s' "$2" | as svc encrypt >"$W/$1"
}
gens() { sqlite3 -readonly "$1" "SELECT count(*) FROM kv WHERE key LIKE 'policies/%/gens/%'"; }
audited() { audit_search -m USER_ACCT,CRYPTO_KEY_USER | matches -e "$1"; }
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

CTS=()
for g in 1 2 3; do
        for i in 1 2; do enc "ct$g-$i" "generation $g, secret $i"; CTS+=("$W/ct$g-$i"); done
        [ "$g" = 3 ] || as op key rotate >/dev/null
done

# --- a clean stop checkpoints -------------------------------------------------
stop_dkmd
check "a clean stop leaves nothing in the WAL ($(size_of "$DB-wal") bytes)" test "$(size_of "$DB-wal")" = 0
mkdir -p "$T/copy"
cp "$DB" "$T/copy/dkm.db"
check "dkm.db copied alone holds all 3 generations ($(gens "$T/copy/dkm.db"))" test "$(gens "$T/copy/dkm.db")" = 3

# --- dkm.db deleted, master.key kept ---------------------------------------------
mkdir -p "$T/saved"
mv "$DB" "$DB-wal" "$T/saved/" 2>/dev/null
rm -f "$DB-shm"
refused_start "with dkm.db deleted, a plain start is refused, saying how to go on" \
        "store $DB does not exist: a plain start never creates one.*dkmd --init"
check "and no store was created in its place" test ! -e "$DB"
rm -f "$DB" "$DB-wal" "$DB-shm"
mv "$T/saved/"* "$T/state/"
start_dkmd || exit 1
check "dkm.db put back: all ${#CTS[@]} earlier ciphertexts decrypt" decrypts_all "${CTS[@]}"

# --- the WAL truncated to nothing after a crash ----------------------------------
for i in 1 2; do enc "ct4-$i" "generation 4, secret $i"; CTS+=("$W/ct4-$i"); done
as op key rotate >/dev/null
enc ct5-1 "generation 5"; CTS+=("$W/ct5-1")
crash_dkmd
check "after a crash the WAL holds the latest writes ($(size_of "$DB-wal") bytes)" test "$(size_of "$DB-wal")" -gt 0
cp "$DB-wal" "$T/wal.saved"
sum_db=$(sha256sum <"$DB")
truncate -s 0 "$DB-wal"
rm -f "$DB-shm"
refused_start "the WAL truncated to 0: refused, naming both revisions and the way to accept it" \
        "store is at revision [0-9]+, older than revision [0-9]+ that this node has already served.*--accept-older-store"
check "dkm.db was left as it was" test "$(sha256sum <"$DB")" = "$sum_db"
check "the WAL was left as it was (0 bytes)" test "$(size_of "$DB-wal")" = 0
cp "$T/wal.saved" "$DB-wal"
rm -f "$DB-shm"
start_dkmd || exit 1
check "the WAL put back: all ${#CTS[@]} earlier ciphertexts decrypt" decrypts_all "${CTS[@]}"

# --- the WAL cut in half after many rotations ----------------------------------
active_gen() { as op key list | awk '$1 == "default" && $3 == "active" { print $2 }'; }
n0=$(active_gen)
for i in $(seq 1 30); do
        as op key rotate >/dev/null || break
        enc "r$i" "rotation $i"
done
crash_dkmd
wal=$(size_of "$DB-wal")
check "30 rotations later the WAL holds them ($wal bytes)" test "$wal" -gt 100000
truncate -s $((wal / 2)) "$DB-wal"
rm -f "$DB-shm"
sum_db=$(sha256sum <"$DB")
sum_wal=$(sha256sum <"$DB-wal")
refused_start "the WAL cut in half: refused, naming both revisions" \
        "store is at revision [0-9]+, older than revision [0-9]+ that this node has already served"
check "dkm.db and the WAL were left byte for byte" \
        test "$(sha256sum <"$DB")$(sha256sum <"$DB-wal")" = "$sum_db$sum_wal"
refused_start "refused again at the next start: the mark is not lowered by a refusal" "older than revision"

audit_mark >/dev/null
if plain_start --accept-older-store; then
        pass "dkmd --accept-older-store serves the older store"
        check "and says so in its log" matches -E "serving revision [0-9]+, older than revision [0-9]+" "$T/start.log"
        check "and in the audit trail" audited "op=store-accept-older"
        check "the generations before the crash still decrypt (${#CTS[@]})" decrypts_all "${CTS[@]}"
        active=$(active_gen)
        check "generations were lost: the store went back from $((n0 + 30)) to $active" test "$active" -lt $((n0 + 30))
        refused "generation $((active + 1)) is not issued again under a new key" "never names two keys" \
                as op key rotate
        stop_dkmd
        check "a later plain start needs no flag" plain_start
        refused "and still does not reissue generation $((active + 1))" "never names two keys" as op key rotate
else
        fail "dkmd --accept-older-store did not start: $(tail -n 2 "$T/start.log")"
fi
stop_dkmd

# --- a damaged dkm.db --------------------------------------------------------------
cp "$DB" "$T/db.saved"
dd if=/dev/urandom of="$DB" bs=4096 seek=1 count=2 conv=notrunc status=none
refused_start "a damaged dkm.db: the refusal names the file and what is wrong" \
        "cannot open store $DB: (it is damaged|it is not a readable SQLite database)"
check "not the bare 'Bad message'" bash -c "! grep -q 'Bad message' '$T/start.log'"
cp "$T/db.saved" "$DB"
finish
