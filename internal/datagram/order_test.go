package datagram

import (
	"fmt"
	"testing"
	"time"
)

var orderT0 = time.Unix(1_700_000_000, 0)

// ids returns the first byte of each message: the tests' messages are their ID.
func ids(msgs [][]byte) string {
	s := ""
	for _, m := range msgs {
		s += fmt.Sprint(m[0], " ")
	}
	return s
}

func msgOf(id int) []byte { return []byte{byte(id)} }

func TestOrdererPassesInOrderMessagesAtOnce(t *testing.T) {
	o := NewOrderer(OrdererConfig{})
	for i := range 10 {
		if got := ids(o.Add(uint64(i), msgOf(i), orderT0)); got != fmt.Sprint(i, " ") {
			t.Fatalf("message %d: got %q released, want it at once", i, got)
		}
	}
	if _, ok := o.Deadline(); ok {
		t.Fatalf("got a deadline with nothing waiting")
	}
}

// TestOrdererHoldsWhatFollowsAGapUntilItFills: a message rebuilt after the ones that
// followed it comes out before them, as a decoder with no jitter buffer needs.
func TestOrdererHoldsWhatFollowsAGapUntilItFills(t *testing.T) {
	o := NewOrderer(OrdererConfig{Hold: 40 * time.Millisecond})
	o.Add(0, msgOf(0), orderT0)
	for i := 2; i < 5; i++ {
		if got := o.Add(uint64(i), msgOf(i), orderT0); len(got) != 0 {
			t.Fatalf("message %d after the gap at 1: got %q released, want it held", i, ids(got))
		}
	}
	if got := ids(o.Add(1, msgOf(1), orderT0.Add(5*time.Millisecond))); got != "1 2 3 4 " {
		t.Fatalf("got %q when the gap filled, want 1 2 3 4", got)
	}
	if s := o.Stats(); s.Held != 3 || s.Skipped != 0 || s.Released != 5 {
		t.Fatalf("got %+v, want 3 held, none skipped, 5 released", s)
	}
}

// TestOrdererGivesUpAGapAfterTheHold: a message lost for good delays the ones after it
// by the hold at most, and if it turns up later it is still handed over, counted late.
func TestOrdererGivesUpAGapAfterTheHold(t *testing.T) {
	o := NewOrderer(OrdererConfig{Hold: 40 * time.Millisecond})
	o.Add(0, msgOf(0), orderT0)
	o.Add(2, msgOf(2), orderT0.Add(time.Millisecond))
	o.Add(3, msgOf(3), orderT0.Add(2*time.Millisecond))
	d, ok := o.Deadline()
	if want := orderT0.Add(41 * time.Millisecond); !ok || !d.Equal(want) {
		t.Fatalf("got deadline %v, want 40 ms after message 2 came", d.Sub(orderT0))
	}
	if got := o.Poll(d.Add(-time.Microsecond)); len(got) != 0 {
		t.Fatalf("got %q before the deadline, want nothing", ids(got))
	}
	if got := ids(o.Poll(d)); got != "2 3 " {
		t.Fatalf("got %q at the deadline, want 2 3", got)
	}
	if got := ids(o.Add(1, msgOf(1), d.Add(time.Millisecond))); got != "1 " {
		t.Fatalf("got %q for the late message, want it handed over", got)
	}
	if got := ids(o.Add(4, msgOf(4), d.Add(time.Millisecond))); got != "4 " {
		t.Fatalf("got %q after the late one, want 4 at once", got)
	}
	if s := o.Stats(); s.Skipped != 1 || s.Late != 1 {
		t.Fatalf("got %+v, want 1 skipped, 1 late", s)
	}
}

// TestOrdererBoundsWhatWaits: a message beyond MaxHeld gives up the oldest gaps, and IDs
// wrap at MessageIDLimit.
func TestOrdererBoundsWhatWaits(t *testing.T) {
	o := NewOrderer(OrdererConfig{MaxHeld: 4})
	start := uint64(MessageIDLimit - 2)
	o.Add(start, msgOf(0), orderT0)
	o.Add(start+2, msgOf(2), orderT0) // wraps to 0; start+1 missing
	o.Add(start+3, msgOf(3), orderT0)
	if got := ids(o.Add(start+6, msgOf(6), orderT0)); got != "2 3 " {
		t.Fatalf("got %q, want 2 3 released to make room", got)
	}
	if got := ids(o.Add(start+4, msgOf(4), orderT0)); got != "4 " {
		t.Fatalf("got %q, want 4", got)
	}
	if got := ids(o.Add(start+5, msgOf(5), orderT0)); got != "5 6 " {
		t.Fatalf("got %q, want 5 6", got)
	}
	// A jump far ahead with nothing waiting starts again there.
	if got := ids(o.Add(start+1000, msgOf(9), orderT0)); got != "9 " {
		t.Fatalf("got %q after a jump, want 9 at once", got)
	}
}
