package e2e

import (
	"encoding/binary"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// Issue 22's video flow: RTP H.264 at 1.5 Mbit/s from a drone, 30 frames a second, a
// keyframe of 60 packets every 30 frames and 4 packets for each frame between, every
// packet 1,100 bytes (rtph264pay mtu=1100): 1.55 Mbit/s. A frame's packets leave back
// to back, as the encoder's payloader sends them.
const (
	videoFPS         = 30
	videoKeyEvery    = 30
	videoKeyPackets  = 60
	videoPPackets    = 4
	videoPacketSize  = 1100
	videoFrames      = 90 // three keyframes: 3 s, 528 packets
	videoLoss        = 0.15
	videoDelay       = 20 * time.Millisecond
	videoStraggle    = time.Second // after the last packet, for the last ones to come
	videoProbeMarker = 0xffffffff  // the sequence number of the probes that open the circuit
	// videoLinkPacket is the least size of a QUIC packet carrying one of the video's
	// datagrams (or its FEC parity) on the link: the drop hook tells them from the
	// heartbeats, acknowledgements and control messages (under 200 bytes while the
	// video runs) by it. A path MTU probe is as large, and a lost one counts as a lost
	// video packet: the test's accounting is then more lenient, never wrongly strict.
	videoLinkPacket = videoPacketSize
)

// videoSink records the distinct sequence numbers that reach it.
type videoSink struct {
	addr   string
	mu     sync.Mutex
	seen   map[uint32]bool
	probes atomic.Int64
}

func startVideoSink(t *testing.T) *videoSink {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	s := &videoSink{addr: pc.LocalAddr().String(), seen: map[uint32]bool{}}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 4 {
				continue
			}
			seq := binary.BigEndian.Uint32(buf)
			if seq == videoProbeMarker {
				s.probes.Add(1)
				continue
			}
			s.mu.Lock()
			s.seen[seq] = true
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *videoSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// TestVideoBurstsOverLossyRadio sends issue 22's burst pattern from a drone behind a
// radio losing 15 % of packets each way, through its UDP circuit to a receiver hosted
// by the ground station's agent, both agents with default flags, in QUIC DATAGRAM
// frames. Umbra's own queues (the agents' send queues and pacing, quic-go's datagram
// queues, the router's queues) drop none of it, and for every datagram that did not
// arrive the link dropped a packet of the video: the keyframes' bursts pass whole, one
// packet per datagram, so the video fares at least as well as over the bare radio
// (better once the drone's agent has seen the loss and adds FEC, AutoFEC).
func TestVideoBurstsOverLossyRadio(t *testing.T) {
	m := startMesh(t)
	sink := startVideoSink(t)
	m.edge("create", "service", "video", "--host", "udp:"+sink.addr)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#ground", "--services", "@video")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#drone", "--services", "@video")
	radio, proxy := newRadio(t, m.q.Router)
	if err := radio.SetBoth(linksim.Impairment{Loss: videoLoss, Delay: videoDelay}); err != nil {
		t.Fatal(err)
	}
	ground := m.agent("ground", m.enroll("ground", "ground"))
	listen := freeUDP(t)
	drone := m.agentVia("drone", m.enroll("drone", "drone"), proxy.Addr().String(), "--dial", "video=udp:"+listen)
	ground.waitHosting(t, "video")
	drone.waitLinkUp(t)
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	probe := make([]byte, 8)
	binary.BigEndian.PutUint32(probe, videoProbeMarker)
	waitUntil(t, readyTimeout, "a first probe through the circuit", func() bool {
		c.Write(probe)
		time.Sleep(50 * time.Millisecond) // a probe's trip, then look again
		return sink.probes.Load() > 0
	})

	// From here on, count the video's packets the link drops on the way up.
	var linkLost atomic.Int64
	radio.OnDrop(func(up bool, pkt []byte) {
		if up && len(pkt) >= videoLinkPacket && pkt[0]&0x80 == 0 { // a QUIC short-header packet
			linkLost.Add(1)
		}
	})
	defer radio.OnDrop(nil)
	pkt := make([]byte, videoPacketSize)
	seq := uint32(0)
	start := time.Now()
	for f := range videoFrames {
		time.Sleep(time.Until(start.Add(time.Duration(f) * time.Second / videoFPS))) // the frame's time
		n := videoPPackets
		if f%videoKeyEvery == 0 {
			n = videoKeyPackets
		}
		for range n {
			binary.BigEndian.PutUint32(pkt, seq)
			if _, err := c.Write(pkt); err != nil {
				t.Fatal(err)
			}
			seq++
		}
	}
	sent := int(seq)
	// Until every datagram is accounted for, or the wait gives up: the figures below
	// say what is missing.
	for deadline := time.Now().Add(10 * time.Second); sink.count()+int(linkLost.Load()) < sent && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // poll
	}
	time.Sleep(videoStraggle) // a datagram counted twice would show now
	got, lost := sink.count(), int(linkLost.Load())

	var recovered uint64
	for _, a := range []struct {
		name string
		p    *agentProc
	}{{"drone", drone}, {"ground", ground}} {
		st, err := a.p.status(t)
		if err != nil {
			t.Fatal(err)
		}
		recovered += st.Datagrams.RecoveredFEC
		for reason, n := range st.Datagrams.Dropped {
			// fec_unrecovered is the link's loss that FEC could not make good, not a drop.
			if n != 0 && reason != "fec_unrecovered" {
				t.Errorf("the %s agent dropped %d datagrams (%s); want none dropped by umbra", a.name, n, reason)
			}
		}
	}
	fams := scrape(t, m.metricsURL(t))
	for _, reason := range []string{"queue_full", "receive_full", "oversize", "malformed"} {
		if n := metricValue(fams, "umbra_router_datagrams_dropped_total", map[string]string{"reason": reason}); n > 0 {
			t.Errorf("the router dropped %.0f datagrams (%s); want none", n, reason)
		}
	}
	t.Logf("sent %d datagrams, %d arrived (%d rebuilt by FEC), the link dropped %d of their packets", sent, got, recovered, lost)
	if sent-got > lost {
		t.Errorf("%d datagrams did not arrive and the link dropped %d packets of the video; want a dropped packet for each missing datagram", sent-got, lost)
	}
	// The bare radio delivers 85 %; allow five standard deviations of 528 draws.
	want := (1 - videoLoss) - 5*math.Sqrt(videoLoss*(1-videoLoss)/float64(sent))
	if share := float64(got) / float64(sent); share < want {
		t.Errorf("%.1f%% of the video arrived; want at least %.1f%%, as over the bare radio losing %.0f%%", 100*share, 100*want, 100*videoLoss)
	}
}
