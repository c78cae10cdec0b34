package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"umbra/internal/linksim"
)

// radioMesh is a quickstart whose operator reaches the router through the link emulator,
// as over a radio, while the drone hosting "echo" sits on the ground network.
type radioMesh struct {
	*mesh
	radio  *linksim.Link
	proxy  *linksim.UDPProxy
	op     *agentProc
	drone  *agentProc
	listen string // the operator's listener for echo
	sink   string // the operator's listener for sink, which answers a digest of what it read
}

// newRadio puts a clean emulated radio in front of the router at target: agents given
// the proxy's address reach the router only through it.
func newRadio(t *testing.T, target string) (*linksim.Link, *linksim.UDPProxy) {
	t.Helper()
	radio, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", target, radio)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	return radio, proxy
}

func startRadioMesh(t *testing.T, opArgs ...string) *radioMesh {
	m := startMesh(t)
	m.edge("create", "service", "echo", "--host", "tcp:127.0.0.1:1")
	m.edge("create", "service", "sink", "--host", "tcp:127.0.0.1:1")
	m.edge("create", "service-policy", "echo-bind", "--type", "bind", "--identities", "#drone", "--services", "@echo,@sink")
	m.edge("create", "service-policy", "echo-dial", "--type", "dial", "--identities", "#operator", "--services", "@echo,@sink")
	radio, proxy := newRadio(t, m.q.Router)
	rm := &radioMesh{mesh: m, radio: radio, proxy: proxy, listen: freeTCP(t), sink: freeTCP(t)}
	rm.drone = m.agent("drone", m.enroll("drone", "drone"), "--host", "echo=tcp:"+echoServer(t, "drone"),
		"--host", "sink=tcp:"+digestServer(t))
	sock := filepath.Join(m.dir, "op.sock")
	opCmd := append([]string{"run", "--identity", m.enroll("op", "operator"), "--routers", proxy.Addr().String(),
		"--status-socket", sock, "--dial", "echo=tcp:" + rm.listen, "--dial", "sink=tcp:" + rm.sink}, opArgs...)
	rm.op = &agentProc{proc: start(t, bins.agent, opCmd...), socket: sock}
	rm.drone.waitHosting(t, "echo")
	rm.op.waitLinkUp(t)
	return rm
}

// digestServer reads each TCP connection to its end and answers the hex SHA-256 of what
// it read: a one-way transfer whose receiver proves it got every byte.
func digestServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				io.Copy(h, c)
				fmt.Fprintf(c, "%x\n", h.Sum(nil))
			}()
		}
	}()
	return ln.Addr().String()
}

// sendDigest sends n pseudo-random bytes to addr and checks the digest it answers.
func sendDigest(t *testing.T, addr string, n int64, timeout time.Duration) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(c, h), io.LimitReader(rngReader(), n)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no digest back: %v", err)
	}
	if want := fmt.Sprintf("%x", h.Sum(nil)); strings.TrimSpace(line) != want {
		t.Fatalf("the far end read other bytes: digest %q, want %q", strings.TrimSpace(line), want)
	}
}

// linkState returns the operator's router link state as status shows it.
func (rm *radioMesh) linkState(t *testing.T) string {
	st, err := rm.op.status(t)
	if err != nil || len(st.Links) == 0 {
		return ""
	}
	return st.Links[0].State
}

// TestRadioBlackout blacks the operator's radio out and checks the link manager: the
// link is reported stalled, and once the radio returns new circuits work within about a
// second, whatever QUIC's retransmission timers have backed off to.
func TestRadioBlackout(t *testing.T) {
	rm := startRadioMesh(t)
	if g, err := dialGreeting(rm.listen); err != nil || g != "drone" {
		t.Fatalf("before the blackout: greeting %q, %v", g, err)
	}

	// A circuit open before the blackout must carry on after it, no byte lost.
	held, err := net.DialTimeout("tcp", rm.listen, commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if g := bufioLine(t, held); g != "drone" {
		t.Fatalf("greeting on the held circuit = %q", g)
	}

	const blackout = 8 * time.Second
	rm.radio.SetBlackout(true)
	began := time.Now()
	waitUntil(t, blackout, "link reported stalled during the blackout", func() bool {
		return rm.linkState(t) == "stalled"
	})
	t.Logf("stall detected %v into the blackout", time.Since(began).Round(time.Millisecond))
	time.Sleep(time.Until(began.Add(blackout))) // the blackout's length is the test's subject
	rm.radio.SetBlackout(false)
	back := time.Now()
	waitUntil(t, readyTimeout, "a circuit after the radio returned", func() bool {
		c, err := net.DialTimeout("tcp", rm.listen, commandTimeout)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 6)
		_, err = c.Read(buf)
		return err == nil && string(buf) == "drone\n"
	})
	recovery := time.Since(back)
	t.Logf("traffic resumed %v after the radio returned from a %v blackout", recovery.Round(time.Millisecond), blackout)
	if recovery > 5*time.Second {
		t.Errorf("recovery took %v; want about a second", recovery)
	}
	waitUntil(t, 5*time.Second, "link reported up again", func() bool { return rm.linkState(t) == "up" })
	echoBytes(t, held, 1<<20, nil)
}

// TestLossyRadio carries 1 MB byte-exact over a radio losing 20 % of packets each way
// with 400 ms of round trip. With the radio profile the circuit's bytes ride a stream of
// the link's datagram lane, which the loss does not slow down as it does QUIC.
func TestLossyRadio(t *testing.T) {
	t.Parallel()
	rm := startRadioMesh(t, "--link-profile", "radio")
	bad := linksim.Impairment{Loss: 0.2, Delay: 200 * time.Millisecond}
	if err := rm.radio.SetBoth(bad); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	sendDigest(t, rm.sink, 1<<20, 10*time.Minute)
	st := rm.proxy.Stats()
	t.Logf("1 MB delivered in %v at 20 %% loss, 400 ms RTT (emulator dropped %d up, %d down)",
		time.Since(began).Round(time.Millisecond), st.Up.Dropped.Loss, st.Down.Dropped.Loss)
	op, err := rm.op.status(t)
	if err != nil || len(op.Links) == 0 || op.Links[0].Lane == nil {
		t.Fatalf("operator's status shows no lane: %+v, %v", op, err)
	}
	if sent := op.Links[0].Lane.Sent; sent < (1<<20)/1200 {
		t.Fatalf("the lane sent %d packets: the megabyte did not ride it", sent)
	}
}

// TestLongBlackout: after a 3-minute blackout, longer than every QUIC timeout, dial
// listeners are still up and a new circuit works promptly once the radio returns.
func TestLongBlackout(t *testing.T) {
	t.Parallel()
	rm := startRadioMesh(t, "--link-profile", "radio")
	const blackout = 3 * time.Minute
	rm.radio.SetBlackout(true)
	time.Sleep(blackout) // the blackout's length is the test's subject
	rm.radio.SetBlackout(false)
	back := time.Now()
	waitUntil(t, readyTimeout, "a new circuit after the 3-minute blackout", func() bool {
		g, err := dialGreeting(rm.listen)
		return err == nil && g == "drone"
	})
	t.Logf("a new circuit worked %v after a %v blackout ended", time.Since(back).Round(time.Millisecond), blackout)
	if d := time.Since(back); d > 10*time.Second {
		t.Errorf("new circuit took %v after the radio returned; want a few seconds at most", d)
	}
}

// TestBlackoutMidTransfer blacks the radio out for 20 s in the middle of a TCP transfer:
// the same connection finishes byte-exact once the radio returns.
func TestBlackoutMidTransfer(t *testing.T) {
	rm := startRadioMesh(t, "--link-profile", "radio")
	c, err := net.DialTimeout("tcp", rm.listen, commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := bufioLine(t, c); g != "drone" {
		t.Fatalf("greeting = %q", g)
	}
	const blackout = 20 * time.Second
	var back time.Time
	echoBytes(t, c, 16<<20, func(sent int64) {
		if sent >= 4<<20 && back.IsZero() {
			rm.radio.Blackout(blackout)
			back = time.Now().Add(blackout)
		}
	})
	t.Logf("transfer finished byte-exact %v after a %v blackout ended", time.Since(back).Round(time.Millisecond), blackout)
}

// TestAddressChange gives the operator's agent a new source address mid-transfer (the
// emulator rebinds, as when a drone moves from LTE to Wi-Fi): its circuit carries on,
// whether its bytes ride a QUIC stream or a lane stream.
func TestAddressChange(t *testing.T) {
	for _, carrier := range []string{"quic", "lane"} {
		t.Run(carrier, func(t *testing.T) { addressChange(t, carrier) })
	}
}

func addressChange(t *testing.T, carrier string) {
	rm := startRadioMesh(t, "--tcp-carrier", carrier)
	c, err := net.DialTimeout("tcp", rm.listen, commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := bufioLine(t, c); g != "drone" {
		t.Fatalf("greeting = %q", g)
	}
	rebound := false
	echoBytes(t, c, 16<<20, func(sent int64) {
		if sent >= 4<<20 && !rebound {
			if err := rm.proxy.Rebind(); err != nil {
				t.Error(err)
			}
			rebound = true
		}
	})
}

// udpOverLossyRadio sends n telemetry-sized datagrams, one a millisecond, from an
// operator behind a radio losing 10 % of packets each way to an echoing drone, both agents
// run with --udp-fec fecFlag and --udp-carrier carrier; it returns the share delivered to
// the drone and the share that came back.
func udpOverLossyRadio(t *testing.T, fecFlag, carrier string, n int) (up, down float64) {
	m := startMesh(t)
	echo, seen := udpEcho(t)
	m.edge("create", "service", "mavlink", "--host", "udp:"+echo)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@mavlink")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@mavlink")
	radio, proxy := newRadio(t, m.q.Router)
	drone := m.agent("drone", m.enroll("drone", "drone"), "--udp-fec", fecFlag, "--udp-carrier", carrier)
	listen := freeUDP(t)
	sock := filepath.Join(m.dir, "op.sock")
	op := &agentProc{proc: start(t, bins.agent, "run", "--identity", m.enroll("op", "operator"), "--routers", proxy.Addr().String(),
		"--status-socket", sock, "--dial", "mavlink=udp:"+listen, "--udp-fec", fecFlag, "--udp-carrier", carrier), socket: sock}
	drone.waitHosting(t, "mavlink")
	op.waitLinkUp(t)
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFirstUDPEcho(t, c)
	if err := radio.SetBoth(linksim.Impairment{Loss: 0.1}); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if k == 64 {
				got[binary.BigEndian.Uint32(buf)] = true
			}
		}
	}()
	before := seen.Load()
	payload := make([]byte, 64)
	tick := time.NewTicker(time.Millisecond) // a 64 KB/s telemetry stream
	for i := range uint32(n) {
		binary.BigEndian.PutUint32(payload, i)
		c.Write(payload)
		<-tick.C
	}
	tick.Stop()
	<-done
	return float64(seen.Load()-before) / float64(n), float64(len(got)) / float64(n)
}

// TestUDPWithFECOnLossyRadio sends a 64 KB/s telemetry stream over a radio losing 10 %
// of packets each way, on the datagram lane beside QUIC, without and with forward error
// correction of 25 % overhead (16 data packets, 4 parity): with it, at least 99 % reaches
// the drone. In QUIC DATAGRAM frames instead, QUIC's congestion control, reading the
// random loss as congestion, drops more than the code can repair.
func TestUDPWithFECOnLossyRadio(t *testing.T) {
	const n = 3000
	plainUp, plainDown := udpOverLossyRadio(t, "off", "lane", n)
	fecUp, fecDown := udpOverLossyRadio(t, "16:4", "lane", n)
	quicUp, quicDown := udpOverLossyRadio(t, "16:4", "quic", n)
	t.Logf("at 10 %% loss each way, share that reached the drone / came back: lane without FEC %.2f%% / %.2f%%; lane with FEC 16:4 %.2f%% / %.2f%%; QUIC datagrams with FEC 16:4 %.2f%% / %.2f%%",
		100*plainUp, 100*plainDown, 100*fecUp, 100*fecDown, 100*quicUp, 100*quicDown)
	if fecUp < 0.99 {
		t.Errorf("with FEC 16:4 on the lane %.2f%% reached the drone; want ≥ 99%%", 100*fecUp)
	}
	if fecDown < 0.97 || fecDown < plainDown+0.1 {
		t.Errorf("with FEC 16:4 on the lane %.2f%% came back across the radio twice (without: %.2f%%); want ≥ 97%% and 10 points better", 100*fecDown, 100*plainDown)
	}
	if quicUp > fecUp {
		t.Errorf("QUIC datagrams delivered %.2f%%, more than the lane's %.2f%%", 100*quicUp, 100*fecUp)
	}
}

// TestFirstRouterSilent gives the agent two routers, the preferred one behind a radio that
// is black: the agent does not wait out a handshake timeout on it but links through the
// second within about a second.
func TestFirstRouterSilent(t *testing.T) {
	m := startMesh(t)
	radio, proxy := newRadio(t, m.q.Router)
	radio.SetBlackout(true)
	sock := filepath.Join(m.dir, "op.sock")
	began := time.Now()
	op := &agentProc{proc: start(t, bins.agent, "run", "--identity", m.enroll("op", "operator"),
		"--routers", proxy.Addr().String()+","+m.q.Router, "--status-socket", sock), socket: sock}
	op.waitLinkUp(t)
	took := time.Since(began)
	t.Logf("linked through the second router %v after start", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("linking past a silent first router took %v; want about a second", took)
	}
	st, err := op.status(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Links {
		if l.Router == m.q.Router && l.State != "up" {
			t.Errorf("link to the second router = %q, want up (%+v)", l.State, st.Links)
		}
	}
}
