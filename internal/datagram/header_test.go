package datagram

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// idsOfEveryLength are circuit IDs at both ends of each varint length.
var idsOfEveryLength = []struct {
	name string
	id   uint64
	len  int
}{
	{"zero takes one byte", 0, 1},
	{"63 is the largest one-byte id", 63, 1},
	{"64 is the smallest two-byte id", 64, 2},
	{"16383 is the largest two-byte id", 16383, 2},
	{"16384 is the smallest four-byte id", 16384, 4},
	{"2^30-1 is the largest four-byte id", 1<<30 - 1, 4},
	{"2^30 is the smallest eight-byte id", 1 << 30, 8},
	{"2^62-1 is the largest eight-byte id", MaxCircuitID, 8},
}

func TestCircuitIDRoundTrip(t *testing.T) {
	rest := []byte("sealed end-to-end part")
	for _, tt := range idsOfEveryLength {
		t.Run(tt.name, func(t *testing.T) {
			pkt, err := AppendCircuitID(nil, tt.id)
			if err != nil {
				t.Fatalf("got AppendCircuitID error %v, want nil", err)
			}
			pkt = append(pkt, rest...)
			id, n, err := CircuitID(pkt)
			if err != nil {
				t.Fatalf("got CircuitID error %v, want nil", err)
			}
			if id != tt.id || n != tt.len {
				t.Errorf("got id %d in %d bytes, want %d in %d", id, n, tt.id, tt.len)
			}
			if !bytes.Equal(pkt[n:], rest) {
				t.Errorf("got remainder %q, want %q", pkt[n:], rest)
			}
		})
	}
}

func TestRewriteGrowsAndShrinksHeaderLeavingRestUntouched(t *testing.T) {
	rest, _ := EncodeFragment(nil, Fragment{MessageID: 300, Index: 2, Count: 5, Payload: []byte("payload \x00\xff")})
	for _, from := range idsOfEveryLength {
		for _, to := range idsOfEveryLength {
			t.Run(from.name+" becomes "+to.name, func(t *testing.T) {
				pkt, _ := AppendCircuitID(nil, from.id)
				pkt = append(pkt, rest...)
				orig := bytes.Clone(pkt)
				prefix := []byte("kept")

				out := Rewrite(bytes.Clone(prefix), pkt, to.id)
				if !bytes.Equal(pkt, orig) {
					t.Errorf("got input changed to %x, want %x", pkt, orig)
				}
				if !bytes.HasPrefix(out, prefix) {
					t.Fatalf("got output %x, want it to start with dst %x", out, prefix)
				}
				out = out[len(prefix):]
				id, n, err := CircuitID(out)
				if err != nil || id != to.id || n != to.len {
					t.Errorf("got id %d in %d bytes (err %v), want %d in %d", id, n, err, to.id, to.len)
				}
				if !bytes.Equal(out[n:], rest) {
					t.Errorf("got remainder %x, want %x", out[n:], rest)
				}
			})
		}
	}
}

func TestRewriteRefusesWhatItCannotEncode(t *testing.T) {
	tests := []struct {
		name  string
		pkt   []byte
		newID uint64
	}{
		{"an empty packet", nil, 1},
		{"a truncated circuit ID", []byte{0x80, 0x01}, 1},
		{"an over-long circuit ID", []byte{0x40, 0x05, 'x'}, 1},
		{"a new ID beyond 2^62-1", []byte{0x05, 'x'}, MaxCircuitID + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("dst")
			if got := Rewrite(dst, tt.pkt, tt.newID); !bytes.Equal(got, dst) {
				t.Errorf("got %x, want dst %x unchanged", got, dst)
			}
		})
	}
}

func TestRewriteAllocatesNothingWhenDstHasRoom(t *testing.T) {
	pkt, _ := AppendCircuitID(nil, 5)
	pkt = append(pkt, make([]byte, 1200)...)
	dst := make([]byte, 0, 1300)
	allocs := testing.AllocsPerRun(100, func() { dst = Rewrite(dst[:0], pkt, MaxCircuitID) })
	if allocs != 0 {
		t.Errorf("got %v allocations per Rewrite, want 0", allocs)
	}
}

func TestFragmentRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		f    Fragment
		len  int // encoded length
	}{
		{"an unfragmented empty message is three bytes", Fragment{MessageID: 0, Index: 0, Count: 1}, 3},
		{"a two-byte message ID", Fragment{MessageID: MessageIDLimit - 1, Index: 1, Count: 2, Payload: []byte("ab")}, 6},
		{"the last of MaxFragments", Fragment{MessageID: 7, Index: MaxFragments - 1, Count: MaxFragments, Payload: []byte{0}}, 4},
		{"an eight-byte message ID", Fragment{MessageID: 1 << 40, Index: 0, Count: 1, Payload: []byte("x")}, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodeFragment(nil, tt.f)
			if err != nil {
				t.Fatalf("got EncodeFragment error %v, want nil", err)
			}
			if len(b) != tt.len {
				t.Errorf("got %d bytes, want %d", len(b), tt.len)
			}
			got, err := DecodeFragment(b)
			if err != nil {
				t.Fatalf("got DecodeFragment error %v, want nil", err)
			}
			if got.MessageID != tt.f.MessageID || got.Index != tt.f.Index || got.Count != tt.f.Count || !bytes.Equal(got.Payload, tt.f.Payload) {
				t.Errorf("got %+v, want %+v", got, tt.f)
			}
		})
	}
}

func TestMalformedHeadersAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		decode  func() error
		want    error
		message string // part of the error text a reader needs
	}{
		{"an empty packet has no circuit ID", circuit(nil), ErrTruncated, "circuit ID missing"},
		{"a two-byte circuit ID cut after one byte", circuit([]byte{0x40}), ErrTruncated, "circuit ID needs 2 bytes, have 1"},
		{"a four-byte circuit ID cut after three bytes", circuit([]byte{0x80, 0, 1}), ErrTruncated, "needs 4 bytes, have 3"},
		{"an eight-byte circuit ID cut after seven bytes", circuit([]byte{0xc0, 0, 0, 0, 0, 0, 1}), ErrTruncated, "needs 8 bytes, have 7"},
		{"a circuit ID of 5 in two bytes is over-long", circuit([]byte{0x40, 0x05}), ErrOverlongVarint, "circuit ID 5 in 2 bytes, shortest is 1"},
		{"a circuit ID of 64 in eight bytes is over-long", circuit([]byte{0xc0, 0, 0, 0, 0, 0, 0, 64}), ErrOverlongVarint, "shortest is 2"},
		{"an empty end-to-end part has no message ID", fragment(nil), ErrTruncated, "message ID missing"},
		{"a message ID of 0 in four bytes is over-long", fragment([]byte{0x80, 0, 0, 0, 0, 1}), ErrOverlongVarint, "message ID 0 in 4 bytes"},
		{"a message ID without fragment field", fragment([]byte{0x01}), ErrTruncated, "fragment field needs 2 bytes, have 0"},
		{"a message ID with only the index byte", fragment([]byte{0x01, 0x00}), ErrTruncated, "fragment field needs 2 bytes, have 1"},
		{"a fragment count of zero", fragment([]byte{0x01, 0, 0}), ErrFragmentCount, "0, want 1 to 64"},
		{"a fragment count above MaxFragments", fragment([]byte{0x01, 0, MaxFragments + 1}), ErrFragmentCount, "65, want 1 to 64"},
		{"a fragment index equal to the count", fragment([]byte{0x01, 3, 3}), ErrFragmentIndex, "index 3 of 3 fragments"},
		{"a fragment index above the count", fragment([]byte{0x01, 9, 2}), ErrFragmentIndex, "index 9 of 2"},
		{"encoding a circuit ID beyond 2^62-1", func() error { _, err := AppendCircuitID(nil, MaxCircuitID+1); return err }, ErrVarintRange, "circuit ID"},
		{"encoding a message ID beyond 2^62-1", func() error {
			_, err := EncodeFragment(nil, Fragment{MessageID: MaxCircuitID + 1, Count: 1})
			return err
		}, ErrVarintRange, "message ID"},
		{"encoding an index not below the count", func() error {
			_, err := EncodeFragment(nil, Fragment{Index: 1, Count: 1})
			return err
		}, ErrFragmentIndex, "index 1 of 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.decode()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "datagram: ") || !strings.Contains(msg, tt.message) {
				t.Errorf("got error text %q, want \"datagram: ...%s...\"", msg, tt.message)
			}
		})
	}
}

func circuit(b []byte) func() error {
	return func() error { _, _, err := CircuitID(b); return err }
}

func fragment(b []byte) func() error {
	return func() error { _, err := DecodeFragment(b); return err }
}

func BenchmarkRewrite(b *testing.B) {
	pkt, _ := AppendCircuitID(nil, 5)
	pkt = append(pkt, make([]byte, 1200)...)
	dst := make([]byte, 0, 1300)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		dst = Rewrite(dst[:0], pkt, 1<<20)
	}
}
