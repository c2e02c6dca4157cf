#!/bin/bash
# make bench: prints figures, asserts nothing.
#   engines against `openssl speed`; 1 GiB files through dkmctl next to age
#   and gpg; 1 KiB secrets through dkmd one per request and batched, next to
#   systemd-creds, with the uses counted per use made; a rekey of 1,000
#   generations; a fleet on etcd; start-up with 10,000 live grants; the
#   kernel engine in the VM (emulated, never compared).
# Each figure is the median of BENCH_RUNS runs (at least 3), printed with
# its min and max; all of them also go to BUILD/bench.json with the machine
# they came from, so that a branch can be compared with main:
#   BENCH_ONLY="load grants" runs only those sections.
# BENCH_PARALLEL_BYTES (default 1 GiB) sizes the file of the parallel
# section, for a quick run.
set -eu
BUILD=$(cd "${1:-build}" && pwd)
secs=${BENCH_SECONDS:-3}
runs=${BENCH_RUNS:-3}
[ "$runs" -ge 3 ] || runs=3
n_grants=${BENCH_GRANTS:-10000}
sections=${BENCH_ONLY:-engines openssl files parallel load creds rekey fleet grants vm}
par_bytes=${BENCH_PARALLEL_BYTES:-1073741824}
T=$(mktemp -d)
pid=
cleanups=()
trap 'set +e; for c in "${cleanups[@]}"; do eval "$c"; done; [ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
: > "$T/figures"

# fig NAME UNIT VALUE...: the median with min and max, kept for the JSON.
fig() {
        local name=$1 unit=$2
        shift 2
        printf '%s\t%s\t%s\n' "$name" "$unit" "$*" >> "$T/figures"
        printf '%s\n' "$@" | sort -g | awk -v n="$name" -v u="$unit" '{ v[NR] = $1 } END {
                m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                printf "%-60s %10s %-9s [%s .. %s], %d runs\n", n, f(m), u, f(v[1]), f(v[NR]), NR }
                function f(x) { return x >= 1000 ? sprintf("%.0f", x) : x >= 10 ? sprintf("%.4g", x) : sprintf("%.5g", x) }'
}
mbs() { awk -v ns="$1" 'BEGIN { printf "%.1f", 1073.741824 / (ns / 1e9) }'; } # MB/s for 1 GiB
ms() { echo $(( ($2 - $1) / 1000000 )); }
ctl() { "$BUILD/dkmctl" --socket "$T/dkmd.sock" "$@"; }
want() { [[ " $sections " == *" $1 "* ]]; }

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
echo "machine: $(nproc) cores, $cpu, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "each figure: median [min .. max] of $runs runs"

if want engines; then
        echo
        echo "== engines (single thread, seal, MB/s of 10^6 bytes)"
        for _ in $(seq "$runs"); do
                "$BUILD/tools/engine-bench" 1 | awk '$NF ~ /^[0-9.]+$/ && NF >= 5 { print $1, $(NF-3), $(NF-2), $(NF-1), $NF }'
        done > "$T/engines"
        for e in $(cut -d' ' -f1 "$T/engines" | sort -u); do
                i=2
                for size in "64 B" "1 KiB" "64 KiB" "1 MiB"; do
                        # shellcheck disable=SC2046
                        fig "engine $e seal $size" MB/s $(awk -v e="$e" -v i=$i '$1 == e { print $i }' "$T/engines")
                        i=$((i + 1))
                done
        done
fi

if want openssl; then
        echo
        echo "== openssl speed -evp aes-256-gcm (the single-core reference)"
        for b in 64 1024 65536 1048576; do
                v=()
                for _ in $(seq "$runs"); do
                        # The last field is in 1000s of bytes per second.
                        v+=("$(openssl speed -seconds "$secs" -bytes $b -evp aes-256-gcm 2>/dev/null |
                                tail -n 1 | awk '{ sub(/k$/, "", $NF); printf "%.1f", $NF / 1000 }')")
                done
                fig "openssl speed aes-256-gcm $b B" MB/s "${v[@]}"
        done
fi

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
cleanups+=('r=$(keyctl search @u keyring "dkm:grants:$T/state" 2>/dev/null) && keyctl clear $r && keyctl invalidate $r')
echo
grep -o 'crypto engine: .*' "$T/log" || true

if want files; then
        echo
        echo "== files: 1 GiB through dkmctl (streamed by dkmd), next to age and gpg --symmetric"
        echo "   (output to /dev/null: the read, crypto and hand-over path; then to a file with --out,"
        echo "    which is written beside the destination, fsync'ed and renamed)"
        head -c 1073741824 /dev/urandom > "$T/big"
        # Untimed first: it writes big.dkm and lets the page cache settle after
        # the 1 GiB just written (writeback otherwise competes with the first run).
        ctl encrypt --in "$T/big" > "$T/big.dkm"
        sync
        for op in encrypt decrypt; do
                in=$T/big
                [ $op = decrypt ] && in=$T/big.dkm
                v=()
                for _ in $(seq "$runs"); do
                        t0=$(date +%s%N)
                        /usr/bin/time -f %M -o "$T/rss.$op" "$BUILD/dkmctl" --socket "$T/dkmd.sock" $op --in "$in" > /dev/null
                        t1=$(date +%s%N)
                        v+=("$(mbs $((t1 - t0)))")
                done
                fig "dkmctl $op > /dev/null (RSS $(cat "$T/rss.$op") KiB)" MB/s "${v[@]}"
        done
        v=()
        for _ in $(seq "$runs"); do
                t0=$(date +%s%N)
                ctl decrypt --in "$T/big.dkm" --out "$T/big.out"
                t1=$(date +%s%N)
                v+=("$(mbs $((t1 - t0)))")
                rm -f "$T/big.out"
        done
        fig "dkmctl decrypt --out FILE (fsync)" MB/s "${v[@]}"
        echo "dkmd peak RSS after all: $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") KiB"
        rm -f "$T/big.dkm"
        if command -v age >/dev/null; then
                age-keygen -o "$T/age.key" 2>/dev/null
                v=()
                for _ in $(seq "$runs"); do
                        t0=$(date +%s%N); age -e -i "$T/age.key" -o /dev/null "$T/big"; t1=$(date +%s%N)
                        v+=("$(mbs $((t1 - t0)))")
                done
                fig "age -e > /dev/null (ChaCha20-Poly1305)" MB/s "${v[@]}"
        else
                echo "age: absent (Debian package age)"
        fi
        if command -v gpg >/dev/null; then
                v=()
                for _ in $(seq "$runs"); do
                        t0=$(date +%s%N)
                        gpg --batch --quiet --homedir "$T" --pinentry-mode loopback --passphrase bench \
                                --symmetric --cipher-algo AES256 --compress-algo none -o - "$T/big" > /dev/null
                        t1=$(date +%s%N)
                        v+=("$(mbs $((t1 - t0)))")
                done
                fig "gpg --symmetric AES256 > /dev/null" MB/s "${v[@]}"
        else
                echo "gpg: absent"
        fi
        rm -f "$T/big"
fi

if want parallel; then
        echo
        echo "== one stream on several threads ([daemon] stream_threads): $par_bytes bytes through dkmctl > /dev/null,"
        echo "   against openssl speed -evp aes-256-gcm at 64 KiB on one core (same run); openssl enc"
        echo "   -aes-256-ctr (no authentication) and pigz -1 (parallel gzip) as peers on the same file"
        mbs_of() { awk -v b="$par_bytes" -v ns="$1" 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }'; }
        # reload_threads N: dkmd re-reads its configuration with stream_threads=N.
        reload_threads() {
                local before
                before=$(grep -c 'configuration reloaded' "$T/log" || true)
                sed -i '/^stream_threads=/d; s/^\[daemon\]$/[daemon]\nstream_threads='"$1"'/' "$T/dkmd.conf"
                kill -HUP $pid
                for _ in $(seq 200); do
                        [ "$(grep -c 'configuration reloaded' "$T/log")" -gt "${before:-0}" ] && return 0
                        sleep 0.05
                done
                echo "dkmd did not reload with stream_threads=$1:" >&2; tail -2 "$T/log" >&2; return 1
        }
        v=()
        for _ in $(seq "$runs"); do
                v+=("$(taskset -c 0 openssl speed -seconds "$secs" -bytes 65536 -evp aes-256-gcm 2>/dev/null |
                        tail -n 1 | awk '{ sub(/k$/, "", $NF); printf "%.1f", $NF / 1000 }')")
        done
        fig "openssl speed aes-256-gcm 64 KiB, one core (reference)" MB/s "${v[@]}"
        ref=$(printf '%s\n' "${v[@]}" | sort -g | awk '{ v[NR] = $1 } END { print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
        head -c "$par_bytes" /dev/urandom > "$T/par"
        ctl encrypt --in "$T/par" > "$T/par.dkm"
        sync
        for n in 1 2 auto; do
                reload_threads $n
                for op in encrypt decrypt; do
                        in=$T/par
                        [ $op = decrypt ] && in=$T/par.dkm
                        v=() q=()
                        for _ in $(seq "$runs"); do
                                t0=$(date +%s%N)
                                /usr/bin/time -f %M -o "$T/rss.par" "$BUILD/dkmctl" --socket "$T/dkmd.sock" $op --in "$in" > /dev/null
                                t1=$(date +%s%N)
                                v+=("$(mbs_of $((t1 - t0)))")
                                q+=("$(awk -v a="${v[-1]}" -v r="$ref" 'BEGIN { printf "%.3f", a / r }')")
                        done
                        fig "dkmctl $op > /dev/null, stream_threads=$n (dkmctl RSS $(cat "$T/rss.par") KiB)" MB/s "${v[@]}"
                        fig "dkmctl $op, stream_threads=$n / openssl speed 64 KiB one core" ratio "${q[@]}"
                done
        done
        echo "dkmd peak RSS after all: $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") KiB"
        sed -i '/^stream_threads=/d' "$T/dkmd.conf"
        kill -HUP $pid
        v=()
        for _ in $(seq "$runs"); do
                t0=$(date +%s%N)
                openssl enc -aes-256-ctr -K "$(printf '%064d' 0)" -iv "$(printf '%032d' 0)" -in "$T/par" -out /dev/null
                t1=$(date +%s%N)
                v+=("$(mbs_of $((t1 - t0)))")
        done
        fig "openssl enc -aes-256-ctr > /dev/null (no authentication)" MB/s "${v[@]}"
        if command -v pigz >/dev/null; then
                for p in 1 "$(nproc)"; do
                        v=()
                        for _ in $(seq "$runs"); do
                                t0=$(date +%s%N); pigz -1 -p "$p" -c "$T/par" > /dev/null; t1=$(date +%s%N)
                                v+=("$(mbs_of $((t1 - t0)))")
                        done
                        fig "pigz -1 -p $p > /dev/null" MB/s "${v[@]}"
                done
        else
                echo "pigz: absent (Debian package pigz; tests/deps.sh installs it)"
        fi
        rm -f "$T/par" "$T/par.dkm"
fi

# The uses of every generation, as dkmd counts them (its counter jumps over
# every block it reserves and then leaves).
uses() { ctl key list --json | sed -n 's/.*"uses": \([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }'; }
# load SOCKET CLIENTS [BATCH]: one run of dkm-load; sets secs_rate, p99, made.
load() {
        local out
        out=$("$BUILD/tools/dkm-load" "$1" "$2" "$secs" "${4:-1024}" ${3:-})
        secs_rate=$(sed -n 's/.*secrets\/s=\([0-9]*\).*/\1/p' <<<"$out")
        p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$out")
        p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$out")
        made=$(sed -n 's/.* secrets=\([0-9]*\).*/\1/p' <<<"$out")
}

if want load; then
        echo
        echo "== the floor: dkmctl status's request, the cheapest dkmd answers on the same socket path"
        declare -A floor
        for c in 1 8 64; do
                r=() l=()
                for _ in $(seq "$runs"); do
                        load "$T/dkmd.sock" $c "" status
                        r+=("$secs_rate") l+=("$p99")
                done
                fig "status (the floor), $c clients" requests/s "${r[@]}"
                fig "status (the floor), $c clients, p99 latency" us "${l[@]}"
                floor[$c]=$(printf '%s\n' "${r[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
        done
        echo
        echo "== 1 KiB encrypt through dkmd, one request per secret"
        echo "   (uses counted per use made: the generation's use counter against the encryptions"
        echo "    made; each block of 4,096 uses reserved in the store may leave up to one use"
        echo "    per client behind)"
        for c in 1 8 64; do
                r=() l=() q=()
                for _ in $(seq "$runs"); do
                        u0=$(uses)
                        load "$T/dkmd.sock" $c
                        u1=$(uses)
                        r+=("$secs_rate") l+=("$p99")
                        q+=("$(awk -v a="$u0" -v b="$u1" -v m="$made" 'BEGIN { printf "%.4f", (b - a) / m }')")
                done
                fig "encrypt 1 KiB, $c clients" secrets/s "${r[@]}"
                fig "encrypt 1 KiB, $c clients, as a fraction of the floor" ratio \
                        $(for x in "${r[@]}"; do awk -v a="$x" -v b="${floor[$c]}" 'BEGIN { printf "%.3f\n", b ? a / b : 0 }'; done)
                fig "encrypt 1 KiB, $c clients, p99 latency" us "${l[@]}"
                fig "uses counted per use made, $c clients" ratio "${q[@]}"
        done
        echo
        echo "== 1 KiB encrypt through dkmd, batched (256 secrets per request)"
        for c in 1 8 64; do
                r=() l=() q=()
                for _ in $(seq "$runs"); do
                        load "$T/dkmd.sock" $c 256
                        r+=("$secs_rate") l+=("$p99")
                        q+=("$(awk -v a="$p99" -v b="$p50" 'BEGIN { printf "%.2f", b ? a / b : 0 }')")
                done
                fig "encrypt 1 KiB batched by 256, $c clients" secrets/s "${r[@]}"
                fig "encrypt 1 KiB batched by 256, $c clients, p99 latency" us "${l[@]}"
                fig "encrypt 1 KiB batched by 256, $c clients, p99 / p50" ratio "${q[@]}"
        done
fi

if want creds; then
        echo
        echo "== systemd-creds encrypt, one 1 KiB secret per call"
        if command -v systemd-creds >/dev/null; then
                head -c 1024 /dev/urandom > "$T/secret"
                v=()
                for _ in $(seq "$runs"); do
                        n=0; start=$(date +%s%N)
                        while [ $(( ($(date +%s%N) - start) / 1000000 )) -lt $((secs * 1000)) ]; do
                                systemd-creds encrypt --with-key=host --name=bench "$T/secret" "$T/secret.cred" 2>/dev/null || break
                                n=$((n + 1))
                        done
                        v+=("$(awk -v n=$n -v s="$secs" 'BEGIN { printf "%.1f", n / s }')")
                done
                fig "systemd-creds encrypt 1 KiB" secrets/s "${v[@]}"
        else
                echo "systemd-creds: absent"
        fi
fi

if want rekey; then
        echo
        echo "== rekey of a customer-managed policy with 1,000 generations"
        mkdir -p "$T/ck/a" "$T/ck/b" "$T/ck/c" "$T/ck/d"
        for x in a b c d; do head -c 32 /dev/urandom > "$T/ck/$x/key"; chmod 600 "$T/ck/$x/key"; done
        ctl policy create bench --customer-key "file:$T/ck/a/key" --customer-key "file:$T/ck/b/key" >/dev/null
        for _ in $(seq 999); do ctl key rotate --policy bench >/dev/null; done
        echo "generations: $(ctl key list --policy bench --json | grep -c '"generation"')"
        a=() b=()
        for _ in $(seq "$runs"); do
                t0=$(date +%s%N)
                ctl policy rekey bench --customer-key "file:$T/ck/c/key" --customer-key "file:$T/ck/d/key" >/dev/null
                t1=$(date +%s%N)
                ctl policy rekey bench --customer-key "file:$T/ck/a/key" --customer-key "file:$T/ck/b/key" --new-policy-key >/dev/null
                t2=$(date +%s%N)
                a+=("$(ms "$t0" "$t1")") b+=("$(ms "$t1" "$t2")")
        done
        fig "rekey to new customer keys (1,000 generations)" ms "${a[@]}"
        fig "rekey with a new policy key (re-wraps 1,000 generations)" ms "${b[@]}"
fi

if want fleet; then
        echo
        echo "== a fleet on etcd: rollover propagation, and encrypt next to SQLite"
        # shellcheck source=tests/integration/lib-etcd.sh
        . "$(dirname "$0")/../integration/lib-etcd.sh"
        if etcd_available 2>/dev/null && etcd --version >/dev/null 2>&1 && etcd_cluster_start "$T/etcd" >/dev/null 2>&1; then
                cleanups+=('kill ${fpids:-} 2>/dev/null; etcd_cluster_stop')
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
                        cleanups+=("r=\$(keyctl search @u keyring 'dkm:grants:$T/f$n/state' 2>/dev/null) && keyctl clear \$r && keyctl invalidate \$r")
                        for _ in $(seq 200); do [ -S "$T/f$n/dkmd.sock" ] && break; sleep 0.05; done
                done
                fa() { "$BUILD/dkmctl" --socket "$T/fa/dkmd.sock" "$@"; }
                fb() { "$BUILD/dkmctl" --socket "$T/fb/dkmd.sock" "$@"; }
                active_b() { fb status --json | sed -n 's/.*"active_generation": \([0-9]*\).*/\1/p' | head -1; }
                v=()
                for _ in $(seq 10); do
                        g=$(fa key rotate | sed -n 's/generation \([0-9]*\) is now active/\1/p')
                        t0=$(date +%s%N)
                        while [ "$(active_b)" != "$g" ]; do :; done
                        v+=("$(ms "$t0" "$(date +%s%N)")")
                done
                fig "rollover on node A seen by node B (each rotation a run)" ms "${v[@]}"
                for c in 1 8; do
                        s=() e=()
                        for _ in $(seq "$runs"); do
                                load "$T/dkmd.sock" $c; s+=("$secs_rate")
                                load "$T/fa/dkmd.sock" $c; e+=("$secs_rate")
                        done
                        fig "encrypt 1 KiB, $c clients, sqlite" secrets/s "${s[@]}"
                        fig "encrypt 1 KiB, $c clients, etcd (3 members)" secrets/s "${e[@]}"
                done
        else
                echo "etcd: absent or cannot run here (Debian packages etcd-server etcd-client)"
        fi
fi

if want grants; then
        echo
        echo "== start-up with $n_grants live grants (dkmd as its own uid, as dkmd.service runs it)"
        # Its own uid: the user keyring of root here collects the grants
        # keyrings that tests leave, and every keyctl call searches them.
        # The grants go through request and two approvals (grant-fill); the
        # state is on tmpfs, so that making them is not a run of fsyncs.
        G=$(mktemp -d -p /dev/shm dkm-bench.XXXXXX)
        chmod 0755 "$G"
        mkdir -p "$G/state" "$G/run"
        chown 2995:2995 "$G/state" "$G/run"
        cat > "$G/dkmd.conf" <<CONF
[daemon]
socket=$G/run/dkmd.sock
state_dir=$G/state
[groups]
users=3901
operators=3902
approvers=3903
[access]
approvals_required=2
request_ttl=1h
CONF
        # As dkmd.service runs it: its own uid with CAP_AUDIT_WRITE, in a
        # session keyring with its user keyring linked (KeyringMode=shared).
        # An array, not a function: $! must be dkmd itself.
        as_dkmd=(setpriv --reuid 2995 --regid 2995 --clear-groups
                --inh-caps +audit_write,+audit_control --ambient-caps +audit_write,+audit_control
                keyctl session - sh -c 'keyctl link @u @s >/dev/null && exec "$0" "$@"')
        # A uid's keys are limited to 200 (maxkeys) and 20,000 bytes
        # (maxbytes) unless raised; raised for the run, put back after (and
        # after the grant keys are gone: the clean-up itself needs a key).
        read -r maxkeys < /proc/sys/kernel/keys/maxkeys
        read -r maxbytes < /proc/sys/kernel/keys/maxbytes
        cleanups+=("[ -n \"\${gpid:-}\" ] && kill \$gpid && wait \$gpid"
                "\"\${as_dkmd[@]}\" sh -c 'r=\$(keyctl search @u keyring dkm:grants:$G/state) && keyctl clear \$r && keyctl invalidate \$r' >/dev/null 2>&1"
                "echo $maxkeys > /proc/sys/kernel/keys/maxkeys; echo $maxbytes > /proc/sys/kernel/keys/maxbytes; rm -rf '$G'")
        [ "$maxkeys" -ge $((n_grants + 100)) ] || echo $((n_grants + 100)) > /proc/sys/kernel/keys/maxkeys
        [ "$maxbytes" -ge $((n_grants * 1000)) ] || echo $((n_grants * 1000)) > /proc/sys/kernel/keys/maxbytes
        "${as_dkmd[@]}" "$BUILD/dkmd" --config "$G/dkmd.conf" --init 2>/dev/null
        gpid=
        # start_g: starts dkmd; started_ms: from exec to its "ready:" line.
        start_g() {
                local before t0
                before=$(grep -c 'ready:' "$G/log" 2>/dev/null || true)
                t0=$(date +%s%N)
                "${as_dkmd[@]}" "$BUILD/dkmd" --config "$G/dkmd.conf" 2>>"$G/log" &
                gpid=$!
                until [ "$(grep -c 'ready:' "$G/log")" -gt "${before:-0}" ]; do
                        kill -0 $gpid 2>/dev/null || { echo "dkmd did not start" >&2; tail -3 "$G/log" >&2; return 1; }
                        sleep 0.01
                done
                started_ms=$(ms "$t0" "$(date +%s%N)")
                # Its own CPU time until then: on a shared machine the wall
                # clock also counts the others' turns.
                started_cpu_ms=$(awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) * 1000 / hz }' "/proc/$gpid/stat")
        }
        stop_g() { kill $gpid; wait $gpid 2>/dev/null || true; gpid=; }
        v=() c=()
        for _ in $(seq "$runs"); do start_g; v+=("$started_ms") c+=("$started_cpu_ms"); stop_g; done
        fig "dkmd start-up, no grants" ms "${v[@]}"
        fig "dkmd start-up, no grants: dkmd's CPU time" ms "${c[@]}"
        start_g
        t0=$(date +%s%N)
        made=$("$BUILD/tools/grant-fill" "$G/run/dkmd.sock" "$n_grants" 1h 2902 3902 2903 2905 3903)
        echo "$made grants made in $(( ($(date +%s%N) - t0) / 1000000 )) ms (request and two approvals each)"
        stop_g
        v=() c=()
        for _ in $(seq "$runs"); do start_g; v+=("$started_ms") c+=("$started_cpu_ms"); stop_g; done
        fig "dkmd start-up, $n_grants live grants" ms "${v[@]}"
        fig "dkmd start-up, $n_grants live grants: dkmd's CPU time" ms "${c[@]}"
fi

if want vm; then
        echo
        echo "== kernel engine (AF_ALG) in the VM: EMULATED by QEMU TCG, shown, never compared (not in bench.json)"
        DKM_VM_STEPS=engine-bench "$(dirname "$0")/../vm/run.sh" "$BUILD" >/dev/null 2>&1 || true
        for k in 6.1 6.12; do
                echo "kernel $k (emulated):"
                grep -A4 'AES-256-GCM seal' "$BUILD/vm/$k.log" 2>/dev/null | tail -n 2 || echo "  (the VM did not run)"
        done
fi

# The figures, machine-readable, beside the table above.
awk -F'\t' -v cpu="$cpu" -v cores="$(nproc)" -v kernel="$(uname -r)" -v load1="$(cut -d' ' -f1 /proc/loadavg)" \
    -v date="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -v commit="$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)" '
function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return s }
BEGIN {
        printf "{\n  \"machine\": {\"cpu\": \"%s\", \"cores\": %d, \"kernel\": \"%s\", \"load_1min\": %s},\n", esc(cpu), cores, esc(kernel), load1
        printf "  \"date\": \"%s\",\n  \"commit\": \"%s\",\n  \"figures\": [", date, commit
}
{
        n = split($3, v, " ")
        for (i = 1; i <= n; i++) s[i] = v[i] + 0
        # sort (insertion: a handful of values)
        for (i = 2; i <= n; i++) { x = s[i]; for (j = i - 1; j >= 1 && s[j] > x; j--) s[j + 1] = s[j]; s[j + 1] = x }
        med = n % 2 ? s[(n + 1) / 2] : (s[n / 2] + s[n / 2 + 1]) / 2
        list = ""
        for (i = 1; i <= n; i++) list = list (i > 1 ? ", " : "") v[i]
        printf "%s\n    {\"name\": \"%s\", \"unit\": \"%s\", \"median\": %s, \"min\": %s, \"max\": %s, \"runs\": [%s]}", \
                (NR > 1 ? "," : ""), esc($1), esc($2), med, s[1], s[n], list
}
END { printf "\n  ]\n}\n" }' "$T/figures" > "$BUILD/bench.json"
echo
echo "figures written to $BUILD/bench.json"
