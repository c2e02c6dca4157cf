#!/bin/bash
# Installs the Debian packages that building and testing dkm need, when they
# are missing.  Uses the machine's own apt configuration; never names a mirror.
set -euo pipefail

pkgs=(
        build-essential pkg-config clang llvm libclang-rt-14-dev
        libkcapi-dev libkcapi1 kcapi-tools libkeyutils-dev keyutils libaudit-dev auditd
        libcmocka-dev libsqlite3-dev sqlite3 libssl-dev openssl libinih-dev libjson-c-dev
        libgfshare-dev libp11-kit-dev p11-kit p11-kit-modules softhsm2 opensc libcurl4-openssl-dev etcd-server etcd-client
        util-linux procps psmisc socat time age gnupg pigz python3 python3-cryptography gdb
        qemu-system-x86 qemu-utils swtpm busybox-static cpio xz-utils zstd kmod strace
        systemd debootstrap debian-archive-keyring e2fsprogs
        selinux-policy-dev policycoreutils semodule-utils checkpolicy
        mandoc bash-completion
)

# One dpkg-query for the whole list: `make check` and `make run` pass
# through here every time, and on a machine that has everything this is
# all they do.  A package dpkg has never heard of is missing too.
declare -A installed
while read -r p; do
        installed[$p]=1
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null |
         awk '$NF == "installed" && $(NF - 1) == "ok" { print $1 }')
missing=()
for p in "${pkgs[@]}"; do
        [ -n "${installed[$p]:-}" ] || missing+=("$p")
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
