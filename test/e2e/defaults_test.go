package e2e

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// The lossy radio of issue 20 and the flows sent over it: a drone whose link to the
// router loses 15 % of packets each way with 100 ms ± 20 ms of delay each way.
const (
	defaultsLoss   = 0.15
	defaultsDelay  = 100 * time.Millisecond
	defaultsJitter = 20 * time.Millisecond
	// The UDP flow: 1,000 datagrams of 300 bytes at 200 a second, as telemetry sends.
	defaultsDatagrams = 1000
	defaultsSize      = 300
	defaultsEvery     = 5 * time.Millisecond
	// defaultsStraggle is how long echoes are waited for after the last datagram went:
	// a round trip and the agent's 2 s bound on a datagram waiting to be sent.
	defaultsStraggle = 3 * time.Second
	// defaultsShare is the least share of the link's own echo delivery, (1 − loss)²,
	// the flow must come back with.
	defaultsShare = 0.9
	// defaultsUDPRuns is how many flows are tried, the better counting (see the test).
	defaultsUDPRuns = 2
	// defaultsDetect bounds how long the drone's agent may take to judge its link lossy
	// by its heartbeats, which turns its UDP circuits' FEC on (about three seconds of
	// heartbeats at 15 %).
	defaultsDetect = 30 * time.Second
	// A TCP circuit is kept full for defaultsWarmup uncounted, then defaultsMeasure
	// counted, defaultsTCPRuns times for each drone.
	defaultsWarmup  = 2 * time.Second
	defaultsMeasure = 6 * time.Second
	// defaultsTCPRuns is how many times each drone's goodput is measured, the better run
	// counting. defaultsTCPShare is the least share of the radio-profile drone's goodput
	// the default drone's must reach: generous, as both ride QUIC streams under umbra's
	// controller (the profiles differ in the loss they tolerate), and one run of either
	// spread from 2 to 9 Mbit/s between runs; on QUIC streams under NewReno the default
	// drone moved 0.03 of it (0.15 Mbit/s against 4.44).
	defaultsTCPRuns  = 2
	defaultsTCPShare = 0.25
)

// defaultsMesh is a quickstart with two drones behind two copies of the lossy radio,
// one run with default flags and one with --link-profile radio, each hosting a UDP echo
// (mavlink) and a TCP byte counter (count); and an operator on the ground network, with
// default flags, dialing them.
type defaultsMesh struct {
	*mesh
	radios              []*linksim.Link
	drone, radioDrone   *agentProc
	udpListen           string // the operator's listener for the default drone's mavlink
	tcpListen, tcpRadio string // the operator's listeners for count on each drone
	got, gotRadio       *atomic.Int64
}

func startDefaultsMesh(t *testing.T) *defaultsMesh {
	m := startMesh(t)
	echo, _ := udpEcho(t)
	dm := &defaultsMesh{mesh: m, udpListen: freeUDP(t), tcpListen: freeTCP(t), tcpRadio: freeTCP(t),
		got: new(atomic.Int64), gotRadio: new(atomic.Int64)}
	counter, counterRadio := countingServer(t, dm.got), countingServer(t, dm.gotRadio)
	m.edge("create", "service", "mavlink", "--host", "udp:"+echo)
	m.edge("create", "service", "count", "--host", "tcp:"+counter)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@mavlink,@count")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@mavlink,@count")
	radio, proxy := newRadio(t, m.q.Router)
	radio2, proxy2 := newRadio(t, m.q.Router)
	dm.radios = []*linksim.Link{radio, radio2}
	// The radio is bad from the start, as a drone's is: an emulated delay that jumps from
	// loopback's to 200 ms under a running flow reads as a queue to a congestion
	// controller for the seconds its base round trip remembers loopback's.
	dm.impair(t)
	dm.drone = m.agentVia("drone", m.enroll("drone", "drone"), proxy.Addr().String())
	dm.radioDrone = m.agentVia("droneradio", m.enroll("droneradio", "drone"), proxy2.Addr().String(),
		"--link-profile", "radio", "--host", "count=tcp:"+counterRadio)
	op := m.agent("op", m.enroll("op", "operator"), "--dial", "mavlink@drone=udp:"+dm.udpListen,
		"--dial", "count@drone=tcp:"+dm.tcpListen, "--dial", "count@droneradio=tcp:"+dm.tcpRadio)
	dm.drone.waitHosting(t, "mavlink")
	dm.drone.waitHosting(t, "count")
	dm.radioDrone.waitHosting(t, "count")
	op.waitLinkUp(t)
	return dm
}

// udpFlowOnce sends the UDP flow from a new socket to the operator's listener at listen
// and returns the share that came back.
func udpFlowOnce(t *testing.T, listen string) float64 {
	t.Helper()
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFirstUDPEcho(t, c)
	return echoFlow(t, c)
}

// impair puts the lossy radio in front of both drones.
func (dm *defaultsMesh) impair(t *testing.T) {
	t.Helper()
	for _, r := range dm.radios {
		if err := r.SetBoth(linksim.Impairment{Loss: defaultsLoss, Delay: defaultsDelay, Jitter: defaultsJitter}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDefaultAgentOnLossyRadio: a drone agent run with default flags behind a radio
// losing 15 % each way needs no flag to ride it. Its UDP flow comes back with at least
// 90 % of what the link itself delivers to an echo, (1 − 0.15)² ≈ 72 %, in QUIC DATAGRAM
// frames under umbra's controller (under NewReno 7–19 % came back). Its heartbeats judge
// the link lossy, which turns its UDP circuits' FEC on. And a new TCP circuit to it
// moves at least a quarter of what a drone run with --link-profile radio moves over the
// same radio (on QUIC streams under NewReno it moved a thirtieth).
func TestDefaultAgentOnLossyRadio(t *testing.T) {
	dm := startDefaultsMesh(t)
	// The better of up to defaultsUDPRuns flows, each from a new socket and so on a new
	// circuit: on a loaded machine the drone's link may stall and be replaced mid-flow
	// (seen once in CI, 4 s in), and the datagrams sent while it was silent are lost;
	// the flow itself comes back on a new circuit (TestUDPFlowSurvivesHostLinkReplaced).
	// What this test proves is the share a default agent delivers under loss.
	linkEcho := (1 - defaultsLoss) * (1 - defaultsLoss)
	var back float64
	for run := range defaultsUDPRuns {
		got := udpFlowOnce(t, dm.udpListen)
		t.Logf("UDP at %.0f %% loss each way, run %d: %.1f %% of %d datagrams came back; the link's own echo delivery is %.1f %%",
			100*defaultsLoss, run+1, 100*got, defaultsDatagrams, 100*linkEcho)
		back = max(back, got)
		if back >= defaultsShare*linkEcho {
			break
		}
	}
	if back < defaultsShare*linkEcho {
		t.Errorf("got %.1f %% of the datagrams back, want ≥ %.1f %% (%.0f %% of the link's %.1f %%); the drone's link: %s",
			100*back, 100*defaultsShare*linkEcho, 100*defaultsShare, 100*linkEcho, dm.droneLink(t))
	}

	if !dm.judgedLossy(t) {
		t.Errorf("the default drone does not judge its link lossy %v after the loss began; its link: %s", defaultsDetect, dm.droneLink(t))
	}
	// Two runs each, alternating, and the better of each: one run of a circuit over a
	// radio this lossy spread from 2 to 9 Mbit/s between runs of this test.
	var def, radio float64
	for range defaultsTCPRuns {
		def = max(def, goodput(t, dm.tcpListen, dm.got))
		radio = max(radio, goodput(t, dm.tcpRadio, dm.gotRadio))
	}
	t.Logf("TCP at %.0f %% loss each way, the better of %d runs: default drone %.2f Mbit/s, --link-profile radio drone %.2f Mbit/s (%.2f×)",
		100*defaultsLoss, defaultsTCPRuns, def/1e6, radio/1e6, def/radio)
	if def < defaultsTCPShare*radio {
		t.Errorf("default drone's goodput %.2f Mbit/s, want ≥ %.0f %% of the radio profile's %.2f Mbit/s",
			def/1e6, 100*defaultsTCPShare, radio/1e6)
	}
}

// echoFlow sends the flow through c and returns the share of its datagrams echoed back.
func echoFlow(t *testing.T, c net.Conn) float64 {
	t.Helper()
	var (
		mu   sync.Mutex
		seen = map[uint32]bool{}
		done = make(chan struct{})
	)
	stop := time.Now().Add(defaultsDatagrams*defaultsEvery + defaultsStraggle)
	c.SetReadDeadline(stop)
	go func() {
		defer close(done)
		buf := make([]byte, defaultsSize)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return // the deadline
			}
			if n == defaultsSize {
				mu.Lock()
				seen[binary.BigEndian.Uint32(buf)] = true
				mu.Unlock()
			}
		}
	}()
	payload := make([]byte, defaultsSize)
	tick := time.NewTicker(defaultsEvery)
	for i := range uint32(defaultsDatagrams) {
		binary.BigEndian.PutUint32(payload, i)
		c.Write(payload)
		<-tick.C
	}
	tick.Stop()
	<-done
	c.SetReadDeadline(time.Time{})
	mu.Lock()
	defer mu.Unlock()
	return float64(len(seen)) / defaultsDatagrams
}

// goodput keeps a new circuit through listen full for the warm-up and the measure, and
// returns the bits a second got counted at the far end during the measure.
func goodput(t *testing.T, listen string, got *atomic.Int64) float64 {
	t.Helper()
	c, err := net.Dial("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := time.Now().Add(defaultsWarmup + defaultsMeasure)
	go func() {
		chunk := make([]byte, 32<<10)
		c.SetWriteDeadline(stop)
		for {
			if _, err := c.Write(chunk); err != nil {
				return // the deadline, or the test closed c
			}
		}
	}()
	time.Sleep(defaultsWarmup) // a measurement window, not a wait for readiness
	before := got.Load()
	time.Sleep(defaultsMeasure)
	return float64(got.Load()-before) * 8 / defaultsMeasure.Seconds()
}

// judgedLossy waits, at most defaultsDetect, until the default drone reports that its
// heartbeats judge its link lossy.
func (dm *defaultsMesh) judgedLossy(t *testing.T) bool {
	t.Helper()
	deadline := time.Now().Add(defaultsDetect)
	for time.Now().Before(deadline) {
		if st, err := dm.drone.status(t); err == nil && len(st.Links) > 0 && st.Links[0].Lossy {
			return true
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
	return false
}

// droneLink describes the default drone's router link as its status shows it, for a
// failure's message.
func (dm *defaultsMesh) droneLink(t *testing.T) string {
	out, _, err := run(t, nil, bins.agent, "status", "--status-socket", dm.drone.socket)
	if err != nil {
		return err.Error()
	}
	return out
}
