#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A crash between carrying out an approved destroy or purge and storing the
# request's new state: dkmd is killed (SIGKILL, from gdb) after the
# generation is stored destroyed (the policy purged) and before the request
# is stored done.  After the restart the request is still pending with one
# approval; the second approval must finish it as done (what it asked for
# holds), not fail it with "already destroyed" while the key is gone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-crash.sh"

command -v gdb >/dev/null || { echo "SKIPPED: gdb is not installed"; exit 77; }
write_config "[access]" "approvals_required=2"
start_dkmd || exit 1
printf 'one' | as svc encrypt > "$W/ct1"
as op key rotate >/dev/null
id=$(as op key destroy 1 --reason "crash before the request is stored")
as appr access approve "$id" >/dev/null
crash_at request_store_leased as appr2 access approve "$id"
start_dkmd || exit 1
check "generation 1 was destroyed before the kill" bash -c "as op key list | grep -qE 'default +1 +destroyed'"
check "its request is still pending" bash -c "as op access list --json | jq -e '.[] | select(.id == $id) | .state == \"pending\"' >/dev/null"
check "the second approval, again, finishes it as done" bash -c "as appr2 access approve $id | grep -qx 'request $id: done'"
check "the request is done" bash -c "as op access list --json | jq -e '.[] | select(.id == $id) | .state == \"done\"' >/dev/null"

as op policy create gone >/dev/null
printf 'gone' | as svc encrypt --policy gone > "$W/g1"
pid=$(as op policy purge gone --reason "crash before the request is stored")
as appr access approve "$pid" >/dev/null
crash_at request_store_leased as appr2 access approve "$pid"
start_dkmd || exit 1
refused "the policy was purged before the kill" "purged" as svc decrypt --in "$W/g1"
check "the second approval, again, finishes the purge as done" bash -c "as appr2 access approve $pid | grep -qx 'request $pid: done'"
check "store verify passes" bash -c "as op store verify >/dev/null"
finish
