package fec

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// Shape of the random-loss measurement.
const (
	lossMessages = 20_000
	lossMinLen   = 8
	lossMaxLen   = 300 // MAVLink-sized; rebuild cost grows with size, not the odds
	lossGap      = time.Millisecond
	// lossMargin is how far below the expected delivery the measurement may fall:
	// about five standard deviations of a 20,000-message run.
	lossMargin = 0.01
)

// expectedDelivery is the share of messages an MDS (K, M) code delivers when each
// packet is lost independently with probability p: message i is lost only if its own
// packet is and at least M of the block's K+M−1 other packets are too.
func expectedDelivery(k, m int, p float64) float64 {
	n := k + m - 1
	tail := 0.0
	for x := m; x <= n; x++ {
		tail += binomial(n, x) * math.Pow(p, float64(x)) * math.Pow(1-p, float64(n-x))
	}
	return 1 - p*tail
}

func binomial(n, k int) float64 {
	c := 1.0
	for i := 1; i <= k; i++ {
		c = c * float64(n-k+i) / float64(i)
	}
	return c
}

// TestRandomLossDelivery sends 20,000 messages over a link losing packets at random
// (seeded), with and without FEC, and checks FEC delivers what the code promises.
func TestRandomLossDelivery(t *testing.T) {
	msgs := messages(10, lossMessages, lossMinLen, lossMaxLen)
	for _, tc := range []struct {
		loss float64
		k, m int
		min  float64 // the floor the issue asks for, where it names one
	}{
		{0.10, 8, 2, 0},
		{0.10, 8, 4, 0.995},
		{0.30, 8, 2, 0},
		{0.30, 8, 8, 0.975},
	} {
		t.Run(fmt.Sprintf("loss-%.0f%%-k%d-m%d", tc.loss*100, tc.k, tc.m), func(t *testing.T) {
			cfg := Config{K: tc.k, M: tc.m}
			pkts := encodeAll(t, cfg, msgs, lossGap)
			seed := uint64(tc.loss * 1000)

			// Without FEC: the data packets alone, through the same loss.
			var plain []packet
			for _, p := range pkts {
				if p.b[2] < p.b[3] { // index < K: a data packet
					plain = append(plain, p)
				}
			}
			without := float64(len(lose(plain, tc.loss, seed))) / float64(len(msgs))

			got, dec := decodeAll(t, cfg, lose(pkts, tc.loss, seed))
			dec.Expire(t0.Add(time.Hour))
			with := float64(delivered(t, msgs, got)) / float64(len(msgs))
			want := expectedDelivery(tc.k, tc.m, tc.loss)
			t.Logf("loss %.0f%%, K=%d M=%d (overhead %.0f%%): delivered %.2f%% with FEC (expected %.2f%%), %.2f%% without; stats %+v",
				tc.loss*100, tc.k, tc.m, cfg.Overhead()*100, with*100, want*100, without*100, dec.Stats())

			if floor := max(want-lossMargin, tc.min); with < floor {
				t.Errorf("got %.2f%% delivered with FEC, want at least %.2f%% (expected %.2f%%)", with*100, floor*100, want*100)
			}
			if math.Abs(without-(1-tc.loss)) > lossMargin {
				t.Errorf("got %.2f%% delivered without FEC, want about %.0f%%: the loss model is off", without*100, (1-tc.loss)*100)
			}
			// Lost counts only the losses a block's surviving packets reveal.
			if s := dec.Stats(); s.Delivered != uint64(len(got)) || s.Lost+s.Delivered > uint64(len(msgs)) {
				t.Errorf("got %d delivered and %d lost in stats, want %d delivered and at most the rest of %d lost",
					s.Delivered, s.Lost, len(got), len(msgs))
			}
		})
	}
}
