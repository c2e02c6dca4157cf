#!/bin/bash
# Keeps the manual pages honest: each must lint clean under mandoc, and
# name exactly what the code has, read from the code's own tables:
#   dkmd.conf(5)  every key of src/shared/config.c's table, in its section,
#                 with "Reload: at once" exactly for what dkmd's SIGHUP
#                 handler (src/daemon/main.c) applies;
#   dkmctl(1)     every verb of src/ctl/dkmctl.c's table, each with exactly
#                 the options the table lets it take (names from args.c);
#   dkmd(8)       every option of dkmd's getopt table;
#   libdkm(3)     every symbol src/lib/libdkm.sym exports, with the
#                 prototype include/dkm/dkm.h declares;
#   dkm-formats(5) each part of it that tests/integration/decode/dkm_decode.py
#                 says it follows ("# --- dkm-formats(5), PART ---");
#   all pages     every page in man/ is in the Makefile's MAN_PAGES, and
#                 every .Xr to a dkm page names one that is there.
#   README.md     at most 300 lines; its roles table names every verb that
#                 `dkmctl --list-verbs` prints, and so does dkmctl(1)'s ROLES.
# MAN_DIR (default man/) and README (default README.md) point it at other
# copies, which tests/man/run.sh uses to see it fail; DKMCTL (default
# build/dkmctl, else the verb table of src/ctl/dkmctl.c) is the dkmctl asked;
# MAN_DEBUG=1 prints what it read.
set -u
cd "$(dirname "$0")/../.."
MAN_DIR=${MAN_DIR:-man}
README=${README:-README.md}
DKMCTL=${DKMCTL:-build/dkmctl}
failed=0

bad() {
        echo "man: $*" >&2
        failed=1
}

command -v mandoc >/dev/null || { echo "man: mandoc is missing (tests/deps.sh installs it)" >&2; exit 1; }

# --- lint ------------------------------------------------------------------
# Style messages count too; only references to other packages' pages,
# which depend on what this machine has installed, are let through.
pages="dkmd.8 dkmctl.1 dkmd.conf.5 libdkm.3 dkm-formats.5 dkm.7"
for page in $pages; do
        [ -f "$MAN_DIR/$page" ] || { bad "$MAN_DIR/$page is missing"; continue; }
        out=$(mandoc -Tlint -Wstyle "$MAN_DIR/$page" 2>&1 |
              grep -v -e 'referenced manual not found' -e 'mandoc\.db' -e 'run makewhatis')
        [ -z "$out" ] || bad "mandoc -Tlint $page:"$'\n'"$out"
done

# Items of a .Bl list under one section heading, as "heading<TAB>line".
section_items() { # FILE SH-NAME ITEM-MACRO
        awk -v sh="$2" -v it="$3" '
                /^\.Sh / { in_sh = ($0 == ".Sh " sh) }
                in_sh && index($0, ".It " it " ") == 1 { print }
        ' "$1"
}

# --- dkmd.conf(5) ------------------------------------------------------------
conf=$MAN_DIR/dkmd.conf.5
# "section key field" for each row of the key table.
code_keys=$(sed -n 's/^[[:space:]]*{ "\([a-z]*\)", "\([a-z0-9_]*\)", K_[A-Z0-9_]*, F(\([a-z0-9_]*\)).*/\1 \2 \3/p' \
            src/shared/config.c)
[ -n "$code_keys" ] || bad "found no keys in src/shared/config.c's table (has its layout changed?)"
# What reload() applies: the RELOAD_FIELDS list, and the fields it swaps in.
reloaded=$(sed -n '/^#define RELOAD_FIELDS/,/^$/p' src/daemon/main.c | grep -o 'X([a-z0-9_]*)' | tr -d 'X()'
           grep -o 'd->cfg\.[a-z0-9_]* = n\.[a-z0-9_]*' src/daemon/main.c | sed 's/.*= n\.//')
[ -n "$reloaded" ] || bad "found no RELOAD_FIELDS in src/daemon/main.c (has its layout changed?)"
# "section key reload" for each key the page describes.
man_keys=$(awk '
        function flush() { if (key != "") print section, key, (reload == "" ? "-" : reload); key = "" }
        /^\.Ss / { flush(); s = $0; gsub(/\\&/, "", s); section = ""
                   if (match(s, /\[[a-z]+\]/)) section = substr(s, RSTART + 1, RLENGTH - 2) }
        /^\.It Ic / { flush(); key = $3; reload = "" }
        /^\.(El|Sh)/ { flush() }
        /^Reload: at once/ { reload = "once" }
        /^Reload: at restart/ { reload = "restart" }
        END { flush() }
' "$conf")
while read -r section key field; do
        want=restart
        grep -qx "$field" <<<"$reloaded" && want=once
        got=$(awk -v s="$section" -v k="$key" '$1 == s && $2 == k { print $3 }' <<<"$man_keys")
        if [ -z "$got" ]; then
                bad "dkmd.conf.5 lacks [$section] $key"
        elif [ "$got" = - ]; then
                bad "dkmd.conf.5: [$section] $key does not say what a reload does (Reload: ...)"
        elif [ "$got" != "$want" ]; then
                bad "dkmd.conf.5: [$section] $key says 'Reload: at $got'; dkmd's reload() makes it 'at $want'"
        fi
done <<<"$code_keys"
# Each key's item gives its value type on the .It line and says what its
# default is ("Default ...", "default 3", "no default").
while read -r section key; do
        bad "dkmd.conf.5: [$section] $key does not give its default"
done < <(awk '
        function flush() { if (key != "" && !dflt) print section, key; key = "" }
        /^\.Ss / { flush(); s = $0; gsub(/\\&/, "", s); section = ""
                   if (match(s, /\[[a-z]+\]/)) section = substr(s, RSTART + 1, RLENGTH - 2) }
        /^\.It Ic / { flush(); key = $3; dflt = 0 }
        /^\.(El|Sh)/ { flush() }
        /[Dd]efault/ { dflt = 1 }
        END { flush() }
' "$conf")
while read -r key; do
        bad "dkmd.conf.5: $key does not give its value type (.It Ic $key Ns = Ns Ar TYPE)"
done < <(awk '/^\.It Ic / && !/ Ns = Ns (Ar|Cm) / { print $3 }' "$conf")
while read -r section key _; do
        [ -n "$section$key" ] || continue
        grep -q "^$section $key " <<<"$code_keys" ||
                bad "dkmd.conf.5 describes [$section] $key, which src/shared/config.c does not know"
done <<<"$man_keys"

# --- dkmctl(1) ---------------------------------------------------------------
ctl=$MAN_DIR/dkmctl.1
# Option letter to long name, from args.c.
declare -A long_of
while read -r name letter; do
        long_of[$letter]=$name
done < <(sed -n "s/^[[:space:]]*{ \"\([a-z-]*\)\", [a-z_]*_argument, NULL, '\(.\)' }.*/\1 \2/p" src/ctl/args.c)
[ ${#long_of[@]} -gt 0 ] || bad "found no options in src/ctl/args.c (has its layout changed?)"
# "verb|letters" from the verb table.
code_verbs=$(sed -n 's/^[[:space:]]*{ "\([a-z ]*\)", [0-9]*, [0-9]*, "\([a-zA-Z]*\)",.*/\1|\2/p' src/ctl/dkmctl.c)
[ -n "$code_verbs" ] || bad "found no verbs in src/ctl/dkmctl.c's table (has its layout changed?)"
# "verb|--opt --opt" for each item of the page's VERBS section.
man_verbs=$(section_items "$ctl" VERBS Cm | awk '{
        verb = ""; opts = ""
        for (i = 3; i <= NF && $i ~ /^[a-z]+$/; i++) verb = verb (verb == "" ? "" : " ") $i
        for (; i <= NF; i++) if ($(i - 1) == "Fl" && $i ~ /^-[a-z]/) opts = opts " " substr($i, 2)
        print verb "|" opts
}')
while IFS='|' read -r verb letters; do
        line=$(grep -m1 "^$verb|" <<<"$man_verbs")
        if [ -z "$line" ]; then
                bad "dkmctl.1 lacks the verb '$verb'"
                continue
        fi
        want=$(for ((i = 0; i < ${#letters}; i++)); do echo "${long_of[${letters:i:1}]:-?${letters:i:1}}"; done | sort -u)
        got=$(tr ' ' '\n' <<<"${line#*|}" | sed '/^$/d' | sort -u)
        [ "$want" = "$got" ] ||
                bad "dkmctl.1: '$verb' shows options {$(echo $got)}; its table entry takes {$(echo $want)}"
done <<<"$code_verbs"
while IFS='|' read -r verb _; do
        grep -q "^$verb|" <<<"$code_verbs" || bad "dkmctl.1 describes the verb '$verb', which dkmctl does not have"
done <<<"$man_verbs"

# --- dkmd(8) -----------------------------------------------------------------
d8=$MAN_DIR/dkmd.8
code_opts=$(sed -n '/^static int parse_args/,/^}/p' src/daemon/main.c |
            sed -n 's/^[[:space:]]*{ "\([a-z-]*\)", [a-z_]*_argument, NULL, .*/--\1/p'
            sed -n '/^static int parse_args/,/^}/p' src/daemon/main.c |
            sed -n 's/.*getopt_long(argc, argv, "\([^"]*\)".*/\1/p' | tr -d ':' | grep -o . | sed 's/^/-/')
[ -n "$code_opts" ] || bad "found no options in dkmd's parse_args() (has its layout changed?)"
man_opts=$(section_items "$d8" OPTIONS Fl | awk '{ for (i = 3; i <= NF; i++) if ($(i - 1) == "Fl") print "-" $i }' | sort -u)
for o in $code_opts; do
        grep -qx -- "$o" <<<"$man_opts" || bad "dkmd.8 lacks the option $o"
done
for o in $man_opts; do
        grep -qx -- "$o" <<<"$code_opts" || bad "dkmd.8 describes the option $o, which dkmd does not have"
done

# --- libdkm(3) ---------------------------------------------------------------
l3=$MAN_DIR/libdkm.3
syms=$(sed -n 's/^[[:space:]]*\(dkm_[a-z0-9_]*\);.*/\1/p' src/lib/libdkm.sym)
[ -n "$syms" ] || bad "found no symbols in src/lib/libdkm.sym"
# "name<TAB>prototype", whitespace normalised, from the page's SYNOPSIS ...
man_protos=$(awk '
        function out() { printf "%s\t%s %s(%s)\n", name, ft, name, args }
        /^\.Sh / { syn = ($0 == ".Sh SYNOPSIS") }
        !syn { next }
        function quoted(s,   a, n, i, r) {
                n = split(s, a, "\""); r = ""
                for (i = 2; i <= n; i += 2) r = r (r == "" ? "" : ", ") a[i]
                return r
        }
        /^\.Ft / { ft = substr($0, 5) }
        /^\.Fn / { name = $2; args = quoted($0); out() }
        /^\.Fo / { name = $2; args = "" }
        /^\.Fa / { q = quoted($0); args = args (args == "" ? "" : ", ") q }
        /^\.Fc/ { out() }
' "$l3" | sed 's/\* /*/g')
# ... and from dkm.h, comments dropped and each declaration on one line.
h_protos=$(sed 's|/\*.*\*/||' include/dkm/dkm.h | awk '
        /\/\*/ { c = 1 } c { if (/\*\//) c = 0; next } { printf "%s ", $0 }' |
        tr ';' '\n' | grep -o '[a-z_ ]*[* ]dkm_[a-z0-9_]*(.*' | sed 's/[[:space:]]\+/ /g;s/^ //;s/ $//;s/\* /*/g' |
        sed 's/^\(.*[* ]\)\(dkm_[a-z0-9_]*\)(/\2\t\1\2(/')
for s in $syms; do
        m=$(grep -m1 "^$s	" <<<"$man_protos" | cut -f2)
        h=$(grep -m1 "^$s	" <<<"$h_protos" | cut -f2)
        if [ -z "$m" ]; then
                bad "libdkm.3 lacks $s"
        elif [ "$m" != "$h" ]; then
                bad "libdkm.3 gives $s as '$m'; dkm.h declares '$h'"
        fi
done
while IFS=$'\t' read -r name _; do
        [ -n "$name" ] || continue
        grep -qx "$name" <<<"$syms" || bad "libdkm.3 describes $name, which libdkm does not export"
done <<<"$man_protos"

# --- dkm-formats(5) ------------------------------------------------------------
# The outside decoder was written from this page; each part it follows must
# still be there under that name.
fmt=$MAN_DIR/dkm-formats.5
decoder=tests/integration/decode/dkm_decode.py
parts=$(sed -n 's/^# --- dkm-formats(5), \(.*[^ -]\) -*$/\1/p' "$decoder")
[ -n "$parts" ] || bad "found no '# --- dkm-formats(5), PART ---' lines in $decoder"
while read -r part; do
        [ -n "$part" ] || continue
        grep -qxF ".Ss $part" "$fmt" || bad "dkm-formats.5 lacks the part '$part' that $decoder follows"
done <<<"$parts"

# --- all pages -------------------------------------------------------------------
make_pages=$(sed -n 's/^MAN_PAGES := //p' Makefile | tr ' ' '\n' | sed 's|^man/||' | sort)
[ -n "$make_pages" ] || bad "found no MAN_PAGES in the Makefile"
for f in "$MAN_DIR"/*.[1-8]; do
        page=${f##*/}
        grep -qx "$page" <<<"$make_pages" || bad "$page is not in the Makefile's MAN_PAGES: make install leaves it out"
        grep -qw -- "$page" <<<"$pages" || bad "$page is not in check.sh's list of pages to lint"
done
while read -r page; do
        [ -f "$MAN_DIR/$page" ] || bad "the Makefile's MAN_PAGES names $page, which man/ lacks"
done <<<"$make_pages"
# Cross-references among dkm's own pages: dkm, dkmd, dkmctl, dkmd.conf, libdkm, dkm-*.
while read -r file name sec; do
        [ -f "$MAN_DIR/$name.$sec" ] || bad "${file##*/} refers to $name($sec), which man/ lacks"
done < <(for f in "$MAN_DIR"/*.[1-8]; do
                 sed -n 's/^\.Xr \(dkm[a-z.-]*\|libdkm\) \([1-8]\).*/\1 \2/p' "$f" | sed "s|^|$f |"
         done)

# --- roles: README.md and dkmctl(1) ---------------------------------------------
# The verbs as dkmctl lists them; before a build, as its table has them.
if [ -x "$DKMCTL" ]; then
        list_verbs=$("$DKMCTL" --list-verbs | cut -f1)
else
        list_verbs=$(cut -d'|' -f1 <<<"$code_verbs")
fi
[ -n "$list_verbs" ] || bad "found no verbs ($DKMCTL --list-verbs, src/ctl/dkmctl.c)"
readme_lines=$(wc -l <"$README")
[ "$readme_lines" -le 300 ] ||
        bad "$README has $readme_lines lines; the guide stays within 300 (the rest belongs in the man pages)"
# The table rows of the README's "## Roles" section, and dkmctl(1)'s ROLES.
readme_roles=$(awk '/^## / { in_roles = ($0 == "## Roles") } in_roles && /^\|/' "$README")
[ -n "$readme_roles" ] || bad "$README has no table under '## Roles'"
man_roles=$(awk '/^\.Sh / { in_roles = ($0 == ".Sh ROLES") } in_roles' "$ctl")
[ -n "$man_roles" ] || bad "dkmctl.1 has no ROLES section"
while read -r verb; do
        [ -n "$verb" ] || continue
        grep -qF "\`$verb\`" <<<"$readme_roles" || bad "$README's roles table does not name the verb '$verb'"
        grep -qF "\"$verb\"" <<<"$man_roles" || bad "dkmctl.1's ROLES does not name the verb '$verb'"
done <<<"$list_verbs"

[ -n "${MAN_DEBUG:-}" ] && printf "%s\n" "$code_keys" "--" "$reloaded" "--" "$man_keys" "--" "$code_verbs" "--" "$man_verbs" "--" "$code_opts" "--" "$man_opts" "--" "$man_protos" "--" "$h_protos"
[ $failed -eq 0 ] && echo "man: $(echo $pages) lint clean and match the code"
exit $failed
