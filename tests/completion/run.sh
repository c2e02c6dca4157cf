#!/bin/bash
# `make check-completion`: completion/dkmctl.bash, sourced into bash with
# the bash-completion library as an interactive shell would, completes
# verbs, two-word verbs, a verb's own options (and no other verb's) and
# option values for the dkmctl just built.
set -u
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
lib=$(pkg-config --variable=completionsdir bash-completion 2>/dev/null)
lib=${lib%/*}/bash_completion
[ -r "$lib" ] || lib=/usr/share/bash-completion/bash_completion
if [ ! -r "$lib" ]; then
        echo "completion: the bash-completion library is missing (tests/deps.sh installs it)" >&2
        exit 1
fi
[ -x "$BUILD/dkmctl" ] || { echo "completion: $BUILD/dkmctl is not built" >&2; exit 1; }

exec bash --norc --noprofile -c '
        set -u
        source "$1" || exit 1
        source completion/dkmctl.bash || exit 1
        dkmctl=$2
        failn=0
        # complete WANTED WORD... : the last word is the one being completed.
        complete_is() {
                local want=$1; shift
                COMP_WORDS=("$dkmctl" "$@")
                COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
                COMP_LINE="${COMP_WORDS[*]}"
                COMP_POINT=${#COMP_LINE}
                COMPREPLY=()
                _dkmctl
                local got="${COMPREPLY[*]}"
                if [ "$got" = "$want" ]; then
                        echo "ok   dkmctl $* -> $got"
                else
                        echo "FAIL dkmctl $* -> \"$got\", wanted \"$want\""
                        failn=$((failn + 1))
                fi
        }
        complete_is "encrypt" en
        complete_is "list rotate retire destroy" key ""
        complete_is "verify" store v
        complete_is "--policy" encrypt --pol
        complete_is "--in --out --context" decrypt --
        complete_is "" decrypt --pol
        complete_is "--policy --reason --duration --scope" access request ""
        complete_is "decrypt inspect" access request --reason x --scope ""
        complete_is "status store" --socket /tmp/x.sock st
        complete_is "--json" store verify -
        echo "completion: $failn failed"
        [ $failn -eq 0 ]
' completion-test "$lib" "$BUILD/dkmctl"
