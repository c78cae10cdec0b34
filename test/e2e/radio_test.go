package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
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
	rm.op = m.agentVia("op", m.enroll("op", "operator"), proxy.Addr().String(),
		append([]string{"--dial", "echo=tcp:" + rm.listen, "--dial", "sink=tcp:" + rm.sink}, opArgs...)...)
	rm.drone.waitHosting(t, "echo")
	rm.op.waitLinkUp(t)
	return rm
}

// digestServer reads each TCP connection to its end and answers the hex SHA-256 of what
// it read: a one-way transfer whose receiver proves it got every byte.
func digestServer(t *testing.T) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		fmt.Fprintf(c, "%x\n", h.Sum(nil))
	})
}

// sendDigest sends n pseudo-random bytes to addr and checks the digest it answers.
func sendDigest(t *testing.T, addr string, n int64, timeout time.Duration) {
	t.Helper()
	sendDigestDuring(t, addr, n, timeout, nil)
}

// sendDigestDuring is sendDigest calling during, if set, with the count sent so far
// after each write.
func sendDigestDuring(t *testing.T, addr string, n int64, timeout time.Duration, during func(sent int64)) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	h := sha256.New()
	src := io.LimitReader(rngReader(), n)
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, err := c.Write(buf[:k]); err != nil {
				t.Fatalf("send after %d bytes: %v", sent, err)
			}
			h.Write(buf[:k])
			sent += int64(k)
			if during != nil {
				during(sent)
			}
		}
		if rerr != nil {
			break
		}
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

// dialDrone opens a circuit through the operator's echo listener and reads the drone's
// greeting; the connection closes with the test.
func (rm *radioMesh) dialDrone(t *testing.T) net.Conn {
	t.Helper()
	return dialGreeted(t, rm.listen, "drone")
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
	if testing.Short() {
		t.Skip("soak test: two 8 s blackouts, 18 s in all; skipped with -short")
	}
	rm := startRadioMesh(t)
	if g, err := dialGreeting(rm.listen); err != nil || g != "drone" {
		t.Fatalf("before the blackout: greeting %q, %v", g, err)
	}

	// A circuit open before the blackout must carry on after it, no byte lost.
	held := rm.dialDrone(t)

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
	// The held circuit: how soon after the radio returns does a byte sent before it
	// came back echo?
	heldBack := make(chan time.Duration, 1)
	go func() {
		held.SetDeadline(time.Now().Add(readyTimeout))
		b := []byte{'x'}
		if _, err := held.Write(b); err != nil {
			heldBack <- -1
			return
		}
		if _, err := io.ReadFull(held, b); err != nil || b[0] != 'x' {
			heldBack <- -1
			return
		}
		heldBack <- time.Since(back)
	}()
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
	heldRecovery := <-heldBack
	t.Logf("a new circuit worked %v and the held one echoed %v after the radio returned from a %v blackout",
		recovery.Round(time.Millisecond), heldRecovery.Round(time.Millisecond), blackout)
	if recovery > 5*time.Second {
		t.Errorf("recovery took %v; want about a second", recovery)
	}
	if heldRecovery < 0 || heldRecovery > 5*time.Second {
		t.Errorf("the held circuit echoed %v after the radio returned (negative: never); want about a second", heldRecovery)
	}
	waitUntil(t, 5*time.Second, "link reported up again", func() bool { return rm.linkState(t) == "up" })
	held.SetDeadline(time.Time{})
	echoBytes(t, held, 1<<20, nil)
}

// TestLossyRadio carries 1 MB byte-exact over a radio losing 20 % of packets each way
// with 400 ms of round trip, on a QUIC stream of the agent's link under umbra's
// congestion controller, which the loss does not slow down as it does NewReno.
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
	if err != nil || len(op.Links) == 0 {
		t.Fatalf("operator's status shows no link: %+v, %v", op, err)
	}
	if sent := op.Links[0].BytesSent; sent < 1<<20 {
		t.Fatalf("the link's QUIC connection sent %d bytes: the megabyte did not ride it", sent)
	}
}

// TestLongBlackout: after a 3-minute blackout, longer than every QUIC timeout, dial
// listeners are still up and a new circuit works promptly once the radio returns.
func TestLongBlackout(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: a 3-minute blackout; skipped with -short")
	}
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
	if testing.Short() {
		t.Skip("soak test: a 20 s blackout mid-transfer; skipped with -short")
	}
	rm := startRadioMesh(t, "--link-profile", "radio")
	c := rm.dialDrone(t)
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
// emulator rebinds, as when a drone moves from LTE to Wi-Fi): its circuit carries on.
func TestAddressChange(t *testing.T) {
	rm := startRadioMesh(t)
	c := rm.dialDrone(t)
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

// telemetryRun is one telemetry flow over a bad radio: n datagrams of size bytes, one
// every every, from the operator behind radio to an echoing drone, both agents run with
// --udp-fec fec and otherwise default flags. The radio is at start from the beginning
// (a drone's radio is slow before its agent starts) and at radio once the flow's circuit
// has carried a first echo.
type telemetryRun struct {
	fec          string
	start, radio linksim.Impairment
	n, size      int
	every        time.Duration
}

// udpOverLossyRadio runs r and returns the share delivered to the drone and the share
// that came back.
func udpOverLossyRadio(t *testing.T, r telemetryRun) (up, down float64) {
	fecFlag, n := r.fec, r.n
	m := startMesh(t)
	echo, seen := udpEcho(t)
	m.edge("create", "service", "mavlink", "--host", "udp:"+echo)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@mavlink")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@mavlink")
	radio, proxy := newRadio(t, m.q.Router)
	if err := radio.SetBoth(r.start); err != nil {
		t.Fatal(err)
	}
	drone := m.agent("drone", m.enroll("drone", "drone"), "--udp-fec", fecFlag)
	listen := freeUDP(t)
	op := m.agentVia("op", m.enroll("op", "operator"), proxy.Addr().String(),
		"--dial", "mavlink=udp:"+listen, "--udp-fec", fecFlag)
	drone.waitHosting(t, "mavlink")
	op.waitLinkUp(t)
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFirstUDPEcho(t, c)
	if err := radio.SetBoth(r.radio); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, r.size)
		for {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if k == r.size {
				got[binary.BigEndian.Uint32(buf)] = true
			}
		}
	}()
	before := seen.Load()
	payload := make([]byte, r.size)
	tick := time.NewTicker(r.every)
	for i := range uint32(n) {
		binary.BigEndian.PutUint32(payload, i)
		c.Write(payload)
		<-tick.C
	}
	tick.Stop()
	<-done
	// What the agents dropped themselves (the radio's own losses are not here), for a
	// failure's reading.
	for _, a := range []struct {
		name string
		p    *agentProc
	}{{"op", op}, {"drone", drone}} {
		if st, err := a.p.status(t); err == nil {
			t.Logf("%s agent: datagrams sent %d, delivered %d, rebuilt by FEC %d, dropped %v", a.name,
				st.Datagrams.Sent, st.Datagrams.Delivered, st.Datagrams.RecoveredFEC, st.Datagrams.Dropped)
		}
	}
	return float64(seen.Load()-before) / float64(n), float64(len(got)) / float64(n)
}

// TestUDPWithFECOnLossyRadio sends a 64 KB/s telemetry stream over a radio losing 10 %
// of packets each way, without and with forward error correction of 25 % overhead (32
// data packets, 8 parity): with it, about 99.6 % reaches the drone. A sample of 3,000
// datagrams is some 94 blocks, of which one or two may fail, so the test asks 98.5 %;
// the bench measures the figure.
func TestUDPWithFECOnLossyRadio(t *testing.T) {
	run := telemetryRun{radio: linksim.Impairment{Loss: 0.1}, n: 3000, size: 64, every: time.Millisecond}
	run.fec = "off"
	plainUp, plainDown := udpOverLossyRadio(t, run)
	run.fec = "32:8"
	fecUp, fecDown := udpOverLossyRadio(t, run)
	t.Logf("at 10 %% loss each way, share that reached the drone / came back: without FEC %.2f%% / %.2f%%; with FEC 32:8 %.2f%% / %.2f%%",
		100*plainUp, 100*plainDown, 100*fecUp, 100*fecDown)
	if fecUp < 0.985 {
		t.Errorf("with FEC 32:8 %.2f%% reached the drone; want about 99.6 %%", 100*fecUp)
	}
	if fecDown < 0.97 || fecDown < plainDown+0.1 {
		t.Errorf("with FEC 32:8 %.2f%% came back across the radio twice (without: %.2f%%); want ≥ 97%% and 10 points better", 100*fecDown, 100*plainDown)
	}
}

// TestTelemetryOnTerribleRadio sends a 20 KB/s telemetry flow (200 datagrams of 100
// bytes a second) through a radio losing 30 % of packets each way with an 800 ms round
// trip, agents with default flags. In QUIC DATAGRAM frames under umbra's congestion
// controller it goes out at its full rate and what the radio lets through arrives: about
// 70 % (63 % is some six spreads of 2,000 datagrams' random loss under that). The radio
// is slow from the start, as a drone's is: a round trip that jumps from loopback's to
// 800 ms under the running flow holds umbra's controller to a window sized for the old
// base round trip until it probes the base again (10 s), and about half the flow goes
// stale in the agent's queue meanwhile (docs/STATUS.md).
func TestTelemetryOnTerribleRadio(t *testing.T) {
	t.Parallel()
	slow := linksim.Impairment{Delay: 400 * time.Millisecond}
	run := telemetryRun{fec: "off", start: slow, radio: linksim.Impairment{Loss: 0.3, Delay: slow.Delay},
		n: 2000, size: 100, every: 5 * time.Millisecond}
	up, _ := udpOverLossyRadio(t, run)
	t.Logf("20 KB/s at 30 %% loss, 800 ms round trip: %.1f%% reached the drone", 100*up)
	if up < 0.63 {
		t.Errorf("%.1f%% reached the drone through a radio losing 30 %%; want about 70 %% (the flow at its full rate)", 100*up)
	}
}

// TestFirstRouterSilent gives the agent two routers, the preferred one behind a radio that
// is black: the agent does not wait out a handshake timeout on it but links through the
// second within about a second.
func TestFirstRouterSilent(t *testing.T) {
	m := startMesh(t)
	radio, proxy := newRadio(t, m.q.Router)
	radio.SetBlackout(true)
	began := time.Now()
	op := m.agentVia("op", m.enroll("op", "operator"), proxy.Addr().String()+","+m.q.Router)
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
