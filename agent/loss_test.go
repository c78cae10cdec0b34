package agent

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestLossWatch feeds heartbeat fates and checks the verdict, case names as sentences.
func TestLossWatch(t *testing.T) {
	lost := func(n int) []bool { return repeat(true, n) }
	back := func(n int) []bool { return repeat(false, n) }
	tests := []struct {
		name  string
		fates [][]bool
		want  bool
	}{
		{"a clean link is not lossy", [][]bool{back(500)}, false},
		{"two lost in a window are not enough", [][]bool{back(50), lost(1), back(10), lost(1), back(10)}, false},
		{"three lost in a window make it lossy", [][]bool{back(50), lost(1), back(10), lost(1), back(10), lost(1)}, true},
		{"three lost spread wider than a window are not", [][]bool{lost(1), back(lossWindow), lost(1), back(lossWindow), lost(1)}, false},
		{"a lossy link stays lossy until a long clean run", [][]bool{lost(lossEnter), back(lossClearWindow - 1)}, true},
		{"a long clean run clears it", [][]bool{lost(lossEnter), back(lossClearWindow)}, false},
		{"one loss in the clean run starts it again", [][]bool{lost(lossEnter), back(lossClearWindow - 10), lost(1), back(lossClearWindow - 1)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w lossWatch
			for _, run := range tt.fates {
				for _, f := range run {
					w.record(f)
				}
			}
			if got, _ := w.state(); got != tt.want {
				t.Errorf("lossy = %v, want %v", got, tt.want)
			}
		})
	}
}

func repeat(v bool, n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestLossWatchOnRandomLoss: at the loss rates the bench measures, how soon random
// heartbeat loss makes the link lossy, and that a clean one never is.
func TestLossWatchOnRandomLoss(t *testing.T) {
	tests := []struct {
		name      string
		lossEach  float64
		within    int // heartbeats
		wantLossy bool
	}{
		{"no loss is never lossy", 0, 10000, false},
		{"5 percent each way is lossy within a minute", 0.05, 240, true},
		{"15 percent each way is lossy within ten seconds", 0.15, 40, true},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w lossWatch
			lossy := false
			for range tt.within {
				rt := rng.Float64() < tt.lossEach || rng.Float64() < tt.lossEach
				w.record(rt)
				if l, _ := w.state(); l {
					lossy = true
					break
				}
			}
			if lossy != tt.wantLossy {
				t.Errorf("lossy within %d heartbeats = %v, want %v", tt.within, lossy, tt.wantLossy)
			}
		})
	}
}

// TestHeartbeatLedger: an echo settles its ping at once; an unanswered ping is lost only
// once it is overdue and a later one came back; a silent link settles nothing.
func TestHeartbeatLedger(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(i int) int64 { return base.Add(time.Duration(i) * heartbeatEvery).UnixNano() }
	wait := lossWait(0)

	var h heartbeatLedger
	for i := range 4 {
		h.sent(at(i))
	}
	h.answered(at(0))
	h.answered(at(2))
	if got := h.settle(base.Add(100*time.Millisecond), wait); !equalFates(got, []bool{false}) {
		t.Fatalf("before the wait: fates %v, want [false]", got)
	}
	if got := h.settle(base.Add(wait+time.Second), wait); !equalFates(got, []bool{true, false}) {
		t.Fatalf("after the wait: fates %v, want [true false] (ping 1 overtaken by 2's echo)", got)
	}
	if got := h.settle(base.Add(time.Minute), wait); len(got) != 0 {
		t.Fatalf("ping 3 has no later echo: fates %v, want none (a silent link is not lossy)", got)
	}
	h.forget()
	if got := h.settle(base.Add(time.Hour), wait); len(got) != 0 {
		t.Fatalf("after forget: fates %v, want none", got)
	}
}

func equalFates(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
