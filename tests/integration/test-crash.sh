#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Crash consistency, the short run of `make check` (`make soak` runs 1,000
# kills and more): dkmd killed with SIGKILL at random points of rotations,
# reservations, grants, rekeys with a new policy key, destroys, purges and
# backups; after each kill it starts again, `store verify` passes, every
# ciphertext acknowledged before the kill decrypts and the generation
# numbers have no gap and keep their keys (lib-crash.sh).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-crash.sh"

# A failure keeps its state directory and logs for a look.
export CRASH_KEEP=${CRASH_KEEP:-/tmp/dkm-crash-failure.$$}
crash_setup || { fail "setup"; finish; }
crash_run "${CRASH_KILLS_N:-25}" && crash_final
crash_summary
finish
