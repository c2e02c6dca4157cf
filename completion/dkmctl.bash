# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for dkmctl.  The verbs and their options come from
# `dkmctl --list-verbs`, which prints dkmctl's own verb table, so this file
# never needs to change when a verb or an option does.

_dkmctl()
{
        local cur prev words cword split
        # -s: "--in=FILE" comes as prev "--in", cur "FILE".
        _init_completion -s || return

        local table
        table=$("${words[0]}" --list-verbs 2>/dev/null) || return

        # Global options come before the verb.
        local i=1
        while [[ $i -lt $cword && ${words[i]} == -* ]]; do
                [[ ${words[i]} == --socket ]] && ((i++))
                ((i++))
        done
        if [[ $prev == --socket ]]; then
                _filedir
                return
        fi

        if [[ $cword -eq $i ]]; then
                if [[ $cur == -* ]]; then
                        COMPREPLY=($(compgen -W '--socket --help --version' -- "$cur"))
                else
                        COMPREPLY=($(compgen -W "$(cut -f1 <<<"$table" | cut -d' ' -f1 | sort -u)" -- "$cur"))
                fi
                return
        fi

        # A two-word verb ("key rotate") or a one-word one.
        local verb="" opts="" name rest
        while IFS=$'\t' read -r name rest; do
                if [[ $name == "${words[i]} ${words[i + 1]}" && $cword -gt $((i + 1)) ]] ||
                   [[ $name == "${words[i]}" ]]; then
                        verb=$name
                        opts=$rest
                fi
        done <<<"$table"
        if [[ -z $verb ]]; then
                if [[ $cword -eq $((i + 1)) ]]; then
                        COMPREPLY=($(compgen -W "$(awk -F'\t' -v w="${words[i]}" \
                                'split($1, p, " ") == 2 && p[1] == w { print p[2] }' <<<"$table")" -- "$cur"))
                fi
                return
        fi

        # The value of an option that takes one.
        if [[ " $opts " == *" $prev= "* ]]; then
                case $prev in
                --in|--out|--key-out) _filedir ;;
                --scope) COMPREPLY=($(compgen -W 'decrypt inspect' -- "$cur")) ;;
                --customer-key) COMPREPLY=($(compgen -W 'pkcs11: file:' -- "$cur")) ;;
                --uid) COMPREPLY=($(compgen -u -- "$cur")) ;;
                --gid) COMPREPLY=($(compgen -g -- "$cur")) ;;
                esac
                return
        fi

        [[ $split == true ]] && return
        if [[ $cur == -* || -z $cur ]]; then
                # "--in=" takes its value after a space too: offer "--in".
                COMPREPLY=($(compgen -W "${opts//=/}" -- "$cur"))
        fi
}
complete -F _dkmctl dkmctl
