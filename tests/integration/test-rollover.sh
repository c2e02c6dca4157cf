#!/bin/bash
# Rollover on demand, by use and by age; archived generations decrypt,
# retired ones do not; everything survives a restart and a crash.
. "$(dirname "$0")/lib.sh"

write_config "[rotation]" "max_uses=5" "max_age=30d"
start_dkmd || exit 1

gen_of() { as svc inspect --in "$1" --json | sed -n 's/.*"generation": \([0-9]*\).*/\1/p'; }

printf 'one' | as svc encrypt > "$W/ct1"
check "first ciphertext is generation 1" test "$(gen_of "$W/ct1")" = 1
check "operator rotates" bash -c "as op key rotate | grep -q 'generation 2 is now active'"
printf 'two' | as svc encrypt > "$W/ct2"
check "new ciphertexts use generation 2" test "$(gen_of "$W/ct2")" = 2
check "generation 1 (archived) still decrypts" bash -c "as svc decrypt --in '$W/ct1' | grep -qx one"
check "key list shows 1 archived, 2 active" bash -c \
        "as op key list | grep -qE 'default +1 +archived' && as op key list | grep -qE 'default +2 +active'"

# Rollover by use: max_uses=5, so the sixth encryption under one generation
# moves to the next.
for i in 1 2 3 4 5 6; do printf "u$i" | as svc encrypt > "$W/u$i"; done
check "use limit rolls over to generation 3" test "$(gen_of "$W/u6")" = 3
check "every ciphertext of the use run decrypts" bash -c \
        'for i in 1 2 3 4 5 6; do as svc decrypt --in "$W/u$i" | grep -qx "u$i" || exit 1; done'

# Rewrap: an archived generation's ciphertext moves to the active one inside
# dkmd; the plaintext never reaches the caller.
check "rewrap moves generation 1 to the active generation" bash -c \
        "as svc rewrap --in '$W/ct1' --out '$W/ct1r' && ! grep -q one '$W/ct1r'"
check "the rewrapped ciphertext names generation 3" test "$(gen_of "$W/ct1r")" = 3
check "and decrypts to the same plaintext" bash -c "as svc decrypt --in '$W/ct1r' | grep -qx one"
refused "rewrap keeps the context binding" "failed authentication" \
        as svc rewrap --in "$W/ct1" --context a=b

# Retire: the active generation cannot be retired; an archived one can and
# then refuses to decrypt, with a clear error.
refused "the active generation cannot be retired" "rotate first" as op key retire 3
check "retire generation 1" bash -c "as op key retire 1 >/dev/null"
refused "retired generation does not decrypt" "generation 1 of policy 'default' is retired" \
        as svc decrypt --in "$W/ct1"
refused "retiring twice says so" "already retired" as op key retire 1
refused "unknown generation" "has no generation 99" as op key retire 99
refused "not a number" "is not a generation number" as op key retire 1x
check "inspect says retired and not decryptable" bash -c \
        "as svc inspect --in '$W/ct1' --json | grep -q '\"decryptable\": false'"

# Restart: generations, states and use counts come back from the store.
stop_dkmd
start_dkmd || exit 1
check "after restart, generation 2 decrypts" bash -c "as svc decrypt --in '$W/ct2' | grep -qx two"
refused "after restart, generation 1 is still retired" "retired" as svc decrypt --in "$W/ct1"
printf 'after' | as svc encrypt > "$W/ct3"
g=$(gen_of "$W/ct3")
check "after restart, encryption continues on generation >= 3 (got $g)" test "$g" -ge 3

# Crash: a kill -9 may over-count uses (they are reserved ahead) but never
# reuse a generation's budget; everything encrypted before still decrypts.
crash_dkmd
start_dkmd || exit 1
printf 'post-crash' | as svc encrypt > "$W/ct4"
check "after a crash, old ciphertexts decrypt" bash -c \
        "as svc decrypt --in '$W/ct2' | grep -qx two && as svc decrypt --in '$W/u6' | grep -qx u6"
check "after a crash, new ciphertexts decrypt" bash -c "as svc decrypt --in '$W/ct4' | grep -qx post-crash"
check "after a crash, the generation is not older than before" test "$(gen_of "$W/ct4")" -ge "$g"
stop_dkmd

# Rollover by age: max_age=2s.
write_config "[rotation]" "max_age=2s"
start_dkmd || exit 1
printf 'a' | as svc encrypt > "$W/age1"
g1=$(gen_of "$W/age1")
sleep 3
printf 'b' | as svc encrypt > "$W/age2"
g2=$(gen_of "$W/age2")
check "age limit rolls over ($g1 -> $g2)" test "$g2" -gt "$g1"
check "the aged generation still decrypts" bash -c "as svc decrypt --in '$W/age1' | grep -qx a"
stop_dkmd

# A short cache lifetime: the kernel expires cached keys, dkmd refreshes
# them ahead of time, and service goes on without an alert.
write_config "[policy]" "cache_ttl=2s"
start_dkmd || exit 1
printf 'c' | as svc encrypt > "$W/cache1"
sleep 5
check "after several cache lifetimes the key still serves" bash -c "as svc decrypt --in '$W/cache1' | grep -qx c"
check "status shows no alert" bash -c "! as svc status --json | grep -q '\"alert\": \"'"
stop_dkmd

# SIGHUP: changed settings apply to the running dkmd, without a restart.
write_config "[rotation]" "max_age=30d"
start_dkmd || exit 1
printf 'h' | as svc encrypt > "$W/hup1"
g1=$(gen_of "$W/hup1")
write_config "[rotation]" "max_age=2s" "[policy]" "cache_ttl=2s"
kill -HUP "$DKMD_PID"
ok=0
for _ in $(seq 1 50); do
        grep -q 'configuration reloaded' "$T/dkmd.log" && { ok=1; break; }
        sleep 0.1
done
check "dkmd reloads on SIGHUP" test $ok = 1
sleep 3
printf 'i' | as svc encrypt > "$W/hup2"
g2=$(gen_of "$W/hup2")
check "the reloaded max_age rolls over ($g1 -> $g2)" test "$g2" -gt "$g1"
check "the same process serves" kill -0 "$DKMD_PID"
sleep 4
check "the reloaded cache_ttl: keys still serve after several lifetimes" \
        bash -c "as svc decrypt --in '$W/hup1' | grep -qx h"
check "status shows no alert after the reload" bash -c "! as svc status --json | grep -q '\"alert\": \"'"
finish
