#!/bin/bash
# make bench: engine throughput next to `openssl speed`, and 1 KiB encrypts
# through dkmd at 1, 8 and 64 clients.  Prints figures; asserts nothing.
set -eu
BUILD=${1:-build}
secs=${BENCH_SECONDS:-3}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo
echo "== engines (single thread, seal)"
"$BUILD/tools/engine-bench" 1
echo
echo "== openssl speed -evp aes-256-gcm (the single-core reference)"
openssl speed -seconds "$secs" -bytes 64 -evp aes-256-gcm 2>/dev/null | tail -n 1
for b in 1024 65536 1048576; do
        openssl speed -seconds "$secs" -bytes $b -evp aes-256-gcm 2>/dev/null | tail -n 1
done
echo
echo "== 1 KiB encrypt through dkmd (one request per secret)"
T=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$T"' EXIT
cat > "$T/dkmd.conf" <<CONF
[daemon]
socket=$T/dkmd.sock
state_dir=$T/state
[groups]
users=$(id -g)
operators=$(id -g)
approvers=$(id -g)
CONF
"$BUILD/dkmd" --config "$T/dkmd.conf" --init 2>/dev/null
"$BUILD/dkmd" --config "$T/dkmd.conf" 2>"$T/log" &
pid=$!
for _ in $(seq 100); do [ -S "$T/dkmd.sock" ] && break; sleep 0.05; done
grep -o 'crypto engine: .*' "$T/log" || true
for c in 1 8 64; do
        "$BUILD/tools/dkm-load" "$T/dkmd.sock" $c "$secs" 1024
done
