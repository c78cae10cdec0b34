#!/usr/bin/env bash
# Runs the tests of the pure-Go packages as linux/arm64 and linux/arm (GOARM=7) binaries
# under qemu-user, so code that behaves differently on 32-bit or ARM (atomics alignment,
# int sizes, byte order assumptions) is caught without a board. Then checks that
# `make cross` gives static binaries for aarch64, ARMv7 and ARMv6 and that the armv6 agent
# runs on an emulated ARM1176 (Pi Zero W).
#
# Needs qemu-aarch64-static and qemu-arm-static (Debian package qemu-user-static; run
# scripts/setup-deps.sh). QEMU_TEST_TIMEOUT bounds each package's tests (default 20m:
# emulation runs them several times slower than natively).
#
# The TPM key store tests start the host's swtpm from inside the emulated test binary;
# that works (qemu-user passes execve of a host binary through to the kernel), so nothing
# is skipped. internal/linksim's network-namespace links (TestNetnsLink*) are left to the
# native run: they test the kernel's TUN devices and namespaces, not the CPU, and they fork
# `ip` and `ping` dozens of times, and qemu-user can deadlock a forked child of a
# multithreaded process before it execs (seen: a linksim.test child stuck in a futex for
# 12 minutes under qemu-arm-static).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
PKGS=(./hal/... ./boards/... ./internal/...)
TIMEOUT=${QEMU_TEST_TIMEOUT:-20m}
# goarch:goarm:emulator:cpu — the CPU is the oldest each build must run on.
TARGETS=(arm64::qemu-aarch64-static:cortex-a53 arm:7:qemu-arm-static:cortex-a7)

for q in qemu-aarch64-static qemu-arm-static; do
	if ! command -v "$q" >/dev/null; then
		echo "qemu-user-test: $q is missing; run scripts/setup-deps.sh (Debian package qemu-user-static)" >&2
		exit 1
	fi
done

start=$(date +%s)
for t in "${TARGETS[@]}"; do
	IFS=: read -r goarch goarm qemu cpu <<<"$t"
	echo "qemu-user-test: linux/$goarch${goarm:+ GOARM=$goarm} under $qemu -cpu $cpu"
	QEMU_CPU=$cpu CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
		$GO test -p 1 -count=1 -timeout "$TIMEOUT" -skip '^TestNetnsLink' -exec "$qemu" "${PKGS[@]}"
done

echo "qemu-user-test: make cross"
make --no-print-directory cross
for t in arm64:ARM\ aarch64 armv7:ARM armv6:ARM; do
	arch=${t%%:*}; machine=${t#*:}
	for b in umbra umbra-agent; do
		desc=$(file -b "bin/linux_$arch/$b")
		case $desc in
		*"$machine"*"statically linked"*) ;;
		*) echo "qemu-user-test: bin/linux_$arch/$b is not a static $machine ELF: $desc" >&2; exit 1 ;;
		esac
	done
done
out=$(qemu-arm-static -cpu arm1176 bin/linux_armv6/umbra-agent version)
echo "qemu-user-test: arm1176: $out"
case $out in
*"GOARM=6"*) ;;
*) echo "qemu-user-test: bin/linux_armv6/umbra-agent version on arm1176 does not say GOARM=6" >&2; exit 1 ;;
esac
echo "qemu-user-test: ok in $(($(date +%s) - start))s"
