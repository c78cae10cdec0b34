// Package watchdog drives a Linux hardware watchdog (/dev/watchdog) and keeps it, or any
// other watchdog such as systemd's, from firing only while the program says it is
// healthy. It owns the device's ioctls (timeout, keepalive, magic close) and the petting
// loop; what "healthy" means is the caller's, passed in as a function.
//
// A watchdog that is petted regardless of health (gokrazy's init pets every second) only
// catches a hung kernel; petting from a health check is what lets a hung program reboot
// the board.
package watchdog

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	// DefaultPath is the kernel's first watchdog device.
	DefaultPath = "/dev/watchdog"
	// DefaultTimeout is the timeout Open asks for when given none. It is the Raspberry
	// Pi's maximum: the BCM2835 watchdog counts at most 16 s (the driver allows 15), and
	// refuses longer timeouts.
	DefaultTimeout = 15 * time.Second
	// magicClose is the byte that, written just before close, tells a driver with
	// WDIOF_MAGICCLOSE that the close is deliberate and the watchdog may stop. Without
	// it the watchdog keeps counting after close and the board reboots.
	magicClose = 'V'
)

// ErrClosed is returned by Keepalive after Close.
var ErrClosed = errors.New("watchdog: closed")

// driver is the open device as the ioctls and writes that reach it; the real one is an
// *os.File (driver_linux.go), tests use a fake.
type driver interface {
	// setTimeout asks for a timeout in whole seconds (WDIOC_SETTIMEOUT).
	setTimeout(secs int) error
	// timeout reads the timeout in force (WDIOC_GETTIMEOUT), which the driver may have
	// rounded or clamped.
	timeout() (int, error)
	// keepalive pets the watchdog (WDIOC_KEEPALIVE).
	keepalive() error
	// disarm writes the magic close byte and closes the device.
	disarm() error
}

// Device is an open, armed hardware watchdog. It must be petted (Keepalive) at least once
// per Timeout or the board resets; Close disarms it.
type Device struct {
	name    string
	timeout time.Duration

	mu  sync.Mutex
	drv driver // nil after Close
}

// Open opens and arms the watchdog at path (DefaultPath if empty) with timeout (rounded
// up to whole seconds; zero means DefaultTimeout). Opening arms it: from then on the
// caller must pet it, or Close it. On any error after the open the device is disarmed
// again before Open returns.
func Open(path string, timeout time.Duration) (*Device, error) {
	if path == "" {
		path = DefaultPath
	}
	drv, err := openDriver(path)
	if err != nil {
		return nil, err
	}
	return setup(path, drv, timeout)
}

// setup sets the timeout on an opened driver and reads back the one in force.
func setup(name string, drv driver, timeout time.Duration) (*Device, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	fail := func(err error) (*Device, error) {
		if derr := drv.disarm(); derr != nil {
			err = errors.Join(err, fmt.Errorf("watchdog: %s: disarm: %w", name, derr))
		}
		return nil, err
	}
	if err := drv.setTimeout(secs); err != nil {
		return fail(fmt.Errorf("watchdog: %s: set timeout %ds: %w", name, secs, hint(err)))
	}
	got, err := drv.timeout()
	if err != nil {
		return fail(fmt.Errorf("watchdog: %s: read timeout: %w", name, hint(err)))
	}
	if got <= 0 {
		return fail(fmt.Errorf("watchdog: %s: the driver reports a timeout of %ds", name, got))
	}
	return &Device{name: name, timeout: time.Duration(got) * time.Second, drv: drv}, nil
}

// Name is the device's path.
func (d *Device) Name() string { return d.name }

// Timeout is the timeout in force, as the driver reports it after Open: at most this
// long may pass between two pets.
func (d *Device) Timeout() time.Duration { return d.timeout }

// Keepalive pets the watchdog, restarting its countdown.
func (d *Device) Keepalive() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.drv == nil {
		return ErrClosed
	}
	if err := d.drv.keepalive(); err != nil {
		return fmt.Errorf("watchdog: %s: keepalive: %w", d.name, err)
	}
	return nil
}

// Close disarms the watchdog with the magic close and closes the device. Only a program
// that is stopping on purpose calls it; one that crashes or hangs leaves the watchdog
// armed, and the board resets. Calling Close again does nothing.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.drv == nil {
		return nil
	}
	err := d.drv.disarm()
	d.drv = nil
	if err != nil {
		return fmt.Errorf("watchdog: %s: close: %w", d.name, err)
	}
	return nil
}
