#!/bin/bash
# `make run`: a development dkmd in the foreground on the embedded defaults
# (SQLite store and master key file under build/dev, engine=auto).  The
# developer's own primary group holds every role so dkmctl works at once.
set -eu
BUILD=${1:-build}
dev=$(cd "$BUILD" && pwd)/dev
mkdir -p "$dev"
gid=$(id -g)
# Audit records need CAP_AUDIT_WRITE: without root, a development instance
# cannot write them, so it must not refuse for want of them.
fail_closed=yes
[ "$(id -u)" -eq 0 ] || fail_closed=no
if [ ! -f "$dev/dkmd.conf" ]; then
        cat > "$dev/dkmd.conf" <<CONF
# Development instance made by 'make run'.  Groups are numeric gids.
[daemon]
socket=$dev/dkmd.sock
state_dir=$dev/state
engine=auto

[groups]
users=$gid
operators=$gid
approvers=$gid

[audit]
fail_closed=$fail_closed
CONF
fi
"$BUILD/dkmd" --config "$dev/dkmd.conf" --init
cat <<MSG

dkmd is starting in the foreground (Ctrl-C stops it).  In another shell:

    export DKM_SOCKET=$dev/dkmd.sock
    $BUILD/dkmctl status
    echo secret | $BUILD/dkmctl encrypt > /tmp/ct && $BUILD/dkmctl decrypt < /tmp/ct
    $BUILD/dkmctl key list

MSG
exec "$BUILD/dkmd" --config "$dev/dkmd.conf"
