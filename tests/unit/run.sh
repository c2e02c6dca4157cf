#!/bin/bash
# Runs every cmocka suite, or those named after BUILD (test-keys ...); a
# suite's skipped tests show as SKIPPED in its output.
set -u
BUILD=${1:-build}
shift
dir=$(dirname "$0")
pass=0 failn=0
if [ $# -gt 0 ]; then
        suites=()
        for name in "$@"; do
                if [ ! -f "$dir/$name.c" ]; then
                        echo "unit: no suite '$name' ($dir/$name.c); there are:" \
                             $(cd "$dir" && ls test-*.c | sed 's/\.c$//') >&2
                        exit 1
                fi
                suites+=("$BUILD/tests/$name")
        done
else
        suites=("$BUILD"/tests/test-*)
fi
for t in "${suites[@]}"; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        if "$t"; then pass=$((pass + 1)); else failn=$((failn + 1)); echo "== $name: FAIL"; fi
done
echo "unit suites: $pass passed, $failn failed"
[ $failn -eq 0 ] && [ $pass -gt 0 ]
