#!/bin/bash
# Encrypt and decrypt through a running dkmd, as a service account.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1

echo "the secret of the service" > "$W/plain"
check "encrypt as a service account" as svc encrypt --in "$W/plain" --out "$W/ct"
check "ciphertext starts with the format magic" bash -c "head -c 4 '$W/ct' | grep -q DKMC"
check "ciphertext is 56 bytes longer than the plaintext" \
        test $(($(stat -c %s "$W/ct") - $(stat -c %s "$W/plain"))) -eq 56
check "decrypt gives the plaintext back" bash -c "as svc decrypt --in '$W/ct' | cmp -s - '$W/plain'"
check "decrypt --out writes a 0600 file" bash -c "cd '$W' && as svc decrypt --in ct --out '$W/out' && cmp -s '$W/out' '$W/plain' && [ \$(stat -c %a '$W/out') = 600 ]"

# stdin/stdout by default, with a context bound to the ciphertext.
ct=$(printf 'token-123' | as svc encrypt --context tenant=acme --context purpose=api | base64 -w0)
check "encrypt from stdin with a context" test -n "$ct"
pt=$(echo "$ct" | base64 -d | as svc decrypt --context purpose=api --context tenant=acme)
check "context pairs may come in any order" test "$pt" = "token-123"
refused "wrong context is refused" "failed authentication" \
        bash -c "echo '$ct' | base64 -d | as svc decrypt --context tenant=evil --context purpose=api"
refused "missing context is refused" "failed authentication" \
        bash -c "echo '$ct' | base64 -d | as svc decrypt"

# Sizes: empty, and 1 MiB (streamed: see test-stream.sh for large data).
: > "$W/empty"
check "empty plaintext round trip" bash -c "as svc encrypt --in '$W/empty' | as svc decrypt | cmp -s - '$W/empty'"
head -c 1048576 /dev/urandom > "$W/big"
check "1 MiB round trip" bash -c "as svc encrypt --in '$W/big' | as svc decrypt | cmp -s - '$W/big'"
head -c 1048577 /dev/urandom > "$W/big1"
check "1 MiB + 1 round trip through a pipe" bash -c "cat '$W/big1' | as svc encrypt | as svc decrypt | cmp -s - '$W/big1'"
head -c 2000000 /dev/urandom | as svc encrypt > "$W/big.v2"
refused "rewrap is for messages (v1): a large stream is refused" "input larger than" as svc rewrap --in "$W/big.v2"

# Same plaintext twice gives different ciphertexts (random nonce).
a=$(printf x | as svc encrypt | sha256sum) b=$(printf x | as svc encrypt | sha256sum)
check "nonces differ between encryptions" test "$a" != "$b"

# inspect names the policy and generation.
j=$(as svc inspect --in "$W/ct" --json)
check "inspect --json names the default policy" grep -q '"policy": "default"' <<<"$j"
check "inspect --json names generation 1" grep -q '"generation": 1' <<<"$j"
check "inspect says decryptable" grep -q '"decryptable": true' <<<"$j"

# status names the engine and why; on a kernel without AF_ALG it is openssl.
s=$(as svc status --json)
check "status --json names an engine" grep -qE '"engine": "(kernel|openssl)"' <<<"$s"
if grep -q '"engine": "openssl"' <<<"$s"; then
        check "status says why the kernel engine is not used" grep -q 'CONFIG_CRYPTO_USER_API' <<<"$s"
fi
check "status text names the engine" bash -c "as svc status | grep -q '^engine:'"
# Which custody holds the generation keys, and why not the kernel's: on the
# openssl engine (this host: no AF_ALG) they are read into dkmd per operation.
if grep -q '"engine": "openssl"' <<<"$s"; then
        check "status says keys are read into dkmd, and why" grep -q \
                '"custody": "keys read into dkmd per operation (the openssl engine cannot use keys by keyring serial)"' <<<"$s"
        check "the journal says which custody serves" grep -q 'key custody: keys read into dkmd per operation' "$T/dkmd.log"
fi
check "status text names the custody" bash -c "as svc status | grep -qE '^custody: (kernel-held keys \(logon, by serial\)|keys read into dkmd per operation \()'"

# The master key file is private and the store holds wrapped keys only.
check "master key file is mode 0600" test "$(stat -c %a "$T/state/master.key")" = 600
check "store records carry wrapped keys" bash -c "sqlite3 '$T/state/dkm.db' 'select value from kv' | grep -q wrapped_key"
finish
