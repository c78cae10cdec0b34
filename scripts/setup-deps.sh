#!/usr/bin/env bash
# Installs the Debian packages umbra's tests and benchmarks use. As root it installs what
# is missing; otherwise it names what is missing and fails.
set -euo pipefail

# swtpm*/tpm2-tools: the TPM 2.0 key store is tested against swtpm.
# openssh-server: the `ssh -L` tunnel benchmarks compare against.
# iproute2/iptables: network namespaces for link tests.
# qemu-user-static: runs the arm64/armv7/armv6 cross builds and their tests
#   (scripts/qemu-user-test.sh, test/cross).
# qemu-system-arm: qemu-system-aarch64, the emulated arm64 board of `make qemu-test`
#   (scripts/qemu-system-test.sh; the kernel it boots comes from apt-get download).
# curl: the enrollment benchmark's peer (a POST on a new TLS connection).
# chromium: the web console (`umbra console`) is tested in headless Chromium, driven by
#   chromedp (test/e2e/console_test.go).
# fdisk/dosfstools/mtools/e2fsprogs: scripts/flash.sh and its tests build and fill a
#   Raspberry Pi OS-like image (sfdisk, mkfs.vfat, mcopy, mkfs.ext4 and debugfs).
PACKAGES=(swtpm swtpm-tools tpm2-tools openssh-server iproute2 iptables qemu-user-static qemu-system-arm
	fdisk dosfstools mtools e2fsprogs curl chromium)

# VIDEO_PACKAGES: the bench's video section only (`setup-deps.sh video`, run by
# scripts/bench.sh, never by `make test`): a real RTP H.264 stream, encoded and decoded
# by GStreamer. tools: gst-launch-1.0; base: videotestsrc; good: rtph264pay,
# rtph264depay, udpsrc, udpsink; ugly: x264enc; libav: avdec_h264.
VIDEO_PACKAGES=(gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
	gstreamer1.0-plugins-ugly gstreamer1.0-libav)
if [ "${1:-}" = video ]; then
	PACKAGES=("${VIDEO_PACKAGES[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "setup-deps: missing Debian packages: ${missing[*]}" >&2
	echo "setup-deps: install them as root: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "setup-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
