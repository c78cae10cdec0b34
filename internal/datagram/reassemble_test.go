package datagram

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// fakeClock is a Reassembler clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// step is one fragment arriving, at an offset from the start of the test.
type step struct {
	at           time.Duration
	id           uint64
	index, count uint8
	size         int // payload bytes; 0 means a short label
}

// piece is the payload of fragment index of message id: recognisable bytes, so a
// reassembled message shows which fragments went into it and in what order.
func piece(id uint64, index uint8, size int) []byte {
	label := fmt.Sprintf("m%d.f%d;", id, index)
	if size == 0 {
		return []byte(label)
	}
	return bytes.Repeat([]byte(label), size/len(label)+1)[:size]
}

func (s step) encode(t *testing.T) []byte {
	t.Helper()
	b, err := EncodeFragment(nil, Fragment{MessageID: s.id, Index: s.index, Count: s.count, Payload: piece(s.id, s.index, s.size)})
	if err != nil {
		t.Fatalf("encoding %+v: %v", s, err)
	}
	return b
}

// want is the message id whole, built from the same steps.
func wantMessage(steps []step, id uint64) []byte {
	var count uint8
	sizes := map[uint8]int{}
	for _, s := range steps {
		if s.id == id {
			count, sizes[s.index] = s.count, s.size
		}
	}
	var msg []byte
	for i := range count {
		msg = append(msg, piece(id, i, sizes[i])...)
	}
	return msg
}

// run feeds steps to a fresh Reassembler and returns the IDs of the messages it
// delivered, checking each is byte-exact.
func run(t *testing.T, cfg ReassemblerConfig, steps []step) (*Reassembler, []uint64) {
	t.Helper()
	start := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{t: start}
	cfg.Now = clock.now
	r := NewReassembler(cfg)
	var delivered []uint64
	for _, s := range steps {
		clock.t = start.Add(s.at)
		msg, ok, err := r.Add(s.encode(t))
		if err != nil {
			t.Logf("step %+v: %v", s, err)
		}
		if !ok {
			continue
		}
		if want := wantMessage(steps, s.id); !bytes.Equal(msg, want) {
			t.Errorf("got message %d = %q, want %q", s.id, msg, want)
		}
		delivered = append(delivered, s.id)
	}
	return r, delivered
}

func TestReassemblerOrderAndDuplicates(t *testing.T) {
	tests := []struct {
		name      string
		steps     []step
		delivered []uint64
		stats     Stats
	}{
		{
			name:      "an unfragmented message passes straight through",
			steps:     []step{{id: 1, index: 0, count: 1}},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 1},
		},
		{
			name:      "fragments in order reassemble",
			steps:     []step{{id: 1, index: 0, count: 3}, {id: 1, index: 1, count: 3}, {id: 1, index: 2, count: 3}},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 3},
		},
		{
			name:      "fragments in reverse order reassemble",
			steps:     []step{{id: 1, index: 2, count: 3}, {id: 1, index: 1, count: 3}, {id: 1, index: 0, count: 3}},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 3},
		},
		{
			name: "fragments of different sizes out of order reassemble byte-exact",
			steps: []step{
				{id: 1, index: 1, count: 3, size: 1000}, {id: 1, index: 2, count: 3, size: 7}, {id: 1, index: 0, count: 3, size: 1207},
			},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 3},
		},
		{
			name: "interleaved messages each reassemble when complete",
			steps: []step{
				{id: 1, index: 0, count: 2}, {id: 2, index: 1, count: 2}, {id: 3, index: 0, count: 1},
				{id: 2, index: 0, count: 2}, {id: 1, index: 1, count: 2},
			},
			delivered: []uint64{3, 2, 1},
			stats:     Stats{Delivered: 3, Fragments: 5},
		},
		{
			name: "a duplicated fragment is ignored and counted",
			steps: []step{
				{id: 1, index: 0, count: 2}, {id: 1, index: 0, count: 2}, {id: 1, index: 1, count: 2},
			},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 3, Duplicates: 1},
		},
		{
			name: "a fragment repeated after its message completed is a duplicate, not a new message",
			steps: []step{
				{id: 1, index: 0, count: 2}, {id: 1, index: 1, count: 2}, {at: 100 * time.Millisecond, id: 1, index: 0, count: 2},
			},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 3, Duplicates: 1},
		},
		{
			name: "a message ID reused after the deadline is a new message",
			steps: []step{
				{id: 1, index: 0, count: 2}, {id: 1, index: 1, count: 2},
				{at: DefaultDeadline, id: 1, index: 1, count: 2}, {at: DefaultDeadline, id: 1, index: 0, count: 2},
			},
			delivered: []uint64{1, 1},
			stats:     Stats{Delivered: 2, Fragments: 4},
		},
		{
			name: "a fragment whose count disagrees with its message is malformed",
			steps: []step{
				{id: 1, index: 0, count: 2}, {id: 1, index: 1, count: 3}, {id: 1, index: 1, count: 2},
			},
			delivered: []uint64{1},
			stats:     Stats{Delivered: 1, Fragments: 3, Malformed: 1},
		},
		{
			name: "a message growing past MaxMessageSize is malformed and dropped",
			steps: []step{
				{id: 1, index: 0, count: 2, size: 40_000}, {id: 1, index: 1, count: 2, size: 40_000},
			},
			stats: Stats{Fragments: 2, Malformed: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, delivered := run(t, ReassemblerConfig{}, tt.steps)
			if !slices.Equal(delivered, tt.delivered) {
				t.Errorf("got messages %v delivered, want %v", delivered, tt.delivered)
			}
			if got := r.Stats(); got != tt.stats {
				t.Errorf("got stats %+v, want %+v", got, tt.stats)
			}
			if n, b := r.Pending(); n != 0 || b != 0 {
				t.Errorf("got %d messages and %d bytes pending, want none", n, b)
			}
		})
	}
}

func TestReassemblerDropsIncompleteMessageAfterDeadline(t *testing.T) {
	const deadline = 200 * time.Millisecond
	start := time.Unix(1_700_000_000, 0)
	clock := &fakeClock{t: start}
	r := NewReassembler(ReassemblerConfig{Deadline: deadline, Now: clock.now})
	lost := []step{{id: 1, index: 0, count: 3}, {id: 1, index: 2, count: 3}} // fragment 1 is lost
	for _, s := range lost {
		if _, ok, err := r.Add(s.encode(t)); ok || err != nil {
			t.Fatalf("got ok %v, err %v for fragment %d, want neither", ok, err, s.index)
		}
	}

	clock.t = start.Add(deadline - time.Nanosecond)
	r.Expire()
	if n, _ := r.Pending(); n != 1 {
		t.Errorf("got %d messages pending just before the deadline, want 1", n)
	}
	clock.t = start.Add(deadline)
	r.Expire()
	if n, b := r.Pending(); n != 0 || b != 0 {
		t.Errorf("got %d messages and %d bytes pending at the deadline, want none", n, b)
	}
	if got := r.Stats().DroppedIncomplete; got != 1 {
		t.Errorf("got DroppedIncomplete %d, want 1", got)
	}

	// The lost fragment turning up late starts a new message that never completes.
	late := step{id: 1, index: 1, count: 3}
	if _, ok, _ := r.Add(late.encode(t)); ok {
		t.Errorf("got a message from a fragment arriving after its deadline, want none")
	}
	clock.t = clock.t.Add(deadline)
	r.Add(step{id: 9, index: 0, count: 1}.encode(t)) // Add expires too, without Expire
	if got := r.Stats().DroppedIncomplete; got != 2 {
		t.Errorf("got DroppedIncomplete %d after the late fragment's own deadline, want 2", got)
	}
}

func TestReassemblerBoundsMemory(t *testing.T) {
	tests := []struct {
		name         string
		cfg          ReassemblerConfig
		steps        []step
		delivered    []uint64
		evicted      uint64
		pending      int
		pendingBytes int
	}{
		{
			name: "a message beyond MaxMessages evicts the oldest",
			cfg:  ReassemblerConfig{MaxMessages: 2},
			steps: []step{
				{id: 1, index: 0, count: 2, size: 10}, {id: 2, index: 0, count: 2, size: 10}, {id: 3, index: 0, count: 2, size: 10},
				{id: 2, index: 1, count: 2, size: 10}, {id: 3, index: 1, count: 2, size: 10},
				{id: 1, index: 1, count: 2, size: 10}, // message 1 is gone: this starts it anew
			},
			delivered: []uint64{2, 3},
			evicted:   1, pending: 1, pendingBytes: 10,
		},
		{
			name: "a fragment beyond MaxBytes evicts the oldest message",
			cfg:  ReassemblerConfig{MaxBytes: 100},
			steps: []step{
				{id: 1, index: 0, count: 2, size: 60}, {id: 2, index: 0, count: 2, size: 30}, {id: 3, index: 0, count: 2, size: 30},
				{id: 2, index: 1, count: 2, size: 30},
			},
			delivered: []uint64{2},
			evicted:   1, pending: 1, pendingBytes: 30,
		},
		{
			name: "a fragment evicts as many old messages as it needs",
			cfg:  ReassemblerConfig{MaxBytes: 100},
			steps: []step{
				{id: 1, index: 0, count: 2, size: 40}, {id: 2, index: 0, count: 2, size: 40}, {id: 3, index: 0, count: 2, size: 90},
			},
			evicted: 2, pending: 1, pendingBytes: 90,
		},
		{
			name: "a message larger than MaxBytes evicts itself",
			cfg:  ReassemblerConfig{MaxBytes: 100},
			steps: []step{
				{id: 1, index: 0, count: 2, size: 60}, {id: 1, index: 1, count: 2, size: 60},
			},
			evicted: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, delivered := run(t, tt.cfg, tt.steps)
			if !slices.Equal(delivered, tt.delivered) {
				t.Errorf("got messages %v delivered, want %v", delivered, tt.delivered)
			}
			if got := r.Stats().DroppedEvicted; got != tt.evicted {
				t.Errorf("got DroppedEvicted %d, want %d", got, tt.evicted)
			}
			if n, b := r.Pending(); n != tt.pending || b != tt.pendingBytes {
				t.Errorf("got %d messages and %d bytes pending, want %d and %d", n, b, tt.pending, tt.pendingBytes)
			}
		})
	}
}

func TestReassemblerCountsMalformedFragments(t *testing.T) {
	r := NewReassembler(ReassemblerConfig{})
	for _, b := range [][]byte{nil, {0x40}, {0x01, 0, 0}, {0x01, 2, 2}} {
		if _, ok, err := r.Add(b); ok || err == nil {
			t.Errorf("got ok %v, err %v for %x, want an error", ok, err, b)
		}
	}
	if got := r.Stats(); got != (Stats{Malformed: 4}) {
		t.Errorf("got stats %+v, want %+v", got, Stats{Malformed: 4})
	}
	_, _, err := r.Add([]byte{0x01, 0, 0})
	if !errors.Is(err, ErrFragmentCount) {
		t.Errorf("got error %v, want %v", err, ErrFragmentCount)
	}
}
