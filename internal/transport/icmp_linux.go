package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reading the error queue: each entry is the packet's original destination and a
// sock_extended_err (linux/errqueue.h), whose first field is the errno.
const (
	errQueueOOB  = 512
	errQueueBody = 64 // the part of the offending packet the kernel returns; unused
)

// UnreachableConn is a UDP socket that learns which peers' hosts answer it with ICMP port
// unreachable: nothing listens any more at the address it sends to, as when the process
// that owned the port died while its host lives on. A QUIC transport on it needs
// IgnoreICMPErrors, since the kernel also reports each such error on the socket's next
// read or write; UnreachableConn retries the writes.
type UnreachableConn struct {
	*net.UDPConn
	raw syscall.RawConn
}

// WatchUnreachable turns on IP_RECVERR (and IPV6_RECVERR on an IPv6 socket) on uc, so
// the ICMP errors its packets draw are queued for Unreachable to read.
func WatchUnreachable(uc *net.UDPConn) (*UnreachableConn, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("transport: icmp errors: %w", err)
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
			serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1))
		}
	})
	if err = errors.Join(err, serr); err != nil {
		return nil, fmt.Errorf("transport: icmp errors: %w", err)
	}
	return &UnreachableConn{UDPConn: uc, raw: raw}, nil
}

// icmpRefusal reports an ICMP error the kernel reported on a send: the packet was not
// refused, an earlier one's destination was.
func icmpRefusal(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}

// WriteMsgUDP sends as the socket does, once more when the kernel hands it an earlier
// packet's ICMP error instead.
func (c *UnreachableConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := c.UDPConn.WriteMsgUDP(b, oob, addr)
	if err != nil && icmpRefusal(err) {
		n, oobn, err = c.UDPConn.WriteMsgUDP(b, oob, addr)
	}
	return n, oobn, err
}

// WriteTo sends as the socket does, once more when the kernel hands it an earlier
// packet's ICMP error instead.
func (c *UnreachableConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.UDPConn.WriteTo(b, addr)
	if err != nil && icmpRefusal(err) {
		n, err = c.UDPConn.WriteTo(b, addr)
	}
	return n, err
}

// Unreachable reads the socket's error queue every interval until ctx ends and calls
// refused with the destination of each packet its host answered with port unreachable.
// Other ICMP errors (host or network unreachable: a radio out of range, an ARP that
// failed) say nothing of the process and are ignored.
func (c *UnreachableConn) Unreachable(ctx context.Context, every time.Duration, refused func(netip.AddrPort)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	body, oob := make([]byte, errQueueBody), make([]byte, errQueueOOB)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var found []netip.AddrPort
		if err := c.raw.Control(func(fd uintptr) {
			for {
				_, oobn, _, from, err := unix.Recvmsg(int(fd), body, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
				if err != nil {
					return // EAGAIN: the queue is empty
				}
				if portUnreachable(oob[:oobn]) {
					if ap, ok := addrPort(from); ok {
						found = append(found, ap)
					}
				}
			}
		}); err != nil {
			return // the socket closed
		}
		for _, ap := range found {
			refused(ap)
		}
	}
}

// portUnreachable reports whether an error-queue entry's control messages hold an
// extended error of ECONNREFUSED: ICMP (or ICMPv6) port unreachable.
func portUnreachable(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		v4 := m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR
		v6 := m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		if (v4 || v6) && len(m.Data) >= 4 && syscall.Errno(binary.NativeEndian.Uint32(m.Data)) == syscall.ECONNREFUSED {
			return true
		}
	}
	return false
}

// addrPort converts a socket address, unmapping IPv4-in-IPv6.
func addrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}
