#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# make soak: dkmd killed with SIGKILL CRASH_KILLS_N times (default 1,000) at
# random points of its writes, checked after each kill
# (tests/integration/lib-crash.sh).  Prints the counts; exits 1 at the
# first inconsistency, 0 when there was none.
#   CRASH_STORE=etcd     the store on a private three-member etcd cluster
#   CRASH_MAX_DELAY_MS   the longest delay before a kill (default 1500)
#   CRASH_KEEP=DIR       a copy of the state of the first failure
#   CRASH_GO_ON=1        go on after a failure, to count them all
#   CRASH_SECONDS        stop after that long (with the summary)
BUILD=${1:-${BUILD:-build}}
export BUILD
it=$(cd "$(dirname "$0")/../integration" && pwd)
. "$it/lib.sh"
if [ "${CRASH_STORE:-sqlite}" = etcd ]; then
        . "$it/lib-etcd.sh"
        etcd_available || { echo "SKIPPED: etcd is not installed"; exit 77; }
        trap 'stop_dkmd; etcd_cluster_stop; cleanup' EXIT
        etcd_cluster_start "$T/etcd" || { echo "FAIL: the etcd cluster did not start"; exit 1; }
fi
. "$it/lib-crash.sh"
# The binary under test, copied: a rebuild during a long soak must not
# change it (or catch it half written).
cp "$DKMD" "$T/dkmd" && DKMD=$T/dkmd

crash_setup || { fail "setup"; finish; }
start=$(date +%s)
crash_run "${CRASH_KILLS_N:-1000}" && crash_final
crash_summary
echo "crash: $(($(date +%s) - start)) s"
finish
