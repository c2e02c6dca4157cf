# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A private three-member etcd cluster on loopback, for tests of the etcd
# store backend.  Needs the Debian packages etcd-server (/usr/bin/etcd) and
# etcd-client (etcdctl).  Source this file; it defines:
#
#   etcd_available         0 when etcd and etcdctl are installed, 77 otherwise
#                          (with the reason on stderr).
#   etcd_cluster_start DIR start members 1..3 with their data and logs under
#                          DIR, on free loopback ports picked at random
#                          (below the ephemeral port range), and
#                          wait until the cluster is healthy.  Exports
#                          ETCD_ENDPOINTS (the three client URLs, comma
#                          separated, member 1 first) and ETCD_ENDPOINT_1..3.
#                          Returns 0, or 1 with the members' logs printed.
#   etcd_member_stop N     stop member N (SIGTERM, then SIGKILL) and wait.
#   etcd_member_start N    start member N again on its old ports and data,
#                          and wait until it answers.
#   etcd_cluster_stop      stop every member this file started.  Sourcing
#                          scripts call it from their EXIT trap.
#   etcd_ctl ARGS...       etcdctl against the cluster.
#
#   etcd_tls_make DIR [SAN]
#                          a throwaway CA, a server certificate for SAN
#                          (default IP:127.0.0.1) and a client certificate in
#                          DIR (ca.pem, server.pem/.key, client.pem/.key).
#
# ETCD_EXTRA_ARGS (a string, split on blanks) is added to every member's
# command line, e.g. "--auth-token-ttl 2".  With ETCD_TLS_DIR set (to a
# directory etcd_tls_make filled) before etcd_cluster_start, clients talk
# https and must show a client certificate; etcd_ctl does.
#
# The cluster is started by the test itself (peers talk plain http on
# loopback; authentication stays off unless a test turns it on): nothing
# outside DIR is written, nothing installed by hand is used.

ETCD_DIR=
ETCD_BASE_PORT=
ETCD_PIDS=("" "" "" "")
ETCD_ENDPOINTS=

etcd_available() {
        local cmd
        for cmd in etcd etcdctl; do
                if ! command -v "$cmd" >/dev/null; then
                        echo "etcd: $cmd not installed (Debian packages etcd-server etcd-client)" >&2
                        return 77
                fi
        done
        return 0
}

_etcd_client_url() {
        echo "http${ETCD_TLS_DIR:+s}://127.0.0.1:$((ETCD_BASE_PORT + 2 * ($1 - 1)))"
}

# etcdctl's TLS options, when the cluster wants them.
_etcd_ctl_tls() {
        [ -n "${ETCD_TLS_DIR:-}" ] || return 0
        echo "--cacert $ETCD_TLS_DIR/ca.pem --cert $ETCD_TLS_DIR/client.pem --key $ETCD_TLS_DIR/client.key"
}

etcd_tls_make() {
        local d=${1:?etcd_tls_make needs a directory} san=${2:-IP:127.0.0.1} who
        mkdir -p "$d" || return 1
        (
                set -e
                cd "$d"
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                        -keyout ca.key -out ca.pem -days 2 -subj /CN=dkm-test-ca
                for who in server client; do
                        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                                -keyout "$who.key" -out "$who.csr" -subj "/CN=dkm-test-$who"
                        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$who.ext"
                        openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                                -out "$who.pem" -days 2 -extfile "$who.ext"
                done
        ) >"$d/openssl.log" 2>&1 || { cat "$d/openssl.log"; return 1; }
}
_etcd_peer_url() { echo "http://127.0.0.1:$((ETCD_BASE_PORT + 2 * ($1 - 1) + 1))"; }

# Whether any of the six ports from $1 is already bound on loopback.
_etcd_ports_busy() {
        local p busy
        busy=$(ss -Htan 2>/dev/null | awk '{ print $4 }' | sed -n 's/.*:\([0-9]*\)$/\1/p')
        for p in $(seq "$1" $(($1 + 5))); do
                grep -qx "$p" <<<"$busy" && return 0
        done
        return 1
}

_etcd_member_launch() {
        local n=$1 cluster="" i
        for i in 1 2 3; do
                cluster+="${cluster:+,}m$i=$(_etcd_peer_url "$i")"
        done
        # Default heartbeat and election timeout (100 ms, 1 s), written out:
        # the tests' timings depend on them.  ETCD_EXTRA_ARGS is split on
        # purpose.
        local tls=()
        [ -n "${ETCD_TLS_DIR:-}" ] && tls=(--cert-file "$ETCD_TLS_DIR/server.pem"
                --key-file "$ETCD_TLS_DIR/server.key" --trusted-ca-file "$ETCD_TLS_DIR/ca.pem"
                --client-cert-auth)
        # shellcheck disable=SC2086
        etcd --name "m$n" --data-dir "$ETCD_DIR/m$n" "${tls[@]}" \
                --listen-client-urls "$(_etcd_client_url "$n")" \
                --advertise-client-urls "$(_etcd_client_url "$n")" \
                --listen-peer-urls "$(_etcd_peer_url "$n")" \
                --initial-advertise-peer-urls "$(_etcd_peer_url "$n")" \
                --initial-cluster "$cluster" --initial-cluster-state new \
                --initial-cluster-token "dkm-test-$ETCD_BASE_PORT" \
                --heartbeat-interval 100 --election-timeout 1000 \
                --enable-pprof=false ${ETCD_EXTRA_ARGS:-} >>"$ETCD_DIR/m$n.log" 2>&1 &
        ETCD_PIDS[n]=$!
}

# Waits up to $2 seconds (default 20) until member $1 answers a health check.
_etcd_member_wait() {
        local n=$1 limit=${2:-20} i
        for i in $(seq 1 $((limit * 5))); do
                if ! kill -0 "${ETCD_PIDS[n]}" 2>/dev/null; then
                        echo "etcd: member $n exited" >&2
                        return 1
                fi
                # shellcheck disable=SC2046
                ETCDCTL_API=3 etcdctl --endpoints "$(_etcd_client_url "$n")" $(_etcd_ctl_tls) \
                        --dial-timeout 1s --command-timeout 2s endpoint health >/dev/null 2>&1 && return 0
                sleep 0.2
        done
        echo "etcd: member $n not healthy after ${limit}s" >&2
        return 1
}

_etcd_dump_logs() {
        local n
        for n in 1 2 3; do
                [ -f "$ETCD_DIR/m$n.log" ] || continue
                echo "---- etcd member $n log (tail)"
                tail -n 30 "$ETCD_DIR/m$n.log"
        done
}

etcd_cluster_start() {
        local dir=${1:?etcd_cluster_start needs a directory} n ok
        etcd_available || return 1
        mkdir -p "$dir" || return 1
        ETCD_DIR=$(cd "$dir" && pwd)
        # Below the kernel's ephemeral range (outgoing connections, etcdctl's
        # included, take their local ports from it, and one in TIME_WAIT
        # there would keep a member from binding its port again when
        # etcd_member_start restarts it), when there is room.
        local lo span
        read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null
        span=$(( ${lo:-0} - 20000 ))
        [ "$span" -ge 600 ] || span=40000
        for _ in 1 2 3 4 5; do
                # Six consecutive ports from 20000; others may pick ports at
                # the same moment, so a lost race is retried elsewhere.
                ETCD_BASE_PORT=$((20000 + (RANDOM * 32768 + RANDOM) % (span - 5) / 6 * 6))
                _etcd_ports_busy "$ETCD_BASE_PORT" && continue
                rm -rf "$ETCD_DIR"/m1 "$ETCD_DIR"/m2 "$ETCD_DIR"/m3
                for n in 1 2 3; do
                        _etcd_member_launch "$n"
                done
                ok=1
                for n in 1 2 3; do
                        _etcd_member_wait "$n" 30 || { ok=0; break; }
                done
                if [ $ok = 1 ]; then
                        ETCD_ENDPOINTS="$(_etcd_client_url 1),$(_etcd_client_url 2),$(_etcd_client_url 3)"
                        ETCD_ENDPOINT_1=$(_etcd_client_url 1)
                        ETCD_ENDPOINT_2=$(_etcd_client_url 2)
                        ETCD_ENDPOINT_3=$(_etcd_client_url 3)
                        export ETCD_ENDPOINTS ETCD_ENDPOINT_1 ETCD_ENDPOINT_2 ETCD_ENDPOINT_3
                        return 0
                fi
                if grep -q "address already in use" "$ETCD_DIR"/m*.log 2>/dev/null; then
                        etcd_cluster_stop
                        : >"$ETCD_DIR/m1.log"; : >"$ETCD_DIR/m2.log"; : >"$ETCD_DIR/m3.log"
                        continue
                fi
                _etcd_dump_logs
                etcd_cluster_stop
                return 1
        done
        echo "etcd: no free ports found" >&2
        return 1
}

etcd_member_stop() {
        local n=${1:?member number} pid=${ETCD_PIDS[$1]} i
        [ -n "$pid" ] || return 0
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        ETCD_PIDS[n]=""
        return 0
}

etcd_member_start() {
        local n=${1:?member number}
        [ -z "${ETCD_PIDS[n]}" ] || return 0
        _etcd_member_launch "$n"
        _etcd_member_wait "$n" 30 || { _etcd_dump_logs; return 1; }
}

etcd_cluster_stop() {
        local n
        for n in 1 2 3; do
                etcd_member_stop "$n"
        done
}

etcd_ctl() {
        # shellcheck disable=SC2046
        ETCDCTL_API=3 etcdctl --endpoints "$ETCD_ENDPOINTS" $(_etcd_ctl_tls) --dial-timeout 2s \
                --command-timeout 5s "$@" \
                2> >(grep -v '"level":"warn"' >&2)
}
