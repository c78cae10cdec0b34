package main

import (
	"bytes"
	"net"
	"testing"
	"time"
)

func TestProbeHeaderRoundTrips(t *testing.T) {
	b := make([]byte, udpFlowSize)
	putProbe(b, 7, 1234, 5*time.Second)
	run, seq, sent, ok := parseProbe(b)
	if !ok || run != 7 || seq != 1234 || sent != 5*time.Second {
		t.Fatalf("parseProbe = %d, %d, %v, %v; want 7, 1234, 5s, true", run, seq, sent, ok)
	}
	if _, _, _, ok := parseProbe(b[:probeHeader-1]); ok {
		t.Fatalf("parseProbe of %d bytes = ok, want a datagram too short for the header", probeHeader-1)
	}
}

func FuzzParseProbe(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, probeHeader))
	f.Fuzz(func(t *testing.T, b []byte) {
		run, seq, sent, ok := parseProbe(b)
		if ok != (len(b) >= probeHeader) {
			t.Fatalf("parseProbe of %d bytes: ok = %v", len(b), ok)
		}
		if !ok {
			return
		}
		again := make([]byte, probeHeader)
		putProbe(again, run, seq, sent)
		if !bytes.Equal(again, b[:probeHeader]) {
			t.Fatalf("header %x parsed and written again is %x", b[:probeHeader], again)
		}
	})
}

// The sink counts each datagram of the current run once, however often it arrives, and
// neither probes nor an earlier run's stragglers; it echoes everything.
func TestUDPSinkCountsEachDatagramOfTheRunOnce(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now()
	sink := startUDPSink(pc, base)
	defer sink.stop()
	sink.begin(2)
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, udpFlowSize), make([]byte, 2*udpFlowSize)
	sends := []struct{ run, seq uint32 }{{2, 0}, {2, 1}, {2, 1}, {0, 2}, {1, 3}, {2, 9}}
	for _, s := range sends {
		putProbe(msg, s.run, s.seq, time.Since(base))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("echo of run %d seq %d: %v", s.run, s.seq, err)
		}
		if !bytes.Equal(buf[:n], msg) {
			t.Fatalf("echo of run %d seq %d differs from what was sent", s.run, s.seq)
		}
	}
	// Every datagram was echoed, so the sink has recorded them all.
	if got := len(sink.arrived(0, 5)); got != 2 {
		t.Errorf("arrived in [0, 5) = %d, want 2 (seq 0 and 1 of run 2)", got)
	}
	if got := len(sink.arrived(0, 10)); got != 3 {
		t.Errorf("arrived in [0, 10) = %d, want 3", got)
	}
	for _, d := range sink.arrived(0, 10) {
		if d < 0 || d > 10*time.Second {
			t.Errorf("one-way latency %v on loopback, want between 0 and 10s", d)
		}
	}
}

func TestMatrixTimingCoversTheRoundTrip(t *testing.T) {
	for _, rtt := range []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond} {
		warmup, count, flight := matrixTiming(rtt)
		if warmup < matrixWarmupRTTs*rtt || count < matrixCountRTTs*rtt {
			t.Errorf("at %v RTT: warm-up %v and count %v, want at least %d and %d round trips", rtt, warmup, count, matrixWarmupRTTs, matrixCountRTTs)
		}
		if bdp := int64(float64(matrixRate) / 8 * rtt.Seconds()); flight <= bdp {
			t.Errorf("at %v RTT: %d bytes in flight, want more than the %d the link holds", rtt, flight, bdp)
		}
	}
}

func TestUDPCellFigures(t *testing.T) {
	c := udpCell{sent: 600, oneWay: make([]time.Duration, 540), sendFor: 3 * time.Second, wire: 600 * 150}
	if got := c.delivered(); got != 0.9 {
		t.Errorf("delivered = %v, want 0.9", got)
	}
	if got := c.perSecond(); got != 180 {
		t.Errorf("perSecond = %v, want 180", got)
	}
	if got := c.wirePerDatagram(); got != 150 {
		t.Errorf("wirePerDatagram = %v, want 150", got)
	}
}
