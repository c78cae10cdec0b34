// Package firmware tests what goes onto a device outside Go: the Raspberry Pi bundle in
// firmware/rpi (its systemd units and first-boot script) and scripts/flash.sh, which
// writes the bundle into a Raspberry Pi OS image. The tests build a small image shaped
// like Raspberry Pi OS's (an MBR with a FAT boot and an ext4 root partition) with
// sfdisk, mkfs.vfat and mkfs.ext4, and read it back with mtools and debugfs; they need
// the Debian packages fdisk, dosfstools, mtools and e2fsprogs, and systemd for
// `systemd-analyze verify` (skipped without it).
package firmware
