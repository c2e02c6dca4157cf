#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# SIGHUP as an administrator uses it: a setting that a running dkmd cannot
# take up ([groups] reviewers, [store] prefix and insecure) is named in the
# journal as waiting for a restart, the store keeps serving from the prefix
# it started on, and [recovery] shares and threshold are taken up for the
# next share set and said so.  Before this, each of these changed nothing
# and dkmd said "configuration reloaded" alone.
. "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib-etcd.sh
. "$(dirname "$0")/lib-etcd.sh"

etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
etcd --version >/dev/null 2>&1 || { echo "SKIPPED: etcd does not run here"; exit 77; }
trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }

REVIEWERS_A=3904 REVIEWERS_B=3905
# node PREFIX INSECURE REVIEWERS [extra lines]
node() {
        local prefix=$1 insecure=$2 reviewers=$3
        shift 3
        write_config "reviewers=$reviewers" "[store]" "backend=etcd" "endpoints=$ETCD_ENDPOINTS" \
                "prefix=$prefix" "insecure=$insecure" "$@"
}
# hup: SIGHUP, then wait for this reload's own outcome line.
hup() {
        local before
        before=$(grep -cE 'configuration reloaded|keeping the previous configuration' "$T/dkmd.log")
        kill -HUP "$DKMD_PID"
        for _ in $(seq 1 50); do
                [ "$(grep -cE 'configuration reloaded|keeping the previous configuration' "$T/dkmd.log")" -gt "$before" ] && return 0
                sleep 0.1
        done
        return 1
}
# said MARK TEXT: the log has TEXT (fixed) after line MARK.
said() { tail -n +"$1" "$T/dkmd.log" | matches -F "$2"; }

node /dkm-a/ yes "$REVIEWERS_A"
start_dkmd || exit 1
printf 'before' | as svc encrypt > "$W/a.ct"

mark=$(($(wc -l < "$T/dkmd.log") + 1))
node /dkm-b/ yes "$REVIEWERS_B" "[recovery]" "shares=4" "threshold=2"
check "dkmd reloads on SIGHUP" hup
check "  [store] prefix: waits for a restart, and says so" \
        said $mark "reload: [store] prefix changed; it takes effect when dkmd restarts"
check "  [groups] reviewers: waits for a restart, and says so" \
        said $mark "reload: [groups] reviewers changed; it takes effect when dkmd restarts"
check "  [recovery]: the next share set uses shares=4 threshold=2, and says so" \
        said $mark "reload: [recovery] shares=4 threshold=2: the next share set uses them"
check "  the store still serves from the prefix it started on" \
        bash -c "as svc decrypt --in '$W/a.ct' | grep -qx before"
printf 'after' | as svc encrypt > "$W/b.ct"
check "  and writes there, not under the new prefix" \
        test "$(etcd_ctl get --prefix /dkm-b/ --keys-only | sed '/^$/d' | wc -l)" -eq 0

# insecure: the connections are open; dropping it waits for a restart
# (where plain http endpoints are then refused at start).
mark=$(($(wc -l < "$T/dkmd.log") + 1))
node /dkm-a/ no "$REVIEWERS_A"
check "a reload that drops insecure=yes" hup
check "  waits for a restart, and says so" \
        said $mark "reload: [store] insecure changed; it takes effect when dkmd restarts"
check "  the running dkmd still serves" bash -c "as svc decrypt --in '$W/b.ct' | grep -qx after"
finish
