// Package svcaddr parses a service's address, PROTO:HOST:PORT, as `umbra edge create
// service --host/--intercept` takes it and the controller stores it: PROTO tcp or udp,
// HOST a hostname or an IP literal (IPv6 in brackets), PORT a number from 1 to 65535.
// It only reads text: it resolves no name and opens no socket.
package svcaddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Protocols a service address may name.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Bounds of a hostname (RFC 1123).
const (
	maxHostname = 253
	maxLabel    = 63
)

// ErrInvalid is wrapped by every refusal of Parse.
var ErrInvalid = errors.New("invalid service address")

// Address is a parsed PROTO:HOST:PORT.
type Address struct {
	// Proto is TCP or UDP.
	Proto string
	// Host is a hostname or an IP literal, without brackets.
	Host string
	// Port is from 1 to 65535.
	Port uint16
}

// String is the address as Parse reads it: tcp:host:80, udp:[::1]:14550.
func (a Address) String() string {
	return a.Proto + ":" + a.HostPort()
}

// HostPort is the address without its protocol, as net.Dial takes it.
func (a Address) HostPort() string {
	return net.JoinHostPort(a.Host, strconv.Itoa(int(a.Port)))
}

// Parse reads PROTO:HOST:PORT. Its errors are one line, wrap ErrInvalid and quote s.
func Parse(s string) (Address, error) {
	proto, hostport, ok := strings.Cut(s, ":")
	if !ok || (proto != TCP && proto != UDP) {
		return Address{}, invalid(s, "want tcp:HOST:PORT or udp:HOST:PORT")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Address{}, invalid(s, "want tcp:HOST:PORT or udp:HOST:PORT")
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Address{}, invalid(s, fmt.Sprintf("port %q: want a number from 1 to 65535", port))
	}
	if err := checkHost(host); err != nil {
		return Address{}, invalid(s, err.Error())
	}
	return Address{Proto: proto, Host: host, Port: uint16(n)}, nil
}

// checkHost accepts an IP literal without a zone, or a hostname of letters, digits and
// hyphens in dot-separated labels whose last label is not all digits (so "999.1.1.1"
// is neither a name nor an address).
func checkHost(host string) error {
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return fmt.Errorf("host %q: an IPv6 zone is not allowed", host)
		}
		return nil
	}
	bad := fmt.Errorf("host %q: want a hostname (letters, digits, '-' and '.') or an IP address", host)
	if host == "" || len(host) > maxHostname {
		return bad
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if !validLabel(l) {
			return bad
		}
	}
	if allDigits(labels[len(labels)-1]) {
		return bad
	}
	return nil
}

// validLabel: 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen.
func validLabel(l string) bool {
	if l == "" || len(l) > maxLabel || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := range len(l) {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func invalid(s, why string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalid, s, why)
}
