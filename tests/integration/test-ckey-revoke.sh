#!/bin/bash
# Attack: one operator undoes a customer's revocation.  The customer revokes
# one of its two keys; once the cached keys expire the data is unreadable.
# The operator then rekeys the policy to two keys of its own choosing: that
# would need the policy key, which only the availability key can still give,
# and would make the data readable again with nobody's approval.
. "$(dirname "$0")/lib.sh"

K=$T/keys
mkdir -p "$K"
for x in a b c d; do head -c 32 /dev/urandom > "$K/$x"; chmod 600 "$K/$x"; done
ka="file:$K/a" kb="file:$K/b" kc="file:$K/c" kd="file:$K/d"

write_config "[policy]" "cache_ttl=2s" "hedge_delay=50ms" "key_dirs=$K"
start_dkmd || exit 1
audit_mark >/dev/null

# wait_state POLICY STATE TRIES: up to TRIES looks, 0.2 s apart (maintenance
# looks at the customer keys every cache_ttl / 10 here).
wait_state() {
        for _ in $(seq 1 "$3"); do
                as op policy show "$1" | matches "\"state\": \"$2\"" && return 0
                sleep 0.2
        done
        return 1
}

check "a customer-managed policy" bash -c "as op policy create tenant --customer-key '$ka' --customer-key '$kb' >/dev/null"
printf 'tenant data' | as svc encrypt --policy tenant > "$W/t1"
check "it decrypts" bash -c "as svc decrypt --in '$W/t1' | grep -qx 'tenant data'"

# The customer revokes key a (deletes it); keep a copy to restore later.
mv "$K/a" "$T/a.customer-backup"
wait_state tenant revoked 25
check "revoked" bash -c "as op policy show tenant | grep -q '\"state\": \"revoked\"'"
# The cached keys live 2 s: wait until a decrypt is refused.
for _ in $(seq 1 40); do
        as svc decrypt --in "$W/t1" >/dev/null 2>&1 || break
        sleep 0.2
done
refused "once the cache expired, the data is unreadable" "revoked" as svc decrypt --in "$W/t1"

refused "one operator cannot rekey the revoked policy to keys of its own" "revoked by its customer" \
        as op policy rekey tenant --customer-key "$kc" --customer-key "$kd"
refused "nor with a new policy key" "revoked by its customer" \
        as op policy rekey tenant --customer-key "$kc" --customer-key "$kd" --new-policy-key
refused "the data stays unreadable" "revoked" as svc decrypt --in "$W/t1"
check "the policy is still revoked" bash -c "as op policy show tenant | grep -q '\"state\": \"revoked\"'"
check "and the availability key was not used" bash -c \
        "as op policy show tenant | grep -q '\"availability_key_used\": false'"

# The customer restores its key: the policy is healthy again, and then a
# rekey is the customer's and the operator's ordinary business.
mv "$T/a.customer-backup" "$K/a"
wait_state tenant healthy 25
check "the customer restored its key: healthy" bash -c "as op policy show tenant | grep -q '\"state\": \"healthy\"'"
check "now a rekey works" bash -c "as op policy rekey tenant --customer-key '$kc' --customer-key '$kd' >/dev/null"
check "and the data decrypts" bash -c "as svc decrypt --in '$W/t1' | grep -qx 'tenant data'"

# Purged is for ever: no rekey either.
pid=$(as op policy purge tenant --reason "customer left")
as appr access approve "$pid" >/dev/null
as appr2 access approve "$pid" >/dev/null
refused "a purged policy cannot be rekeyed" "purged" \
        as op policy rekey tenant --customer-key "$ka" --customer-key "$kb"
refused "purged data stays unreadable" "purged" as svc decrypt --in "$W/t1"

recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the refused rekey, with the reason" \
        grep -q "op=policy-rekey .*policy=tenant reason=revoked.*res=failed" <<<"$recs"
check "audit: the refused rekey of the purged policy" \
        grep -q "op=policy-rekey .*policy=tenant reason=purged.*res=failed" <<<"$recs"
if grep -q "op=availability-key-use .*policy=tenant" <<<"$recs"; then
        fail "audit: the availability key was used for the revoked policy"
else
        pass "audit: no use of the availability key while revoked"
fi
finish
