#!/bin/bash
# Batches of small secrets with per-item errors, and envelope data keys.
. "$(dirname "$0")/lib.sh"

write_config
start_dkmd || exit 1
check "batch and data keys through libdkm" setpriv --reuid "$SVC_UID" --regid "$SVC_UID" \
        --groups "$USERS_GID" "$BUILD/tools/batch-check" "$SOCK"
check "a human gets no batch" bash -c "! setpriv --reuid $HUMAN_UID --regid $HUMAN_UID --clear-groups \
        '$BUILD/tools/batch-check' '$SOCK' | grep -q 'ok: a batch of 2500 encryptions is answered' "

# dkmctl datakey: the wrapped key to a file, the key to a 0600 file.
check "dkmctl datakey" as svc datakey --out "$W/dk.wrapped" --key-out "$W/dk.key" --context app=mail
check "the key file holds 32 bytes, mode 0600" bash -c \
        "[ \$(stat -c %s '$W/dk.key') = 32 ] && [ \$(stat -c %a '$W/dk.key') = 600 ]"
check "decrypt of the wrapped key gives the key" bash -c \
        "as svc decrypt --in '$W/dk.wrapped' --context app=mail | cmp -s - '$W/dk.key'"
refused "a human gets no data key" "not in the users group" as human datakey --out "$W/x"
refused "datakey needs --out" "--out FILE is required" as svc datakey
finish
