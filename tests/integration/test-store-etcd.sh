#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The etcd store backend against a real three-member etcd cluster started
# here on loopback (tests/integration/lib-etcd.sh):
#   1. the whole unit suite ($BUILD/tests/test-store-etcd), not skipped, and
#      test-nodes' heartbeat case;
#   2. member 1 (the first endpoint) stopped: the quick subset still passes;
#   3. member 2 stopped too (no quorum): reads and writes fail with -EAGAIN
#      or -ETIMEDOUT, each within the call timeout;
#   4. both restarted: every key written before is still there, and the
#      quick subset passes again;
#   5. authentication enabled: a user with a password and a role limited to
#      one prefix works, through a token expiry; wrong credentials and a
#      prefix outside the role give -EACCES;
#   6. a fresh cluster with https and client certificates: the store works
#      with cacert/cert/key; without a client certificate, with the wrong
#      CA or a missing key file it gets -EPROTO.
# Exit 0 pass, 1 fail, 77 when etcd is not installed or cannot run here.
set -u
BUILD=${BUILD:-build}
BUILD=$(cd "$BUILD" && pwd)
T=$BUILD/tests/test-store-etcd
dir=$(dirname "$0")

# shellcheck source=tests/integration/lib-etcd.sh
. "$dir/lib-etcd.sh"

if [ ! -x "$T" ]; then
        echo "FAIL: $T not built"
        exit 1
fi
etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
if ! etcd --version >/dev/null 2>&1; then
        echo "SKIPPED: etcd is installed but does not run here"
        exit 77
fi

W=$(mktemp -d /tmp/dkm-etcd-it.XXXXXX)
cleanup() {
        [ -n "${TEST_PID:-}" ] && kill "$TEST_PID" 2>/dev/null
        etcd_cluster_stop
        rm -rf "$W"
}
trap cleanup EXIT

fail() {
        echo "FAIL: $*"
        _etcd_dump_logs
        exit 1
}

# Every key and value (etcdctl's plain output, compared byte for byte),
# except the quorum test's own keys under /dkm-it-quorum/.
snapshot() {
        etcd_ctl get $'\x01' /dkm-it-quorum/ && etcd_ctl get /dkm-it-quorum0 --from-key
}

# Short-lived auth tokens, so that step 5 sees one expire.
# shellcheck disable=SC2034 # read by lib-etcd.sh
ETCD_EXTRA_ARGS="--auth-token-ttl 2"
etcd_cluster_start "$W/etcd" || fail "the etcd cluster did not start"
export DKM_ETCD_ENDPOINTS=$ETCD_ENDPOINTS
echo "etcd cluster: $ETCD_ENDPOINTS"

echo "== 1. full suite, three members"
"$T" || fail "test-store-etcd against three members"
"$BUILD/tests/test-nodes" || fail "test-nodes (heartbeats under a lease) against three members"

echo "== 2. member 1 (the first endpoint) stopped"
etcd_member_stop 1
DKM_ETCD_QUICK=1 "$T" || fail "quick suite with member 1 down"
snapshot >"$W/before" || fail "cannot read the cluster back"
[ -s "$W/before" ] || fail "the cluster holds no keys after the suite ran"

echo "== 3. member 2 stopped too: no quorum"
mkdir "$W/hs"
DKM_ETCD_QUORUM_LOSS=$W/hs "$T" &
TEST_PID=$!
for _ in $(seq 1 600); do
        [ -e "$W/hs/ready" ] && break
        kill -0 "$TEST_PID" 2>/dev/null || break
        sleep 0.1
done
[ -e "$W/hs/ready" ] || fail "the quorum test did not get ready"
etcd_member_stop 2
touch "$W/hs/go"
wait "$TEST_PID"
rc=$?
TEST_PID=
[ $rc = 0 ] || fail "reads and writes without quorum"

echo "== 4. members 1 and 2 back"
etcd_member_start 1 || fail "member 1 did not come back"
etcd_member_start 2 || fail "member 2 did not come back"
snapshot >"$W/after" || fail "cannot read the cluster back after the restart"
if ! cmp -s "$W/before" "$W/after"; then
        diff "$W/before" "$W/after" | head -20
        fail "the data changed across the outage"
fi
n=$(etcd_ctl get /dkm-it-quorum/k --prefix --keys-only | grep -c .)
[ "$n" = 20 ] || fail "the quorum test's 20 keys: found $n"
echo "$(grep -c '' "$W/before") lines of keys and values unchanged, the quorum test's 20 keys present"
DKM_ETCD_QUICK=1 "$T" || fail "quick suite after the restart"

echo "== 5. authentication on, a user limited to /dkm-auth/"
{
        etcd_ctl user add root:root-pw --interactive=false &&
        etcd_ctl user add dkm:dkm-pw --interactive=false &&
        etcd_ctl role add dkm &&
        etcd_ctl role grant-permission dkm readwrite /dkm-auth/ --prefix=true &&
        etcd_ctl user grant-role dkm dkm &&
        etcd_ctl auth enable
} >/dev/null || fail "cannot set up etcd users"
DKM_ETCD_AUTH=dkm:dkm-pw "$T" || fail "the store with etcd authentication"

echo "== 6. a new cluster over TLS, with client certificates"
etcd_cluster_stop
etcd_tls_make "$W/tls" || fail "cannot make test certificates"
ETCD_TLS_DIR=$W/tls
ETCD_EXTRA_ARGS=
etcd_cluster_start "$W/etcd-tls" || fail "the TLS cluster did not start"
DKM_ETCD_ENDPOINTS=$ETCD_ENDPOINTS DKM_ETCD_TLS=$W/tls "$T" || fail "the store over TLS"

echo "PASS"
exit 0
