package lane

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestBurstArrivesWhole sends the 60 fragments of a 65 KB datagram back to back over
// real sockets: paced by the sender and pumped by the receiver past quic-go's 32-packet
// queue, all of them arrive. Loopback under the race detector on a busy machine may
// still lose one, so each attempt waits for the last fragment and three are allowed.
func TestBurstArrivesWhole(t *testing.T) {
	p := newQUICPair(t, nil)
	client, server := p.lanes(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got atomic.Int64
	last := make(chan struct{}, 1)
	go readLane(ctx, p.serverTr, server, func(d []byte) {
		got.Add(1)
		if d[0] == 59 {
			last <- struct{}{}
		}
	})
	frag := make([]byte, 1100)
	for attempt := range 3 {
		got.Store(0)
		for i := range 60 {
			frag[0] = byte(i)
			if err := client.Send(frag); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-last:
		case <-time.After(2 * time.Second):
		}
		if got.Load() == 60 {
			return
		}
		t.Logf("attempt %d: %d of 60 fragments arrived", attempt, got.Load())
	}
	t.Fatal("no burst of 60 packets arrived whole in three attempts")
}

// TestPacer: a burst's first paceBurst packets leave at once, the rest one paceGap apart,
// and an idle pacer lets a full burst go again.
func TestPacer(t *testing.T) {
	var p pacer
	now := time.Unix(1000, 0)
	for i := range paceBurst {
		if w := p.reserve(now); w != 0 {
			t.Fatalf("packet %d of a burst waits %v", i, w)
		}
	}
	for i := 1; i <= 3; i++ {
		if w := p.reserve(now); w != time.Duration(i)*paceGap {
			t.Fatalf("packet %d past the burst waits %v, want %v", i, w, time.Duration(i)*paceGap)
		}
	}
	now = now.Add(time.Second)
	if w := p.reserve(now); w != 0 {
		t.Fatalf("after a second idle the next packet waits %v", w)
	}
}
