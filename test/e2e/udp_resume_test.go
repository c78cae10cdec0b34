package e2e

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"
)

// Bounds of the UDP-across-a-replaced-link test.
const (
	// udpResumeEvery spaces the flow's datagrams (50 a second, as telemetry sends).
	udpResumeEvery = 20 * time.Millisecond
	// udpResumeWant bounds how long after the drone's fresh connection is up the flow
	// must echo again: a new path is a round trip or two, and a few seconds more on a
	// loaded machine.
	udpResumeWant = 5 * time.Second
)

// udpSeqFlow sends a numbered datagram through c every udpResumeEvery until stop
// closes, and records when each was sent and when its echo came back.
type udpSeqFlow struct {
	mu   sync.Mutex
	sent []time.Time // by sequence number
	back map[uint32]time.Time
}

func runUDPSeqFlow(t *testing.T, c net.Conn, stop <-chan struct{}) *udpSeqFlow {
	t.Helper()
	f := &udpSeqFlow{back: map[uint32]time.Time{}}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			select {
			case <-stop:
				return
			default:
			}
			if err != nil || n != 64 {
				continue
			}
			f.mu.Lock()
			f.back[binary.BigEndian.Uint32(buf)] = time.Now()
			f.mu.Unlock()
		}
	})
	wg.Go(func() {
		payload := make([]byte, 64)
		tick := time.NewTicker(udpResumeEvery)
		defer tick.Stop()
		for {
			f.mu.Lock()
			seq := uint32(len(f.sent))
			f.sent = append(f.sent, time.Now())
			f.mu.Unlock()
			binary.BigEndian.PutUint32(payload, seq)
			c.Write(payload)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	return f
}

// firstEchoSentAfter returns when the first echo came back of a datagram sent after t,
// and whether one has.
func (f *udpSeqFlow) firstEchoSentAfter(t time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var first time.Time
	for seq, at := range f.back {
		if int(seq) < len(f.sent) && f.sent[seq].After(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// TestUDPFlowSurvivesHostLinkReplaced strands the radio path of a drone hosting a UDP
// echo while a flow runs through it (its old connection's packets are dropped both ways,
// a fresh connection gets through): the drone's agent sees its link stall and replaces it
// with a fresh connection, whose close of the old one the router never hears, and the
// same local flow (same socket, so the operator's agent sets up no new circuit of its own
// accord) echoes again within a few seconds of the new link.
func TestUDPFlowSurvivesHostLinkReplaced(t *testing.T) {
	m := startMesh(t)
	echo, _ := udpEcho(t)
	m.edge("create", "service", "mavlink", "--host", "udp:"+echo)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@mavlink")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@mavlink")
	// The operator listens first: the radio's proxy opens an upstream socket on an
	// ephemeral port once the drone connects, which could take a port freeUDP just freed.
	listen := freeUDP(t)
	op := m.agent("op", m.enroll("op", "operator"), "--dial", "mavlink@drone=udp:"+listen)
	_, proxy := newRadio(t, m.q.Router)
	drone := m.agentVia("drone", m.enroll("drone", "drone"), proxy.Addr().String())
	drone.waitHosting(t, "mavlink")
	op.waitLinkUp(t)
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFirstUDPEcho(t, c)

	stop := make(chan struct{})
	defer close(stop)
	flow := runUDPSeqFlow(t, c, stop)
	waitUntil(t, readyTimeout, "the flow echoing before the path is cut", func() bool {
		_, ok := flow.firstEchoSentAfter(time.Now().Add(-time.Second))
		return ok
	})
	droneLink := func() string {
		st, err := drone.status(t)
		if err != nil || len(st.Links) == 0 {
			return ""
		}
		return st.Links[0].State
	}
	// counts is how many router links came up and how many stalled, as status says.
	counts := func() (linksUp, stalls int) {
		out, _, err := run(t, nil, bins.agent, "status", "--status-socket", drone.socket, "-o", "json")
		var st struct {
			LinksUp int `json:"links_up"`
			Stalls  int `json:"stalls"`
		}
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return -1, -1
		}
		return st.LinksUp, st.Stalls
	}
	upBefore, stallsBefore := counts()

	proxy.Strand()
	cut := time.Now()
	waitUntil(t, readyTimeout, "the drone's stalled link replaced by a fresh connection", func() bool {
		linksUp, stalls := counts()
		return linksUp > upBefore && stalls > stallsBefore && droneLink() == "up"
	})
	up := time.Now()
	t.Logf("the drone's link stalled and was replaced %v after its path was cut", up.Sub(cut).Round(time.Millisecond))

	deadline := up.Add(readyTimeout)
	var echoed time.Time
	for time.Now().Before(deadline) {
		if at, ok := flow.firstEchoSentAfter(up); ok {
			echoed = at
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	if echoed.IsZero() {
		t.Fatalf("the flow never echoed again within %v of the drone's new link", readyTimeout)
	}
	after := echoed.Sub(up)
	t.Logf("the UDP flow echoed again %v after the drone's new link was up", after.Round(time.Millisecond))
	if after > udpResumeWant {
		t.Errorf("the flow echoed again %v after the drone's new link was up, want ≤ %v", after.Round(time.Millisecond), udpResumeWant)
	}
}
