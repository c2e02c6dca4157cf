#!/bin/bash
# The systemd watchdog: dkmd sends WATCHDOG=1 at half of $WATCHDOG_USEC
# while its accept loop turns, and withholds it when the loop is stuck, so
# that systemd restarts it.  Here a notify-listen stands in for systemd, and
# freeze-thread stops the accept loop (dkmd's main thread) with ptrace while
# the other threads run on.
. "$(dirname "$0")/lib.sh"

FREEZE=$BUILD/tools/freeze-thread
LISTEN=$BUILD/tools/notify-listen
for t in "$FREEZE" "$LISTEN"; do
        [ -x "$t" ] || { echo "missing $t: build with 'make tests'"; exit 1; }
done

WD_USEC=2000000       # the keep-alive goes out every second
NOTIFY=$T/notify.sock
NLOG=$T/notify.log
LISTEN_PID='' FREEZE_PID=''

# The freezer first: a frozen accept loop would not stop on SIGTERM.
wd_cleanup() {
        [ -n "$FREEZE_PID" ] && { kill "$FREEZE_PID" 2>/dev/null; wait "$FREEZE_PID" 2>/dev/null; }
        [ -n "$LISTEN_PID" ] && { kill "$LISTEN_PID" 2>/dev/null; wait "$LISTEN_PID" 2>/dev/null; }
        cleanup
}
trap wd_cleanup EXIT

# wait_until SECONDS command...: polls the command until it succeeds.
wait_until() {
        local limit=$(($1 * 5)); shift
        for _ in $(seq 1 "$limit"); do
                "$@" && return 0
                sleep 0.2
        done
        return 1
}

# Times (CLOCK_REALTIME, seconds) of the keep-alives received, one a line.
keepalives() { awk '$2 == "WATCHDOG=1" { print $1 }' "$NLOG"; }
count_at_least() { [ "$("$@" | wc -l)" -ge "$N" ]; }
withheld() { grep -c 'withholding the watchdog keep-alive' "$T/dkmd.log"; }
now_real() { date +%s.%N; }
later_than() { awk -v a="$(now_real)" -v b="$1" 'BEGIN { exit !(a > b) }'; }

"$LISTEN" "$NOTIFY" >"$NLOG" 2>"$T/listen.err" &
LISTEN_PID=$!
wait_until 10 test -S "$NOTIFY" || { echo "notify-listen did not start:"; cat "$T/listen.err"; exit 1; }

# As systemd would start it: WATCHDOG_PID names dkmd itself (the exec keeps the pid).
# shellcheck disable=SC2034 # start_dkmd (lib.sh) runs dkmd through it
DKMD_LAUNCH=(env NOTIFY_SOCKET="$NOTIFY" WATCHDOG_USEC="$WD_USEC"
             bash -c 'export WATCHDOG_PID=$$; exec "$@"' dkmd)
write_config
start_dkmd || exit 1

# --- idle: READY=1, then regular keep-alives ----------------------------
check "READY=1 reaches the notify socket" wait_until 30 matches 'READY=1' "$NLOG"
N=4
check "keep-alives arrive while idle" wait_until 30 count_at_least keepalives
# systemd acts on a gap longer than WATCHDOG_USEC; dkmd aims at half of it.
gap=$(keepalives | awk 'NR > 1 && $1 - p > m { m = $1 - p } { p = $1 } END { printf "%.3f", m }')
check "no gap between idle keep-alives reaches WATCHDOG_USEC (largest: ${gap} s)" \
        awk -v g="$gap" -v w="$WD_USEC" 'BEGIN { exit !(g > 0 && g < w / 1e6) }'

# --- the accept loop is the main thread: freeze it ----------------------
check "the accept loop runs in dkmd's main thread" test -d "/proc/$DKMD_PID/task/$DKMD_PID"
withheld_before=$(withheld)
"$FREEZE" "$DKMD_PID" "$DKMD_PID" 120 >"$T/freeze.out" 2>"$T/freeze.err" &
FREEZE_PID=$!
if ! wait_until 20 matches '^frozen ' "$T/freeze.out"; then
        wait "$FREEZE_PID"
        rc=$? FREEZE_PID=
        if [ $rc -eq 77 ]; then
                echo "SKIPPED: ptrace is not permitted here: $(cat "$T/freeze.err")"
                exit 77
        fi
        fail "freeze-thread did not stop the accept loop (rc $rc): $(cat "$T/freeze.err")"
        finish
fi
frozen_at=$(awk '/^frozen / { print $3 }' "$T/freeze.out")
state() { awk '{ print $3 }' "/proc/$DKMD_PID/task/$1/stat" 2>/dev/null; }
check "the main thread is stopped (state t)" test "$(state "$DKMD_PID")" = t
others=$(for task in /proc/"$DKMD_PID"/task/*; do
        tid=${task##*/}
        [ "$tid" = "$DKMD_PID" ] || state "$tid"
done | sort -u | tr '\n' ' ')
none_stopped() { [ -n "$1" ] && [[ "$1" != *t* ]]; }
check "the other threads are not stopped (states: $others)" none_stopped "$others"

# The loop stamps each turn (at least one a second); the maintenance thread
# withholds the keep-alive once the last turn is over 3 s old, and says so
# at each keep-alive it withholds: three such lines, with a growing age, show
# that maintenance runs on while the loop is stuck.  Hold the freeze for at
# least 8 s, so that a dkmd that kept sending would be caught.
withheld_enough() { [ "$(withheld)" -ge $((withheld_before + 3)) ]; }
check "dkmd says it withholds the keep-alive" wait_until 60 withheld_enough
check "the freeze lasts 8 s" wait_until 60 later_than "$(awk -v f="$frozen_at" 'BEGIN { printf "%.3f", f + 8 }')"
ages=$(grep -o 'has not turned for [0-9]* s: withholding' "$T/dkmd.log" | tail -n +$((withheld_before + 1)) |
       awk '{ print $5 }' | tr '\n' ' ')
growing() { echo "$1" | awk '{ for (i = 2; i <= NF; i++) if ($i <= $(i - 1)) exit 1; exit (NF < 3) }'; }
check "maintenance runs on while the loop is stuck (ages: $ages)" growing "$ages"
check "dkmd is still running" dkmd_alive

# --- thaw: the loop turns, keep-alives resume, requests are served -------
kill -TERM "$FREEZE_PID"
wait "$FREEZE_PID"
rc=$? FREEZE_PID=
check "freeze-thread let the thread go (rc $rc)" test $rc -eq 0
thawed_at=$(awk '/^thawed / { print $3 }' "$T/freeze.out")
check "freeze-thread says when it let go" test -n "$thawed_at"
[ -n "$thawed_at" ] || thawed_at=$(now_real)
N=2
check "keep-alives resume after the thaw" \
        wait_until 30 count_at_least bash -c "awk '\$2 == \"WATCHDOG=1\" && \$1 > $thawed_at' '$NLOG'"

# None may go out while frozen once the last turn is 3 s old: allow 1 s for
# the last keep-alive still on its way.  The window is over 3 s wide (the
# freeze lasted 8 s), so a dkmd that kept feeding the watchdog fails here.
silent_from=$(awk -v f="$frozen_at" 'BEGIN { printf "%.3f", f + 4 }')
sent=$(keepalives | awk -v a="$silent_from" -v b="$thawed_at" '$1 > a && $1 < b' | tr '\n' ' ')
check "no keep-alive while the loop was frozen (frozen $frozen_at, thawed $thawed_at${sent:+, sent: $sent})" \
        test -z "$sent"
last_before=$(keepalives | awk -v b="$thawed_at" '$1 < b' | tail -n 1)
first_after=$(keepalives | awk -v b="$thawed_at" '$1 > b' | head -n 1)
check "the keep-alives stopped for more than two intervals ($last_before .. $first_after)" \
        awk -v a="$last_before" -v b="$first_after" -v w="$WD_USEC" 'BEGIN { exit !(a > 0 && b - a > w / 1e6) }'

check "status is served after the thaw" timeout 60 bash -c "as svc status | grep '^engine:' >/dev/null"
echo "served after a stuck accept loop" > "$W/plain"
check "a round trip is served after the thaw" \
        timeout 60 bash -c "as svc encrypt --in '$W/plain' | as svc decrypt | cmp -s - '$W/plain'"
check "dkmd did not restart or die" dkmd_alive
finish
