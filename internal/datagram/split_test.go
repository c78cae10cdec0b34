package datagram

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// Sizes the tests split for: quic-go's datagram size at its 1,280-byte initial packet
// size, and a 16-byte AEAD tag plus an 8-byte sequence number per fragment.
const (
	testMaxDatagram = 1243
	testOverhead    = 24
	testCapacity    = testMaxDatagram - fragmentHeaderReserve - testOverhead // 1,207
)

func randomPayload(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestSplitReassembleRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		fragments int
	}{
		{"an empty payload is one fragment", 0, 1},
		{"one byte is one fragment", 1, 1},
		{"exactly one fragment's capacity is one fragment", testCapacity, 1},
		{"one byte more than a fragment's capacity is two fragments", testCapacity + 1, 2},
		{"a 1,400-byte RTP packet is two fragments", 1400, 2},
		{"a payload filling 54 fragments exactly is 54 fragments", 54 * testCapacity, 54},
		{"the largest UDP payload, 65,507 bytes, is 55 fragments", MaxMessageSize, 55},
	}
	s := NewSplitter(testOverhead)
	r := NewReassembler(ReassemblerConfig{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := randomPayload(tt.size)
			frags, err := s.Split(payload, testMaxDatagram)
			if err != nil {
				t.Fatalf("got Split error %v, want nil", err)
			}
			if len(frags) != tt.fragments {
				t.Errorf("got %d fragments, want %d", len(frags), tt.fragments)
			}
			var msg []byte
			var done bool
			for i, f := range frags {
				if wire := MaxCircuitIDLen + len(f) + testOverhead; wire > testMaxDatagram {
					t.Errorf("got fragment %d of %d bytes on the wire, want at most %d", i, wire, testMaxDatagram)
				}
				if done {
					t.Fatalf("got message delivered before fragment %d of %d", i, len(frags))
				}
				msg, done, err = r.Add(f)
				if err != nil {
					t.Fatalf("got Add error %v, want nil", err)
				}
			}
			if !done {
				t.Fatalf("got no message after all %d fragments, want one", len(frags))
			}
			if !bytes.Equal(msg, payload) {
				t.Errorf("got %d bytes differing from the %d sent, want them byte-exact", len(msg), len(payload))
			}
			if n, b := r.Pending(); n != 0 || b != 0 {
				t.Errorf("got %d messages and %d bytes pending, want none", n, b)
			}
		})
	}
}

func TestSplitRefuses(t *testing.T) {
	tests := []struct {
		name        string
		size        int
		maxDatagram int
		want        error
	}{
		{"a payload above the largest UDP payload", MaxMessageSize + 1, testMaxDatagram, ErrTooLarge},
		{"a payload needing more than MaxFragments", MaxFragments*100 + 1, 100 + fragmentHeaderReserve + testOverhead, ErrTooLarge},
		{"a datagram with no room after header and overhead", 1, fragmentHeaderReserve + testOverhead, ErrDatagramTooSmall},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSplitter(testOverhead).Split(make([]byte, tt.size), tt.maxDatagram)
			if !errors.Is(err, tt.want) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMaxFragmentsCarryTheLargestUDPPayload(t *testing.T) {
	// The smallest fragment capacity that carries MaxMessageSize in MaxFragments.
	const minCapacity = (MaxMessageSize + MaxFragments - 1) / MaxFragments
	if minCapacity != 1024 {
		t.Errorf("got minimum capacity %d, want 1024 as documented", minCapacity)
	}
	maxDatagram := minCapacity + fragmentHeaderReserve + testOverhead
	frags, err := NewSplitter(testOverhead).Split(make([]byte, MaxMessageSize), maxDatagram)
	if err != nil || len(frags) != MaxFragments {
		t.Errorf("got %d fragments (err %v) at maxDatagram %d, want %d", len(frags), err, maxDatagram, MaxFragments)
	}
	if _, err := NewSplitter(testOverhead).Split(make([]byte, MaxMessageSize), maxDatagram-1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("got error %v at maxDatagram %d, want %v", err, maxDatagram-1, ErrTooLarge)
	}
}

func TestSplitterMessageIDsWrap(t *testing.T) {
	s := NewSplitter(testOverhead)
	s.nextID = MessageIDLimit - 1
	for _, want := range []uint64{MessageIDLimit - 1, 0, 1} {
		frags, err := s.Split([]byte("x"), testMaxDatagram)
		if err != nil {
			t.Fatal(err)
		}
		f, err := DecodeFragment(frags[0])
		if err != nil || f.MessageID != want {
			t.Errorf("got message ID %d (err %v), want %d", f.MessageID, err, want)
		}
	}
}

func TestSplitAllocatesNothingOnceWarm(t *testing.T) {
	s := NewSplitter(testOverhead)
	payload := randomPayload(1400)
	s.Split(payload, testMaxDatagram)
	allocs := testing.AllocsPerRun(100, func() { s.Split(payload, testMaxDatagram) })
	if allocs != 0 {
		t.Errorf("got %v allocations per Split, want 0", allocs)
	}
}

func BenchmarkSplitReassemble1400(b *testing.B) {
	s := NewSplitter(testOverhead)
	r := NewReassembler(ReassemblerConfig{})
	payload := randomPayload(1400)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	var n uint64
	for b.Loop() {
		n++
		frags, err := s.Split(payload, testMaxDatagram)
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range frags {
			if _, _, err := r.Add(f); err != nil {
				b.Fatal(err)
			}
		}
	}
	if got := r.Stats().Delivered; got != n {
		b.Fatalf("got %d delivered, want %d", got, n)
	}
}
