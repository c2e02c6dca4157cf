#!/bin/bash
# Data-encryption policies with file customer keys: assignment, outage vs
# revocation, refresh-ahead alerts, rekey, purge through approval, limits.
# (The PKCS#11 tokens have their own test: test-ckey-pkcs11.sh.)
. "$(dirname "$0")/lib.sh"

write_config "[policy]" "cache_ttl=3s" "max_policies=4" "hedge_delay=50ms" "key_dirs=$T/keys"
start_dkmd || exit 1
audit_mark >/dev/null

K=$T/keys
mkdir -p "$K/a/store" "$K/b/store" "$K/c/store" "$K/d/store"
for x in a b c d; do head -c 32 /dev/urandom > "$K/$x/store/key"; chmod 600 "$K/$x/store/key"; done
ka="file:$K/a/store/key" kb="file:$K/b/store/key" kc="file:$K/c/store/key" kd="file:$K/d/store/key"

# Creation, listing, assignment.
check "a service-managed policy" bash -c "as op policy create payroll >/dev/null"
check "a customer-managed policy" bash -c "as op policy create tenant --customer-key '$ka' --customer-key '$kb' >/dev/null"
check "policy list names both" bash -c "as op policy list | grep -q '^payroll .*service' && as op policy list | grep -q '^tenant .*customer .*healthy'"
refused "one customer key is not enough" "exactly two" as op policy create x --customer-key "$ka"
refused "the same key twice" "must differ" as op policy create x --customer-key "$ka" --customer-key "$ka"
refused "a malformed URI" "customer key 1" as op policy create x --customer-key "nonsense:abc" --customer-key "$kb"
refused "a PIN inside the URI" "pin-source" as op policy create x \
        --customer-key "pkcs11:token=t;object=o?pin-value=1234" --customer-key "$kb"
refused "a bad policy name" "bad policy name" as op policy create "bad name"
refused "an existing name" "already exists" as op policy create payroll
refused "a service account cannot create policies" "not in the operators group" as svc policy create y
check "assign the tenant policy to the service account" bash -c "as op policy assign tenant --uid $SVC_UID >/dev/null"
refused "assign needs a uid or gid" "give one of --uid" as op policy assign tenant
refused "assign to an unknown policy" "no such policy" as op policy assign nope --uid 1
printf 'tenant data' | as svc encrypt > "$W/t1"
check "the assigned policy is used by default" bash -c "as svc inspect --in '$W/t1' --json | grep -q '\"policy\": \"tenant\"'"
printf 'payroll data' | as svc encrypt --policy payroll > "$W/p1"
check "--policy picks another" bash -c "as svc inspect --in '$W/p1' --json | grep -q '\"policy\": \"payroll\"'"
check "policy show says which customer key answered" bash -c \
        "as op policy show tenant | grep -q '\"answered\": true'"

# Too many policies: default, payroll, tenant, and one more make four.
check "a fourth policy" bash -c "as op policy create extra >/dev/null"
refused "more than max_policies" "at most 4 policies" as op policy create fifth

# Outage: both customer key stores unreachable (their directories gone).
mv "$K/a/store" "$K/a/away"; mv "$K/b/store" "$K/b/away"
sleep 4
check "unreachable customer keys: data still readable" bash -c "as svc decrypt --in '$W/t1' | grep -qx 'tenant data'"
check "served by the availability key, shown as degraded" bash -c \
        "as op policy show tenant | grep -q 'degraded (customer keys unreachable)' && as op policy show tenant | grep -q '\"availability_key_used\": true'"
check "status shows it too" bash -c "as op status --json | grep -q 'degraded'"
mv "$K/a/away" "$K/a/store"; mv "$K/b/away" "$K/b/store"
# Maintenance looks at the customer keys every 300 ms here (cache_ttl / 10):
# wait for it rather than a fixed time a loaded machine may overrun.
# wait_state STATE TRIES: up to TRIES looks, 0.2 s apart.
wait_state() {
        for _ in $(seq 1 "$2"); do
                as op policy show tenant | matches "\"state\": \"$1\"" && return 0
                sleep 0.2
        done
        return 1
}
wait_state healthy 50
check "back to healthy when the keys return" bash -c "as op policy show tenant | grep -q '\"state\": \"healthy\"'"

# Revocation: one customer key deleted.  The availability key is not used;
# once the cached keys expire the data is unreadable.
mv "$K/a/store/key" "$T/a.customer-backup"
# At most 10 looks (2 s and more): well before the cached keys expire (3 s).
wait_state revoked 10
check "revoked, shown at once" bash -c "as op policy show tenant | grep -q '\"state\": \"revoked\"'"
sleep 4
refused "after the cache lifetime the data is unreadable" "revoked" as svc decrypt --in "$W/t1"
check "an alert was raised with the time left" bash -c "grep -q 'cache refresh failed for policy .tenant.*s left' '$T/dkmd.log'"
refused "new encryptions are refused too" "revoked" bash -c "printf x | as svc encrypt --policy tenant"
check "other policies are not affected" bash -c "as svc decrypt --in '$W/p1' | grep -qx 'payroll data'"

# No operator undoes the revocation (test-ckey-revoke.sh shows the attack);
# once the customer restores its key, a rekey to two new keys keeps old data
# readable without the old keys.
refused "a revoked policy cannot be rekeyed" "revoked by its customer" as op policy rekey tenant \
        --customer-key "$kc" --customer-key "$kd"
mv "$T/a.customer-backup" "$K/a/store/key"
wait_state healthy 50
check "rekey to keys c and d" bash -c "as op policy rekey tenant --customer-key '$kc' --customer-key '$kd' >/dev/null"
refused "a rekey to the same keys" "already uses these customer keys" as op policy rekey tenant \
        --customer-key "$kc" --customer-key "$kd"
rm -f "$K/a/store/key" "$K/b/store/key"
check "after rekey, old data decrypts without the old keys" bash -c "as svc decrypt --in '$W/t1' | grep -qx 'tenant data'"
check "and the policy is healthy" bash -c "as op policy show tenant | grep -q '\"state\": \"healthy\"'"
check "rekey with a new policy key" bash -c "as op policy rekey tenant --customer-key '$kd' --customer-key '$kc' --new-policy-key >/dev/null"
check "still decrypts after the new policy key" bash -c "as svc decrypt --in '$W/t1' | grep -qx 'tenant data'"

# Restart: policies, assignments and states come back.
stop_dkmd
start_dkmd || exit 1
check "after restart, the tenant data decrypts" bash -c "as svc decrypt --in '$W/t1' | grep -qx 'tenant data'"
printf 'more' | as svc encrypt > "$W/t2"
check "after restart, the assignment holds" bash -c "as svc inspect --in '$W/t2' --json | grep -q '\"policy\": \"tenant\"'"

# Purge needs approval and is for ever.
pid=$(as op policy purge tenant --reason "customer left")
check "purge files a request ($pid)" test -n "$pid"
check "before approval the data is readable" bash -c "as svc decrypt --in '$W/t1' >/dev/null"
as appr access approve "$pid" >/dev/null
check "the second approval purges" bash -c "as appr2 access approve $pid | grep -q done"
refused "purged data is unreadable" "purged" as svc decrypt --in "$W/t1"
check "the store keeps nothing that unwraps" bash -c \
        "! sqlite3 '$T/state/dkm.db' \"select value from kv where key like 'policies/%'\" | grep -q 'tenant.*customer_keys'"
stop_dkmd
start_dkmd || exit 1
refused "still unreadable after a restart" "purged" as svc decrypt --in "$W/t2"
check "policy list says purged" bash -c "as op policy list | grep -q '^tenant .*purged'"
refused "purging twice" "already purged" as op policy purge tenant --reason again

# The audit trail.
recs=$(audit_search -m CRYPTO_KEY_USER,USER_ACCT,USYS_CONFIG)
check "audit: policy creation" grep -q "op=policy-create .*policy=tenant" <<<"$recs"
check "audit: availability key use" grep -q "op=availability-key-use .*policy=tenant" <<<"$recs"
check "audit: revoked state" grep -q "op=policy-state .*policy=tenant state=revoked" <<<"$recs"
check "audit: rekey" grep -q "op=policy-rekey .*policy=tenant" <<<"$recs"
check "audit: purge" grep -q "op=policy-purge .*policy=tenant" <<<"$recs"
finish
