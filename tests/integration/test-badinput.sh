#!/bin/bash
# Tampered, truncated and foreign ciphertexts, malformed requests and bad
# configuration: each gets a clear error, no output, and dkmd keeps serving.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1
printf 'precious data' | as svc encrypt > "$W/ct"
len=$(stat -c %s "$W/ct")

flip "$W/ct" 0 "$W/t-magic"
flip "$W/ct" 4 "$W/t-version"
flip "$W/ct" 6 "$W/t-flags"
flip "$W/ct" 10 "$W/t-policy"
flip "$W/ct" 25 "$W/t-gen"
flip "$W/ct" 30 "$W/t-nonce"
flip "$W/ct" 42 "$W/t-body"
flip "$W/ct" $((len - 1)) "$W/t-tag"
refused "bad magic" "not a dkm ciphertext" as svc decrypt --in "$W/t-magic"
refused "unknown version" "unsupported ciphertext version" as svc decrypt --in "$W/t-version"
refused "unknown flags" "unknown ciphertext flags" as svc decrypt --in "$W/t-flags"
refused "altered policy id" "unknown policy" as svc decrypt --in "$W/t-policy"
refused "altered generation" "unknown generation" as svc decrypt --in "$W/t-gen"
refused "altered nonce" "failed authentication" as svc decrypt --in "$W/t-nonce"
refused "altered body" "failed authentication" as svc decrypt --in "$W/t-body"
refused "altered tag" "failed authentication" as svc decrypt --in "$W/t-tag"
head -c $((len - 1)) "$W/ct" > "$W/t-trunc1"
head -c 50 "$W/ct" > "$W/t-trunc2"
refused "truncated by one byte" "failed authentication" as svc decrypt --in "$W/t-trunc1"
refused "truncated into the header" "truncated ciphertext" as svc decrypt --in "$W/t-trunc2"
{ cat "$W/ct"; printf 'junk'; } > "$W/t-append"
refused "appended bytes" "failed authentication" as svc decrypt --in "$W/t-append"
head -c 200 /dev/urandom > "$W/foreign"
refused "foreign bytes" "not a dkm ciphertext" as svc decrypt --in "$W/foreign"
: > "$W/empty"
refused "empty ciphertext" "not a dkm ciphertext" as svc decrypt --in "$W/empty"
refused "inspect of foreign bytes" "not a dkm ciphertext" as svc inspect --in "$W/foreign"
refused "bad --context syntax" "expected KEY=VALUE" as svc encrypt --context novalue --in "$W/empty"
refused "unknown verb" "unknown verb" as svc frobnicate
refused "missing input file" "cannot open" as svc encrypt --in "$W/does-not-exist"
# dkmctl parses every verb's options against what that verb takes.
refused "option a verb does not take" "takes no --reason" as svc encrypt --reason x --in "$W/empty"
refused "policy on a ciphertext verb" "the ciphertext names its policy" as svc decrypt --policy p --in "$W/ct"
refused "unknown option" "unknown or incomplete option '--frob'" as svc status --frob
refused "option without its value" "unknown or incomplete option" as svc encrypt --in
refused "missing positional argument" "missing argument" as op key retire
refused "extra positional argument" "unexpected argument '2'" as op key retire 1 2
refused "json where there is none" "has no --json output" as op key rotate --json

# A decrypt that fails leaves no output file behind.
refused "failed decrypt with --out" "failed authentication" as svc decrypt --in "$W/t-body" --out "$W/never"
check "no partial plaintext file" test ! -e "$W/never"

# Malformed protocol messages straight on the socket.
send() { printf "$1" | socat -t 2 - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1; }
send '\x03\x00\x00\x00abc'                         # not our magic
send '\x08\x00\x00\x00DKMW\x0b\x00\x01\x00'       # field count beyond the end
send '\x0e\x00\x00\x00DKMW\x0b\x00\x01\x00\x02\x00\xff\xff\xff\x7f' # oversize field
send '\xff\xff\xff\x7f'                             # frame larger than the limit
send '\x08\x00\x00\x00DKMW\x63\x00\x00\x00'       # unknown request type
head -c 100000 /dev/urandom | socat -t 2 - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
check "dkmd survives malformed messages" dkmd_alive
check "and still decrypts" bash -c "as svc decrypt --in '$W/ct' | grep -qx 'precious data'"
r=$(printf '\x08\x00\x00\x00DKMW\x63\x00\x00\x00' | socat -t 2 - "UNIX-CONNECT:$SOCK" 2>/dev/null | tail -c +5 | tr -d '\0' | tr -cd '[:print:]')
check "a malformed request gets an error reply that says why" grep -q "unknown request type" <<<"$r"
stop_dkmd

# Bad configuration: a clear error naming the line, and no start.
bad_config() { # DESCRIPTION EXPECTED LINE...
        local d=$1 want=$2; shift 2
        write_config "$@"
        local out
        out=$("$DKMD" --config "$CONF" 2>&1)
        if [ $? -eq 0 ]; then fail "$d: dkmd started"
        elif [[ "$out" != *"$want"* ]]; then fail "$d: '$out' lacks '$want'"
        else pass "$d ($out)"; fi
}
bad_config "unknown key" "frobs" "[rotation]" "frobs=1"
bad_config "bad duration" "max_age" "[rotation]" "max_age=1x"
bad_config "negative duration" "max_age" "[rotation]" "max_age=-5m"
bad_config "zero approvals" "approvals_required" "[access]" "approvals_required=0"
DKM_ENGINE=fastest bad_config "unknown engine" "fastest"
bad_config "unknown section" "nonsense" "[nonsense]" "a=b"
write_config
start_dkmd || exit 1
check "after the bad configs, the original data still decrypts" bash -c \
        "as svc decrypt --in '$W/ct' | grep -qx 'precious data'"

# A plain start never creates a master key.
stop_dkmd
mv "$T/state/master.key" "$T/mk.saved"
out=$("$DKMD" --config "$CONF" 2>&1)
check "start without a master key fails" test $? -ne 0
check "and says to run --init" grep -q -- "--init" <<<"$out"
check "and did not create one" test ! -e "$T/state/master.key"
# A wrong master key is detected, not used.
head -c 32 /dev/urandom > "$T/state/master.key"; chmod 600 "$T/state/master.key"
out=$("$DKMD" --config "$CONF" 2>&1)
check "a wrong master key is refused at start" grep -q "wrong master key" <<<"$out"
mv "$T/mk.saved" "$T/state/master.key"
chmod 644 "$T/state/master.key"
out=$("$DKMD" --config "$CONF" 2>&1)
check "a group-readable master key is refused" grep -q "chmod 600" <<<"$out"
chmod 600 "$T/state/master.key"
finish
