package netconf

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// inNewNetns runs f on a thread of its own in a fresh network namespace, which holds
// only a loopback interface that is down. The thread dies with the namespace afterwards.
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread is not reused
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		f()
	}()
	<-done
}

func TestConfigureLikeTheBoard(t *testing.T) {
	inNewNetns(t, func() {
		c, err := Open()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		// The board's steps, on the only interface a new namespace has.
		addr := netip.MustParsePrefix("10.0.2.15/24")
		if err := c.LinkUp("lo"); err != nil {
			t.Error(err)
			return
		}
		if err := c.AddAddress("lo", addr); err != nil {
			t.Error(err)
			return
		}
		if _, err := net.Dial("udp", "203.0.113.1:9"); err == nil {
			t.Error("a destination off the subnet is routable before the default route, want unreachable")
		}
		if err := c.AddDefaultRoute("lo", netip.MustParseAddr("10.0.2.2")); err != nil {
			t.Error(err)
			return
		}
		// A UDP connect only looks the route up; nothing is sent.
		conn, err := net.Dial("udp", "203.0.113.1:9")
		if err != nil {
			t.Errorf("after the default route: %v, want routable", err)
			return
		}
		defer conn.Close()
		if got := conn.LocalAddr().(*net.UDPAddr).IP.String(); got != "10.0.2.15" {
			t.Errorf("source address = %s, want 10.0.2.15", got)
		}
		if err := c.AddAddress("lo", addr); !errors.Is(err, unix.EEXIST) {
			t.Errorf("adding the address twice: %v, want EEXIST", err)
		}
	})
}

func TestErrorsNameTheInterface(t *testing.T) {
	c, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.LinkUp("nosuch0"); err == nil {
		t.Error("LinkUp of a missing interface succeeded")
	}
	if err := c.AddAddress("lo", netip.MustParsePrefix("fd00::1/64")); err == nil {
		t.Error("IPv6 prefix accepted, want refused")
	}
}
