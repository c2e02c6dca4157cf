#!/bin/bash
# Fetches a Debian kernel for the VM tests and caches it unpacked, so that a
# second run downloads nothing:
#
#   tests/vm/fetch-kernel.sh BUILD SERIES      SERIES: 6.1 or 6.12
#
# 6.1 is Debian 12's own kernel (the machine's apt sources); 6.12 comes from
# bookworm-backports, which the machine's sources usually lack: it is read
# through a private apt configuration in BUILD/vm/apt whose archive URI and
# keyring are taken from the machine's bookworm entry, never hard-coded.
# The cloud flavour is preferred (smallest); the generic one is used only when
# the cloud kernel lacks what the tests need.  Prints the directory that holds
# boot/ and lib/modules/ on stdout; progress goes to stderr.
set -euo pipefail

die() { echo "fetch-kernel: $*" >&2; exit 1; }
say() { echo "fetch-kernel: $*" >&2; }

[ $# -eq 2 ] || die "usage: $0 BUILD SERIES"
vm=$(realpath -m "$1")/vm
series=$2
dest=$vm/kernel-$series

case $series in
6.1) abi='6\.1\.0-[0-9]+' ;;
6.12) abi='6\.12\.[0-9]+\+[^-]*' ;;
*) die "unknown kernel series '$series' (6.1 or 6.12)" ;;
esac

if [ -s "$dest/.pkg" ] && compgen -G "$dest/boot/vmlinuz-*" >/dev/null; then
        echo "$dest"
        exit 0
fi

for t in apt-get apt-cache dpkg dpkg-deb depmod; do
        command -v "$t" >/dev/null || die "$t not found"
done

apt_opts=(-o APT::Sandbox::User=root -q)

# The machine's bookworm archive as "URI [KEYRING]", from deb822 .sources
# files first, then one-line .list files.
system_bookworm_entry() {
        local f
        for f in /etc/apt/sources.list.d/*.sources; do
                [ -r "$f" ] || continue
                awk '
                function flush() {
                        if (!found && (" " types " ") ~ / deb / && (" " suites " ") ~ / bookworm / &&
                            enabled != "no" && uris != "") {
                                split(uris, u, " ")
                                print u[1], (signedby ~ /^\//) ? signedby : ""
                                found = 1
                        }
                        types = suites = uris = signedby = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[A-Za-z-]+:/ {
                        key = tolower(substr($0, 1, index($0, ":") - 1))
                        val = substr($0, index($0, ":") + 1)
                        gsub(/^[ \t]+|[ \t]+$/, "", val)
                        if (key == "types") types = val
                        else if (key == "uris") uris = val
                        else if (key == "suites") suites = val
                        else if (key == "signed-by") signedby = val
                        else if (key == "enabled") enabled = tolower(val)
                }
                END { flush() }' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
                [ -r "$f" ] || continue
                awk '$1 == "deb" {
                        i = 2; opts = ""
                        if ($2 ~ /^\[/) {
                                while (i < NF && $i !~ /\]$/) { opts = opts " " $i; i++ }
                                opts = opts " " $i; i++
                        }
                        if ($(i + 1) != "bookworm") next
                        sb = ""
                        if (match(opts, /signed-by=[^] ]+/)) sb = substr(opts, RSTART + 10, RLENGTH - 10)
                        print $i, sb
                }' "$f"
        done
}

setup_backports() {
        local apt=$vm/apt entry uri keyring
        entry=$(system_bookworm_entry | head -n1)
        [ -n "$entry" ] || die "no bookworm entry in the machine's apt sources to derive bookworm-backports from"
        read -r uri keyring <<<"$entry"
        mkdir -p "$apt/sources.list.d" "$apt/preferences.d" "$apt/lists/partial" \
                "$apt/cache/archives/partial"
        {
                echo "Types: deb"
                echo "URIs: $uri"
                echo "Suites: bookworm-backports"
                echo "Components: main"
                [ -z "$keyring" ] || echo "Signed-By: $keyring"
        } >"$apt/sources.list.d/backports.sources"
        apt_opts+=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt/sources.list.d"
                -o Dir::Etc::Preferences=/dev/null -o "Dir::Etc::PreferencesParts=$apt/preferences.d"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
                -o Acquire::Languages=none)
        say "updating the private bookworm-backports lists ($uri)"
        apt-get "${apt_opts[@]}" update >&2 || die "apt-get update of bookworm-backports failed"
}

# Newest "linux-image-<abi>-<flavour>" as "NAME VERSION"; the anchored pattern
# leaves out -dbg, -unsigned and the other flavours.
newest_image() {
        local flavour=$1 best='' bestv='' name ver
        while read -r name ver; do
                if [ -z "$bestv" ] || dpkg --compare-versions "$ver" gt "$bestv"; then
                        best=$name bestv=$ver
                fi
        done < <(apt-cache "${apt_opts[@]}" pkgnames linux-image- 2>/dev/null |
                grep -E "^linux-image-$abi-$flavour\$" |
                xargs -r apt-cache "${apt_opts[@]}" show --no-all-versions 2>/dev/null |
                awk '/^Package:/ { p = $2 } /^Version:/ { print p, $2 }')
        [ -n "$best" ] && echo "$best $bestv"
}

# What the tests need from a kernel; prints the options that are missing.
missing_config() {
        local cfg=$1 opt
        for opt in CRYPTO_USER_API_AEAD CRYPTO_USER CRYPTO_GCM CRYPTO_AES_NI_INTEL; do
                grep -Eq "^CONFIG_$opt=[ym]" "$cfg" || echo "CONFIG_$opt"
        done
        for opt in BLK_DEV_INITRD RD_GZIP SERIAL_8250_CONSOLE DEVTMPFS; do
                grep -q "^CONFIG_$opt=y" "$cfg" || echo "CONFIG_$opt"
        done
}

[ "$series" = 6.12 ] && setup_backports

mkdir -p "$vm"
tmp=$(mktemp -d "$vm/fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for flavour in cloud-amd64 amd64; do
        pick=$(newest_image "$flavour") || {
                say "no linux-image-$series.*-$flavour package known to apt"
                continue
        }
        read -r pkg ver <<<"$pick"
        say "downloading $pkg $ver"
        rm -rf "${tmp:?}"/*
        (cd "$tmp" && apt-get "${apt_opts[@]}" download "$pkg=$ver" >&2) ||
                die "apt-get download $pkg=$ver failed"
        dpkg -x "$tmp"/*.deb "$tmp/root"
        cfg=$(compgen -G "$tmp/root/boot/config-*" | head -n1) || die "$pkg has no boot/config-*"
        missing=$(missing_config "$cfg" | tr '\n' ' ')
        if [ -n "$missing" ]; then
                say "$pkg lacks: $missing; trying the next flavour"
                continue
        fi
        kver=${cfg##*/config-}
        depmod -b "$tmp/root" "$kver" || die "depmod failed for $kver"
        echo "$pkg $ver $flavour" >"$tmp/root/.pkg"
        rm -rf "$dest"
        mv "$tmp/root" "$dest"
        say "cached $pkg $ver in $dest"
        echo "$dest"
        exit 0
done
die "no usable $series kernel found"
