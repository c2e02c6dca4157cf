#!/bin/bash
# Large data: dkmd streams between descriptors that dkmctl passes it, in
# segments (format v2), with flat memory; every tampering is refused and a
# failed decrypt leaves no partial plaintext behind.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1
seg=65536
hdr=72   # the salted layout: 40 bytes, then the stream's 32-byte salt

for n in 0 1 $((seg - 1)) $seg $((seg + 1)) $((3 * seg)) $((5 * seg + 17)) 3000000; do
        head -c "$n" /dev/urandom > "$W/in.$n"
        as svc encrypt --in "$W/in.$n" --out "$W/ct.$n" --context f=$n &&
        as svc decrypt --in "$W/ct.$n" --out "$W/out.$n" --context f=$n
        check "round trip of $n bytes (file to file)" cmp -s "$W/in.$n" "$W/out.$n"
done
check "a 3 MB input is a stream (format v2)" bash -c "head -c 5 '$W/ct.3000000' | od -An -tx1 | grep -q '44 4b 4d 43 02'"
check "a small input stays a message (format v1)" bash -c "head -c 5 '$W/ct.1' | od -An -tx1 | grep -q '44 4b 4d 43 01'"
check "a stream is written in the salted layout (flags 0x0001)" bash -c \
        "head -c 8 '$W/ct.3000000' | od -An -tx1 | grep -q '44 4b 4d 43 02 01 01 00'"
check "a stream has a 72-byte header and one 16-byte tag per 64 KiB segment" \
        test "$(stat -c %s "$W/ct.3000000")" -eq $((3000000 + hdr + 16 * ((3000000 + seg - 1) / seg)))
check "two streams of the same input have different salts" bash -c \
        "as svc encrypt --in '$W/in.$seg' --out '$W/ct.again' --context f=$seg &&
         ! cmp -s <(head -c $hdr '$W/ct.$seg' | tail -c 32) <(head -c $hdr '$W/ct.again' | tail -c 32)"
# Each stream seals under its own subkey, so it costs its generation one use.
uses() { as op key list --json | grep -o '"uses": *[0-9]*' | head -n1 | grep -o '[0-9]*$'; }
u0=$(uses)
for i in 1 2 3; do as svc encrypt --in "$W/in.3000000" --out "$W/ct.use$i"; done
u1=$(uses)
check "three streams cost three uses of the generation ($u0 -> $u1)" test "$((u1 - u0))" -eq 3
check "pipes in and out (stdin/stdout)" bash -c \
        "cat '$W/in.3000000' | as svc encrypt | as svc decrypt | cmp -s - '$W/in.3000000'"
check "a streamed ciphertext names its policy and generation" bash -c \
        "as svc decrypt --in '$W/ct.3000000' --context f=3000000 --out '$W/o2' && cmp -s '$W/o2' '$W/in.3000000'"

# Tampering: flips in the header, a segment, the last tag; truncation at a
# segment boundary and inside one; a dropped, reordered or duplicated
# segment; appended bytes; a splice from another stream.
ct=$W/ct.$((5 * seg + 17)); sz=$(stat -c %s "$ct"); full=$((seg + 16)); H=$hdr
flip "$ct" 10 "$W/t.header"
flip "$ct" 50 "$W/t.salt"
flip "$ct" 6 "$W/t.flags"
flip "$ct" $((H + 100)) "$W/t.seg0"
flip "$ct" $((sz - 1)) "$W/t.lasttag"
head -c $((H + 2 * full)) "$ct" > "$W/t.boundary"
head -c $((sz - 10)) "$ct" > "$W/t.inside"
head -c 60 "$ct" > "$W/t.cutsalt"
{ head -c $((H + full)) "$ct"; tail -c +$((H + 2 * full + 1)) "$ct"; } > "$W/t.dropped"
{ head -c $H "$ct"; dd if="$ct" bs=1 skip=$((H + full)) count=$full status=none;
  dd if="$ct" bs=1 skip=$H count=$full status=none; tail -c +$((H + 2 * full + 1)) "$ct"; } > "$W/t.reordered"
{ head -c $((H + full)) "$ct"; tail -c +$((H + 1)) "$ct"; } > "$W/t.duplicated"
{ cat "$ct"; printf 'garbage'; } > "$W/t.appended"
other=$W/ct.$((3 * seg))
{ head -c $((H + full)) "$ct"; dd if="$other" bs=1 skip=$((H + full)) count=$full status=none;
  tail -c +$((H + 2 * full + 1)) "$ct"; } > "$W/t.spliced"
{ head -c 40 "$ct"; head -c $H "$other" | tail -c 32; tail -c +$((H + 1)) "$ct"; } > "$W/t.othersalt"
# Downgrade to the first layout: flags 0, the salt cut out.
{ head -c 6 "$ct"; printf '\0\0'; head -c 40 "$ct" | tail -c 32; tail -c +$((H + 1)) "$ct"; } > "$W/t.downgrade"
for t in header salt flags seg0 lasttag boundary inside cutsalt dropped reordered duplicated appended spliced \
         othersalt downgrade; do
        out=$(as svc decrypt --in "$W/t.$t" --out "$W/never.$t" --context f=$((5 * seg + 17)) 2>&1)
        rc=$?
        if [ $rc -ne 0 ] && [ ! -e "$W/never.$t" ]; then pass "tampered ($t) refused, no output file: $out"
        else
                fail "tampered ($t) accepted or left output (rc $rc: $out)"
                cmp -s "$W/t.$t" "$ct" && echo "    (t.$t is the same as the original)"
                ls -l "$W/never.$t" 2>&1 | sed 's/^/    /'
        fi
done
refused "wrong context on a stream" "wrong context" as svc decrypt --in "$ct" --out "$W/never.ctx" --context f=1
check "no partial plaintext at the destination" test ! -e "$W/never.ctx"
refused "a human cannot stream" "not in the users group" as human encrypt --in "$W/in.3000000" --out "$W/never.h"

# Elevated access: a caller outside the users group decrypts a stream under a
# live decrypt grant for the policy its header names, and only then; each use
# is audited with the grant, and a refusal writes nothing.
audit_mark >/dev/null
sct=$W/g.ct
cp "$W/ct.3000000" "$sct"; chmod 644 "$sct"   # the svc's files are its own
refused "no grant: an operator cannot decrypt a stream" "no live grant" \
        as op decrypt --in "$sct" --out "$W/never.g0" --context f=3000000
check "no grant: no output file" test ! -e "$W/never.g0"
refused "no grant: nor through a pipe" "no live grant" bash -c "cat '$sct' | as op decrypt --context f=3000000"
iid=$(as op access request --reason "restore check" --duration 10m --scope inspect)
as appr access approve "$iid" >/dev/null; as appr2 access approve "$iid" >/dev/null
refused "an inspect grant does not decrypt a stream" "no live grant" \
        as op decrypt --in "$sct" --out "$W/never.g1" --context f=3000000
gid=$(as op access request --reason "restore ticket 77" --duration 10m --scope decrypt)
as appr access approve "$gid" >/dev/null
refused "one approval of two: still refused" "no live grant" \
        as op decrypt --in "$sct" --out "$W/never.g2" --context f=3000000
as appr2 access approve "$gid" >/dev/null
check "the grant holder decrypts a stream (file to file)" bash -c \
        "as op decrypt --in '$sct' --out '$W/g.out' --context f=3000000 && cmp -s '$W/g.out' '$W/in.3000000'"
check "and through a pipe" bash -c \
        "cat '$sct' | as op decrypt --context f=3000000 | cmp -s - '$W/in.3000000'"
refused "a grant does not lift the context check" "wrong context" \
        as op decrypt --in "$sct" --out "$W/never.g3" --context f=1
refused "a grant does not let its holder encrypt" "not in the users group" \
        as op encrypt --in "$W/in.3000000" --out "$W/never.g4"
recs=$(audit_search -m USER_ACCT,CRYPTO_KEY_USER)
check "audit: the stream decrypt under the grant" grep -q \
        "op=grant-use .*oauid=unknown($OP_UID).*request=$gid use=decrypt-stream policy=default generation=1 " <<<"$recs"
check "audit: the refusal without a grant" grep -q "op=decrypt-stream .*oauid=unknown($OP_UID).*res=failed" <<<"$recs"
check "an approver revokes the grant" bash -c "as appr access revoke $gid >/dev/null"
refused "after revocation the stream is refused" "grant $gid" \
        as op decrypt --in "$sct" --out "$W/never.g5" --context f=3000000
check "and no output was written by any refusal" bash -c "! ls '$W'/never.g* 2>/dev/null | grep -q ."

# Flat memory: a 1 GiB sparse file; dkmd's and dkmctl's peak RSS stay small.
truncate -s 1G "$W/sparse"
rss_before=$(awk '/VmHWM/ {print $2}' "/proc/$DKMD_PID/status")
/usr/bin/time -f '%M' -o "$W/ctl.rss" setpriv --reuid "$SVC_UID" --regid "$SVC_UID" --groups "$USERS_GID" \
        "$DKMCTL" --socket "$SOCK" encrypt --in "$W/sparse" --out "$W/sparse.ct"
rss_after=$(awk '/VmHWM/ {print $2}' "/proc/$DKMD_PID/status")
# The whole of dkmd stays under 64 MiB too, but for a sanitizer build, whose
# shadow memory alone is larger: there only the growth counts.
rss_cap=65536
ldd "$DKMD" | matches libasan && rss_cap=$((1024 * 1024))
check "1 GiB encrypted: dkmd's peak RSS grew by ${rss_after}-${rss_before} KiB (< 32 MiB; < $((rss_cap / 1024)) MiB in all)" \
        test $((rss_after - rss_before)) -lt 32768 -a "$rss_after" -lt "$rss_cap"
check "dkmctl's peak RSS $(cat "$W/ctl.rss") KiB (< 32 MiB)" test "$(cat "$W/ctl.rss")" -lt 32768
check "and it decrypts to the same 1 GiB" bash -c \
        "as svc decrypt --in '$W/sparse.ct' | cmp -s - '$W/sparse'"
rm -f "$W/sparse" "$W/sparse.ct"
finish
