package watchdog

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// devFile is a watchdog device file reached through its ioctls.
type devFile struct{ f *os.File }

// openDriver opens path for writing, which arms the watchdog, after checking that it is a
// character device: the magic close writes into the file, and must never land in a
// regular file given by mistake.
func openDriver(path string) (driver, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", openHint(err))
	}
	if fi.Mode()&os.ModeCharDevice == 0 {
		return nil, fmt.Errorf("watchdog: %s is not a character device, so not a watchdog", path)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", openHint(err))
	}
	return &devFile{f}, nil
}

// control runs op on the file's descriptor without taking it out of the runtime's
// poller, as (*os.File).Fd would.
func (d *devFile) control(op func(fd int) error) error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) { opErr = op(int(fd)) }); err != nil {
		return err
	}
	return opErr
}

func (d *devFile) setTimeout(secs int) error {
	// WDIOC_SETTIMEOUT takes a pointer to an int (and writes the timeout set back into
	// it): IoctlSetInt would pass the number itself as the pointer, and the kernel
	// answers EFAULT.
	return d.control(func(fd int) error { return unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, secs) })
}

func (d *devFile) timeout() (int, error) {
	var secs int
	err := d.control(func(fd int) error {
		var err error
		secs, err = unix.IoctlGetInt(fd, unix.WDIOC_GETTIMEOUT)
		return err
	})
	return secs, err
}

func (d *devFile) keepalive() error {
	return d.control(unix.IoctlWatchdogKeepalive)
}

func (d *devFile) disarm() error {
	_, werr := d.f.Write([]byte{magicClose})
	cerr := d.f.Close()
	return errors.Join(werr, cerr)
}

// openHint adds what an operator can do about a failed open.
func openHint(err error) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w (only one process may hold a watchdog: is gokrazy's init, "+
			"systemd's RuntimeWatchdogSec= or the watchdog daemon using it?)", err)
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w (is the watchdog driver loaded? on a Raspberry Pi it is bcm2835_wdt)", err)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%w (the watchdog is root's unless a udev rule gives it away)", err)
	}
	return err
}

// hint adds what an ioctl's failure most likely means.
func hint(err error) error {
	switch {
	case errors.Is(err, unix.ENOTTY):
		return fmt.Errorf("%w: not a watchdog device", err)
	case errors.Is(err, unix.ENOSYS):
		// qemu-user passes no watchdog ioctls through to the kernel.
		return fmt.Errorf("%w: the watchdog ioctls are not available here (an emulator?)", err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: the driver refuses this timeout (the Raspberry Pi's allows at most 15 s)", err)
	}
	return err
}
