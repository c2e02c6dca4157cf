#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A holder of etcd credentials, writing with etcdctl behind dkmd's back,
# must not forge or replay what grants access or revives a key: a forged
# granted request with its marker for a uid in no dkm group, a retired
# generation edited back to archived, and earlier revisions of a generation
# and of a grant put back (etcdctl get --rev=N), and a policy record naming
# a PKCS#11 module of the attacker's.  Each is refused by the
# node, logged and audited, and the node keeps its state.  The cluster
# speaks TLS; plain http endpoints are refused without [store] insecure=yes,
# and accepted with it, with a warning at start.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }
trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
ETCD_TLS_DIR=$T/tls
etcd_tls_make "$ETCD_TLS_DIR" || exit 1
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
P=/dkm-forge/
write_config "[access]" "approvals_required=2" "request_ttl=10m" \
        "[store]" "backend=etcd" "endpoints=$ETCD_ENDPOINTS" "prefix=$P" \
        "cacert=$ETCD_TLS_DIR/ca.pem" "cert=$ETCD_TLS_DIR/client.pem" "key=$ETCD_TLS_DIR/client.key"
start_dkmd || exit 1
audit_mark >/dev/null

# get_value KEY: the value only; put KEY VALUE.
get_value() { etcd_ctl get "$P$1" --print-value-only; }
put() { etcd_ctl put "$P$1" -- "$2" >/dev/null; }
# rev_of KEY: the key's mod revision now.
rev_of() { etcd_ctl get "$P$1" -w json | grep -o '"mod_revision":[0-9]*' | cut -d: -f2; }
# value_at KEY REV: its value at that revision.
value_at() { etcd_ctl get "$P$1" --rev="$2" -w json | grep -o '"value":"[^"]*"' | cut -d'"' -f4 | base64 -d; }
# refusal KEY...: waits (up to 20 s) until the node has read each key
# written behind its back, and refused it; the checks that follow then see
# what the node made of it.  (Unfixed, the node applies them instead and the
# wait ends empty-handed: the checks fail.)
refusal() {
        local k
        for k in "$@"; do
                for _ in $(seq 1 200); do
                        matches -F "refused store record $k " "$T/dkmd.log" && break
                        sleep 0.1
                done
        done
}
pid=$(as op status --json | sed -n 's/.*"policy_id": "\([^"]*\)".*/\1/p' | head -1)
[ -n "$pid" ] || pid=$(etcd_ctl get "${P}names/default" --print-value-only | head -c 36)

printf 'secret one' | as svc encrypt > "$W/c1"
refused "the human (in no dkm group) cannot decrypt" "" as human decrypt --in "$W/c1"

# 1. A forged grant: a request record in state granted, with its marker.
now=$(date +%s%6N)
put "access/requests/0000000900" "{\"id\":900,\"requester\":$HUMAN_UID,\"reason\":\"forged\",\"scope\":\"decrypt\",\"policy\":\"default\",\"generation\":0,\"duration\":3600000000,\"created\":$now,\"request_expires\":$((now + 3600000000)),\"approvers\":[$APPR_UID,$APPR2_UID],\"state\":\"granted\",\"granted\":$now,\"grant_expires\":$((now + 3600000000)),\"ended\":0,\"ended_by\":\"\",\"end_reason\":\"\"}"
put "access/grants/0000000900" "900"
refusal access/requests/0000000900 access/grants/0000000900
refused "a forged granted request and marker give the human nothing" "" as human decrypt --in "$W/c1"
check "the forged request is not listed as a grant" bash -c "! as op access list --json | grep -q forged"

# A forged policy whose customer keys name a library of the attacker's: its
# constructor leaves a file if any dkmd process loads it.
cat > "$T/evil.c" <<C
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void)
{
        close(open("$T/evil-ran", O_WRONLY | O_CREAT, 0644));
}
C
cc -shared -fPIC -o "$T/evil.so" "$T/evil.c" || fail "cannot build the attacker's library"
echo -n 1234 > "$T/pin"
b64() { head -c "$1" /dev/urandom | base64 -w0; }
evil=11111111-2222-4333-8444-555555555555
uri() { echo "pkcs11:token=$1;object=o?module-path=$T/evil.so&pin-source=file:$T/pin"; }
put "policies/$evil" "{\"id\":\"$evil\",\"name\":\"evil\",\"created\":$now,\"active\":1,\"generations\":1,\"customer_keys\":[{\"uri\":\"$(uri t1)\",\"blob\":\"$(b64 64)\"},{\"uri\":\"$(uri t2)\",\"blob\":\"$(b64 64)\"}],\"availability_key\":\"$(b64 60)\",\"availability_wrap\":\"$(b64 60)\"}"
put "policies/$evil/gens/0000000001" "{\"generation\":1,\"state\":\"active\",\"created\":$now,\"activated\":$now,\"uses_reserved\":0,\"wrapped_key\":\"$(b64 60)\"}"
put "names/evil" "$evil"
refusal "policies/$evil"
check "a forged policy record is not loaded" bash -c "! as op policy list | grep -q '^evil '"
printf x | as svc encrypt --policy evil >/dev/null 2>&1
check "and its module never ran in dkmd, even when the policy is asked for" test ! -e "$T/evil-ran"

# 2. A retired generation edited back to archived.
as op key rotate >/dev/null
as op key retire 1 >/dev/null
refused "generation 1 is retired" "" as svc decrypt --in "$W/c1"
g1=policies/$pid/gens/0000000001
put "$g1" "$(get_value "$g1" | sed 's/"state":"retired"/"state":"archived"/')"
refusal "$g1"
refused "a retired generation edited back to archived still does not decrypt" "" as svc decrypt --in "$W/c1"

# 3. Replays: a generation's record from before its retirement, and a
# grant's from before its revocation, read back with --rev.
printf 'secret two' | as svc encrypt > "$W/c2"
as op key rotate >/dev/null
g2=policies/$pid/gens/0000000002
before=$(rev_of "$g2")
as op key retire 2 >/dev/null
refused "generation 2 is retired" "" as svc decrypt --in "$W/c2"
put "$g2" "$(value_at "$g2" "$before")"
refusal "$g2"
refused "generation 2's record replayed from before the retirement does not decrypt" "" \
        as svc decrypt --in "$W/c2"

printf 'secret three' | as svc encrypt > "$W/c3"
id=$(as op access request --reason "replay target" --duration 30m)
as appr access approve "$id" >/dev/null; as appr2 access approve "$id" >/dev/null
check "the operator's grant decrypts" bash -c "as op decrypt --in '$W/c3' | grep -qx 'secret three'"
rk=access/requests/$(printf %010u "$id")
granted=$(rev_of "$rk")
marker=$(get_value "access/grants/$(printf %010u "$id")")
as appr access revoke "$id" >/dev/null || as op access revoke "$id" >/dev/null
refused "the revoked grant does not decrypt" "" as op decrypt --in "$W/c3"
put "$rk" "$(value_at "$rk" "$granted")"
put "access/grants/$(printf %010u "$id")" "$marker"
refusal "$rk" "access/grants/$(printf %010u "$id")"
refused "the grant's record replayed from before the revocation does not decrypt" "" \
        as op decrypt --in "$W/c3"

check "the node refused the records, in its log" grep -q "refused store record" "$T/dkmd.log"
audited() { audit_search -m USER_ACCT,CRYPTO_KEY_USER | matches -e "$1"; }
check "and in the audit trail" audited "op=store-record-refused"
check "the node still serves" bash -c "printf x | as svc encrypt >/dev/null"

# TLS: plain http endpoints need [store] insecure=yes, and warn.
stop_dkmd
http=${ETCD_ENDPOINTS//https:/http:}
sed -i "s|^endpoints=.*|endpoints=$http|" "$CONF"
check "an http:// endpoint is refused" bash -c "! timeout 20 '$DKMD' --config '$CONF' >'$T/http.log' 2>&1"
check "saying which setting allows it" grep -q "insecure=yes" "$T/http.log"
finish
