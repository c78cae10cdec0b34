package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/lab"
)

// Bounds of the UDP tests.
const (
	udpDatagrams = 10000
	udpInFlight  = 32 // datagrams sent ahead of their echoes
	// udpWindowWait is how long the sender waits for echoes before it sends anyway, so
	// lost datagrams cannot stall it.
	udpWindowWait = 200 * time.Millisecond
	udpWant       = 0.999
)

// udpEcho echoes every datagram back to its sender and counts what it saw.
func udpEcho(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var seen atomic.Int64
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			seen.Add(1)
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String(), &seen
}

// waitFirstUDPEcho sends until a datagram comes back through c: the first datagram of a
// flow sets its circuit up.
func waitFirstUDPEcho(t *testing.T, c net.Conn) {
	t.Helper()
	waitUntil(t, readyTimeout, "first echo through the circuit", func() bool {
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		return err == nil && string(buf[:n]) == "hello"
	})
	c.SetReadDeadline(time.Time{})
}

func freeUDP(t *testing.T) string {
	t.Helper()
	return lab.MustFree(t, lab.FreeUDP)
}

// udpEchoFleet creates service mavlink (a UDP echo), policies letting "#drone" host it
// and "#operator" dial it, runs drone1 hosting it and op dialing it, and returns a socket
// connected to op's listener once a first datagram has come back, with the echo's count
// of what it saw.
func (m *mesh) udpEchoFleet(t *testing.T) (net.Conn, *atomic.Int64) {
	t.Helper()
	echo, seen := udpEcho(t)
	m.edge("create", "service", "mavlink", "--host", "udp:"+echo)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@mavlink")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@mavlink")
	drone := m.agent("drone1", m.enroll("drone1", "drone"))
	listen := freeUDP(t)
	op := m.agent("op", m.enroll("op", "operator"), "--dial", "mavlink=udp:"+listen)
	drone.waitHosting(t, "mavlink")
	op.waitLinkUp(t)
	c, err := net.Dial("udp", listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitFirstUDPEcho(t, c)
	return c, seen
}

// TestUDPCircuits carries UDP both ways through a circuit: telemetry-sized datagrams at
// volume, and datagrams larger than one QUIC datagram, byte-exact.
func TestUDPCircuits(t *testing.T) {
	m := startMesh(t)
	c, seen := m.udpEchoFleet(t)

	t.Run("ten-thousand-datagrams-each-way", func(t *testing.T) {
		before := seen.Load()
		got := map[uint32]bool{}
		var echoed atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 64)
			for len(got) < udpDatagrams {
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if n == 64 && !got[binary.BigEndian.Uint32(buf)] {
					got[binary.BigEndian.Uint32(buf)] = true
					echoed.Add(1)
				}
			}
		}()
		// Like a telemetry link, keep a bounded number of datagrams in flight: the test
		// counts what the circuit loses, not what an overrun socket buffer drops.
		payload := make([]byte, 64) // a MAVLink-sized message
		for i := range uint32(udpDatagrams) {
			deadline := time.Now().Add(udpWindowWait)
			for int64(i)-echoed.Load() >= udpInFlight && time.Now().Before(deadline) {
				time.Sleep(100 * time.Microsecond) // wait for echoes to open the window
			}
			binary.BigEndian.PutUint32(payload, i)
			c.Write(payload)
		}
		<-done
		up := float64(seen.Load()-before) / udpDatagrams
		down := float64(len(got)) / udpDatagrams
		if up < udpWant || down < udpWant {
			t.Errorf("delivered %.2f%% to the drone and %.2f%% back, want ≥ %.1f%% each way", 100*up, 100*down, 100*udpWant)
		}
	})

	t.Run("large-datagrams-are-split-and-rejoined", func(t *testing.T) {
		for _, size := range []int{1400, 8000, 65507} {
			msg := make([]byte, size)
			rand.Read(msg)
			buf := make([]byte, 65535)
			ok := false
			for attempt := 0; attempt < 5 && !ok; attempt++ { // UDP: a lost fragment loses the message
				c.Write(msg)
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				n, err := c.Read(buf)
				ok = err == nil && bytes.Equal(buf[:n], msg)
			}
			if !ok {
				t.Errorf("a %d-byte datagram did not come back byte-exact", size)
			}
		}
	})
}
