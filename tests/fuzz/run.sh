#!/bin/bash
# Runs each libFuzzer target briefly from its seed corpus (tests/fuzz/corpus/<name>).
set -u
BUILD=${1:-build}
secs=${FUZZ_SECONDS:-20}
dir=$(dirname "$0")
pass=0 failn=0
for f in "$BUILD"/fuzz/fuzz-*; do
        [ -x "$f" ] || continue
        name=$(basename "$f")
        work=$(mktemp -d)
        [ -d "$dir/corpus/$name" ] && cp -r "$dir/corpus/$name/." "$work/"
        if "$f" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 "$work" > "$work.log" 2>&1; then
                pass=$((pass + 1))
                echo "$name: $(grep -E '^#[0-9]+.*(DONE|pulse)' "$work.log" | tail -n1)"
        else
                failn=$((failn + 1))
                echo "$name: FAILED"; tail -n 40 "$work.log"
        fi
        rm -rf "$work" "$work.log"
done
echo "fuzz: $pass passed, $failn failed"
[ $failn -eq 0 ] && [ $pass -gt 0 ]
