# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Private SoftHSM2 tokens, and a token served remotely by `p11-kit server`,
# for tests of the pkcs11: customer keys.  Needs the Debian packages softhsm2,
# p11-kit, p11-kit-modules and opensc (pkcs11-tool).  Source this file; it
# defines:
#
#   softhsm_available           0 when everything is installed, 77 otherwise
#                               (with the reason on stderr).
#   softhsm_setup DIR           use DIR for tokens, configs and sockets.
#   softhsm_token NAME PIN      a new token labelled NAME with user PIN PIN,
#                               in its own token directory and SOFTHSM2_CONF
#                               (so a token served remotely is not also
#                               visible locally).
#   softhsm_conf NAME           the SOFTHSM2_CONF file of token NAME.
#   softhsm_keygen NAME PIN LABEL
#                               an AES-256 key object LABEL on token NAME,
#                               sensitive and not extractable (pkcs11-tool
#                               gives it encrypt/decrypt/wrap/unwrap; it has no
#                               way to clear one: see ckey-tool disable).
#   softhsm_delete_key NAME PIN LABEL
#   softhsm_uri NAME LABEL PIN  the pkcs11: URI of a key on a local token
#                               (module-path= SoftHSM2; set SOFTHSM2_CONF to
#                               $(softhsm_conf NAME) when using it).
#
#   p11_server_start NAME       serve token NAME with `p11-kit server` in its
#                               own process group, on $SOFTHSM_DIR/NAME.sock;
#                               sets P11_SERVER_PID and exports
#                               P11_KIT_SERVER_ADDRESS=unix:path=... .
#   p11_server_stop             SIGTERM the server and its per-connection
#                               children; the socket goes away.
#   p11_server_pause / p11_server_resume
#                               SIGSTOP / SIGCONT them: connections hang.
#   p11_remote_uri NAME LABEL PIN
#                               the URI through p11-kit's client module
#                               (module-path=.../p11-kit-client.so), which
#                               reads P11_KIT_SERVER_ADDRESS when loaded.
#   p11_remote_config NAME MODDIR
#                               write MODDIR/NAME-remote.module with
#                               "remote: unix:path=<socket>"; URIs then say
#                               module-name=NAME-remote.  A program reads
#                               MODDIR only when told to (ckey-tool:
#                               DKM_TEST_P11_MODULES=MODDIR); dkmd reads
#                               /etc/pkcs11/modules.
#
# How p11-kit 0.24 (Debian 12) remotes a token: `p11-kit server --provider
# MODULE "pkcs11:token=..."` listens on a Unix socket (-n PATH; default
# $XDG_RUNTIME_DIR/p11-kit/pkcs11-PID) and forks a child per connection that
# runs MODULE.  A client reaches it either through the client module
# p11-kit-client.so (address from $P11_KIT_SERVER_ADDRESS, else
# $XDG_RUNTIME_DIR/p11-kit/pkcs11: one server per process) or through a
# p11-kit module config with "remote: unix:path=/..." (one per config file;
# "remote: |command" would run e.g. `ssh host p11-kit remote ...` instead).
# The RPC has no timeouts (a stopped server hangs the caller: dkm's hedge and
# timeout deal with that), maps a refused connection to "no slots", and in
# 0.24 carries only mechanisms without parameters or with RSA-PSS/OAEP
# parameters: CKM_AES_GCM and CKM_AES_KEY_WRAP(_PAD) do not cross it.
#
# Nothing outside DIR is written.  Scripts call p11_server_stop from their
# EXIT trap.

SOFTHSM_DIR=
SOFTHSM_LIB=
P11_CLIENT_MODULE=
P11_SERVER_PID=
P11_SERVER_NAME=

softhsm_available() {
        local cmd lib moddir
        for cmd in softhsm2-util pkcs11-tool p11-kit; do
                if ! command -v "$cmd" >/dev/null; then
                        echo "softhsm: $cmd not installed (Debian packages softhsm2 opensc p11-kit)" >&2
                        return 77
                fi
        done
        for lib in /usr/lib/softhsm/libsofthsm2.so \
                   /usr/lib/"$(gcc -print-multiarch 2>/dev/null)"/softhsm/libsofthsm2.so \
                   /usr/lib64/pkcs11/libsofthsm2.so; do
                [ -f "$lib" ] && { SOFTHSM_LIB=$lib; break; }
        done
        if [ -z "$SOFTHSM_LIB" ]; then
                echo "softhsm: libsofthsm2.so not found (Debian package libsofthsm2)" >&2
                return 77
        fi
        moddir=$(pkg-config --variable=p11_module_path p11-kit-1 2>/dev/null)
        P11_CLIENT_MODULE=${moddir:-/usr/lib/$(gcc -print-multiarch 2>/dev/null)/pkcs11}/p11-kit-client.so
        if [ ! -f "$P11_CLIENT_MODULE" ]; then
                echo "softhsm: $P11_CLIENT_MODULE not found (Debian package p11-kit-modules)" >&2
                return 77
        fi
        return 0
}

softhsm_setup() {
        mkdir -p "$1" || return 1
        SOFTHSM_DIR=$(cd "$1" && pwd)
}

softhsm_conf() { echo "$SOFTHSM_DIR/$1/softhsm2.conf"; }

softhsm_token() {
        local name=$1 pin=$2 d=$SOFTHSM_DIR/$1
        mkdir -p "$d/tokens" || return 1
        printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
                "$d/tokens" > "$d/softhsm2.conf"
        SOFTHSM2_CONF=$d/softhsm2.conf softhsm2-util --init-token --free --label "$name" \
                --so-pin "so-$pin" --pin "$pin" >"$d/init.log" 2>&1 || {
                echo "softhsm: cannot initialise token $name:"; cat "$d/init.log"; return 1; }
}

_softhsm_tool() {
        local name=$1 pin=$2; shift 2
        SOFTHSM2_CONF=$(softhsm_conf "$name") pkcs11-tool --module "$SOFTHSM_LIB" \
                --token-label "$name" --login --pin "$pin" "$@"
}

softhsm_keygen() {
        local name=$1 pin=$2 label=$3
        _softhsm_tool "$name" "$pin" --keygen --key-type AES:32 --label "$label" \
                >"$SOFTHSM_DIR/$name/keygen.log" 2>&1 || {
                echo "softhsm: keygen $label failed:"; cat "$SOFTHSM_DIR/$name/keygen.log"; return 1; }
}

softhsm_delete_key() {
        _softhsm_tool "$1" "$2" --delete-object --type secrkey --label "$3" >/dev/null 2>&1
}

softhsm_uri() {
        echo "pkcs11:token=$1;object=$2?module-path=$SOFTHSM_LIB&pin-value=$3"
}

p11_server_start() {
        local name=$1 sock=$SOFTHSM_DIR/$1.sock pgrp
        P11_SERVER_NAME=$name
        rm -f "$sock"
        # setsid: its own process group, so pause/stop reach the children
        # it forks per connection and never this script.
        SOFTHSM2_CONF=$(softhsm_conf "$name") setsid p11-kit server -f -n "$sock" \
                --provider "$SOFTHSM_LIB" "pkcs11:token=$name" \
                >>"$SOFTHSM_DIR/server.log" 2>&1 &
        P11_SERVER_PID=$!
        for _ in $(seq 1 100); do
                [ -S "$sock" ] && break
                kill -0 "$P11_SERVER_PID" 2>/dev/null || break
                sleep 0.05
        done
        if [ ! -S "$sock" ]; then
                echo "p11-kit server did not start:"; cat "$SOFTHSM_DIR/server.log"
                return 1
        fi
        pgrp=$(awk '{ print $5 }' "/proc/$P11_SERVER_PID/stat" 2>/dev/null)
        if [ "$pgrp" != "$P11_SERVER_PID" ]; then
                echo "p11-kit server is not a process group leader (pgrp $pgrp)"
                return 1
        fi
        export P11_KIT_SERVER_ADDRESS="unix:path=$sock"
}

p11_server_stop() {
        [ -n "$P11_SERVER_PID" ] || return 0
        kill -CONT -- "-$P11_SERVER_PID" 2>/dev/null
        kill -TERM -- "-$P11_SERVER_PID" 2>/dev/null
        wait "$P11_SERVER_PID" 2>/dev/null
        # Per-connection children may linger a moment.
        for _ in $(seq 1 40); do
                kill -0 -- "-$P11_SERVER_PID" 2>/dev/null || break
                sleep 0.05
        done
        kill -KILL -- "-$P11_SERVER_PID" 2>/dev/null
        rm -f "$SOFTHSM_DIR/$P11_SERVER_NAME.sock"
        P11_SERVER_PID=
}

p11_server_pause() { kill -STOP -- "-$P11_SERVER_PID"; }
p11_server_resume() { kill -CONT -- "-$P11_SERVER_PID"; }

p11_remote_uri() {
        echo "pkcs11:token=$1;object=$2?module-path=$P11_CLIENT_MODULE&pin-value=$3"
}

p11_remote_config() {
        mkdir -p "$2" || return 1
        echo "remote: unix:path=$SOFTHSM_DIR/$1.sock" > "$2/$1-remote.module"
}
