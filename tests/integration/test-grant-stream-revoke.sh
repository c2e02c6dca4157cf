#!/bin/bash
# A grant that ends during a long stream stops it.  A human (the operator,
# outside the users group) with an approved decrypt grant streams a large
# ciphertext from a slow pipe; the grant is revoked mid-stream, once with
# keyctl from a root shell and once with dkmctl access revoke by an
# approver; a third grant expires mid-stream.  dkmd must stop writing plaintext within a second (checked
# here with a margin for a loaded machine), fail the request with the
# reason, and audit the stop.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1

size=$((8 * 1024 * 1024))
head -c "$size" /dev/urandom > "$W/plain"
as svc encrypt --in "$W/plain" --out "$W/ct" --context case=revoke || { fail "encrypt"; finish; }
chmod 644 "$W/ct"
ring=$(as appr status --json | sed -n 's/.*"grants_keyring": \([0-9]*\).*/\1/p')

# This dkmd's records only: the host's auditd may serve other instances.
own_records() { audit_search "$@" | grep " : pid=$DKMD_PID "; }

grant() {
        local id
        id=$(as op access request --reason "restore ticket 88" --duration 10m --scope decrypt)
        as appr access approve "$id" >/dev/null
        as appr2 access approve "$id" >/dev/null
        echo "$id"
}

# slow_feed CT FIRST GO: the first FIRST bytes at once, then (once GO
# exists) the rest at about 1 MiB/s: the rest takes several seconds.
slow_feed() {
        local ct=$1 first=$2 go=$3 total off i
        total=$(stat -c %s "$ct")
        head -c "$first" "$ct"
        for ((i = 0; i < 400; i++)); do
                [ -e "$go" ] && break
                sleep 0.05
        done
        for ((off = first; off < total; off += 65536)); do
                dd if="$ct" bs=65536 skip="$off" count=1 iflag=skip_bytes status=none || return 0
                sleep 0.05
        done
}

# revoke_mid_stream HOW: HOW is "keyctl" or "dkmctl".
revoke_mid_stream() {
        local how=$1 id go out pid i t0 t1 rc size_at_revoke size_end ms
        id=$(grant)
        go=$W/go.$how
        out=$W/out.$how
        audit_mark >/dev/null
        slow_feed "$W/ct" $((2 * 1024 * 1024)) "$go" |
                as op decrypt --context case=revoke >"$out" 2>"$W/err.$how" &
        pid=$!
        # Wait until plaintext flows: the grant was checked and the stream runs.
        for ((i = 0; i < 200; i++)); do
                [ "$(stat -c %s "$out" 2>/dev/null || echo 0)" -gt 0 ] && break
                sleep 0.05
        done
        size_at_revoke=$(stat -c %s "$out")
        if [ "$how" = keyctl ]; then
                keyctl revoke "$(keyctl search "$ring" user "dkm:grant:$id")"
        else
                as appr access revoke "$id" >/dev/null
        fi
        # The grant has ended (dkmctl returned once the store said so).
        t0=$(date +%s%N)
        touch "$go"
        wait "$pid"
        rc=$?
        t1=$(date +%s%N)
        ms=$(((t1 - t0) / 1000000))
        size_end=$(stat -c %s "$out")
        echo "    ($how: ${size_at_revoke} bytes before the revocation, ${size_end} of $size in the end," \
             "stream ended ${ms} ms after it, rc $rc: $(cat "$W/err.$how"))"
        check "$how: the stream was under way when the grant was revoked" test "$size_at_revoke" -gt 0
        check "$how: the stream fails" test "$rc" -ne 0
        check "$how: and says why" grep -q "grant $id revoked" "$W/err.$how"
        check "$how: it did not complete" test "$size_end" -lt "$size"
        # 1 s in dkmd; the rest of the margin is for a loaded machine.
        check "$how: it stopped within 2.5 s of the revocation (${ms} ms)" test "$ms" -lt 2500
        recs=$(own_records -m USER_ACCT)
        check "$how: the stop is audited, with the grant and the reason" grep -q \
                "op=grant-use-stop .*oauid=unknown($OP_UID).*request=$id use=decrypt-stream policy=default .*res=failed" \
                <<<"$recs"
}

# A stream that its grant outlives completes as before, however slow.
id=$(grant)
touch "$W/go.none"
check "a slow stream under a live grant completes" bash -c \
        "$(declare -f slow_feed); slow_feed '$W/ct' $((6 * 1024 * 1024)) '$W/go.none' | as op decrypt --context case=revoke | cmp -s - '$W/plain'"
as appr access revoke "$id" >/dev/null

revoke_mid_stream keyctl
revoke_mid_stream dkmctl

# A grant that expires mid-stream stops it the same way.
audit_mark >/dev/null
id=$(as op access request --reason "short restore" --duration 3s --scope decrypt)
as appr access approve "$id" >/dev/null
as appr2 access approve "$id" >/dev/null
t0=$(date +%s%N)   # the grant ends 3 s after this at the latest
touch "$W/go.expire"
slow_feed "$W/ct" $((2 * 1024 * 1024)) "$W/go.expire" |
        as op decrypt --context case=revoke >"$W/out.expire" 2>"$W/err.expire"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
echo "    (expiry: $(stat -c %s "$W/out.expire") of $size bytes, ended ${ms} ms after the grant," \
     "rc $rc: $(cat "$W/err.expire"))"
check "expiry: the stream fails, saying why" grep -q "stopped mid-stream: grant $id expired" "$W/err.expire"
check "expiry: it did not complete" test "$(stat -c %s "$W/out.expire")" -lt "$size"
check "expiry: it stopped within 2.5 s of the end of the grant (${ms} ms after its start)" test "$ms" -lt 5500
recs=$(own_records -m USER_ACCT)
check "expiry: the stop is audited" grep -q "op=grant-use-stop .*request=$id .*res=failed" <<<"$recs"
finish
