#!/bin/bash
# `make check`: every test, in order of speed.  Each part prints its own
# transcript; the summary at the end counts the parts.
set -u
cd "$(dirname "$0")/.."
JOBS=$(nproc)
results=()
failed=0

part() { # NAME command...
        local name=$1; shift
        echo
        echo "######## $name"
        local start=$SECONDS
        "$@"
        local rc=$?
        local took=$((SECONDS - start))
        case $rc in
        0) results+=("PASS     $name (${took}s)") ;;
        77) results+=("SKIPPED  $name (${took}s)")
            [ "${CI:-}" = true ] && { failed=$((failed + 1)); results[-1]="FAIL     $name: skipped under CI"; } ;;
        *) results+=("FAIL     $name (${took}s)"); failed=$((failed + 1)) ;;
        esac
}

part "build" make -s -j"$JOBS" tests
part "unit tests" make -s check-unit
part "no cycle among src/ files" make -s check-layers
part "manual pages and bash completion" make -s check-man check-completion
part "integration tests (kernel keyring, auditd)" make -s check-integration
part "build with ASan+UBSan" make -s -j"$JOBS" BUILD=build/asan SAN=1 tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
part "unit tests under ASan+UBSan" make -s BUILD=build/asan SAN=1 check-unit
# dkmd exits without freeing what detached connection threads may hold.
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 part "integration tests under ASan+UBSan" \
        make -s BUILD=build/asan SAN=1 check-integration
part "fuzz targets (brief runs)" make -s -j"$JOBS" check-fuzz
part "AF_ALG in a VM (Debian 6.1 and 6.12 kernels)" make -s check-vm
part "full system in a VM (systemd, SELinux) on 6.1" make -s check-system
DKM_SYSTEM_KERNEL=6.12 part "full system in a VM (systemd, SELinux) on 6.12" make -s check-system

echo
echo "######## summary"
printf '%s\n' "${results[@]}"
total=${#results[@]}
echo "check: $((total - failed)) passed, $failed failed"
[ $failed -eq 0 ]
