#!/bin/bash
# Runs every cmocka suite; a suite's skipped tests show as SKIPPED in its output.
set -u
BUILD=${1:-build}
pass=0 failn=0
for t in "$BUILD"/tests/test-*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        if "$t"; then pass=$((pass + 1)); else failn=$((failn + 1)); echo "== $name: FAIL"; fi
done
echo "unit suites: $pass passed, $failn failed"
[ $failn -eq 0 ] && [ $pass -gt 0 ]
