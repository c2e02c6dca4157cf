# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Looking for wrapped keys that crypto-shredding should have removed, in the
# encodings a store may hold them.  Source this file; it defines:
#
#   json_field JSON NAME   the string value of NAME in a record as dkm
#                          writes it (json-c escapes '/' as '\/'), unescaped
#   leaks B64 FILE...      prints "FILE:ENCODING" for each file that holds the
#                          base64 value B64 as base64 (plain or with '\/'),
#                          as raw bytes, or as hex (either case); 24-byte
#                          pieces of the base64 text (start, middle, end)
#                          count too, so that a record cut at a page boundary
#                          is still found.  Prints nothing when none holds it.

json_field() {
        sed -n "s/.*\"$2\": *\"\\([^\"]*\\)\".*/\\1/p" <<<"$1" | sed 's#\\/#/#g'
}

# The bytes on stdin as one line of lower-case hex.
hexdump_plain() { od -An -v -tx1 | tr -d ' \n'; }

leaks() {
        local b64=$1 f hex esc n piece
        shift
        [ -n "$b64" ] || { echo "leaks: no value to look for"; return; }
        hex=$(printf '%s' "$b64" | base64 -d 2>/dev/null | hexdump_plain)
        esc=${b64//\//\\/}
        n=${#b64}
        for f in "$@"; do
                [ -s "$f" ] || continue
                for piece in "$b64" "$esc" "${b64:0:24}" "${b64:$(((n - 24) / 2)):24}" "${b64: -24}"; do
                        if grep -aqF -- "$piece" "$f"; then
                                echo "$f:base64"
                                break
                        fi
                done
                # Byte-aligned matches only: an even offset in the hex dump.
                if [ -n "$hex" ] && hexdump_plain < "$f" | grep -ob -- "$hex" | cut -d: -f1 |
                        awk '$1 % 2 == 0 { found = 1 } END { exit !found }'; then
                        echo "$f:raw"
                fi
                if [ -n "$hex" ] && grep -aqiF -- "$hex" "$f"; then
                        echo "$f:hex"
                fi
        done
}
