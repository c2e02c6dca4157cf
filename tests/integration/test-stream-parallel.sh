#!/bin/bash
# Streams on several threads ([daemon] stream_threads): the same format as
# one thread both ways, at sizes around the segment; a bit flip or a cut
# stops the plaintext exactly before the bad segment; two streams at once
# both progress (the second does not wait behind the first); the setting
# takes effect on reload; memory stays flat with the most threads.
. "$(dirname "$0")/lib.sh"

seg=65536; hdr=72; full=$((seg + 16))
write_config "[daemon]" "stream_threads=2"
start_dkmd || exit 1

tasks() { ls "/proc/$DKMD_PID/task" | wc -l; }
# until_true CMD...: up to 10 s for CMD to succeed.
until_true() {
        for _ in $(seq 1 100); do "$@" && return 0; sleep 0.1; done
        return 1
}
reload() {
        local before
        before=$(grep -c 'configuration reloaded' "$T/dkmd.log")
        write_config "$@"
        kill -HUP "$DKMD_PID"
        for _ in $(seq 1 50); do
                [ "$(grep -c 'configuration reloaded' "$T/dkmd.log")" -gt "$before" ] && return 0
                sleep 0.1
        done
        return 1
}

for n in 0 1 $((seg - 1)) $seg $((seg + 1)) $((4 * seg)) $((4 * seg + 1)) 7340033; do
        head -c "$n" /dev/urandom > "$W/in.$n"
        as svc encrypt --in "$W/in.$n" --out "$W/ct.$n" --context f=$n &&
        as svc decrypt --in "$W/ct.$n" --out "$W/out.$n" --context f=$n
        check "2 threads: round trip of $n bytes" cmp -s "$W/in.$n" "$W/out.$n"
done
check "pipes in and out with 2 threads" bash -c \
        "cat '$W/in.7340033' | as svc encrypt | as svc decrypt | cmp -s - '$W/in.7340033'"

# Bad segments: segment 9 (the second of the third slot of four segments)
# flipped; the stream cut at a segment boundary.  What reaches the output is
# exactly the segments before the bad one.
ct=$W/ct.7340033
flip "$ct" $((hdr + 9 * full + 1000)) "$W/t.flip"
chown "$SVC_UID:$SVC_UID" "$W/t.flip"   # flip copies the mode of the svc's own file
out=$(as svc decrypt --in "$W/t.flip" --context f=7340033 2>&1 >"$W/o.flip")
check "2 threads: a flipped middle segment is refused ($out)" matches "segment failed authentication" <<<"$out"
check "and the output stops exactly before it ($(stat -c %s "$W/o.flip") bytes)" \
        test "$(stat -c %s "$W/o.flip")" -eq $((9 * seg))
check "what came out is the plaintext's start" cmp -s "$W/o.flip" <(head -c $((9 * seg)) "$W/in.7340033")
head -c $((hdr + 13 * full)) "$ct" > "$W/t.cut"
out=$(as svc decrypt --in "$W/t.cut" --context f=7340033 2>&1 >"$W/o.cut")
check "2 threads: a stream cut at a segment boundary is refused ($out)" matches "stream truncated" <<<"$out"
check "and the output stops before the last segment ($(stat -c %s "$W/o.cut") bytes)" \
        test "$(stat -c %s "$W/o.cut")" -eq $((12 * seg))
out=$(as svc decrypt --in "$W/t.flip" --out "$W/never.flip" --context f=7340033 2>&1)
check "with --out a refused stream leaves no file" test ! -e "$W/never.flip"

# Two streams at once.  The first reads a FIFO that is fed 1 MiB and then
# held open: it has made progress and waits for input with its threads.  A
# second stream runs to the end meanwhile, then the first is fed the rest.
mkfifo "$W/fifo"; chmod 666 "$W/fifo"
t0=$(tasks)
as svc encrypt --in - --out "$W/slow.ct" < "$W/fifo" &
slow=$!
exec 7>"$W/fifo"
head -c 1048576 "$W/in.7340033" >&7
until_true test -s "$W/slow.ct"
t1=$(tasks)
check "the first stream runs on its own threads (dkmd tasks $t0 -> $t1: its connection, a reader, 2 workers)" \
        test $((t1 - t0)) -ge 4
check "a second stream completes while the first waits" bash -c \
        "as svc encrypt --in '$W/in.7340033' --out '$W/fast.ct' &&
         as svc decrypt --in '$W/fast.ct' | cmp -s - '$W/in.7340033'"
check "the first stream is still running" kill -0 $slow
tail -c +1048577 "$W/in.7340033" >&7
exec 7>&-
wait $slow
check "then the first completes and round-trips" bash -c \
        "as svc decrypt --in '$W/slow.ct' | cmp -s - '$W/in.7340033'"
check "its threads are gone (dkmd tasks back to $t0)" until_true eval 'test "$(tasks)" -le "$t0"'

# stream_threads=1: the single-thread loop, one read-ahead thread a stream.
check "reload with stream_threads=1" reload "[daemon]" "stream_threads=1"
t0=$(tasks)
as svc encrypt --in - --out "$W/slow1.ct" < "$W/fifo" &
slow=$!
exec 7>"$W/fifo"
head -c 1048576 "$W/in.7340033" >&7
until_true test -s "$W/slow1.ct"
t1=$(tasks)
check "one thread: its connection and one read-ahead thread (dkmd tasks $t0 -> $t1)" test $((t1 - t0)) -eq 2
tail -c +1048577 "$W/in.7340033" >&7
exec 7>&-
wait $slow
check "one thread and two read each other's streams" bash -c \
        "as svc decrypt --in '$W/slow1.ct' | cmp -s - '$W/in.7340033' &&
         as svc decrypt --in '$W/slow.ct' | cmp -s - '$W/in.7340033'"
out=$(as svc decrypt --in "$W/t.flip" --context f=7340033 2>&1 >"$W/o.flip1")
check "one thread: the same message for the flipped segment ($out)" matches "segment failed authentication" <<<"$out"
check "and no plaintext past it" test "$(stat -c %s "$W/o.flip1")" -le $((9 * seg))

# Flat memory with the most threads: the ring is bounded, not per thread.
check "reload with stream_threads=64" reload "[daemon]" "stream_threads=64"
truncate -s 256M "$W/sparse"
rss_before=$(awk '/VmHWM/ {print $2}' "/proc/$DKMD_PID/status")
/usr/bin/time -f '%M' -o "$W/ctl.rss" setpriv --reuid "$SVC_UID" --regid "$SVC_UID" --groups "$USERS_GID" \
        "$DKMCTL" --socket "$SOCK" encrypt --in "$W/sparse" --out "$W/sparse.ct"
as svc decrypt --in "$W/sparse.ct" > /dev/null
rss_after=$(awk '/VmHWM/ {print $2}' "/proc/$DKMD_PID/status")
rss_cap=65536
ldd "$DKMD" | matches libasan && rss_cap=$((1024 * 1024))
check "64 threads, 256 MiB both ways: dkmd's peak RSS grew by $((rss_after - rss_before)) KiB (< 32 MiB)" \
        test $((rss_after - rss_before)) -lt 32768 -a "$rss_after" -lt "$rss_cap"
check "dkmctl's peak RSS $(cat "$W/ctl.rss") KiB (< 32 MiB)" test "$(cat "$W/ctl.rss")" -lt 32768
check "and it decrypts to the same 256 MiB" bash -c "as svc decrypt --in '$W/sparse.ct' | cmp -s - '$W/sparse'"
rm -f "$W/sparse" "$W/sparse.ct"

# A bad value is refused on reload, naming it; the previous setting stays.
reload "[daemon]" "stream_threads=0"
check "stream_threads=0 is refused on reload" until_true grep -q \
        "reload: .*stream_threads: expected auto or a whole number from 1 to 64, got '0'; keeping the previous" "$T/dkmd.log"
check "and streams still work" bash -c "as svc encrypt --in '$W/in.$((4 * seg + 1))' | as svc decrypt | cmp -s - '$W/in.$((4 * seg + 1))'"
finish
