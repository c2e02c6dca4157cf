#!/bin/bash
# Attack: an operator runs code inside dkmd, or has it read any file it can.
# A pkcs11: customer key names a library that dkmd loads (its constructor runs
# as dkmd, with dkmd's keyring) and a PIN file that dkmd reads; a file:
# customer key names a file that dkmd reads.  Only [policy] pkcs11_modules and
# key_dirs, set by the administrator in dkmd.conf, decide what may be used:
# at create and rekey, and at every use, also of a URI found in the store.
. "$(dirname "$0")/lib.sh"

command -v cc >/dev/null || { echo "SKIPPED: no C compiler to build the attacker's module"; exit 77; }
command -v sqlite3 >/dev/null || { echo "SKIPPED: sqlite3 is not installed"; exit 77; }

K=$T/keys
mkdir -p "$K/a" "$K/b" "$T/other"
chmod 0755 "$K" "$K/a" "$K/b"
for x in a b; do head -c 32 /dev/urandom > "$K/$x/key"; chmod 600 "$K/$x/key"; done
head -c 32 /dev/urandom > "$T/other/key"; chmod 600 "$T/other/key"
ka="file:$K/a/key" kb="file:$K/b/key"

# The attacker's module: its constructor leaves proof that it ran inside
# dkmd (its uid, its executable, and dkmd's keyrings as /proc shows them).
MARK=$T/evil-ran
cat > "$T/evil.c" <<EOF
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void evil(void)
{
        char exe[256] = "", line[256];
        FILE *f = fopen("$MARK", "w"), *k = fopen("/proc/self/keys", "r");
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

        if (!f)
                return;
        if (n > 0)
                exe[n] = 0;
        fprintf(f, "uid=%d exe=%s\n", (int)getuid(), exe);
        while (k && fgets(line, sizeof(line), k))
                fputs(line, f);
        fclose(f);
}
EOF
cc -shared -fPIC -o "$W/libevil.so" "$T/evil.c" || { echo "FAIL: cannot build the module"; exit 1; }
chown "$OP_UID:$OP_UID" "$W/libevil.so"
evil="pkcs11:token=t;object=o?module-path=$W/libevil.so"

SOFTHSM_LIB=
for lib in /usr/lib/softhsm/libsofthsm2.so /usr/lib/"$(gcc -print-multiarch 2>/dev/null)"/softhsm/libsofthsm2.so; do
        [ -f "$lib" ] && { SOFTHSM_LIB=$lib; break; }
done
write_config "[policy]" "cache_ttl=2s" "key_dirs=$K" "pkcs11_modules=${SOFTHSM_LIB:-/usr/lib/none.so} allowed-name"
start_dkmd || exit 1
audit_mark >/dev/null

check "a policy on key files in key_dirs" bash -c "as op policy create ok --customer-key '$ka' --customer-key '$kb' >/dev/null"
printf 'ok data' | as svc encrypt --policy ok > "$W/ok1"

refused "a module outside pkcs11_modules is not loaded" "is not in [policy] pkcs11_modules" \
        as op policy create evil1 --customer-key "$evil" --customer-key "$ka"
check "  and its constructor never ran in dkmd" test ! -e "$MARK"
refused "a module name outside pkcs11_modules" "module name 'other' is not in [policy] pkcs11_modules" \
        as op policy create evil2 --customer-key "pkcs11:token=t;object=o?module-name=other" --customer-key "$ka"
refused "the master key as a customer key" "is not in [policy] key_dirs" \
        as op policy create evil3 --customer-key "file:$T/state/master.key" --customer-key "$ka"
refused "a root-only file outside key_dirs" "is not in [policy] key_dirs" \
        as op policy create evil4 --customer-key "file:$T/other/key" --customer-key "$ka"
refused "a '..' out of key_dirs" "'..'" \
        as op policy create evil5 --customer-key "file:$K/../other/key" --customer-key "$ka"
ln -s "$T/other/key" "$K/b/link"
refused "a symlink out of key_dirs" "outside [policy] key_dirs" \
        as op policy create evil6 --customer-key "file:$K/b/link" --customer-key "$ka"
cp "$K/a/key" "$K/a/shared"; chmod 644 "$K/a/shared"
refused "a key file others can read" "must not be writable by group or others, nor readable by others" \
        as op policy create evil7 --customer-key "file:$K/a/shared" --customer-key "$kb"
if [ -n "$SOFTHSM_LIB" ]; then
        refused "a PIN file outside key_dirs (its bytes would go to the module)" \
                "PIN file $T/state/master.key is not in [policy] key_dirs" \
                as op policy create evil8 --customer-key "$ka" \
                --customer-key "pkcs11:token=t;object=o?module-path=$SOFTHSM_LIB&pin-source=file:$T/state/master.key"
fi
refused "a malformed second key (the first is freed once)" "customer key 2" \
        as op policy create evil9 --customer-key "$ka" --customer-key "nonsense:x"
refused "a rekey to a module outside pkcs11_modules" "is not in [policy] pkcs11_modules" \
        as op policy rekey ok --customer-key "$evil" --customer-key "$ka"
check "  and its constructor never ran in dkmd" test ! -e "$MARK"

# A URI that reaches dkmd through the store (another node, or whoever can
# write the store) is checked when it is used, not only at create.
stop_dkmd
sqlite3 "$T/state/dkm.db" "update kv set value = json_set(value, '\$.customer_keys[0].uri', '$evil') \
        where key like 'policies/%' and value like '%customer_keys%'"
start_dkmd || exit 1
as svc decrypt --in "$W/ok1" >/dev/null 2>&1
check "a module named by a record in the store is not loaded either" test ! -e "$MARK"
[ -e "$MARK" ] && sed 's/^/    /' "$MARK"
stop_dkmd
sqlite3 "$T/state/dkm.db" "update kv set value = json_set(value, '\$.customer_keys[0].uri', '$ka') \
        where key like 'policies/%' and value like '%customer_keys%'"

# The administrator takes a directory off the list: its keys stop working
# at their next use, and the availability key does not stand in for them.
write_config "[policy]" "cache_ttl=2s" "key_dirs=$T/other"
start_dkmd || exit 1
refused "a key directory taken off key_dirs: refused at use" "is not in [policy] key_dirs" \
        as svc decrypt --in "$W/ok1"
check "  and the availability key was not used" bash -c \
        "as op policy show ok | grep -q '\"availability_key_used\": false'"
stop_dkmd
write_config "[policy]" "cache_ttl=2s" "key_dirs=$K"
start_dkmd || exit 1
check "back on the list: it decrypts again" bash -c "as svc decrypt --in '$W/ok1' | grep -qx 'ok data'"

# A list that would allow everything is not a list.
write_config "[policy]" "key_dirs=/"
check "key_dirs=/ is refused" bash -c "'$DKMD' --config '$CONF' 2>&1 | grep -q \"'/' would allow every file\""
write_config "[policy]" "key_dirs=$T"
check "a key_dirs entry holding the state directory is refused" bash -c \
        "'$DKMD' --config '$CONF' 2>&1 | grep -q 'holds \[daemon\] state_dir'"

recs=$(audit_search -m CRYPTO_KEY_USER)
check "audit: the refused create" grep -q "op=policy-create .*policy=evil1 reason=customer-key-not-allowed.*res=failed" <<<"$recs"
check "audit: the refused rekey" grep -q "op=policy-rekey .*policy=ok reason=customer-key-not-allowed.*res=failed" <<<"$recs"
finish
