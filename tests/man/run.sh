#!/bin/bash
# `make check-man`: the manual pages against the code (check.sh), and
# check.sh itself against pages altered the ways they drift, each of which
# it must refuse with the message that names the drift.
set -u
cd "$(dirname "$0")/../.."
failn=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

bash tests/man/check.sh || failn=$((failn + 1))

drift() { # NAME PAGE SED-SCRIPT EXPECTED-MESSAGE
        rm -rf "$tmp/man" && cp -r man "$tmp/man"
        sed -i "$3" "$tmp/man/$2"
        if cmp -s "man/$2" "$tmp/man/$2"; then
                echo "== drift $1: the sed script changed nothing (update it)"
                failn=$((failn + 1))
                return
        fi
        out=$(MAN_DIR=$tmp/man bash tests/man/check.sh 2>&1)
        rc=$?
        if [ $rc -ne 0 ] && grep -qF -- "$4" <<<"$out"; then
                echo "== drift $1: refused"
        else
                echo "== drift $1: NOT refused as expected (rc $rc, wanted '$4'):"
                echo "$out"
                failn=$((failn + 1))
        fi
}

drift "config key left out" dkmd.conf.5 '/^\.It Ic node_ttl /d' "dkmd.conf.5 lacks [store] node_ttl"
drift "key in the wrong section" dkmd.conf.5 's/^\.Ss \\&\[audit\]/.Ss \\\&[auditing]/' \
        "dkmd.conf.5 lacks [audit] fail_closed"
drift "reload claim wrong" dkmd.conf.5 '/^\.It Ic reviewers /,/^Reload/s/^Reload: at restart.*/Reload: at once./' \
        "[groups] reviewers says 'Reload: at once'; dkmd's reload() makes it 'at restart'"
drift "config default left out" dkmd.conf.5 '/^\.It Ic node_ttl /,/^Reload/s/, default 10s,/,/' \
        "dkmd.conf.5: [store] node_ttl does not give its default"
drift "config type left out" dkmd.conf.5 's/^\.It Ic cache_ttl Ns = Ns Ar duration$/.It Ic cache_ttl/' \
        "dkmd.conf.5: cache_ttl does not give its value type"
drift "verb left out" dkmctl.1 '/^\.It Cm policy rekey /d' "dkmctl.1 lacks the verb 'policy rekey'"
drift "verb option left out" dkmctl.1 's/^\(\.It Cm store verify\) Op Fl -json$/\1/' \
        "dkmctl.1: 'store verify' shows options {}; its table entry takes {json}"
drift "verb that does not exist" dkmctl.1 's/^\.It Cm backup /.It Cm restore /' \
        "dkmctl.1 describes the verb 'restore', which dkmctl does not have"
drift "daemon option left out" dkmd.8 '/^\.It Fl -restore /d' "dkmd.8 lacks the option --restore"
drift "library function left out" libdkm.3 '/^\.Fn dkm_access_revoke /d' "libdkm.3 lacks dkm_access_revoke"
drift "library prototype wrong" libdkm.3 's/^\.Fn dkm_key_retire "dkm_client \*c" "const char \*policy" "uint32_t generation"/.Fn dkm_key_retire "dkm_client *c" "const char *policy" "int generation"/' \
        "libdkm.3 gives dkm_key_retire as"
drift "format part the decoder follows" dkm-formats.5 's/^\.Ss Key wrapping$/.Ss Key wraps/' \
        "dkm-formats.5 lacks the part 'Key wrapping' that tests/integration/decode/dkm_decode.py follows"
drift "reference to a page that is not there" dkmctl.1 's/^\.Xr dkmd 8$/.Xr dkmd 7/' \
        "dkmctl.1 refers to dkmd(7), which man/ lacks"
drift "lint" dkmd.8 's/^\.Sh SIGNALS$/.Sh SIGNALS\n.Bl -tag\n.It x/' "mandoc -Tlint dkmd.8"

# The README: a verb missing from its roles table, and too long.
readme_drift() { # NAME SED-SCRIPT EXPECTED-MESSAGE
        sed "$2" README.md >"$tmp/README.md"
        out=$(README=$tmp/README.md bash tests/man/check.sh 2>&1)
        if [ $? -ne 0 ] && grep -qF -- "$3" <<<"$out"; then
                echo "== drift $1: refused"
        else
                echo "== drift $1: NOT refused as expected (wanted '$3'):"
                echo "$out"
                failn=$((failn + 1))
        fi
}
readme_drift "verb missing from the README's roles table" '/^| operator /s/`policy rekey`, //' \
        "README.md's roles table does not name the verb 'policy rekey'"
readme_drift "README over 300 lines" 'p' "lines; the guide stays within 300"
drift "verb missing from dkmctl(1)'s ROLES" dkmctl.1 's/ "policy assign" ,$/ ,/' \
        "dkmctl.1's ROLES does not name the verb 'policy assign'"

# A page that make install would leave out.
rm -rf "$tmp/man" && cp -r man "$tmp/man" && cp man/dkmd.8 "$tmp/man/dkm-extra.8"
out=$(MAN_DIR=$tmp/man bash tests/man/check.sh 2>&1)
if [ $? -ne 0 ] && grep -qF "dkm-extra.8 is not in the Makefile's MAN_PAGES" <<<"$out"; then
        echo "== drift page not installed: refused"
else
        echo "== drift page not installed: NOT refused as expected:"
        echo "$out"
        failn=$((failn + 1))
fi

echo "man: $failn failed"
[ $failn -eq 0 ]
