package lab

import (
	"errors"
	"fmt"
	"net"
)

// freePortTries bounds the search for a port free for both TCP and UDP.
const freePortTries = 20

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
// time of asking (a controller serves both on one port).
func FreePort() (string, error) {
	for range freePortTries {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("lab: %w", err)
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

// MustFree calls one of FreeTCP, FreeUDP or FreePort for the test t, failing it on error.
func MustFree(t TB, free func() (string, error)) string {
	t.Helper()
	addr, err := free()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return addr
}
