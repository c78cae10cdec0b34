package linksim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Netns link defaults and limits.
const (
	// DefaultNetnsDev is the name of the TUN device in each namespace when
	// NetnsConfig.Dev is empty.
	DefaultNetnsDev = "linksim0"
	// defaultTUNMTU is the TUN devices' MTU when NetnsConfig.MTU is zero: Ethernet's.
	defaultTUNMTU = 1500
	// minTUNMTU and maxTUNMTU bound NetnsConfig.MTU: IPv4's minimum (IPv6 needs 1280,
	// which the kernel enforces) and the largest IP packet.
	minTUNMTU = 68
	maxTUNMTU = 65535
	// ipCommandTimeout bounds each run of the ip command in setup and teardown.
	ipCommandTimeout = 10 * time.Second
	// netnsDir is where `ip netns` keeps its named namespaces.
	netnsDir = "/run/netns"
	// tunDevice is the TUN clone device.
	tunDevice = "/dev/net/tun"
	// freshNamePrefix starts the names of namespaces NetnsConfig leaves to NewNetnsLink.
	freshNamePrefix = "lsim-"
)

// Default addresses of the two TUN devices when NetnsConfig leaves them zero.
const (
	DefaultNetnsAddrA = "10.77.0.1/24"
	DefaultNetnsAddrB = "10.77.0.2/24"
)

// Side names one end of a NetnsLink.
type Side int

const (
	// SideA is the end whose outgoing packets cross the Link's Up direction.
	SideA Side = iota
	// SideB is the end whose outgoing packets cross the Link's Down direction.
	SideB
)

// String returns "a" or "b".
func (s Side) String() string {
	if s == SideA {
		return "a"
	}
	return "b"
}

// NetnsConfig describes the two ends of a NetnsLink. Every zero field takes a default.
type NetnsConfig struct {
	// NSA and NSB name side A's and side B's network namespaces, as `ip netns` knows
	// them. A namespace that does not exist is created, and deleted again by Close;
	// one that exists is used and left in place. Empty means a new namespace with a
	// unique name (lsim-XXXXXXXX-a, -b), so parallel tests never collide.
	NSA, NSB string
	// AddrA and AddrB are the addresses, with prefix length, of side A's and side B's
	// TUN device; both IPv4 or both IPv6. Each side routes its prefix, and the peer's
	// address if it lies outside it, through the link. Zero means 10.77.0.1/24 and
	// 10.77.0.2/24.
	AddrA, AddrB netip.Prefix
	// MTU is both TUN devices' MTU in bytes. Zero means 1500.
	MTU int
	// Dev names the TUN device inside each namespace. Empty means "linksim0".
	Dev string
}

// withDefaults fills the zero fields, except the namespace names.
func (c NetnsConfig) withDefaults() NetnsConfig {
	if !c.AddrA.IsValid() {
		c.AddrA = netip.MustParsePrefix(DefaultNetnsAddrA)
	}
	if !c.AddrB.IsValid() {
		c.AddrB = netip.MustParsePrefix(DefaultNetnsAddrB)
	}
	if c.MTU == 0 {
		c.MTU = defaultTUNMTU
	}
	if c.Dev == "" {
		c.Dev = DefaultNetnsDev
	}
	return c
}

func (c NetnsConfig) validate() error {
	for _, ns := range []string{c.NSA, c.NSB} {
		if ns != "" && (strings.ContainsAny(ns, "/\x00") || ns == "." || ns == "..") {
			return fmt.Errorf("linksim: namespace name %q: want a plain file name", ns)
		}
	}
	switch {
	case c.NSA != "" && c.NSA == c.NSB:
		return fmt.Errorf("linksim: both sides in namespace %q, want two namespaces", c.NSA)
	case c.AddrA.Addr().Is4() != c.AddrB.Addr().Is4():
		return fmt.Errorf("linksim: addresses %v and %v, want both IPv4 or both IPv6", c.AddrA, c.AddrB)
	case c.AddrA.Addr() == c.AddrB.Addr():
		return fmt.Errorf("linksim: both sides have address %v, want two addresses", c.AddrA.Addr())
	case c.MTU < minTUNMTU || c.MTU > maxTUNMTU:
		return fmt.Errorf("linksim: MTU %d, want %d..%d", c.MTU, minTUNMTU, maxTUNMTU)
	case len(c.Dev) >= 16 || strings.ContainsAny(c.Dev, "/ \x00"):
		return fmt.Errorf("linksim: device name %q: want at most 15 characters, no slash or space", c.Dev)
	}
	return nil
}

// CheckNetns reports why this process cannot make a NetnsLink, or nil if it can:
// it must run as root on Linux, with /dev/net/tun and the ip command (iproute2).
// Tests skip with its message.
func CheckNetns() error {
	if err := checkNetnsOS(); err != nil {
		return err
	}
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Errorf("linksim: a network-namespace link needs root, running as uid %d", uid)
	}
	if _, err := os.Stat(tunDevice); err != nil {
		return fmt.Errorf("linksim: a network-namespace link needs %s: %w", tunDevice, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("linksim: a network-namespace link needs the ip command (iproute2): %w", err)
	}
	return nil
}

// NetnsLink is an IP-level link between two network namespaces: each side has a TUN
// device, and every IP packet one side sends to the other crosses the Link, side A
// to side B through Up and side B to side A through Down. TCP, UDP and ICMP between
// processes in the two namespaces all see the same impairment.
type NetnsLink struct {
	cfg     NetnsConfig
	ns      [2]string
	created [2]bool
	tun     [2]*os.File
	up      *pipe
	down    *pipe

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	stopAfter func() bool
	closeOnce sync.Once
	closeErr  error

	mu sync.Mutex
	// readErr is the first error that stopped a TUN reader before Close.
	readErr error
}

// NewNetnsLink builds the link cfg describes: it makes the namespaces that do not
// exist, a TUN device in each, gives them their addresses and routes, brings them up
// and starts carrying packets through link. It needs root (see CheckNetns). The link
// carries packets as soon as NewNetnsLink returns, and until ctx ends or Close is called.
func NewNetnsLink(ctx context.Context, cfg NetnsConfig, link *Link) (*NetnsLink, error) {
	if link == nil {
		return nil, errNilLink
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := CheckNetns(); err != nil {
		return nil, err
	}
	l := &NetnsLink{cfg: cfg, ns: [2]string{cfg.NSA, cfg.NSB}}
	if err := l.setUp(ctx); err != nil {
		l.tearDown()
		return nil, err
	}
	l.cfg.NSA, l.cfg.NSB = l.ns[SideA], l.ns[SideB]

	var runCtx context.Context
	runCtx, l.cancel = context.WithCancel(context.Background())
	// Whole IP packets: the TUN devices hand over the headers, so no overhead is added.
	l.up = newPipe(link, &link.up, 0, rand.Uint64(), l.writer(SideB))
	l.down = newPipe(link, &link.down, 0, rand.Uint64(), l.writer(SideA))
	l.wg.Add(4)
	go func() { defer l.wg.Done(); l.up.run(runCtx) }()
	go func() { defer l.wg.Done(); l.down.run(runCtx) }()
	go l.read(runCtx, SideA, l.up)
	go l.read(runCtx, SideB, l.down)
	// Under mu: with ctx already done, Close may run at once and reads stopAfter.
	l.mu.Lock()
	l.stopAfter = context.AfterFunc(ctx, func() { l.Close() })
	l.mu.Unlock()
	return l, nil
}

// setUp makes the namespaces and devices; on error, tearDown undoes what was done.
func (l *NetnsLink) setUp(ctx context.Context) error {
	fresh := fmt.Sprintf("%s%08x-", freshNamePrefix, rand.Uint32())
	for side := range l.ns {
		if l.ns[side] == "" {
			l.ns[side] = fresh + Side(side).String()
		}
		if _, err := os.Stat(filepath.Join(netnsDir, l.ns[side])); err == nil {
			continue
		}
		if err := runIP(ctx, nil, "netns", "add", l.ns[side]); err != nil {
			return err
		}
		l.created[side] = true
	}
	for side := range l.tun {
		if err := l.makeDevice(ctx, Side(side)); err != nil {
			return fmt.Errorf("linksim: side %v (namespace %s): %w", Side(side), l.ns[side], err)
		}
	}
	return nil
}

// makeDevice creates side's TUN device inside its namespace and configures it.
func (l *NetnsLink) makeDevice(ctx context.Context, side Side) error {
	own, peer := l.cfg.AddrA, l.cfg.AddrB
	if side == SideB {
		own, peer = peer, own
	}
	v4 := own.Addr().Is4()
	err := InNamespace(l.ns[side], func() error {
		// Created inside the namespace, so it never exists in the caller's, where its
		// name could clash with another link's; the fd is ours wherever we are.
		f, err := openTUN(l.cfg.Dev)
		if err != nil {
			return err
		}
		l.tun[side] = f
		if v4 {
			// An IPv4 link carries only what the test sends: no IPv6 link-local
			// address, router solicitations or MLD reports in the counters. Best
			// effort: a kernel without IPv6 has no such file and sends none anyway.
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+l.cfg.Dev+"/disable_ipv6", []byte("1"), 0)
		}
		return nil
	})
	if err != nil {
		return err
	}
	dev := l.cfg.Dev
	batch := []string{
		fmt.Sprintf("link set dev %s mtu %d", dev, l.cfg.MTU),
		fmt.Sprintf("addr add %v dev %s", own, dev),
		fmt.Sprintf("link set dev %s up", dev),
		"link set dev lo up",
	}
	if !v4 {
		// No duplicate address detection: the address is usable at once, and the
		// only other host on the link is the peer.
		batch[1] += " nodad"
		batch = slices.Insert(batch, 1, fmt.Sprintf("link set dev %s addrgenmode none", dev))
	}
	if !own.Masked().Contains(peer.Addr()) {
		batch = append(batch, fmt.Sprintf("route add %v dev %s", netip.PrefixFrom(peer.Addr(), peer.Addr().BitLen()), dev))
	}
	return runIP(ctx, []byte(strings.Join(batch, "\n")+"\n"), "-n", l.ns[side], "-batch", "-")
}

// runIP runs the ip command with args (and stdin, if not nil), returning its output
// on one line as the error if it fails.
func runIP(ctx context.Context, stdin []byte, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ipCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.Join(strings.Fields(string(out)), " ")
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("ip %s: %s", strings.Join(args, " "), msg)
	}
	return nil
}

// writer returns the deliver function that injects packets into side's device.
func (l *NetnsLink) writer(side Side) func(*packet) error {
	f := l.tun[side]
	return func(pkt *packet) error {
		_, err := f.Write(pkt.data)
		return err
	}
}

// read submits every packet side's device hands out to p, until the device is closed.
func (l *NetnsLink) read(ctx context.Context, side Side, p *pipe) {
	defer l.wg.Done()
	buf := make([]byte, maxTUNMTU)
	for {
		n, err := l.tun[side].Read(buf)
		if err != nil {
			// Closed by Close, or the device is gone: either way nothing more comes.
			if ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				l.mu.Lock()
				if l.readErr == nil {
					l.readErr = fmt.Errorf("linksim: read side %v: %w", side, err)
				}
				l.mu.Unlock()
			}
			return
		}
		p.submit(newPacket(buf[:n]))
	}
}

// tearDown undoes a setUp that failed part way.
func (l *NetnsLink) tearDown() error {
	return errors.Join(l.closeDevices(), l.deleteNamespaces())
}

// closeDevices closes both TUN devices' files, which removes the devices.
func (l *NetnsLink) closeDevices() error {
	var errs []error
	for side, f := range l.tun {
		if f != nil {
			if err := f.Close(); err != nil {
				errs = append(errs, fmt.Errorf("linksim: close side %v: %w", Side(side), err))
			}
		}
	}
	return errors.Join(errs...)
}

// deleteNamespaces deletes the namespaces this link created.
func (l *NetnsLink) deleteNamespaces() error {
	var errs []error
	for side, ns := range l.ns {
		if l.created[side] {
			// Not the caller's context: it may be what ended the link.
			if err := runIP(context.Background(), nil, "netns", "del", ns); err != nil {
				errs = append(errs, fmt.Errorf("linksim: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// Close stops carrying packets, removes both TUN devices and deletes the namespaces
// NewNetnsLink created (processes still inside keep theirs alive until they exit).
// It returns the first error that stopped the link early, if any. Close is safe to
// call more than once.
func (l *NetnsLink) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		stopAfter := l.stopAfter
		l.mu.Unlock()
		stopAfter()
		l.cancel()
		// Readers wake with os.ErrClosed once their device is closed.
		closeErr := l.closeDevices()
		l.wg.Wait()
		l.mu.Lock()
		readErr := l.readErr
		l.mu.Unlock()
		l.closeErr = errors.Join(readErr, closeErr, l.deleteNamespaces())
	})
	return l.closeErr
}

// Stats returns a snapshot of the link's counters; bytes are whole IP packets.
func (l *NetnsLink) Stats() Stats {
	return Stats{Up: l.up.c.snapshot(), Down: l.down.c.snapshot()}
}

// Config returns the configuration in force, defaults and generated names filled in.
func (l *NetnsLink) Config() NetnsConfig { return l.cfg }

// Namespace returns the name of side's network namespace.
func (l *NetnsLink) Namespace(side Side) string { return l.ns[side] }

// Addr returns side's address on the link.
func (l *NetnsLink) Addr(side Side) netip.Addr {
	if side == SideA {
		return l.cfg.AddrA.Addr()
	}
	return l.cfg.AddrB.Addr()
}

// Command returns a command that runs name with args inside side's namespace
// (through `ip netns exec`), for starting peers such as iperf3, sshd or umbra
// binaries on either side. Kill it before Close, or it keeps its namespace alive.
func (l *NetnsLink) Command(side Side, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.ns[side], name}, args...)...)
}

// CommandContext is Command with a context that kills the process when it ends.
func (l *NetnsLink) CommandContext(ctx context.Context, side Side, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns[side], name}, args...)...)
}

// Do runs fn on an operating-system thread inside side's namespace (see InNamespace).
func (l *NetnsLink) Do(side Side, fn func() error) error { return InNamespace(l.ns[side], fn) }

// ListenPacket is net.ListenPacket inside side's namespace, such as
// ListenPacket(SideB, "udp", "10.77.0.2:0").
func (l *NetnsLink) ListenPacket(side Side, network, address string) (net.PacketConn, error) {
	var c net.PacketConn
	err := l.Do(side, func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	return c, err
}

// Listen is net.Listen inside side's namespace.
func (l *NetnsLink) Listen(side Side, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(side, func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// DialContext is net.Dialer.DialContext from inside side's namespace. The address
// must be numeric: name lookups would run outside the namespace.
func (l *NetnsLink) DialContext(ctx context.Context, side Side, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.Do(side, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}
