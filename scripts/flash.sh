#!/usr/bin/env bash
# flash.sh puts the umbra agent into a Raspberry Pi OS image, ready to enroll on its first
# boot, without mounting anything:
#
#   boot partition (FAT, through mtools):   umbra-token.jwt, umbra.conf
#   root partition (ext4, through debugfs): /usr/local/bin/umbra-agent, the systemd units
#     (enabled), the first-boot script, the umbra user's sysusers.d entry, the LED's udev rule
#
# Usage: scripts/flash.sh IMAGE --token FILE [--config FILE] [--agent BIN] [--dry-run]
#
# IMAGE is an uncompressed Raspberry Pi OS .img (or the SD card's block device). --agent
# defaults to bin/linux_arm64/umbra-agent (`make cross`); a Pi Zero W needs
# bin/linux_armv6/umbra-agent. --config defaults to firmware/rpi/umbra.conf. --dry-run
# prints what would be written and changes nothing.
#
# Needs: partx (util-linux), mtools, debugfs (e2fsprogs). Every error is one line on stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
bundle=$repo/firmware/rpi

# Where the bundle goes in the root file system, and with which mode.
agent_dest=/usr/local/bin/umbra-agent
firstboot_dest=/usr/local/lib/umbra/umbra-firstboot
unit_dir=/etc/systemd/system
wants_dir=$unit_dir/multi-user.target.wants
units=(umbra-agent.service umbra-enroll.service)
sysusers_dest=/etc/sysusers.d/umbra.conf
udev_dest=/etc/udev/rules.d/99-umbra-led.rules
# Names on the boot partition, which umbra-firstboot looks for.
token_name=umbra-token.jwt
config_name=umbra.conf
# Sector size of partx's offsets.
sector=512

die() {
	echo "flash.sh: $*" >&2
	exit 1
}
usage() {
	echo "flash.sh: usage: flash.sh IMAGE --token FILE [--config FILE] [--agent BIN] [--dry-run]" >&2
	exit 2
}

image='' token='' config=$bundle/umbra.conf agent=$repo/bin/linux_arm64/umbra-agent dry_run=
while [ $# -gt 0 ]; do
	case $1 in
	--token) [ $# -ge 2 ] || usage; token=$2; shift 2 ;;
	--token=*) token=${1#*=}; shift ;;
	--config) [ $# -ge 2 ] || usage; config=$2; shift 2 ;;
	--config=*) config=${1#*=}; shift ;;
	--agent) [ $# -ge 2 ] || usage; agent=$2; shift 2 ;;
	--agent=*) agent=${1#*=}; shift ;;
	--dry-run) dry_run=1; shift ;;
	-h | --help) sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) usage ;;
	*) [ -z "$image" ] || usage; image=$1; shift ;;
	esac
done
[ -n "$image" ] || usage

# --- checks: everything is refused before anything is written ---

missing=()
for tool in partx:util-linux mcopy:mtools mtype:mtools minfo:mtools debugfs:e2fsprogs; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
[ ${#missing[@]} -eq 0 ] || die "missing tools; install the Debian packages: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"

[ -n "$token" ] || die "no --token FILE: the device enrolls with a one-time token (umbra edge create identity NAME --jwt-out FILE)"
[ -f "$token" ] || die "token $token: no such file"
# A token is a JWT: three base64url parts separated by dots.
grep -Eq '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+[[:space:]]*$' "$token" ||
	die "token $token: not an enrollment token (want a JWT, as umbra edge create identity --jwt-out writes)"
[ -f "$config" ] || die "config $config: no such file"
[ -f "$agent" ] || die "agent $agent: no such file (run make cross, or pass --agent)"
# The agent must be an ARM Linux binary: e_machine (bytes 18-19 of the ELF header) is
# 0x28 for 32-bit ARM, 0xb7 for arm64.
[ "$(head -c 4 "$agent" | od -An -c | tr -d ' ')" = '177ELF' ] || die "agent $agent: not an ELF executable"
machine=$(od -An -tx1 -j18 -N2 "$agent" | tr -d ' \n')
case $machine in
28*) agent_arch=arm ;;
b700) agent_arch=arm64 ;;
*) die "agent $agent: not an ARM binary (e_machine $machine); use bin/linux_arm64/ or bin/linux_armv6/umbra-agent from make cross" ;;
esac
for f in umbra-agent.service umbra-enroll.service umbra-firstboot sysusers-umbra.conf 99-umbra-led.rules; do
	[ -f "$bundle/$f" ] || die "bundle file $bundle/$f is missing"
done

[ -e "$image" ] || die "image $image: no such file"
case $image in
*.xz | *.gz | *.zip | *.zst | *.bz2) die "image $image is compressed: decompress it first (xz -dk, unzip, ...)" ;;
esac
[ -f "$image" ] || [ -b "$image" ] || die "image $image: not a file or block device"

# Partitions: number, first sector, sectors, type (MBR 0xc, or a GPT type GUID).
if ! parts=$(partx -g -r -o NR,START,SECTORS,TYPE "$image" 2>/dev/null) || [ -z "$parts" ]; then
	die "image $image: no partition table (is it a Raspberry Pi OS .img?)"
fi
boot_off='' root_off='' boot_nr='' root_nr=
while read -r nr start _ type; do
	type=$(echo "$type" | tr 'A-F' 'a-f')
	case $type in
	# FAT32 LBA, FAT32, FAT16 LBA; GPT basic data and EFI system partitions.
	0xc | 0xb | 0xe | ebd0a0a2-b9e5-4433-87c0-68b6b72699c7 | c12a7328-f81f-11d2-ba4b-00a0c93ec93b)
		[ -n "$boot_off" ] || { boot_off=$((start * sector)); boot_nr=$nr; } ;;
	# Linux; GPT Linux file system and arm64 root.
	0x83 | 0fc63daf-8483-4772-8e79-3d69d8477de4 | b921b045-1df0-41c3-af44-4c6f280d3fae)
		[ -n "$root_off" ] || { root_off=$((start * sector)); root_nr=$nr; } ;;
	esac
done <<<"$parts"
[ -n "$boot_off" ] || die "image $image: no FAT boot partition (is it a Raspberry Pi OS .img?)"
[ -n "$root_off" ] || die "image $image: no Linux root partition (is it a Raspberry Pi OS .img?)"

export MTOOLS_SKIP_CHECK=1 # Pi OS's FAT geometry makes mtools complain otherwise
boot="$image@@$boot_off"
rootfs="$image?offset=$root_off"
minfo -i "$boot" :: >/dev/null 2>&1 || die "image $image: partition $boot_nr is not a FAT file system"
debugfs -R stats "$rootfs" 2>/dev/null | grep -q '^Filesystem magic number:.*0xEF53' ||
	die "image $image: partition $root_nr is not an ext4 file system"

# --- the plan ---

# root_files lists SOURCE DEST MODE for the root partition.
root_files=(
	"$agent" "$agent_dest" 755
	"$bundle/umbra-firstboot" "$firstboot_dest" 755
	"$bundle/umbra-agent.service" "$unit_dir/umbra-agent.service" 644
	"$bundle/umbra-enroll.service" "$unit_dir/umbra-enroll.service" 644
	"$bundle/sysusers-umbra.conf" "$sysusers_dest" 644
	"$bundle/99-umbra-led.rules" "$udev_dest" 644
)

echo "image $image: boot = partition $boot_nr at byte $boot_off, root = partition $root_nr at byte $root_off"
echo "boot: write $token as /$token_name"
echo "boot: write $config as /$config_name"
for ((i = 0; i < ${#root_files[@]}; i += 3)); do
	echo "root: write ${root_files[i]} as ${root_files[i + 1]} (mode 0${root_files[i + 2]}, root:root)"
done
for u in "${units[@]}"; do
	echo "root: enable $u (symlink $wants_dir/$u -> $unit_dir/$u)"
done
echo "agent: $agent_arch binary"
if [ -n "$dry_run" ]; then
	echo "dry run: nothing written"
	exit 0
fi

# --- boot partition ---

mcopy -o -i "$boot" "$token" "::$token_name" 2>/dev/null || die "boot: cannot write /$token_name (is the image writable and the partition full?)"
mcopy -o -i "$boot" "$config" "::$config_name" 2>/dev/null || die "boot: cannot write /$config_name"

# --- root partition ---

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmds=$tmp/debugfs.cmds
{
	# mkdir of a directory that exists fails harmlessly; every file is checked below.
	for ((i = 0; i < ${#root_files[@]}; i += 3)); do
		dir=$(dirname "${root_files[i + 1]}") path=
		IFS=/ read -ra comps <<<"${dir#/}"
		for c in "${comps[@]}"; do
			path=$path/$c
			echo "mkdir $path"
		done
	done
	echo "mkdir $wants_dir"
	for ((i = 0; i < ${#root_files[@]}; i += 3)); do
		src=${root_files[i]} dest=${root_files[i + 1]} mode=${root_files[i + 2]}
		# debugfs's write puts a file in the current directory and refuses to overwrite.
		echo "cd $(dirname "$dest")"
		echo "rm $(basename "$dest")"
		echo "write $src $(basename "$dest")"
		echo "sif $dest mode 0100$mode" # a regular file
		echo "sif $dest uid 0"
		echo "sif $dest gid 0"
	done
	for u in "${units[@]}"; do
		echo "rm $wants_dir/$u"
		echo "symlink $wants_dir/$u $unit_dir/$u"
	done
} >"$cmds"
debugfs -w -f "$cmds" "$rootfs" >"$tmp/debugfs.log" 2>&1 || die "root: debugfs failed: $(grep -m1 -i error "$tmp/debugfs.log" || tail -n1 "$tmp/debugfs.log")"

# --- read everything back ---

for pair in "$token:$token_name" "$config:$config_name"; do
	src=${pair%:*} name=${pair##*:}
	rm -f "$tmp/back"
	mcopy -n -i "$boot" "::$name" "$tmp/back" 2>/dev/null || true
	cmp -s "$src" "$tmp/back" || die "boot: /$name did not read back as written"
done
for ((i = 0; i < ${#root_files[@]}; i += 3)); do
	src=${root_files[i]} dest=${root_files[i + 1]} mode=${root_files[i + 2]}
	rm -f "$tmp/back"
	debugfs -R "dump $dest $tmp/back" "$rootfs" >/dev/null 2>&1
	cmp -s "$src" "$tmp/back" 2>/dev/null || die "root: $dest did not read back as written (is the root partition full?)"
	debugfs -R "stat $dest" "$rootfs" 2>/dev/null | grep -Eq "Mode: +0$mode\b" || die "root: $dest does not have mode 0$mode"
done
for u in "${units[@]}"; do
	debugfs -R "stat $wants_dir/$u" "$rootfs" 2>/dev/null | grep -q "Type: symlink" ||
		die "root: $wants_dir/$u is not a symlink after writing"
done
echo "done: the device enrolls at its first boot and removes the token"
