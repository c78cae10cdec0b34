package fec

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Shape of the streams FuzzDecoder builds.
var fuzzDecoderConfig = Config{
	K: 4, M: 2, FlushDelay: 5 * time.Millisecond, Expiry: 50 * time.Millisecond,
	Blocks: 4, MaxMessage: 64,
}

const fuzzTimeStep = time.Millisecond // clock advance per unit of an op's time byte

// FuzzDecoder feeds any packets to a small Decoder: nothing panics, refused packets
// return no message (ErrCorrupt aside, which returns the message its packet carried),
// no message exceeds MaxMessage, and the buffers stay within their bound.
//
// The input is a stream of ops: a time byte (clock advance), a length byte L, then L
// bytes of packet.
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, ops []byte) {
		dec, err := NewDecoder(fuzzDecoderConfig)
		if err != nil {
			t.Fatal(err)
		}
		now := t0
		var delivered uint64
		for len(ops) >= 2 {
			now = now.Add(time.Duration(ops[0]) * fuzzTimeStep)
			n := min(int(ops[1]), len(ops)-2)
			pkt := ops[2 : 2+n]
			ops = ops[2+n:]

			msgs, err := dec.Add(pkt, now)
			if err != nil && !errors.Is(err, ErrCorrupt) && msgs != nil {
				t.Fatalf("got %d messages with error %v, want none", len(msgs), err)
			}
			if err != nil && errors.Is(err, ErrCorrupt) && len(msgs) > 1 {
				t.Fatalf("got %d messages from a corrupt block, want at most the packet's own", len(msgs))
			}
			for _, m := range msgs {
				if len(m) > fuzzDecoderConfig.MaxMessage {
					t.Fatalf("got a %d-byte message, want at most %d", len(m), fuzzDecoderConfig.MaxMessage)
				}
			}
			delivered += uint64(len(msgs))
			if dec.Buffered() > dec.BufferBound() {
				t.Fatalf("got %d bytes buffered, want at most %d", dec.Buffered(), dec.BufferBound())
			}
		}
		if s := dec.Stats(); s.Delivered != delivered || s.Recovered > s.Delivered {
			t.Fatalf("got stats %+v, want %d delivered, at most that many recovered", s, delivered)
		}
	})
}

// FuzzRoundTrip sends messages through an Encoder and a link that loses, swaps and
// duplicates packets as the input says, and checks the Decoder delivers exactly what
// the code promises: every message of a block that kept enough packets (its data and
// parity together at least its message count), and otherwise exactly the messages
// that arrived; each once, byte for byte.
//
// Input: K−1 (mod 8), M−1 (mod 4), message count − 1 (mod 64), a length byte per
// message (mod 120), then a byte per packet: bit 0 drops it, bit 1 swaps it with the
// next, bit 2 sends it twice.
func FuzzRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 3 {
			return
		}
		cfg := Config{K: 1 + int(in[0]%8), M: 1 + int(in[1]%4), FlushDelay: 5 * time.Millisecond}
		count := 1 + int(in[2]%64)
		in = in[3:]
		msgs := make([][]byte, count)
		for i := range msgs {
			n := 4
			if i < len(in) {
				n += int(in[i] % 120)
			}
			msgs[i] = message(i, n)
		}
		in = in[min(count, len(in)):]
		pkts := encodeAll(t, cfg, msgs, time.Millisecond)

		// The link, and what each block should deliver.
		type block struct{ count, got int }
		blocks := map[uint16]*block{}
		var link [][]byte
		swapped := false // a packet moves one place at most, so stays in the window
		for i := 0; i < len(pkts); i++ {
			var op byte
			if i < len(in) {
				op = in[i]
			}
			if op&2 != 0 && !swapped && i+1 < len(pkts) {
				pkts[i], pkts[i+1] = pkts[i+1], pkts[i]
				swapped = true
			} else {
				swapped = false
			}
			if op&1 != 0 {
				continue
			}
			link = append(link, pkts[i].b)
			if op&4 != 0 {
				link = append(link, pkts[i].b)
			}
		}
		arrived := map[string]bool{}
		for _, p := range pkts {
			h, _, _ := parseHeader(p.b)
			b := blocks[h.block]
			if b == nil {
				b = &block{}
				blocks[h.block] = b
			}
			if h.parity() {
				b.count = int(h.count)
			}
		}
		seen := map[string]bool{}
		for _, p := range link {
			if seen[string(p)] {
				continue
			}
			seen[string(p)] = true
			h, body, _ := parseHeader(p)
			blocks[h.block].got++
			if !h.parity() {
				arrived[string(body)] = true
			}
		}
		want := map[string]bool{}
		for _, p := range pkts {
			h, body, _ := parseHeader(p.b)
			if !h.parity() && (arrived[string(body)] || blocks[h.block].got >= blocks[h.block].count) {
				want[string(body)] = true
			}
		}

		dec, err := NewDecoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for i, p := range link {
			out, err := dec.Add(p, t0.Add(time.Duration(i)*time.Millisecond/4))
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			for _, m := range out {
				if got[string(m)] {
					t.Fatalf("got message %x twice, want it once", m[:4])
				}
				if !want[string(m)] {
					t.Fatalf("got message %x, which the link did not allow", m[:min(len(m), 4)])
				}
				got[string(bytes.Clone(m))] = true
			}
		}
		if len(got) != len(want) {
			t.Fatalf("got %d messages, want %d (K=%d M=%d, %d sent, %d packets of %d arrived; stats %+v)",
				len(got), len(want), cfg.K, cfg.M, count, len(link), len(pkts), dec.Stats())
		}
	})
}
