#!/bin/bash
# make check-system: dkm as its users run it, on a whole Debian 12 system.
#
#   tests/system/run.sh BUILD
#
# 1. A Debian 12 root file system (debootstrap: systemd, auditd, keyutils,
#    the SELinux userspace and reference policy, etcd, the runtime
#    libraries of dkm), built once by mkroot.sh and cached in
#    BUILD/vm/system-root.
# 2. A copy of it gets dkm through `make install DESTDIR=`, the AF_ALG
#    modules of Debian's 6.1 cloud kernel (tests/vm/fetch-kernel.sh), the
#    guest script, and throwaway TLS certificates for the guest's etcd;
#    setfiles labels it with the policy's file contexts and mkfs.ext4 -d
#    turns it into a disk image (labels need a real file system, hence no
#    initramfs root).
# 3. QEMU (TCG) boots the kernel straight into systemd with SELinux
#    permissive and a TPM 2.0 (swtpm, fresh state each run); root is logged in on the serial console and runs
#    guest-test.sh, whose transcript comes back on the second serial port.
#
# Exit: 0 passed, 1 failed, 77 could not run here (1 under CI=true: CI must
# not skip silently).  The console log is BUILD/vm/system-console.log, the
# transcript BUILD/vm/system-transcript.log, and after a failure the disk
# image BUILD/vm/system.img.  DKM_SYSTEM_TIMEOUT (seconds, default 900)
# bounds the boot; DKM_SYSTEM_KERNEL (default 6.1) picks the kernel;
# DKM_SYSTEM_DEBUG=1 turns off the policy's dontaudit rules in the guest
# (semodule -DB), to see denials that the reference policy hides.
set -uo pipefail

here=$(dirname "$(realpath "$0")")
top=$(realpath "$here/../..")
build=$(realpath -m "${1:-build}")
vm=$build/vm
root=$vm/system-root
stage=$vm/system-stage
image=$vm/system.img
console=$vm/system-console.log
transcript=$vm/system-transcript.log
timeout_s=${DKM_SYSTEM_TIMEOUT:-900}
series=${DKM_SYSTEM_KERNEL:-6.1}
t0=$SECONDS

skip() {
        echo "************************************************************"
        echo "SKIPPED: system: $*"
        echo "************************************************************"
        if [ "${CI:-}" = true ]; then
                echo "system: CI=true, so a skip is a failure"
                exit 1
        fi
        exit 77
}
die() { echo "system: $*"; exit 1; }
say() { echo "system: $* ($((SECONDS - t0))s)"; }

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, file labels)"
for t in qemu-system-x86_64 debootstrap mkfs.ext4 setfiles dpkg-query ldd depmod modprobe timeout openssl swtpm; do
        command -v "$t" >/dev/null || skip "$t not found (make deps)"
done
[ -f /usr/share/selinux/devel/Makefile ] || skip "selinux-policy-dev is not installed (make deps)"
for b in dkmd dkmctl libdkm.so.1; do
        [ -e "$build/$b" ] || skip "$build/$b is missing (make BUILD=$build)"
done

# The Debian packages that hold the libraries the binaries load.
runtime_packages() {
        local lib p
        for b in "$build/dkmd" "$build/dkmctl" "$build/libdkm.so.1"; do
                ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
        done | sort -u | while read -r lib; do
                for p in "$lib" "$(realpath "$lib")" "${lib#/usr}" "/usr$lib"; do
                        dpkg-query -S "$p" 2>/dev/null && break
                done
        done | cut -d: -f1 | grep -v '^libdkm' | sort -u
}
mapfile -t pkgs < <(runtime_packages)
[ ${#pkgs[@]} -gt 0 ] || die "cannot tell which Debian packages hold the libraries of $build/dkmd"

mkdir -p "$vm"
kdir=$("$top/tests/vm/fetch-kernel.sh" "$build" "$series") || skip "the $series kernel cannot be fetched"
"$here/mkroot.sh" "$build" "$root" "${pkgs[@]}" || die "building the root file system failed"
say "root file system ready (${pkgs[*]})"

# --- the image: the cached root, plus dkm and the kernel's crypto modules --
rm -rf "$stage"
cp -a "$root" "$stage" || die "copying the root file system failed"
kver=$(basename "$(compgen -G "$kdir/lib/modules/*" | head -n1)")
for d in kernel/crypto kernel/arch/x86/crypto kernel/lib; do
        [ -d "$kdir/lib/modules/$kver/$d" ] || continue
        mkdir -p "$stage/lib/modules/$kver/$d"
        cp -a "$kdir/lib/modules/$kver/$d/." "$stage/lib/modules/$kver/$d/"
done
cp "$kdir/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$kver/" 2>/dev/null
depmod -b "$stage" "$kver" || die "depmod failed"

make -s -C "$top" BUILD="$build" WITH_SELINUX=1 DESTDIR="$stage" install >"$vm/system-install.log" 2>&1 ||
        { cat "$vm/system-install.log"; die "make install DESTDIR=$stage failed"; }
# make uninstall takes back all that make install put down.
scratch=$(mktemp -d "$vm/uninstall.XXXXXX")
for target in install uninstall; do
        make -s -C "$top" BUILD="$build" WITH_SELINUX=1 DESTDIR="$scratch" "$target" \
                >>"$vm/system-install.log" 2>&1 || die "make $target DESTDIR=$scratch failed"
done
left=$(find "$scratch" ! -type d)
rm -rf "$scratch"
[ -z "$left" ] || die "make uninstall left behind: $left"
say "make install DESTDIR= and make uninstall: ok"
install -m 0755 "$here/guest-test.sh" "$stage/root/dkm-system-test"
# The watchdog test freezes dkmd's accept loop with it.
make -s -C "$top" BUILD="$build" "$build/tools/freeze-thread" >>"$vm/system-install.log" 2>&1 ||
        { tail -n 20 "$vm/system-install.log"; die "building tools/freeze-thread failed"; }
install -m 0755 "$build/tools/freeze-thread" "$stage/root/freeze-thread"
# The fleet part talks TLS to etcd under a host name, as dkm(7)'s example
# does: a throwaway CA, a server certificate for etcd1.dkm.test and a client
# certificate, made here (the guest has no openssl command).
tls=$stage/root/etcd-tls
# shellcheck source=tests/integration/lib-etcd.sh
. "$top/tests/integration/lib-etcd.sh"
etcd_tls_make "$tls" DNS:etcd1.dkm.test,IP:127.0.0.1 || die "making the etcd TLS certificates failed"
# Only what the guest uses goes into the image.
rm -f "$tls"/ca.key "$tls"/*.csr "$tls"/*.ext "$tls"/*.srl "$tls"/openssl.log
[ -z "${DKM_SYSTEM_DEBUG:-}" ] || touch "$stage/root/debug-dontaudit"

fc=$stage/etc/selinux/default/contexts/files/file_contexts
[ -f "$fc" ] || die "$fc missing: the root has no reference policy"
setfiles -r "$stage" "$fc" "$stage" >"$vm/system-setfiles.log" 2>&1 ||
        { tail -n 20 "$vm/system-setfiles.log"; die "setfiles failed"; }
size=$(($(du -sm "$stage" | cut -f1) + 400))
rm -f "$image"
mkfs.ext4 -q -F -L dkm-root -d "$stage" "$image" "${size}M" >/dev/null || die "mkfs.ext4 -d failed"
rm -rf "$stage"
say "image ready: $image (${size} MiB), kernel $kver"

# --- boot ----------------------------------------------------------------
# -smp 1 and cx16=off: see tests/vm/run.sh.  The root is on NVMe, which the
# cloud kernel has built in, like ext4: no initramfs.
rm -f "$console" "$transcript"
vmlinuz=$(compgen -G "$kdir/boot/vmlinuz-*" | head -n1)
# A TPM 2.0 for the guest (tpm_host_loss): swtpm with a fresh state each
# run, ending with QEMU's connection.
tpm=$vm/system-tpm
rm -rf "$tpm"
mkdir -p "$tpm/state"
swtpm socket --tpm2 --tpmstate dir="$tpm/state" --ctrl type=unixio,path="$tpm/sock" \
        --log file="$tpm/log" --pid file="$tpm/pid" --terminate --daemon || die "swtpm did not start"
for _ in $(seq 50); do [ -S "$tpm/sock" ] && break; sleep 0.1; done
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max,cx16=off -smp 1 -m 2048 \
        -chardev socket,id=chrtpm,path="$tpm/sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
        -device tpm-tis,tpmdev=tpm0 \
        -nodefaults -no-user-config -no-reboot -display none -monitor none \
        -serial "file:$console" -serial "file:$transcript" \
        -drive "file=$image,if=none,id=root,format=raw,cache=unsafe" \
        -device nvme,drive=root,serial=dkmroot \
        -kernel "$vmlinuz" \
        -append "root=/dev/nvme0n1 rw console=ttyS0 security=selinux selinux=1 enforcing=0 audit=1 panic=-1 quiet systemd.show_status=false" \
        </dev/null
qrc=$?
[ -f "$tpm/pid" ] && kill "$(cat "$tpm/pid")" 2>/dev/null
touch "$console" "$transcript"
for f in "$console" "$transcript"; do
        tr -d '\r' <"$f" >"$f.tmp" && mv "$f.tmp" "$f"
done

cat "$transcript"
echo
result=$(grep -a '^SYSTEM-RESULT ' "$transcript" | tail -n1)
case $qrc in
0) ;;
124) echo "system: qemu timed out after ${timeout_s}s" ;;
*) echo "system: qemu exited with status $qrc" ;;
esac
say "done"
case $result in
"SYSTEM-RESULT PASS "*)
        rm -f "$image" # rebuilt every run; kept only to look into a failure
        exit 0
        ;;
"")
        echo "system: no result from the guest; the last lines of $console:"
        tail -n 60 "$console" | sed 's/^/  | /'
        exit 1
        ;;
*) exit 1 ;;
esac
