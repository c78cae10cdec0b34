package fec

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// Shape of the benchmarks: RTP-video-sized messages, one every 100 µs (12 MB/s).
const (
	benchMessage  = 1200
	benchMessages = 64 // distinct messages cycled through
	benchGap      = 100 * time.Microsecond
)

// BenchmarkFEC encodes and decodes one message per op with the default code (K=8,
// M=2): MB/s of messages through both ends and allocations per message. Loss drops
// packets at random between them, so blocks are rebuilt.
func BenchmarkFEC(b *testing.B) {
	for _, tc := range []struct {
		name string
		loss float64
	}{{"clean", 0}, {"loss-10%", 0.10}, {"loss-30%", 0.30}} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Config{}
			enc, err := NewEncoder(cfg)
			if err != nil {
				b.Fatal(err)
			}
			dec, err := NewDecoder(cfg)
			if err != nil {
				b.Fatal(err)
			}
			msgs := messages(14, benchMessages, benchMessage, benchMessage)
			rng := rand.New(rand.NewPCG(14, 14))
			send := func(pkts [][]byte, now time.Time) {
				for _, p := range pkts {
					if tc.loss == 0 || rng.Float64() >= tc.loss {
						dec.Add(p, now)
					}
				}
			}
			b.SetBytes(benchMessage)
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			now := t0
			n := 0
			for ; b.Loop(); n++ {
				now = now.Add(benchGap)
				send(enc.Poll(now), now)
				pkts, _ := enc.Add(msgs[n%benchMessages], now)
				send(pkts, now)
			}
			runtime.ReadMemStats(&after)
			// allocs/op rounds down; this does not.
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/msg")
			s := dec.Stats()
			b.ReportMetric(100*float64(s.Delivered)/float64(enc.Stats().Messages), "delivered-%")
		})
	}
}

// BenchmarkCopy is the peer: what a UDP circuit does with a message without FEC, copied
// into a packet and out again.
func BenchmarkCopy(b *testing.B) {
	msgs := messages(14, benchMessages, benchMessage, benchMessage)
	pkt := make([]byte, benchMessage+HeaderLen)
	out := make([]byte, benchMessage)
	b.SetBytes(benchMessage)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n := copy(pkt[HeaderLen:], msgs[i%benchMessages])
		copy(out, pkt[HeaderLen:HeaderLen+n])
	}
}
