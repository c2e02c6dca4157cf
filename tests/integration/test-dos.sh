#!/bin/bash
# Any local user against the service (issue 11, item 4): a uid in no dkm
# group floods the socket with connections that announce a large frame and
# stall, and passes a silent FIFO to decrypt-stream; a member passes pipes
# that never deliver.  Members must still be served, and nothing holds a
# worker for ever.  (Floods of garbage and refusals: test-refusal-flood.sh.)
. "$(dirname "$0")/lib.sh"

FLOOD=$BUILD/tools/conn-flood
[ -x "$FLOOD" ] || { echo "missing $FLOOD (make tests)"; exit 1; }

write_config "[daemon]" "read_timeout=2s" "stream_timeout=2s"
start_dkmd || exit 1
printf 'precious data' | as svc encrypt > "$W/ct"
check "a service account encrypts before the flood" test -s "$W/ct"

# --- 1. connection floods ---------------------------------------------------
# flood WHO N LEN: N connections that announce LEN bytes and stall, held
# for 8 s; while they are open, the members below must be served.
flood() {
        raw "$1" "$FLOOD" hold "$SOCK" "$2" "$3" 8 > "$T/flood.out" 2>&1 &
        flood_pid=$!
        wait_for "$T/flood.out" '^opened' 60 || fail "the flood tool did not report its connections"
        echo "  flood by $1: $(head -n1 "$T/flood.out") x $3 bytes"
}
flood_end() {
        wait "$flood_pid"
        read -r _ opened < <(grep '^opened' "$T/flood.out")
        read -r _ closed last_ms msg < <(grep '^closed' "$T/flood.out")
}

# 700 connections, each announcing 1 MiB: the attack of the issue.
flood human 700 1048576
check "during the flood, a service account's status works" as svc status
check "during the flood, a service account encrypts" \
        bash -c "printf more | as svc encrypt > '$W/ct2' && test -s '$W/ct2'"
check "during the flood, a service account decrypts" \
        bash -c "as svc decrypt --in '$W/ct' | grep -qx 'precious data'"
check "during the flood, an operator lists keys" as op key list
flood_end
check "dkmd dropped every connection of the flood ($closed of $opened)" \
        test "${closed:-0}" -eq "${opened:-1}"
check "a non-member's 1 MiB frame is refused unread ($msg)" \
        matches "permission denied: not in any dkm group (a frame of 1048576 bytes .* refused unread" <<<"$msg"

# 700 connections stalled in the middle of a small frame: the uid holds
# its share (4) until read_timeout (2 s), the rest are refused at once.
flood human 700 100
check "during the stalled flood, a service account encrypts" \
        bash -c "printf more | as svc encrypt > '$W/ct2' && test -s '$W/ct2'"
check "during the stalled flood, an operator lists keys" as op key list
flood_end
check "dkmd dropped every stalled connection ($closed of $opened)" test "${closed:-0}" -eq "${opened:-1}"
check "within the read timeout, with margin (the last after ${last_ms:-?} ms)" \
        test "${last_ms:-99999}" -ge 1500 -a "${last_ms:-99999}" -le 7000
check "beyond its share, the flooding uid is told why ($msg)" \
        matches "uid $HUMAN_UID has 4 connections open, the most a uid in no dkm group may hold" <<<"$msg"

# A non-member that connects and says nothing is closed after 5 s.
out=$(raw human "$FLOOD" hold "$SOCK" 1 idle 12)
read -r _ closed last_ms _ < <(grep '^closed' <<<"$out")
check "an idle non-member connection is closed after 5 s (${last_ms:-?} ms)" \
        test "${closed:-0}" -eq 1 -a "${last_ms:-0}" -ge 4500 -a "${last_ms:-0}" -le 11000

# A member uid is limited too, so that one service cannot crowd out another.
flood svc 80 100
check "while a service account holds its whole share, an operator lists keys" as op key list
flood_end
check "the service account is told which setting limits it ($msg)" \
        matches "uid $SVC_UID has 64 connections open, the most \[daemon\] max_connections_per_uid allows" <<<"$msg"

# --- 2. descriptors that never deliver -----------------------------------------
mkfifo -m 0666 "$W/fifo"
out=$(raw human "$FLOOD" stream "$SOCK" 18 "$W/fifo" /dev/null 6)
check "a non-member's decrypt-stream is refused before the FIFO is read ($out)" \
        matches "reply: permission denied" <<<"$out"
# An operator may decrypt a stream under a grant, whose policy is in the
# stream's header; with no live grant at all it is refused before that.
out=$(raw op "$FLOOD" stream "$SOCK" 18 "$W/fifo" /dev/null 6)
check "an operator without a grant is refused before the FIFO is read ($out)" \
        matches "reply: permission denied: not in the users group and no live grant" <<<"$out"
raw svc "$FLOOD" stream "$SOCK" 18 heldpipe /dev/null 15 > "$T/held.out" &
held_pid=$!
check "while a member's stream waits on a silent pipe, dkmd serves others" as svc status
wait "$held_pid"
out=$(cat "$T/held.out")
check "a member's silent input pipe times out ($out)" matches "reply: .*timed out" <<<"$out"
head -c 1048576 /dev/urandom > "$W/big"
chmod 0644 "$W/big"
out=$(raw svc "$FLOOD" stream "$SOCK" 17 "$W/big" heldpipe 15)
check "a member's output pipe that nobody reads times out ($out)" matches "reply: .*timed out" <<<"$out"
out=$(raw svc "$FLOOD" stream "$SOCK" 17 /dev/zero /dev/null 15)
check "an endless character device is refused as stream input ($out)" \
        matches "reply: .*regular file, pipe or socket" <<<"$out"
check "dkmd is alive and serving" as svc status

check "a member is still served" bash -c "as svc decrypt --in '$W/ct' | grep -qx 'precious data'"

finish
