package lane

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"
)

// FuzzReceive feeds a server lane arbitrary packets: none may panic, be taken as data,
// or move where the server sends.
func FuzzReceive(f *testing.F) {
	f.Add([]byte{Marker, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{Marker})
	f.Add([]byte{0x40, 0, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		// The iteration's own t, so that wirePair's cleanup closes both lanes (and
		// their window goroutines) when the iteration ends.
		_, server, _, _ := wirePair(t)
		before := server.peer.Load().String()
		d, err := server.Receive(nil, pkt, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1})
		if err == nil && d != nil {
			t.Fatalf("forged packet delivered %q", d)
		}
		if server.peer.Load().String() != before {
			t.Fatal("forged packet moved the server's peer")
		}
	})
}

// FuzzEachSegment walks arbitrary KCP packets, as the lane does with every stream packet
// that passes it (opened, so from the authenticated peer, or from our own KCP): it must
// end, visit only segments inside the packet, and never panic.
func FuzzEachSegment(f *testing.F) {
	ack := make([]byte, 24)
	ack[4] = kcpCmdAck
	push := append(make([]byte, 24), "data"...)
	push[4], push[20] = kcpCmdPush, 4
	f.Add(append(push, ack...))
	f.Add([]byte{1, 2, 3})
	f.Add(append(make([]byte, 20), 0xe8, 0xff, 0xff, 0xff)) // a length of 2^32-24
	f.Fuzz(func(t *testing.T, pkt []byte) {
		total := 0
		eachSegment(pkt, func(seg kcpSegment) bool {
			total += kcpSegHeader + seg.dataLen
			if seg.dataLen < 0 || total > len(pkt) {
				t.Fatalf("visited a segment of %d bytes past the packet's %d", seg.dataLen, len(pkt))
			}
			return true
		})
		carriesData(pkt)
	})
}

// TestWirePairCleansUp: the lanes of a wirePair, as FuzzReceive makes one per input, are
// closed when their test ends, so thousands of fuzz iterations hold no goroutines.
func TestWirePairCleansUp(t *testing.T) {
	const pairs = 200
	before := runtime.NumGoroutine()
	for i := range pairs {
		t.Run(fmt.Sprintf("pair-%d", i), func(t *testing.T) { wirePair(t) })
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before {
		t.Errorf("got %d goroutines after %d pairs, want at most the %d before", got, pairs, before)
	}
}
