package linksim

import (
	"container/heap"
	"context"
	"sync"
	"testing"
	"time"
)

func TestGilbertElliottLosesInBursts(t *testing.T) {
	const (
		draws = 100_000
		seed  = 1
	)
	tests := []struct {
		name               string
		imp                Impairment
		minBurst, maxBurst float64
		minLoss, maxLoss   float64
	}{
		{
			// Bad-state share 0.05/(0.05+0.3) ≈ 14 %, bursts of 1/0.3 ≈ 3.3 packets.
			name:     "bursty channel loses packets in runs",
			imp:      Impairment{PGoodToBad: 0.05, PBadToGood: 0.3},
			minBurst: 2.5, maxBurst: 4.5,
			minLoss: 0.11, maxLoss: 0.17,
		},
		{
			// Same mean loss without memory: runs of 1/(1−0.14) ≈ 1.2 packets.
			name:     "independent loss of the same mean loses packets singly",
			imp:      Impairment{Loss: 0.14},
			minBurst: 1, maxBurst: 1.4,
			minLoss: 0.12, maxLoss: 0.16,
		},
		{
			name:     "loss in the good state adds isolated losses",
			imp:      Impairment{PGoodToBad: 0.01, PBadToGood: 0.5, LossInBad: 0.5, LossInGood: 0.01},
			minBurst: 1, maxBurst: 2,
			minLoss: 0.01, maxLoss: 0.03,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			link, _ := NewLink(tt.imp, Impairment{})
			p := newPipe(link, &link.up, 0, seed, nil)
			imp := link.up.Load()
			lost, runs := 0, 0
			prev := false
			for range draws {
				l := p.lost(imp)
				if l {
					lost++
					if !prev {
						runs++
					}
				}
				prev = l
			}
			if got := float64(lost) / draws; got < tt.minLoss || got > tt.maxLoss {
				t.Errorf("got loss rate %.3f, want %.3f..%.3f", got, tt.minLoss, tt.maxLoss)
			}
			if got := float64(lost) / float64(runs); got < tt.minBurst || got > tt.maxBurst {
				t.Errorf("got mean burst %.2f, want %.2f..%.2f", got, tt.minBurst, tt.maxBurst)
			}
		})
	}
}

func TestPipeJitterKeepsOrder(t *testing.T) {
	const n = 100
	var mu sync.Mutex
	var got []uint64
	done := make(chan struct{})
	link, _ := NewLink(Impairment{Delay: 5 * time.Millisecond, Jitter: 5 * time.Millisecond}, Impairment{})
	p := newPipe(link, &link.up, 0, 1, func(pkt *packet) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, pkt.dst.(uint64))
		if len(got) == n {
			close(done)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.run(ctx)
	for i := range n {
		pkt := newPacket(datagram(uint64(i), testPayload))
		pkt.dst = uint64(i)
		p.submit(pkt)
	}
	select {
	case <-done:
	case <-time.After(settleTimeout):
		t.Fatalf("timed out waiting for %d packets", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if inv := inversions(got); inv != 0 {
		t.Errorf("got %d out-of-order deliveries, want 0", inv)
	}
}

func TestPipeDoesNotAllocatePerPacket(t *testing.T) {
	imp := Impairment{
		Loss: 0.2, Jitter: time.Millisecond, Reorder: 0.2, Duplicate: 0.2,
		RateBitsPerSec: 1_000_000_000,
	}
	link, _ := NewLink(imp, Impairment{})
	p := newPipe(link, &link.up, 0, 1, func(*packet) error { return nil })
	msg := datagram(0, testPayload)
	// One packet's whole life, with run's part done inline: submit, fall due, send.
	cycle := func() {
		p.submit(newPacket(msg))
		p.mu.Lock()
		for len(p.pending) > 0 {
			p.send(heap.Pop(&p.pending).(*packet))
		}
		p.mu.Unlock()
	}
	for range defaultQueuePackets {
		cycle() // warm the pool, heap and ring
	}
	if allocs := testing.AllocsPerRun(1000, cycle); allocs > 0 {
		t.Errorf("got %.2f allocations per packet, want 0", allocs)
	}
}

// TestOnDropSeesEveryDroppedPacket: the drop hook sees each packet a direction drops,
// with its direction and bytes, as many times as the counters count drops.
func TestOnDropSeesEveryDroppedPacket(t *testing.T) {
	link, _ := NewLink(Impairment{Loss: 0.5}, Impairment{Loss: 0.5})
	var up, down, wrong int
	link.OnDrop(func(isUp bool, pkt []byte) {
		if len(pkt) != 3 || (pkt[0] == 'u') != isUp {
			wrong++
		}
		if isUp {
			up++
		} else {
			down++
		}
	})
	pu := newPipe(link, &link.up, 0, 1, func(*packet) error { return nil })
	pd := newPipe(link, &link.down, 0, 2, func(*packet) error { return nil })
	for range 200 {
		pu.submit(newPacket([]byte("up!")))
		pd.submit(newPacket([]byte("dn!")))
	}
	if got := pu.c.snapshot().Dropped.Loss; uint64(up) != got || up == 0 {
		t.Errorf("hook saw %d drops up, counters %d; want equal and some", up, got)
	}
	if got := pd.c.snapshot().Dropped.Loss; uint64(down) != got || down == 0 {
		t.Errorf("hook saw %d drops down, counters %d; want equal and some", down, got)
	}
	if wrong != 0 {
		t.Errorf("hook saw %d packets with the wrong direction or bytes, want 0", wrong)
	}
}
