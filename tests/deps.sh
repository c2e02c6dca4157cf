#!/bin/bash
# Installs the Debian packages that building and testing dkm need, when they
# are missing.  Uses the machine's own apt configuration; never names a mirror.
set -euo pipefail

pkgs=(
        build-essential pkg-config clang llvm libclang-rt-14-dev
        libkcapi-dev libkcapi1 kcapi-tools libkeyutils-dev keyutils libaudit-dev auditd
        libcmocka-dev libsqlite3-dev sqlite3 libssl-dev openssl libinih-dev libjson-c-dev
        libgfshare-dev libp11-kit-dev p11-kit p11-kit-modules softhsm2 opensc libcurl4-openssl-dev etcd-server etcd-client
        util-linux procps psmisc socat time age gnupg strace
        qemu-system-x86 qemu-utils busybox-static cpio xz-utils zstd kmod
        systemd debootstrap debian-archive-keyring e2fsprogs
        selinux-policy-dev policycoreutils semodule-utils checkpolicy
)

missing=()
for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
        exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Refresh the lists once if they are missing or older than a day.
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -n1)" ]; then
        apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
