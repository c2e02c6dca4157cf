#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A record sent through audit.c (tests/tools/audit-emit) comes back from the
# real auditd, and ausearch -i shows the requester's identity interpreted:
# uid, login uid and gid as names, comm and exe, with dkmd's (here:
# audit-emit's) own identity in the kernel's header.  Also: refusals are
# USER_ACCT res=failed, the records stay findable by uid searches, and
# DKM_AUDIT_FAIL=1 makes the send fail with nothing logged.
#
# usage: test-audit-readback.sh [BUILD]      exit 0 pass, 1 fail, 77 skip
set -u

here=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-${BUILD:-build}}
emit=$BUILD/tools/audit-emit
# shellcheck source=tests/integration/lib-audit.sh
. "$here/lib-audit.sh"

if [ ! -x "$emit" ]; then
        echo "SKIP: $emit is not built (make BUILD=$BUILD tests)"
        exit 77
fi
for cmd in setpriv; do
        command -v "$cmd" >/dev/null || { echo "SKIP: $cmd missing (util-linux)"; exit 77; }
done

audit_start
rc=$?
if [ "$rc" = 77 ]; then
        echo "SKIP: auditd cannot run here"
        exit 77
elif [ "$rc" != 0 ]; then
        echo "FAIL: auditd did not come up"
        exit 1
fi

requester=
cleanup() {
        [ -n "$requester" ] && kill "$requester" 2>/dev/null
        audit_stop
}
trap cleanup EXIT

failures=0
check() { # NAME PATTERN TEXT
        if grep -qE -- "$2" <<<"$3"; then
                echo "ok   - $1"
        else
                echo "FAIL - $1: no match for /$2/ in:"
                echo "$3" | sed 's/^/       /'
                failures=$((failures + 1))
        fi
}

# The requester: a process of nobody with its own login uid, as if nobody
# had logged in.  Setting loginuid needs root and an unset one (or
# loginuid_immutable off): fall back to "unset" when it does not work.
want_auid=nobody
bash -c 'echo 65534 > /proc/self/loginuid' 2>/dev/null || want_auid=unset
# shellcheck disable=SC2016
bash -c '[ "$1" = nobody ] && echo 65534 > /proc/self/loginuid
        exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 120' _ "$want_auid" &
requester=$!
for ((i = 0; i < 50; i++)); do
        [ "$(awk '/^Uid:/ { print $2 }' "/proc/$requester/status" 2>/dev/null)" = 65534 ] && break
        sleep 0.1
done
nogroup=$(getent group 65534 | cut -d: -f1)
nogroup=${nogroup:-65534}
sleep_exe=$(readlink -f "$(command -v sleep)")

nonce="n$$x$RANDOM"
audit_mark >/dev/null

# 1. Key use on behalf of the requester, with a value that must be encoded.
if ! "$emit" -k key -p "$requester" -u 65534 -g 65534 key-use \
        "nonce=$nonce" "reason=it's a \"test\" = yes"; then
        echo "FAIL - audit-emit could not send a CRYPTO_KEY_USER record"
        exit 1
fi
out=$(audit_search -m CRYPTO_KEY_USER | grep -- "$nonce\"")
check "CRYPTO_KEY_USER record found" "type=CRYPTO_KEY_USER" "$out"
check "header is the sender (root)" "msg=audit\([^)]*\) : pid=[0-9]+ uid=root " "$out"
check "op" "msg='op=key-use " "$out"
check "requester pid" " opid=$requester " "$out"
check "requester uid interpreted" " id=nobody " "$out"
check "requester login uid interpreted" " oauid=$want_auid " "$out"
check "requester gid interpreted" " ogid=$nogroup " "$out"
check "requester comm decoded" " ocomm=sleep " "$out"
check "requester exe" " oexe=\"?$sleep_exe\"? " "$out"
check "encoded value kept intact" " reason=69742773206120227465737422203D20796573 " "$out"
check "sender's exe appended by libaudit" " exe=$(readlink -f "$emit") " "$out"
check "result" " res=success'" "$out"
if grep -q "subj_verified=no" <<<"$out"; then
        echo "FAIL - a live requester's record says subj_verified=no"
        failures=$((failures + 1))
else
        echo "ok   - a live requester's record is verified"
fi

# Findable by the requester's executable (ausearch -x matches oexe=) and
# not dropped from uid searches as malformed (as ouid= would be).
out=$(audit_search -m CRYPTO_KEY_USER -x "$sleep_exe" | grep -- "$nonce\"")
check "ausearch -x <requester exe> finds it" "$nonce" "$out"
out=$(audit_search -m CRYPTO_KEY_USER -ua 0 | grep -- "$nonce\"")
check "ausearch -ua 0 still finds it" "$nonce" "$out"

# 2. A refusal: USER_ACCT, res=failed.
if ! "$emit" -k access -f -p "$requester" -u 65534 -g 65534 access-approve \
        "nonce=$nonce" "why=not an approver"; then
        echo "FAIL - audit-emit could not send a USER_ACCT record"
        exit 1
fi
out=$(audit_search -m USER_ACCT | grep -- "$nonce\"")
check "USER_ACCT refusal found" "type=USER_ACCT .*op=access-approve .* id=nobody .* res=failed'" "$out"
out=$(audit_search -m USER_ACCT --success no | grep -- "$nonce\"")
check "ausearch --success no finds the refusal" "$nonce" "$out"

# 2b. A requester that is gone: no login uid, comm or exe guessed from a pid
#     that may be someone else's now, and the record says so; ausearch still
#     parses it (found by uid searches).
gone=$(bash -c 'echo $$')
if ! "$emit" -k key -p "$gone" -u 65534 -g 65534 key-use "nonce=${nonce}gone"; then
        echo "FAIL - audit-emit could not send a record for a gone requester"
        exit 1
fi
out=$(audit_search -m CRYPTO_KEY_USER -ua 0 | grep -- "${nonce}gone\"")
check "gone requester: found by ausearch -ua 0" "$nonce" "$out"
check "gone requester: unverified, nothing guessed" \
        " opid=$gone id=nobody oauid=unset oses=4294967295 ogid=$nogroup ocomm=\? oexe=\? subj_verified=no " "$out"

# 3. dkmd's own action: no requester fields.
"$emit" -k config -s policy-assign "nonce=$nonce" || failures=$((failures + 1))
out=$(audit_search -m USYS_CONFIG | grep -- "$nonce\"")
check "USYS_CONFIG record without requester" "msg='op=policy-assign nonce=\"$nonce\" exe=" "$out"

# 4. The fail-closed hook: the send fails and nothing is logged.
if DKM_AUDIT_FAIL=1 "$emit" -k key -p "$requester" -u 65534 -g 65534 key-use \
        "nonce=${nonce}fail" 2>/dev/null; then
        echo "FAIL - DKM_AUDIT_FAIL=1 did not make audit_record fail"
        failures=$((failures + 1))
else
        echo "ok   - DKM_AUDIT_FAIL=1 makes audit_record fail"
fi
sleep 1
if AUDIT_WAIT=0 audit_search -m CRYPTO_KEY_USER | grep -q -- "${nonce}fail"; then
        echo "FAIL - a record was logged under DKM_AUDIT_FAIL=1"
        failures=$((failures + 1))
else
        echo "ok   - nothing logged under DKM_AUDIT_FAIL=1"
fi

if [ "$failures" != 0 ]; then
        echo "FAIL: $failures check(s) failed"
        exit 1
fi
echo "PASS"
exit 0
