#!/usr/bin/env bash
# The full-system QEMU test (`make qemu-test`): an emulated arm64 board (qemu-system-aarch64
# -M virt, TCG) boots Debian's cloud-arm64 kernel with the firmware initramfs
# (firmware/initramfs); its agent enrolls with a controller on the host and hosts a service
# that an agent on the host dials end to end (test/qemu).
#
# The kernel is whatever version Debian's linux-image-cloud-arm64 points at today, fetched
# with `apt-get download` (this adds the arm64 architecture to dpkg once) and unpacked into
# $UMBRA_QEMU_CACHE (default ~/.cache/umbra/qemu/RELEASE: vmlinuz, config, modules/,
# version); older releases there are removed. The console log and the image stay in
# bin/qemu/ for a look after the run.
#
# Needs root (the test runs in a private network namespace, and apt) and
# qemu-system-aarch64 (Debian package qemu-system-arm; run scripts/setup-deps.sh).
# QEMU_SYSTEM_TEST_TIMEOUT bounds the go test run (default 20m; it takes a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
CACHE=${UMBRA_QEMU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/umbra/qemu}
META=linux-image-cloud-arm64 # the flavour for VMs: virtio, PL011 and PL031 are all it needs
OUT=bin/qemu
TIMEOUT=${QEMU_SYSTEM_TEST_TIMEOUT:-20m}

die() {
	echo "qemu-system-test: $*" >&2
	exit 1
}

command -v qemu-system-aarch64 >/dev/null ||
	die "qemu-system-aarch64 is missing: install the Debian package qemu-system-arm (scripts/setup-deps.sh does, as root)"
[ "$(id -u)" -eq 0 ] || die "needs root: the test runs in a private network namespace, and fetches the kernel with apt"

# kernel_package prints the arm64 kernel package the meta-package depends on now.
kernel_package() {
	apt-cache depends "$META:arm64" 2>/dev/null |
		awk '/Depends: linux-image-/ { sub(/:arm64$/, "", $2); print $2; exit }'
}

# fetch_kernel unpacks package $1 into the cache unless it is there; it fails quietly
# when apt cannot download it (stale package lists).
fetch_kernel() {
	local pkg=$1 release=${1#linux-image-} tmp
	[ -f "$CACHE/$release/vmlinuz" ] && return 0
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:arm64" >/dev/null 2>&1); then
		rm -rf "$tmp"
		return 1
	fi
	echo "qemu-system-test: unpacking $pkg into $CACHE/$release"
	dpkg-deb -x "$tmp"/*.deb "$tmp/x"
	mkdir -p "$CACHE"
	rm -rf "$CACHE/$release.new"
	mkdir "$CACHE/$release.new"
	cp "$tmp/x/boot/vmlinuz-$release" "$CACHE/$release.new/vmlinuz"
	cp "$tmp/x/boot/config-$release" "$CACHE/$release.new/config"
	cp -a "$tmp/x/lib/modules/$release" "$CACHE/$release.new/modules"
	echo "$release $(dpkg-deb -f "$tmp"/*.deb Version)" >"$CACHE/$release.new/version"
	rm -rf "$tmp"
	mv "$CACHE/$release.new" "$CACHE/$release"
}

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	echo "qemu-system-test: adding the arm64 architecture to dpkg, for Debian's arm64 kernel"
	dpkg --add-architecture arm64
	apt-get update -qq
fi
pkg=$(kernel_package)
if [ -z "$pkg" ] || ! fetch_kernel "$pkg"; then
	# The lists may predate the arm64 architecture or name a package the mirror dropped.
	apt-get update -qq
	pkg=$(kernel_package)
	[ -n "$pkg" ] || die "apt knows no $META:arm64; is Debian's main archive in the sources?"
	fetch_kernel "$pkg" || die "apt-get download $pkg:arm64 failed"
fi
release=${pkg#linux-image-}
for old in "$CACHE"/*; do
	[ "$old" = "$CACHE/$release" ] || rm -rf "$old"
done
echo "qemu-system-test: kernel $(cat "$CACHE/$release/version")"

mkdir -p "$OUT"
start=$(date +%s)
export UMBRA_QEMU_KERNEL="$CACHE/$release" UMBRA_QEMU_OUT="$PWD/$OUT"
# The image's modules resolve in this kernel...
$GO test -count=1 -run TestDebianKernel ./firmware/initramfs/kmod/
# ...and the board boots, enrolls and hosts (one package, so its log streams).
$GO test -count=1 -v -timeout "$TIMEOUT" ./test/qemu/
echo "qemu-system-test: ok in $(($(date +%s) - start))s (console log: $OUT/console.log)"
