//go:build !linux

package transport

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// UnreachableConn is the socket as it is: outside Linux the router does not read ICMP
// errors (see icmp_linux.go).
type UnreachableConn struct{ *net.UDPConn }

// WatchUnreachable returns uc as it is.
func WatchUnreachable(uc *net.UDPConn) (*UnreachableConn, error) { return &UnreachableConn{uc}, nil }

// Unreachable waits for ctx: nothing is learned outside Linux.
func (c *UnreachableConn) Unreachable(ctx context.Context, _ time.Duration, _ func(netip.AddrPort)) {
	<-ctx.Done()
}
