#!/bin/bash
# Builds (once) the Debian 12 root file system of the full-system test:
#
#   tests/system/mkroot.sh BUILD DIR PACKAGE...
#
# debootstrap (minbase) with systemd, udev, auditd, keyutils, the SELinux
# userspace and the default reference policy, etcd (server and etcdctl, for
# a fleet node on etcd), tpm2-tools (tpm2_clear, and the TSS libraries that
# systemd-creds loads for --with-key=tpm2), plus the PACKAGEs (the runtime libraries of the dkm
# binaries), set up to boot under QEMU: root on the NVMe disk, SELinux
# permissive, root logged in automatically on the serial console.  dkm itself is not in it: tests/system/run.sh copies this tree and
# installs dkm into the copy.
#
# The tree is cached in DIR with a key made of this script and the package
# list; a second call with the same key does nothing.  The archive is the
# machine's own bookworm entry, as apt reports it, never a name written here.
# Progress goes to stderr.
set -euo pipefail

die() { echo "mkroot: $*" >&2; exit 1; }
say() { echo "mkroot: $*" >&2; }

[ $# -ge 2 ] || die "usage: $0 BUILD DIR [PACKAGE...]"
dir=$(realpath -m "$2")
shift 2

pkgs=(systemd systemd-sysv udev auditd keyutils kmod procps util-linux login
        libpam-modules selinux-policy-default selinux-utils policycoreutils \
        etcd-server etcd-client tpm2-tools "$@")
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
key=$( { sha256sum "$0" | cut -d' ' -f1; printf '%s\n' "${pkgs[@]}"; } | sha256sum | cut -d' ' -f1)

if [ -f "$dir/.dkm-root-key" ] && [ "$(cat "$dir/.dkm-root-key")" = "$key" ]; then
        exit 0
fi

[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap not found (make deps)"

# The machine's bookworm archive, as apt has it configured.
# shellcheck disable=SC2016 # $(REPO_URI) is apt's, not the shell's
uri=$(apt-get indextargets --format '$(REPO_URI)' 'Release: bookworm' 'Target-Of: deb' \
        'Created-By: Packages' 2>/dev/null | head -n1)
[ -n "$uri" ] || die "no bookworm entry in the machine's apt sources"

rm -rf "$dir" "$dir.tmp"
mkdir -p "$(dirname "$dir")"
say "debootstrap bookworm from $uri (${#pkgs[@]} extra packages), into $dir"
t0=$SECONDS
include=$(IFS=,; echo "${pkgs[*]}")
if ! debootstrap --variant=minbase --include="$include" bookworm "$dir.tmp" "$uri" \
        >"$dir.log" 2>&1; then
        tail -n 30 "$dir.log" >&2
        die "debootstrap failed (log: $dir.log)"
fi
say "debootstrap took $((SECONDS - t0))s"

r=$dir.tmp
# Boot: root on the NVMe disk (the cloud kernel has NVMe and ext4 built in,
# so no initramfs is needed); SELinux permissive until the test says
# otherwise.
echo dkm-test >"$r/etc/hostname"
echo '/dev/nvme0n1 / ext4 rw,relatime 0 1' >"$r/etc/fstab"
sed -i 's/^SELINUX=.*/SELINUX=permissive/' "$r/etc/selinux/config"
grep -q '^SELINUX=permissive' "$r/etc/selinux/config" || die "no /etc/selinux/config in the root"
passwd -R "$r" -d root >/dev/null

# root is logged in on the serial console through login(1), as an
# administrator would be: pam_selinux puts the shell in unconfined_t and
# pam_loginuid gives it auid 0.  Its profile starts the test.
mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
cat >>"$r/root/.profile" <<'EOF'

# dkm system test: run once, on the serial console.
if [ "$(tty)" = /dev/ttyS0 ] && [ -x /root/dkm-system-test ] && [ ! -e /run/dkm-test-started ]; then
        touch /run/dkm-test-started
        /root/dkm-system-test
        systemctl poweroff --no-block
fi
EOF

# Nothing that the test does not need, to keep a TCG boot short.  etcd's
# own unit too: the test starts a member of its own, on loopback, when it
# gets to the fleet node.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer systemd-timesyncd.service getty@tty1.service \
        systemd-networkd-wait-online.service etcd.service; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
done
rm -f "$r"/var/cache/apt/archives/*.deb
echo "$key" >"$r/.dkm-root-key"
mv "$r" "$dir"
say "root file system ready in $dir ($(du -sh "$dir" | cut -f1))"
