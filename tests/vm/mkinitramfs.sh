#!/bin/bash
# Builds the initramfs (cpio newc, gzip) of the VM tests:
#
#   tests/vm/mkinitramfs.sh [-e NAME=VALUE]... KERNEL_DIR OUT FILE...
#
# It holds a static busybox, tests/vm/guest-init as /init, the crypto modules
# the kernel engine needs (with their dependencies, decompressed, and a
# modules.dep so that the kernel's own module requests work), and each FILE
# at its own absolute path together with the shared libraries that ldd lists
# and the dynamic loader: the binaries run in the guest exactly where they
# were built, so $ORIGIN rpaths still resolve.  Each -e lands in /etc/vm.env.
# It is rebuilt every run (well under a second), so it never goes stale.
set -euo pipefail

die() { echo "mkinitramfs: $*" >&2; exit 1; }

here=$(dirname "$(realpath "$0")")
env_lines=()
while getopts e: opt; do
        case $opt in
        e) env_lines+=("$OPTARG") ;;
        *) die "usage: $0 [-e NAME=VALUE]... KERNEL_DIR OUT FILE..." ;;
        esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || die "usage: $0 [-e NAME=VALUE]... KERNEL_DIR OUT FILE..."
kdir=$(realpath "$1")
out=$(realpath -m "$2")
shift 2

# The modules gcm(aes) over AF_ALG needs, and crypto_user, which libkcapi
# asks for the AEAD's sizes; their dependencies come along.  The optional
# ones are what the gcm template requests when no aesni gcm serves; a kernel
# may have them built in or not at all.
modules=(af_alg algif_aead crypto_user aesni_intel gcm)
optional=(ghash_clmulni_intel ghash_generic ctr)

busybox=$(command -v busybox) || die "busybox not found (install busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && die "$busybox is dynamically linked (install busybox-static)"

kver=$(compgen -G "$kdir/lib/modules/*" | head -n1) || die "no lib/modules in $kdir"
kver=${kver##*/}

root=$(mktemp -d "${TMPDIR:-/tmp}/dkm-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,var/lib,root,lib/modules/"$kver"}
install -m 0755 "$busybox" "$root/bin/busybox"
install -m 0755 "$here/guest-init" "$root/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# Modules in load order, as the host's kmod resolves them from modules.dep.
moddir=$kdir/lib/modules/$kver
: >"$root/etc/vm-modules"
for m in "${modules[@]}" "${optional[@]}"; do
        modprobe -d "$kdir" -S "$kver" --show-depends "$m" 2>/dev/null && continue
        if [[ " ${optional[*]} " == *" $m "* ]]; then
                echo "mkinitramfs: optional module $m is not in $kver" >&2
        else
                echo "missing $m"
        fi
done | awk '!seen[$0]++' | while read -r kind path _; do
        case $kind in
        builtin) continue ;;
        missing) die "module $path not found in $kver" ;;
        esac
        rel=${path#"$moddir"/}
        dst=$root/lib/modules/$kver/$rel
        mkdir -p "$(dirname "$dst")"
        case $rel in
        *.ko.xz) xz -dc "$path" >"${dst%.xz}"; rel=${rel%.xz} ;;
        *.ko.zst) zstd -qdc "$path" >"${dst%.zst}"; rel=${rel%.zst} ;;
        *.ko.gz) gzip -dc "$path" >"${dst%.gz}"; rel=${rel%.gz} ;;
        *.ko) cp "$path" "$dst" ;;
        *) die "unexpected module file $path" ;;
        esac
        echo "$rel" >>"$root/etc/vm-modules"
done
for f in modules.order modules.builtin modules.builtin.modinfo; do
        if [ -e "$moddir/$f" ]; then cp "$moddir/$f" "$root/lib/modules/$kver/"; fi
done
depmod -b "$root" "$kver"

# Binaries and what they load, at their own paths.  Debug info is dropped
# from the copies to keep the image (and its unpacking under TCG) small.
copy_file() {
        local src=$1 dst=$root$1
        [ -e "$dst" ] && return 0
        mkdir -p "$(dirname "$dst")"
        cp -L "$src" "$dst"
        objcopy --strip-debug "$dst" 2>/dev/null || true
}
for f in "$@"; do
        [ -x "$f" ] || die "$f is not an executable file"
        f=$(realpath -s "$f")
        copy_file "$f"
        libs=$(ldd "$f") || die "ldd $f failed"
        ! grep -q 'not found' <<<"$libs" || die "$f: $(grep 'not found' <<<"$libs" | tr -s ' \t\n' ' ')"
        # "name => /path (addr)", "/lib64/ld-linux-x86-64.so.2 (addr)"
        awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs" |
                while read -r lib; do copy_file "$lib"; done
done

{
        echo "KVER='$kver'"
        for l in "${env_lines[@]}"; do
                printf "%s='%s'\n" "${l%%=*}" "${l#*=}"
        done
} >"$root/etc/vm.env"

mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) |
        gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
