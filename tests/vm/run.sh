#!/bin/bash
# make check-vm: proves the kernel (AF_ALG) engine on real Debian kernels.
#
#   tests/vm/run.sh BUILD
#
# For each kernel (Debian 12's 6.1 and bookworm-backports' 6.12, cloud
# flavour) it boots QEMU under TCG with an initramfs that holds the test
# binaries of BUILD, runs test-engine, engine-compare and a dkmd round trip
# with DKM_EXPECT_KERNEL_ENGINE=1 (and custody: which one holds the keys, and
# what code inside dkmd reads of them), and counts the "VM-RESULT" lines of the
# serial console.  Kernels are cached in BUILD/vm; the console of each boot
# is kept in BUILD/vm/<kernel>.log.
#
# Exit: 0 all passed, 1 a step failed, 77 the VM could not run at all
# (1 instead when CI=true: CI must not skip silently).
# DKM_VM_KERNELS (default "6.1 6.12"), DKM_VM_STEPS (default
# "test-engine engine-compare dkmd") and DKM_VM_TIMEOUT (seconds per boot,
# default 600: under TCG on a busy host the 6.1 boot took 277 s before
# the memory scan was added) narrow a run.
set -uo pipefail

here=$(dirname "$(realpath "$0")")
build=$(realpath -m "${1:-build}")
vm=$build/vm
kernels=${DKM_VM_KERNELS:-6.1 6.12}
steps=${DKM_VM_STEPS:-test-engine test-stream test-stream-pool engine-compare dkmd custody syscalls memscan}
boot_timeout=${DKM_VM_TIMEOUT:-600}

skip() {
        echo "************************************************************"
        echo "SKIPPED: vm: $*"
        echo "************************************************************"
        if [ "${CI:-}" = true ]; then
                echo "vm: CI=true, so a skip is a failure"
                exit 1
        fi
        exit 77
}

for t in qemu-system-x86_64 busybox cpio gzip xz depmod modprobe objcopy apt-get dpkg timeout; do
        command -v "$t" >/dev/null || skip "$t not found (make deps)"
done

bins=()
for step in $steps; do
        case $step in
        test-engine|test-stream|test-stream-pool) bins+=("$build/tests/$step") ;;
        engine-bench) bins+=("$build/tools/engine-bench") ;;
        engine-compare) bins+=("$build/tools/engine-compare") ;;
        dkmd) bins+=("$build/dkmd" "$build/dkmctl" "$build/tests/vm-keyprobe.so") ;;
        custody) ;;  # checked by the dkmd step
        memscan) bins+=("$build/tools/vm-memscan") ;;
        syscalls)
                command -v strace >/dev/null || skip "strace not found (make deps)"
                bins+=("$(command -v strace)") ;;
        *) echo "vm: unknown step '$step'" >&2; exit 1 ;;
        esac
done
for b in "${bins[@]}"; do
        [ -x "$b" ] || skip "$b is missing (make BUILD=$build tests)"
done

mkdir -p "$vm"
declare -A kdir
for k in $kernels; do
        kdir[$k]=$("$here/fetch-kernel.sh" "$build" "$k") || skip "the $k kernel cannot be fetched"
done

# Boots one kernel; the console, without carriage returns, goes to LOG.
#  -smp 1: under TCG with -cpu max, 6.12 panicked with two CPUs.
#  cx16=off: QEMU 7.2's TCG corrupts EFLAGS now and then around the
#   cmpxchg16b in SLUB's fast path (double fault in kmem_cache_alloc; one
#   6.12 boot in five or six on a busy host, none in 120 without CX16).
#   Without CX16 the kernel takes SLUB's locked path; AES-NI, PCLMULQDQ
#   and AVX, which the crypto drivers use, stay on.
boot() {
        local vmlinuz=$1 initrd=$2 log=$3 rc
        rm -f "$log"
        timeout "$boot_timeout" qemu-system-x86_64 -accel tcg -cpu max,cx16=off -smp 1 -m 1024 \
                -nodefaults -no-user-config -no-reboot -display none -monitor none \
                -serial "file:$log" -kernel "$vmlinuz" -initrd "$initrd" \
                -append "console=ttyS0 panic=-1 quiet" </dev/null
        rc=$?
        touch "$log"
        tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"
        return $rc
}

passed=0 failed=0
for k in $kernels; do
        log=$vm/$k.log
        initrd=$vm/initramfs-$k.cpio.gz
        read -r pkg ver _ <"${kdir[$k]}/.pkg"
        t0=$SECONDS
        if ! "$here/mkinitramfs.sh" -e "BUILD=$build" -e "STEPS=$steps" \
                -e "STRACE=$(command -v strace || echo none)" \
                "${kdir[$k]}" "$initrd" "${bins[@]}"; then
                echo "vm: $k: building the initramfs failed"
                failed=$((failed + $(wc -w <<<"$steps")))
                continue
        fi
        vmlinuz=$(compgen -G "${kdir[$k]}/boot/vmlinuz-*" | head -n1)
        rm -f "$vm/$k-crashed-boot.log"
        boot "$vmlinuz" "$initrd" "$log"
        qrc=$?
        # A kernel that crashes before the first step ran has not tested
        # anything yet: that is QEMU's emulation failing, so boot once more.
        retried=
        if ! grep -q 'VM-STEP' "$log" && grep -Eq 'Kernel panic|Oops|double fault' "$log"; then
                mv "$log" "$vm/$k-crashed-boot.log"
                retried=1
                boot "$vmlinuz" "$initrd" "$log"
                qrc=$?
        fi
        took=$((SECONDS - t0))

        echo "vm: kernel $k: $pkg $ver (${took}s)"
        [ -z "$retried" ] || echo "  the first boot crashed before any test ran; booted again" \
                "(its console: $vm/$k-crashed-boot.log)"
        case $qrc in
        0) ;;
        124) echo "  qemu timed out after ${boot_timeout}s" ;;
        *) echo "  qemu exited with status $qrc" ;;
        esac
        sed -n 's/^.*VM-INFO uname /  uname -r: /p' "$log"
        sed -n 's/^.*VM-INFO \(gcm(aes) driver: .*\)/  \1/p' "$log" | head -n1
        sed -n 's/^.*VM-INFO \(modules that failed.*\)/  \1/p' "$log"
        kfail=0
        for step in $steps; do
                line=$(grep -o "VM-RESULT $step .*" "$log" | tail -n1)
                read -r _ _ status _ <<<"$line"
                details=${line#"VM-RESULT $step $status"}
                case $status in
                PASS) passed=$((passed + 1)) ;;
                SKIP) failed=$((failed + 1)) kfail=1 details="$details (a skip counts as a failure here)" ;;
                FAIL) failed=$((failed + 1)) kfail=1 ;;
                *) failed=$((failed + 1)) kfail=1 status=FAIL details=" (no result)" ;;
                esac
                echo "  $status $step$details"
        done
        if [ $kfail -ne 0 ]; then
                echo "  --- last lines of $log"
                tail -n 60 "$log" | sed 's/^/  | /'
        fi
done

echo "vm: $passed passed, $failed failed"
[ $failed -eq 0 ]
