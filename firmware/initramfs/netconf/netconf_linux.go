// Package netconf configures IPv4 networking over rtnetlink: it brings links up, adds
// addresses and adds the default route. The firmware's init uses it in place of ip(8),
// which the image does not carry; the QEMU test uses it to give its private network
// namespace the address the board dials. It only adds; it never removes or lists.
package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// replyTimeout bounds the wait for the kernel's answer to one request.
const replyTimeout = 5 * time.Second

// Conn is a route netlink socket in the network namespace of the thread that opened it.
type Conn struct {
	fd  int
	seq uint32
}

// Open opens a route netlink socket.
func Open() (*Conn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netconf: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netconf: bind netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(replyTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netconf: netlink socket timeout: %w", err)
	}
	return &Conn{fd: fd}, nil
}

// Close closes the socket.
func (c *Conn) Close() error {
	return unix.Close(c.fd)
}

// LinkUp sets the interface administratively up.
func (c *Conn) LinkUp(ifname string) error {
	idx, err := index(ifname)
	if err != nil {
		return err
	}
	msg := make([]byte, unix.SizeofIfInfomsg)
	// struct ifinfomsg: family(1) pad(1) type(2) index(4) flags(4) change(4).
	msg[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(msg[4:], uint32(idx))
	binary.NativeEndian.PutUint32(msg[8:], unix.IFF_UP)
	binary.NativeEndian.PutUint32(msg[12:], unix.IFF_UP)
	if err := c.request(unix.RTM_NEWLINK, 0, msg); err != nil {
		return fmt.Errorf("netconf: set %s up: %w", ifname, err)
	}
	return nil
}

// AddAddress gives the interface an IPv4 address. An address it already has is an error
// wrapping unix.EEXIST.
func (c *Conn) AddAddress(ifname string, p netip.Prefix) error {
	if !p.Addr().Is4() {
		return fmt.Errorf("netconf: %s is not an IPv4 prefix", p)
	}
	idx, err := index(ifname)
	if err != nil {
		return err
	}
	// struct ifaddrmsg: family(1) prefixlen(1) flags(1) scope(1) index(4).
	msg := make([]byte, unix.SizeofIfAddrmsg)
	msg[0] = unix.AF_INET
	msg[1] = byte(p.Bits())
	msg[3] = unix.RT_SCOPE_UNIVERSE
	if p.Addr().IsLoopback() {
		msg[3] = unix.RT_SCOPE_HOST
	}
	binary.NativeEndian.PutUint32(msg[4:], uint32(idx))
	a := p.Addr().As4()
	msg = appendAttr(msg, unix.IFA_LOCAL, a[:])
	msg = appendAttr(msg, unix.IFA_ADDRESS, a[:])
	if err := c.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg); err != nil {
		return fmt.Errorf("netconf: add %s to %s: %w", p, ifname, err)
	}
	return nil
}

// AddDefaultRoute routes every IPv4 destination without a more specific route through
// gw on the interface.
func (c *Conn) AddDefaultRoute(ifname string, gw netip.Addr) error {
	if !gw.Is4() {
		return fmt.Errorf("netconf: gateway %s is not IPv4", gw)
	}
	idx, err := index(ifname)
	if err != nil {
		return err
	}
	// struct rtmsg: family dst_len src_len tos table protocol scope type (1 byte each) flags(4).
	msg := make([]byte, unix.SizeofRtMsg)
	msg[0] = unix.AF_INET
	msg[4] = unix.RT_TABLE_MAIN
	msg[5] = unix.RTPROT_BOOT
	msg[6] = unix.RT_SCOPE_UNIVERSE
	msg[7] = unix.RTN_UNICAST
	g := gw.As4()
	msg = appendAttr(msg, unix.RTA_GATEWAY, g[:])
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(idx))
	msg = appendAttr(msg, unix.RTA_OIF, oif)
	if err := c.request(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg); err != nil {
		return fmt.Errorf("netconf: default route via %s on %s: %w", gw, ifname, err)
	}
	return nil
}

func index(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("netconf: %w", err)
	}
	return ifi.Index, nil
}

// appendAttr appends one route attribute (struct rtattr and its value, padded to 4).
func appendAttr(b []byte, typ uint16, value []byte) []byte {
	n := unix.SizeofRtAttr + len(value)
	hdr := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(hdr[0:], uint16(n))
	binary.NativeEndian.PutUint16(hdr[2:], typ)
	b = append(b, hdr...)
	b = append(b, value...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// request sends one message asking for an acknowledgement and returns the kernel's
// verdict.
func (c *Conn) request(typ uint16, flags uint16, body []byte) error {
	c.seq++
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != syscall.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("short netlink error message")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}
