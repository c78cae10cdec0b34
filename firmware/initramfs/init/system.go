//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
	"github.com/umbranet/umbra/firmware/initramfs/netconf"
)

// interfaceTimeout bounds the wait for the network interface to appear once its driver
// is loaded (the PCI probe is quick, but TCG emulation is slow).
const interfaceTimeout = 30 * time.Second

// interfacePoll is how often init looks for the interface meanwhile.
const interfacePoll = 50 * time.Millisecond

// mounts are the kernel filesystems the agent and init need. The root is the initramfs
// itself, already writable.
var mounts = []struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
}

// mountAll mounts the kernel filesystems; one already mounted is left as it is.
func mountAll() error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("init: mount %s: %w", m.target, err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("init: mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// clockFloor returns the time the clock should show: now, unless it is before the
// image's build time, which no real clock can be.
func clockFloor(now, built time.Time) (time.Time, bool) {
	if !built.IsZero() && now.Before(built) {
		return built, true
	}
	return now, false
}

// settleClock reports the clock, which the kernel set from the board's RTC (QEMU's
// PL031 starts at the host's time), and moves it up to the build time if it is earlier:
// a board whose clock reads 1970 rejects every certificate as not yet valid.
func settleClock(con *console, built time.Time) error {
	now := time.Now()
	t, moved := clockFloor(now, built)
	if !moved {
		con.printf("clock %s (rtc)", now.UTC().Format(time.RFC3339))
		return nil
	}
	tv := unix.NsecToTimeval(t.UnixNano())
	if err := unix.Settimeofday(&tv); err != nil {
		return fmt.Errorf("init: set clock to the build time %s: %w", t.UTC().Format(time.RFC3339), err)
	}
	con.printf("clock %s was before the build; set to %s", now.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	return nil
}

// loadModules loads kernel modules in order. A module already loaded is fine.
func loadModules(con *console, paths []string) error {
	for _, p := range paths {
		if err := loadModule(p); err != nil {
			return err
		}
		con.printf("module %s loaded", path.Base(p))
	}
	return nil
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("init: module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("init: load module %s: %w", p, err)
	}
	return nil
}

// configureNetwork waits for the interface, brings it and loopback up, and gives it its
// address and default route.
func configureNetwork(ctx context.Context, con *console, cfg bootcfg.Config) error {
	if err := waitInterface(ctx, cfg.Interface); err != nil {
		return err
	}
	nc, err := netconf.Open()
	if err != nil {
		return err
	}
	defer nc.Close()
	for _, step := range []func() error{
		func() error { return nc.LinkUp("lo") },
		func() error { return nc.LinkUp(cfg.Interface) },
		func() error { return nc.AddAddress(cfg.Interface, cfg.Address) },
		func() error { return nc.AddDefaultRoute(cfg.Interface, cfg.Gateway) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	con.printf("network %s %s via %s", cfg.Interface, cfg.Address, cfg.Gateway)
	return nil
}

// waitInterface polls sysfs until the interface exists.
func waitInterface(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, interfaceTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(filepath.Join("/sys/class/net", name)); err == nil {
			return nil
		}
		if err := sleep(ctx, interfacePoll); err != nil {
			return fmt.Errorf("init: no interface %s within %v (is its driver among the modules?)", name, interfaceTimeout)
		}
	}
}
