package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// freePortTries bounds the search for a port free for both TCP and UDP.
const freePortTries = 50

// FreeTCP returns a loopback TCP address the OS just had free.
func FreeTCP() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// FreeUDP returns a loopback UDP address the OS just had free.
func FreeUDP() (string, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("lab: %w", err)
	}
	defer pc.Close()
	return pc.LocalAddr().String(), nil
}

// FreePort returns a loopback address whose port was free for both TCP and UDP at the
// time of asking (a controller serves both on one port). The port is drawn below the
// kernel's ephemeral range (ip_local_port_range): a port from that range can be handed to
// any other program's socket (an outgoing connection, a bind to port 0) before the lab's
// program binds it, and on a busy machine it was (a controller's join address, a
// router's). Where the range cannot be read, the kernel picks as it would.
func FreePort() (string, error) {
	lo, hi := fixedPortRange()
	for range freePortTries {
		port := 0
		if hi > lo {
			port = lo + rand.IntN(hi-lo)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port == 0 {
				return "", fmt.Errorf("lab: %w", err)
			}
			continue // taken: draw again
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", errors.New("lab: no port free for both TCP and UDP")
}

// freePortFloor is the least port FreePort draws: above the well-known and the commonly
// configured ones.
const freePortFloor = 10000

// fixedPortRange is the range FreePort draws from, [freePortFloor, the start of the
// ephemeral range), or 0, 0 where that cannot be read.
func fixedPortRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start <= freePortFloor {
		return 0, 0
	}
	return freePortFloor, start
}

// MustFree calls one of FreeTCP, FreeUDP or FreePort for the test t, failing it on error.
func MustFree(t TB, free func() (string, error)) string {
	t.Helper()
	addr, err := free()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return addr
}
