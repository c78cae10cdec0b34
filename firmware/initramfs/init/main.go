//go:build linux

// Command init is PID 1 of the umbra firmware image for QEMU's virt board (see
// firmware/initramfs/README.md). It mounts the kernel's filesystems, keeps the clock no
// earlier than the image's build time, loads the network modules, configures the
// network, runs an optional echo service on loopback, enrolls the agent with the token
// in the image, then runs umbra-agent and restarts it if it exits. It reports each step
// on the console as the lines package bootcfg defines, so a watcher on the serial port
// can tell when the board is ready and why it is not.
//
// It is a Go program rather than busybox and a shell script so that the image carries
// no shell and no userland beyond umbra's own two binaries, and so that its steps are
// unit-tested like the rest of umbra.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
)

func main() {
	con := &console{w: os.Stdout}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "init: this is the firmware image's PID 1; run it only as a kernel's init")
		os.Exit(2)
	}
	err := run(context.Background(), con)
	con.fatal(err)
	// Power off rather than exit: PID 1 exiting panics the kernel. QEMU started with
	// -no-reboot then exits, which a watcher notices at once.
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		con.printf("power off: %v", err)
	}
	select {}
}

// run brings the board up and supervises the agent. It returns only with the reason the
// board cannot go on.
func run(ctx context.Context, con *console) error {
	if err := mountAll(); err != nil {
		return err
	}
	con.event(bootcfg.EventStart, "uptime", uptime())
	data, err := os.ReadFile(bootcfg.Path)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	cfg, err := bootcfg.Decode(data)
	if err != nil {
		return err
	}
	if err := settleClock(con, cfg.Built); err != nil {
		return err
	}
	if err := loadModules(con, cfg.Modules); err != nil {
		return err
	}
	if err := configureNetwork(ctx, con, cfg); err != nil {
		return err
	}
	if cfg.Echo != "" {
		if _, err := startEcho(cfg.Echo); err != nil {
			return err
		}
		con.printf("echo service on %s", cfg.Echo)
	}
	reportBoard(ctx, con, cfg.Agent)
	if err := enroll(ctx, con, cfg); err != nil {
		return err
	}
	return supervise(ctx, con, cfg)
}

// console writes init's lines, whole, between the agent's.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

// printf writes a free-text line.
func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, bootcfg.ConsolePrefix+format+"\n", args...)
}

// event writes one of bootcfg's event lines.
func (c *console) event(ev string, kv ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintln(c.w, bootcfg.Line(ev, kv...))
}

// fatal writes the reason init gives up.
func (c *console) fatal(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, "%s%s %v\n", bootcfg.ConsolePrefix, bootcfg.EventFatal, err)
}

// uptime returns the seconds since the kernel started, as /proc/uptime says, or -1.
func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "-1"
	}
	return parseUptime(string(b))
}

// parseUptime takes the first field of /proc/uptime.
func parseUptime(s string) string {
	var up float64
	if _, err := fmt.Sscan(s, &up); err != nil {
		return "-1"
	}
	return fmt.Sprintf("%.2f", up)
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
