#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Customer keys on real PKCS#11 tokens: one SoftHSM2 token used locally (A),
# one served by `p11-kit server` (B), driven through tests/tools/ckey-tool.
# Round trips on each, then the failure classes the daemon relies on:
# server gone -> unavailable (fast), key deleted / disabled / wrong PIN ->
# revoked, and a hedged unwrap that a stalled server does not hold up.
# Exit 0 pass, 1 fail, 77 when SoftHSM2 or p11-kit are not installed.
set -uo pipefail

BUILD=${BUILD:?BUILD must name the build directory}
BUILD=$(cd "$BUILD" && pwd) || { echo "no build directory $BUILD"; exit 1; }
TOOL=$BUILD/tools/ckey-tool
# shellcheck source=tests/integration/lib-softhsm.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib-softhsm.sh"

softhsm_available || { echo "SKIPPED: SoftHSM2/p11-kit not available"; exit 77; }
[ -x "$TOOL" ] || { echo "missing $TOOL (make tests)"; exit 1; }

T=$(mktemp -d /tmp/dkm-ckey.XXXXXX)
FAILED=0
trap 'p11_server_stop; rm -rf "$T"' EXIT

pass() { echo "  ok: $*"; }
fail() { echo "  FAIL: $*"; FAILED=1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# expect DESCRIPTION WANT_EXIT MAX_MS -- tool-args...: runs the tool (MAX_MS 0:
# no time limit), leaving $OUT and $MS; the exit status is the failure class.
expect() {
        local d=$1 want=$2 max=$3 t0 rc
        shift 3
        [ "${1:-}" = -- ] && shift
        t0=$(now_ms)
        OUT=$("$TOOL" "$@" 2>&1)
        rc=$?
        MS=$(($(now_ms) - t0))
        if [ "$rc" -ne "$want" ]; then
                fail "$d: exit $rc, want $want: $OUT"
        elif [ "$max" -gt 0 ] && [ "$MS" -gt "$max" ]; then
                fail "$d: took ${MS} ms, limit ${max} ms: $OUT"
        else
                pass "$d (${MS} ms): $(tail -n1 <<<"$OUT" | cut -c1-150)"
        fi
}

# --- tokens and keys --------------------------------------------------------

softhsm_setup "$T/hsm" || exit 1
softhsm_token tokA 1111 || exit 1
softhsm_token tokB 2222 || exit 1
softhsm_keygen tokA 1111 keyA || exit 1
softhsm_keygen tokA 1111 keyA-gone || exit 1
softhsm_keygen tokA 1111 keyA-off || exit 1
softhsm_keygen tokB 2222 keyB || exit 1
p11_server_start tokB || exit 1
p11_remote_config tokB "$T/modules" || exit 1

# ckey-tool is a fresh process each time: the client module reads
# P11_KIT_SERVER_ADDRESS (exported by p11_server_start) when it loads.
export SOFTHSM2_CONF
SOFTHSM2_CONF=$(softhsm_conf tokA)
export DKM_TEST_P11_MODULES=$T/modules
URI_A=$(softhsm_uri tokA keyA 1111)
URI_B=$(p11_remote_uri tokB keyB 2222)
URI_BN="pkcs11:token=tokB;object=keyB?module-name=tokB-remote&pin-source=file:$T/pin-b"
echo 2222 > "$T/pin-b"
chmod 600 "$T/pin-b"
# What dkmd.conf's [policy] pkcs11_modules and key_dirs would allow ($T/none.so
# is allowed but absent).
export DKM_TEST_CKEY_MODULES="$SOFTHSM_LIB $P11_CLIENT_MODULE tokB-remote $T/none.so"
export DKM_TEST_CKEY_KEY_DIRS=$T
KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

echo "== round trips"
expect "redacted URI has no PIN" 0 0 -- redact "$URI_A"
[[ "$OUT" == *1111* || "$OUT" == *pin-value* ]] && fail "PIN in redacted URI: $OUT"
expect "wrap with local token A" 0 0 -- wrap "$URI_A" policy-1 "$KEY" "$T/blob-a"
expect "unwrap with local token A" 0 0 -- unwrap "$URI_A" policy-1 "$T/blob-a"
[ "$OUT" = "ok $KEY" ] || fail "A gave back another key: $OUT"
expect "wrap with remote token B (p11-kit-client.so)" 0 0 -- wrap "$URI_B" policy-1 "$KEY" "$T/blob-b"
expect "unwrap with remote token B (p11-kit-client.so)" 0 0 -- unwrap "$URI_B" policy-1 "$T/blob-b"
[ "$OUT" = "ok $KEY" ] || fail "B gave back another key: $OUT"
expect "unwrap with B via module-name= and remote: config, PIN from file" 0 0 -- \
        unwrap "$URI_BN" policy-1 "$T/blob-b"
[ "$OUT" = "ok $KEY" ] || fail "B (config) gave back another key: $OUT"
expect "A's blob under another label: bad input" 4 0 -- unwrap "$URI_A" policy-2 "$T/blob-a"
expect "B's blob given to A: bad input" 4 0 -- unwrap "$URI_A" policy-1 "$T/blob-b"
if cmp -s "$T/blob-a" "$T/blob-b"; then fail "A and B blobs identical"; fi

echo "== not allowed by the configuration: bad input, no module loaded"
DKM_TEST_CKEY_MODULES="$P11_CLIENT_MODULE" expect "a module not in the list" 4 0 -- \
        unwrap "$URI_A" policy-1 "$T/blob-a"
[[ "$OUT" == *"is not in [policy] pkcs11_modules"* ]] || fail "message does not name the setting: $OUT"
DKM_TEST_CKEY_KEY_DIRS=/nonexistent expect "a PIN file outside key_dirs" 4 0 -- \
        unwrap "$URI_BN" policy-1 "$T/blob-b"
[[ "$OUT" == *"is not in [policy] key_dirs"* ]] || fail "message does not name the setting: $OUT"

echo "== revoked"
expect "wrong PIN on A: revoked" 3 0 -- unwrap "$(softhsm_uri tokA keyA 9999)" policy-1 "$T/blob-a"
expect "wrong PIN on remote B: revoked" 3 0 -- unwrap "$(p11_remote_uri tokB keyB 9999)" policy-1 "$T/blob-b"
expect "wrap with the key to be deleted" 0 0 -- wrap "$(softhsm_uri tokA keyA-gone 1111)" policy-1 "$KEY" "$T/blob-gone"
softhsm_delete_key tokA 1111 keyA-gone || fail "could not delete keyA-gone"
expect "key object deleted: revoked" 3 0 -- unwrap "$(softhsm_uri tokA keyA-gone 1111)" policy-1 "$T/blob-gone"
[[ "$OUT" == *"deleted?"* ]] || fail "message does not say deleted: $OUT"
expect "wrap with the key to be disabled" 0 0 -- wrap "$(softhsm_uri tokA keyA-off 1111)" policy-1 "$KEY" "$T/blob-off"
expect "customer clears CKA_ENCRYPT" 0 0 -- disable "$SOFTHSM_LIB" tokA 1111 keyA-off
expect "key disabled: revoked" 3 0 -- unwrap "$(softhsm_uri tokA keyA-off 1111)" policy-1 "$T/blob-off"
[[ "$OUT" == *"CKR 0x68"* ]] || fail "expected CKR_KEY_FUNCTION_NOT_PERMITTED: $OUT"

echo "== unavailable"
expect "token absent: unavailable" 2 2000 -- unwrap "$(softhsm_uri tokZ keyA 1111)" policy-1 "$T/blob-a"
expect "module missing: unavailable" 2 2000 -- \
        unwrap "pkcs11:token=tokA;object=keyA?module-path=$T/none.so&pin-value=1111" policy-1 "$T/blob-a"
p11_server_stop
expect "remote server stopped (client module): unavailable within 2 s" 2 2000 -- \
        unwrap "$URI_B" policy-1 "$T/blob-b"
expect "remote server stopped (remote: config): unavailable within 2 s" 2 2000 -- \
        unwrap "$URI_BN" policy-1 "$T/blob-b"
expect "hedge: B stopped, A revoked (deleted key): revoked" 3 0 -- \
        hedge "$URI_B" "$T/blob-b" "$(softhsm_uri tokA keyA-gone 1111)" "$T/blob-gone" policy-1 100 3000
expect "hedge: B stopped, A absent: unavailable" 2 0 -- \
        hedge "$URI_B" "$T/blob-b" "$(softhsm_uri tokZ keyA 1111)" "$T/blob-a" policy-1 100 3000

echo "== one process: server dies, comes back, stalls"
p11_server_start tokB || exit 1
coproc LOOP { "$TOOL" loop "$URI_B" policy-1 "$T/blob-b" 1500; }
# bash unsets LOOP_PID once the coprocess has ended, which it may do as
# soon as its input closes: keep the pid for the wait below.
LOOP_IN=${LOOP[1]} LOOP_OUT=${LOOP[0]} loop_pid=$LOOP_PID
# answer DESCRIPTION GLOB: one more unwrap in that process; the line must match.
answer() {
        local t0
        t0=$(now_ms)
        echo go >&"$LOOP_IN"
        read -r -t 10 LINE <&"$LOOP_OUT" || LINE="(no answer)"
        MS=$(($(now_ms) - t0))
        # shellcheck disable=SC2053
        if [[ "$LINE" == $2 ]]; then pass "$1 (${MS} ms): ${LINE:0:100}"; else fail "$1: $LINE"; fi
}
answer "connected" "ok $KEY"
p11_server_stop
answer "server gone: unavailable" "unavailable *"
p11_server_start tokB || exit 1
answer "reconnected after restart" "ok $KEY"
p11_server_pause
answer "stalled: times out" "unavailable -110 *"
[ "$MS" -lt 4000 ] || fail "stalled server held the call for $MS ms"
p11_server_resume
answer "answers again after resume" "ok $KEY"
exec {LOOP_IN}>&-
wait "$loop_pid" 2>/dev/null

echo "== hedged unwrap"
expect "hedge: both healthy, B (first) wins, A not asked" 0 0 -- \
        hedge "$URI_B" "$T/blob-b" "$URI_A" "$T/blob-a" policy-1 2000 5000
[[ "$OUT" == "winner=0 "*"b=0/0ms"* ]] || fail "unexpected: $OUT"
# A's own latency, for the bound below.
expect "A alone" 0 0 -- unwrap "$URI_A" policy-1 "$T/blob-a"
a_ms=$MS
p11_server_pause
HEDGE=300
expect "hedge: B stalled, A answers after the hedge" 0 $((HEDGE + a_ms + 1000)) -- \
        hedge "$URI_B" "$T/blob-b" "$URI_A" "$T/blob-a" policy-1 $HEDGE 5000
[[ "$OUT" == winner=1* ]] || fail "A did not win: $OUT"
[[ "$OUT" == *"ok $KEY"* ]] || fail "wrong key: $OUT"
el=$(sed -n 's/.*elapsed=\([0-9]*\)ms.*/\1/p' <<<"$OUT")
if [ -z "$el" ] || [ "$el" -lt $HEDGE ]; then fail "answered before the hedge delay: $OUT"; fi
expect "hedge: B stalled, A wrong PIN: revoked after the timeout" 3 4000 -- \
        hedge "$URI_B" "$T/blob-b" "$(softhsm_uri tokA keyA 9999)" "$T/blob-a" policy-1 100 1500
p11_server_resume
expect "B answers again" 0 0 -- unwrap "$URI_B" policy-1 "$T/blob-b"

[ "$FAILED" -eq 0 ] || exit 1
exit 0
