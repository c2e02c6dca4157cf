#!/bin/bash
# An idle dkmd keeps no unwrapped key in its memory, as someone who reads
# its memory (root with /proc/PID/mem, a core dump that slipped through, a
# memory disclosure) would look for it: tests/tools/vm-memscan learns the
# master, policy and generation keys by unwrapping the store with the master
# key file and reads every mapping of dkmd.  Under load a key may show for
# the moment of one operation (the VM test reports that); at rest, none.
. "$(dirname "$0")/lib.sh"

scan=$BUILD/tools/vm-memscan
[ -x "$scan" ] || { echo "SKIPPED: $scan missing (make tests)"; exit 77; }

write_config
start_dkmd || exit 1

echo "the secret of the service" > "$W/plain"
check "encrypt" as svc encrypt --in "$W/plain" --out "$W/ct"
check "decrypt" bash -c "as svc decrypt --in '$W/ct' | cmp -s - '$W/plain'"
head -c 300000 /dev/urandom > "$W/big"
check "a stream round trip" bash -c "as svc encrypt --in '$W/big' | as svc decrypt | cmp -s - '$W/big'"
sleep 1

out=$("$scan" "$T/state" "$T/state/master.key" "$DKMD_PID" 2 2>&1)
echo "  $out"
check "the scan learned the keys and read dkmd's memory" \
        grep -qE '^MEMSCAN passes=[1-9][0-9]* bytes=[1-9][0-9]* .*\(policies=[1-9][0-9]* generations=[1-9]' <<<"$out"
check "no master key in an idle dkmd's memory" grep -q ' master=0 ' <<<"$out"
check "no policy key in an idle dkmd's memory" grep -q ' policy=0 ' <<<"$out"
check "no generation key in an idle dkmd's memory" grep -q ' generation=0 ' <<<"$out"

finish
