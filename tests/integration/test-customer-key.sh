#!/bin/bash
# Customer Key with real tokens: two SoftHSM2 tokens, one of them served
# through `p11-kit server` so that it can be made slow or unreachable.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-softhsm.sh"

softhsm_available || { echo "SKIPPED: SoftHSM2/p11-kit not installed"; exit 77; }
softhsm_setup "$T/hsm"
PIN=1234
mkdir -p "$T/pins"; echo -n "$PIN" > "$T/pins/pin"; chmod 600 "$T/pins/pin"

# Local tokens A, C, D share one SoftHSM2 configuration (dkmd loads one);
# token B has its own and is served remotely.
softhsm_token local-a "$PIN" || exit 1
for t in local-c local-d; do
        ln -s "$SOFTHSM_DIR/local-a" "$SOFTHSM_DIR/$t"
        SOFTHSM2_CONF=$(softhsm_conf local-a) softhsm2-util --init-token --free --label "$t" \
                --so-pin "so-$PIN" --pin "$PIN" >/dev/null 2>&1 || exit 1
done
softhsm_token remote-b "$PIN" || exit 1
for t in local-a remote-b local-c local-d; do softhsm_keygen "$t" "$PIN" root || exit 1; done
p11_server_start remote-b || exit 1
trap 'p11_server_stop; cleanup' EXIT

uri_local() { echo "pkcs11:token=$1;object=root?module-path=$SOFTHSM_LIB&pin-source=file:$T/pins/pin"; }
uri_remote() { echo "pkcs11:token=$1;object=root?module-path=$P11_CLIENT_MODULE&pin-source=file:$T/pins/pin"; }
A=$(uri_local local-a) B=$(uri_remote remote-b) C=$(uri_local local-c) D=$(uri_local local-d)

write_config "[policy]" "cache_ttl=2s" "hedge_delay=100ms" "pkcs11_modules=$SOFTHSM_LIB $P11_CLIENT_MODULE" \
        "key_dirs=$T/pins"
export SOFTHSM2_CONF=$(softhsm_conf local-a)
start_dkmd || exit 1
audit_mark >/dev/null

# The remote key is asked first, so that pausing its server shows the hedge.
check "a policy on two tokens" bash -c "as op policy create acme --customer-key '$B' --customer-key '$A' >/dev/null"
refused "a PIN inside a URI is refused" "pin-source" as op policy create x \
        --customer-key "pkcs11:token=local-a;object=root?module-path=$SOFTHSM_LIB&pin-value=$PIN" --customer-key "$B"
refused "an unknown token" "customer key 2" as op policy create x --customer-key "$A" \
        --customer-key "pkcs11:token=nope;object=root?module-path=$SOFTHSM_LIB&pin-source=file:$T/pins/pin"
refused "the same key twice" "must differ" as op policy create x --customer-key "$A" --customer-key "$A"
printf 'acme data' | as svc encrypt --policy acme > "$W/a1"
check "healthy round trip through the tokens" bash -c "as svc decrypt --in '$W/a1' | grep -qx 'acme data'"
check "the remote token answered" bash -c \
        "as op policy show acme | tr -d '\n ' | grep -q '\"customer_keys\":\[{[^}]*\"answered\":true'"

# Hedge: the remote token hangs; the local one is asked after hedge_delay.
p11_server_pause
sleep 3
t0=$(date +%s%N)
as svc decrypt --in "$W/a1" > "$W/a1.out"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "with the first token hanging, the data still decrypts" grep -qx 'acme data' "$W/a1.out"
check "answered in ${ms} ms: about the hedge delay plus the second token, not a timeout" test "$ms" -lt 1500
check "the second token answered" bash -c \
        "as op policy show acme | tr -d '\n ' | grep -q '\"answered\":false.*\"answered\":true'"
p11_server_resume

# Both unreachable: the server gone and the local token's store moved away.
p11_server_stop
mv "$SOFTHSM_DIR/local-a/tokens" "$SOFTHSM_DIR/local-a/tokens.away"
sleep 3
check "both unreachable: the availability key serves" bash -c "as svc decrypt --in '$W/a1' | grep -qx 'acme data'"
check "and the policy is degraded" bash -c "as op policy show acme | grep -q 'degraded (customer keys unreachable)'"
mv "$SOFTHSM_DIR/local-a/tokens.away" "$SOFTHSM_DIR/local-a/tokens"
p11_server_start remote-b || exit 1

# Rekey to two new tokens: old data readable, the old tokens no longer needed.
check "rekey to tokens C and D" bash -c "as op policy rekey acme --customer-key '$C' --customer-key '$D' >/dev/null"
refused "a rekey to the same keys" "already uses these customer keys" as op policy rekey acme \
        --customer-key "$D" --customer-key "$C"
p11_server_stop
softhsm_delete_key local-a "$PIN" root
sleep 3
check "after the rekey, old data decrypts without A and B" bash -c "as svc decrypt --in '$W/a1' | grep -qx 'acme data'"
check "and the policy is healthy" bash -c "as op policy show acme | grep -q '\"state\": \"healthy\"'"

# Revocation: one key deleted from its token.  The availability key is not
# used, the alert says how long is left, then the data is unreadable.
softhsm_delete_key local-d "$PIN" root
# Maintenance looks at the tokens every 200 ms here (cache_ttl / 10): wait
# for it rather than a fixed second that a loaded machine may overrun, but
# not for as long as the cache lifetime (2 s): 8 looks, 1.6 s and more.
for _ in $(seq 1 8); do
        as op policy show acme | matches '"state": "revoked"' && break
        sleep 0.2
done
check "one key deleted: revoked" bash -c "as op policy show acme | grep -q '\"state\": \"revoked\"'"
sleep 3
refused "after the cache lifetime the data is unreadable" "revoked" as svc decrypt --in "$W/a1"
check "the refresh failure raised an alert with the time left" bash -c \
        "grep -q \"cache refresh failed for policy 'acme'.*s left\" '$T/dkmd.log'"

# Purge: unreadable for ever, also after a restart.
refused "no operator rekeys a revoked policy" "revoked by its customer" \
        as op policy rekey acme --customer-key "$C" --customer-key "$(uri_local local-a)"
pid=$(as op policy purge acme --reason "contract ended")
as appr access approve "$pid" >/dev/null; as appr2 access approve "$pid" >/dev/null
refused "purged" "purged" as svc decrypt --in "$W/a1"
stop_dkmd
start_dkmd || exit 1
refused "purged, after a restart too" "purged" as svc decrypt --in "$W/a1"

recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the availability key's use" grep -q "op=availability-key-use .*policy=acme" <<<"$recs"
check "audit: revoked" grep -q "op=policy-state .*policy=acme state=revoked" <<<"$recs"
check "audit: purge" grep -q "op=policy-purge .*policy=acme" <<<"$recs"
finish
