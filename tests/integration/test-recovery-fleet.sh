#!/bin/bash
# Recovery shares on a fleet (dkm(7), "Recovery shares"): the shares made
# at the fleet's --init rebuild the master key on a new node, checked against
# the fleet's recovery record in a real etcd cluster; the new node then
# decrypts what the first node encrypted.  The key never travels between the
# nodes.  A second share set for the fleet is refused; a reshare approved
# across the nodes replaces the fleet's set.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }

trap 'stop_nodes; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
PREFIX=/dkm-recovery/
SHARES=$T/shares

for n in a b; do
        node_config "$n" "[store]" "backend=etcd" "insecure=yes" "endpoints=$ETCD_ENDPOINTS" "prefix=$PREFIX" \
                "[recovery]" "shares=5" "threshold=3"
done
# Node b is new: its master key is a file of its own, not there yet.
sed -i "s|^master_key=.*|master_key=$T/b.key|" "$(node_dir b)/dkmd.conf"

check "the fleet's --init --recovery-dir writes 5 shares" bash -c \
        "'$DKMD' --config '$(node_dir a)/dkmd.conf' --init --recovery-dir '$SHARES' >>'$T/dkmd.log' 2>&1 &&
         test \"\$(ls '$SHARES' | wc -l)\" = 5"
node_start a || exit 1
printf 'from a' | on a svc encrypt > "$W/ct1"
on a op key rotate >/dev/null
printf 'from a, generation 2' | on a svc encrypt > "$W/ct2"

out=$("$DKMD" --config "$(node_dir b)/dkmd.conf" --recover "$SHARES/recovery-share-1" \
        "$SHARES/recovery-share-2" 2>&1)
check "two shares are refused on the new node ($(grep refused <<<"$out"))" \
        test -n "$(grep 'needs 3 of its 5 shares' <<<"$out")" -a ! -e "$T/b.key"
check "3 shares rebuild the fleet's master key on the new node" bash -c \
        "'$DKMD' --config '$(node_dir b)/dkmd.conf' --recover '$SHARES/recovery-share-2' \
                '$SHARES/recovery-share-4' '$SHARES/recovery-share-5' >>'$T/dkmd.log' 2>&1"
check "it is the fleet's key" cmp -s "$T/b.key" "$T/fleet-master.key"
node_start b || exit 1
check "the new node decrypts what node a encrypted" bash -c \
        "on b svc decrypt --in '$W/ct1' | grep -qx 'from a' &&
         on b svc decrypt --in '$W/ct2' | grep -qx 'from a, generation 2'"
out=$("$DKMD" --config "$(node_dir b)/dkmd.conf" --init --recovery-dir "$T/shares-b" 2>&1)
check "a second share set for the fleet is refused" \
        test -n "$(grep 'recovery shares were made already' <<<"$out")" -a ! -e "$T/shares-b/recovery-share-1"

# A reshare on the fleet: requested on a, approved on b and then on a; the
# fleet's record in etcd is replaced, so node b refuses the old shares and
# rebuilds the key from the new ones.
CUST=$T/custodians
mkdir -p "$CUST" "$T/custodian-keys"
for c in c1 c2 c3 c4 c5; do
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$c" \
                -keyout "$T/custodian-keys/$c.key" -out "$CUST/$c.pem" 2>/dev/null
done
node_stop a
printf '%s\n' "custodians=$CUST" "out_dir=$T/reshare-out" >> "$(node_dir a)/dkmd.conf"
node_start a || exit 1
id=$(on a op recovery reshare --reason "fleet-reshare-$$" 2>>"$T/dkmd.log")
check "node a files a reshare request ($id)" test -n "$id"
check "node b takes the first approval" bash -c "on b appr access approve $id | grep -q 'pending (1 of 2'"
check "node a carries it out on the second" bash -c "on a appr2 access approve $id | grep -qx 'request $id: done'"
node_stop b
rm -f "$T/b.key"
out=$("$DKMD" --config "$(node_dir b)/dkmd.conf" --recover "$SHARES/recovery-share-2" \
        "$SHARES/recovery-share-4" "$SHARES/recovery-share-5" 2>&1)
check "the old set is refused on node b ($(grep refused <<<"$out"))" \
        test -n "$(grep 'an older set, no longer valid' <<<"$out")" -a ! -e "$T/b.key"
set_dir=$(ls -d "$T"/reshare-out/*)
for i in 1 3 5; do
        openssl cms -decrypt -in "$set_dir/recovery-share-$i.c$i.cms" -inform PEM -recip "$CUST/c$i.pem" \
                -inkey "$T/custodian-keys/c$i.key" -out "$W/new-$i"
done
check "3 shares of the new set rebuild the fleet's key on node b" bash -c \
        "'$DKMD' --config '$(node_dir b)/dkmd.conf' --recover '$W/new-1' '$W/new-3' '$W/new-5' \
                >>'$T/dkmd.log' 2>&1 && cmp -s '$T/b.key' '$T/fleet-master.key'"
finish
