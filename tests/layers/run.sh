#!/bin/bash
# `make check-layers`: no cycle among the files of src/.  File A depends on
# file B when A's object uses a global symbol that B's object defines (nm);
# coreutils tsort finds the loops.  The calls listed in allowed-cycles are
# the ones still to be broken: they are taken out before the check, and an
# entry that no longer closes a cycle fails too, so the list only shrinks.
set -u
BUILD=${1:-build}
dir=$(cd "$(dirname "$0")" && pwd)
allow=${LAYERS_ALLOW:-$dir/allowed-cycles}
cd "$dir/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Sources, not the objects found in $BUILD: an object left behind by a file
# that moved must not count.
for src in $(find src -name '*.c' | sort); do
        obj=$BUILD/obj/${src%.c}.o
        if [ ! -f "$obj" ]; then
                echo "check-layers: $obj is missing; build first (make tests)" >&2
                exit 2
        fi
        nm -g --defined-only "$obj" | awk -v f="$src" 'NF == 3 { print $3, f }' >> "$work/defs"
        nm -u "$obj" | awk -v f="$src" '{ print $NF, f }' >> "$work/uses"
done
sort -o "$work/defs" "$work/defs"
sort -o "$work/uses" "$work/uses"
# "user definer symbol", then the plain edges "user definer".
join "$work/uses" "$work/defs" | awk '$2 != $3 { print $2, $3, $1 }' | sort -u > "$work/calls"
awk '{ print $1, $2 }' "$work/calls" | sort -u > "$work/edges"

# allowed-cycles: "from.c to.c" per line; "#" starts a comment.
sed 's/#.*//' "$allow" | awk 'NF == 2 { print $1, $2 } NF != 2 && NF { print "bad line: " $0 > "/dev/stderr"; exit 1 }' \
        | sort -u > "$work/allowed" || exit 2

fail=0
# An allowed edge must still exist and still lie on a cycle (its target
# reaches its source); otherwise it is to be deleted from the list.
awk 'FNR == NR { adj[$1] = adj[$1] " " $2; next }
     {
        from = $1; to = $2
        if (index(adj[from] " ", " " to " ") == 0) { print "stale (no such call): " from " " to; next }
        delete seen; n = 0; queue[n++] = to; seen[to] = 1; found = 0
        for (i = 0; i < n && !found; i++) {
                k = split(adj[queue[i]], next_, " ")
                for (j = 1; j <= k; j++) {
                        if (next_[j] == from) { found = 1; break }
                        if (!(next_[j] in seen)) { seen[next_[j]] = 1; queue[n++] = next_[j] }
                }
        }
        if (!found) print "stale (no longer a cycle): " from " " to
     }' "$work/edges" "$work/allowed" > "$work/stale"
if [ -s "$work/stale" ]; then
        echo "check-layers: remove from $(basename "$allow"), the cycle is gone:"
        sed 's/^/  /' "$work/stale"
        fail=1
fi

# Every other edge must sort.
comm -23 "$work/edges" "$work/allowed" | tsort > /dev/null 2> "$work/loops"
if grep -q 'loop' "$work/loops"; then
        echo "check-layers: new cycle among src/ files:"
        awk '/input contains a loop/ { print "  cycle:"; next } { sub(/^tsort: /, ""); print "    " $0 }' "$work/loops"
        echo "  calls among these files (caller, definer, symbol):"
        comm -23 "$work/edges" "$work/allowed" > "$work/checked"
        awk 'FNR == NR { onloop[$0] = 1; next } ($1 in onloop) && ($2 in onloop)' \
                <(sed -n 's/^tsort: \(src\/.*\)/\1/p' "$work/loops") "$work/calls" \
                | awk 'FNR == NR { ok[$1 " " $2] = 1; next } ($1 " " $2) in ok' "$work/checked" - \
                | sed 's/^/    /'
        fail=1
fi

echo "check-layers: $(wc -l < "$work/edges") calls between $(cut -d' ' -f1,2 "$work/edges" | tr ' ' '\n' | sort -u | wc -l) files;" \
        "$(wc -l < "$work/allowed") allowed upward calls still to break:"
while read -r from to; do
        echo "  $from -> $to ($(awk -v f="$from" -v t="$to" '$1 == f && $2 == t { printf "%s%s", sep, $3; sep = " " }' "$work/calls"))"
done < "$work/allowed"
[ $fail -eq 0 ] && echo "check-layers: no new cycle"
exit $fail
