package linksim

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

func checkNetnsOS() error { return nil }

// InNamespace runs fn on an operating-system thread that has joined the named network
// namespace (one `ip netns` knows). Sockets and TUN devices fn creates belong to that
// namespace for their whole life, wherever they are used from afterwards; goroutines
// fn starts do not run in it. Needs root.
func InNamespace(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: once the thread has left the process's namespace it must not
		// run other goroutines, so the runtime ends it when this goroutine returns.
		runtime.LockOSThread()
		path := filepath.Join(netnsDir, name)
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("linksim: open namespace %s: %w", name, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("linksim: enter namespace %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// openTUN creates the TUN device name in the calling thread's network namespace and
// returns its file, non-blocking so reads wait in the runtime's poller and Close
// interrupts them. Packets are bare IP (IFF_NO_PI: no packet-information header).
// The device exists until the file is closed.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open(tunDevice, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", tunDevice, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("device name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), tunDevice), nil
}
