#!/bin/bash
# make bench: prints figures, asserts nothing.
#   engines against `openssl speed`; 1 GiB files through dkmctl next to age
#   and gpg; 1 KiB secrets through dkmd one per request and batched, next to
#   systemd-creds; a rekey of 1,000 generations; the kernel engine in the VM
#   (emulated, never compared).
set -eu
BUILD=$(cd "${1:-build}" && pwd)
secs=${BENCH_SECONDS:-3}
T=$(mktemp -d)
pid=
trap 'set +e; [ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT

rate() { # LABEL NANOSECONDS: MB/s for 1 GiB
        awk -v l="$1" -v ns="$2" 'BEGIN { printf "%-40s %8.1f MB/s\n", l, 1073.741824 / (ns / 1e9) }'
}
ctl() { "$BUILD/dkmctl" --socket "$T/dkmd.sock" "$@"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r)"
echo
echo "== engines (single thread, seal, MB/s)"
"$BUILD/tools/engine-bench" 1
echo
echo "== openssl speed -evp aes-256-gcm (the single-core reference; k = 1000 bytes/s)"
for b in 64 1024 65536 1048576; do
        openssl speed -seconds "$secs" -bytes $b -evp aes-256-gcm 2>/dev/null | tail -n 1
done

cat > "$T/dkmd.conf" <<CONF
[daemon]
socket=$T/dkmd.sock
state_dir=$T/state
[groups]
users=$(id -g)
operators=$(id -g)
approvers=$(id -g)
[policy]
key_dirs=$T/ck
CONF
"$BUILD/dkmd" --config "$T/dkmd.conf" --init 2>/dev/null
"$BUILD/dkmd" --config "$T/dkmd.conf" 2>"$T/log" &
pid=$!
for _ in $(seq 100); do [ -S "$T/dkmd.sock" ] && break; sleep 0.05; done
echo
grep -o 'crypto engine: .*' "$T/log" || true

echo
echo "== files: 1 GiB through dkmctl (streamed by dkmd), next to age and gpg --symmetric"
echo "   (output to /dev/null: the read, crypto and hand-over path; then to a file with --out,"
echo "    which is written beside the destination, fsync'ed and renamed)"
head -c 1073741824 /dev/urandom > "$T/big"
# Untimed first: it writes big.dkm and lets the page cache settle after the
# 1 GiB just written (writeback otherwise competes with the first run).
"$BUILD/dkmctl" --socket "$T/dkmd.sock" encrypt --in "$T/big" > "$T/big.dkm"
sync
# The median of three runs each.
median3() { sort -n | sed -n 2p; }
for op in encrypt decrypt; do
        in=$T/big
        [ $op = decrypt ] && in=$T/big.dkm
        for _ in 1 2 3; do
                t0=$(date +%s%N)
                /usr/bin/time -f %M -o "$T/rss.$op" "$BUILD/dkmctl" --socket "$T/dkmd.sock" $op --in "$in" > /dev/null
                t1=$(date +%s%N)
                echo $((t1 - t0))
        done | median3 > "$T/ns.$op"
        rate "dkmctl $op > /dev/null (RSS $(cat "$T/rss.$op") KiB)" "$(cat "$T/ns.$op")"
done
t0=$(date +%s%N)
"$BUILD/dkmctl" --socket "$T/dkmd.sock" decrypt --in "$T/big.dkm" --out "$T/big.out"
t1=$(date +%s%N)
rate "dkmctl decrypt --out FILE (fsync)" $((t1 - t0))
echo "dkmd peak RSS after all: $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") KiB"
rm -f "$T/big.dkm" "$T/big.out"
if command -v age >/dev/null; then
        age-keygen -o "$T/age.key" 2>/dev/null
        t0=$(date +%s%N); age -e -i "$T/age.key" -o /dev/null "$T/big"; t1=$(date +%s%N)
        rate "age -e > /dev/null (ChaCha20-Poly1305)" $((t1 - t0))
else
        echo "age: absent (Debian package age)"
fi
if command -v gpg >/dev/null; then
        t0=$(date +%s%N)
        gpg --batch --quiet --homedir "$T" --pinentry-mode loopback --passphrase bench \
                --symmetric --cipher-algo AES256 --compress-algo none -o - "$T/big" > /dev/null
        t1=$(date +%s%N)
        rate "gpg --symmetric AES256 > /dev/null" $((t1 - t0))
else
        echo "gpg: absent"
fi
rm -f "$T/big"

echo
echo "== 1 KiB encrypt through dkmd, one request per secret"
for c in 1 8 64; do
        "$BUILD/tools/dkm-load" "$T/dkmd.sock" $c "$secs" 1024
done
echo
echo "== 1 KiB encrypt through dkmd, batched (256 secrets per request)"
for c in 1 8 64; do
        "$BUILD/tools/dkm-load" "$T/dkmd.sock" $c "$secs" 1024 256
done
echo
echo "== systemd-creds encrypt, one 1 KiB secret per call"
if command -v systemd-creds >/dev/null; then
        head -c 1024 /dev/urandom > "$T/secret"
        n=0; start=$(date +%s%N)
        while [ $(( ($(date +%s%N) - start) / 1000000 )) -lt $((secs * 1000)) ]; do
                systemd-creds encrypt --with-key=host --name=bench "$T/secret" "$T/secret.cred" 2>/dev/null || break
                n=$((n + 1))
        done
        echo "systemd-creds: $n secrets in ${secs}s ($((n / secs)) secrets/s)"
else
        echo "systemd-creds: absent"
fi

echo
echo "== rekey of a customer-managed policy with 1,000 generations"
mkdir -p "$T/ck/a" "$T/ck/b" "$T/ck/c" "$T/ck/d"
for x in a b c d; do head -c 32 /dev/urandom > "$T/ck/$x/key"; chmod 600 "$T/ck/$x/key"; done
ctl policy create bench --customer-key "file:$T/ck/a/key" --customer-key "file:$T/ck/b/key" >/dev/null
for _ in $(seq 999); do ctl key rotate --policy bench >/dev/null; done
echo "generations: $(ctl key list --policy bench --json | grep -c '"generation"')"
t0=$(date +%s%N)
ctl policy rekey bench --customer-key "file:$T/ck/c/key" --customer-key "file:$T/ck/d/key" >/dev/null
t1=$(date +%s%N)
ctl policy rekey bench --customer-key "file:$T/ck/a/key" --customer-key "file:$T/ck/b/key" --new-policy-key >/dev/null
t2=$(date +%s%N)
echo "rekey to new customer keys: $(( (t1 - t0) / 1000000 )) ms"
echo "rekey with a new policy key (re-wraps 1,000 generations): $(( (t2 - t1) / 1000000 )) ms"

echo
echo "== a fleet on etcd: rollover propagation, and encrypt next to SQLite"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/../integration/lib-etcd.sh"
if etcd_available 2>/dev/null && etcd --version >/dev/null 2>&1 && etcd_cluster_start "$T/etcd" >/dev/null 2>&1; then
        trap 'set +e; kill $pid ${fpids:-} 2>/dev/null; etcd_cluster_stop; wait 2>/dev/null; rm -rf "$T"' EXIT
        fpids=
        for n in a b; do
                mkdir -p "$T/f$n"
                cat > "$T/f$n/dkmd.conf" <<CONF
[daemon]
socket=$T/f$n/dkmd.sock
state_dir=$T/f$n/state
master_key=$T/fleet.key
[groups]
users=$(id -g)
operators=$(id -g)
approvers=$(id -g)
[store]
backend=etcd
insecure=yes
endpoints=$ETCD_ENDPOINTS
prefix=/dkm-bench/
CONF
                "$BUILD/dkmd" --config "$T/f$n/dkmd.conf" --init 2>/dev/null
                "$BUILD/dkmd" --config "$T/f$n/dkmd.conf" 2>"$T/f$n/log" &
                fpids="$fpids $!"
                for _ in $(seq 200); do [ -S "$T/f$n/dkmd.sock" ] && break; sleep 0.05; done
        done
        fa() { "$BUILD/dkmctl" --socket "$T/fa/dkmd.sock" "$@"; }
        fb() { "$BUILD/dkmctl" --socket "$T/fb/dkmd.sock" "$@"; }
        active_b() { fb status --json | sed -n 's/.*"active_generation": \([0-9]*\).*/\1/p' | head -1; }
        total=0 worst=0
        for _ in $(seq 10); do
                g=$(fa key rotate | sed -n 's/generation \([0-9]*\) is now active/\1/p')
                t0=$(date +%s%N)
                while [ "$(active_b)" != "$g" ]; do :; done
                ms=$(( ($(date +%s%N) - t0) / 1000000 ))
                total=$((total + ms)); [ $ms -gt $worst ] && worst=$ms
        done
        echo "rollover on node A seen by node B: mean $((total / 10)) ms, worst $worst ms (10 rotations)"
        for c in 1 8; do
                printf 'sqlite: '; "$BUILD/tools/dkm-load" "$T/dkmd.sock" $c "$secs" 1024
                printf 'etcd:   '; "$BUILD/tools/dkm-load" "$T/fa/dkmd.sock" $c "$secs" 1024
        done
else
        echo "etcd: absent or cannot run here (Debian packages etcd-server etcd-client)"
fi

echo
echo "== kernel engine (AF_ALG) in the VM: EMULATED by QEMU TCG, shown, never compared"
DKM_VM_STEPS=engine-bench "$(dirname "$0")/../vm/run.sh" "$BUILD" >/dev/null 2>&1 || true
for k in 6.1 6.12; do
        echo "kernel $k (emulated):"
        grep -A4 'AES-256-GCM seal' "$BUILD/vm/$k.log" 2>/dev/null | tail -n 2 || echo "  (the VM did not run)"
done
