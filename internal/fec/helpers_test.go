package fec

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// t0 is the start of every test's clock.
var t0 = time.Unix(1_700_000_000, 0)

// packet is one packet on the test link: its bytes (a copy) and when it arrives.
type packet struct {
	at time.Time
	b  []byte
}

// message returns message i of a test flow, n bytes long: its number (when n ≥ 4) and
// bytes derived from it, so a delivered message shows which one it is and that it is
// whole.
func message(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*7 + j*13 + 1)
	}
	if n >= 4 {
		binary.BigEndian.PutUint32(b, uint32(i))
	}
	return b
}

// messages returns count messages with lengths drawn from [minLen, maxLen] by a
// seeded generator.
func messages(seed uint64, count, minLen, maxLen int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	msgs := make([][]byte, count)
	for i := range msgs {
		msgs[i] = message(i, minLen+rng.IntN(maxLen-minLen+1))
	}
	return msgs
}

// encodeAll sends msgs through a fresh Encoder, one every gap from t0, polling it
// before each message as a sender's timer would, and flushing at the end. It returns
// the packets in the order sent, each stamped with its send time.
func encodeAll(t testing.TB, cfg Config, msgs [][]byte, gap time.Duration) []packet {
	t.Helper()
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	var out []packet
	keep := func(now time.Time, pkts [][]byte) {
		for _, p := range pkts {
			out = append(out, packet{at: now, b: bytes.Clone(p)})
		}
	}
	now := t0
	for i, m := range msgs {
		now = t0.Add(time.Duration(i) * gap)
		keep(now, enc.Poll(now))
		pkts, err := enc.Add(m, now)
		if err != nil {
			t.Fatalf("Add(message %d, %d bytes): %v", i, len(m), err)
		}
		keep(now, pkts)
	}
	keep(now, enc.Flush())
	return out
}

// decodeAll feeds pkts to a fresh Decoder at their arrival times and returns copies of
// the messages it delivers, in order, with the Decoder. Refused packets fail the test.
func decodeAll(t testing.TB, cfg Config, pkts []packet) ([][]byte, *Decoder) {
	t.Helper()
	dec, err := NewDecoder(cfg)
	if err != nil {
		t.Fatalf("NewDecoder: %v", err)
	}
	var got [][]byte
	for i, p := range pkts {
		msgs, err := dec.Add(p.b, p.at)
		if err != nil {
			t.Fatalf("Add(packet %d, % x…): %v", i, p.b[:min(len(p.b), 8)], err)
		}
		for _, m := range msgs {
			got = append(got, bytes.Clone(m))
		}
	}
	return got, dec
}

// lose drops each packet with probability p, drawn from a seeded generator.
func lose(pkts []packet, p float64, seed uint64) []packet {
	rng := rand.New(rand.NewPCG(seed, 2))
	var kept []packet
	for _, pk := range pkts {
		if rng.Float64() >= p {
			kept = append(kept, pk)
		}
	}
	return kept
}

// indexOf maps each message's bytes to its position in msgs.
func indexOf(msgs [][]byte) map[string]int {
	idx := make(map[string]int, len(msgs))
	for i, m := range msgs {
		idx[string(m)] = i
	}
	return idx
}

// delivered checks that every message in got is one of msgs, byte for byte, and none
// came twice; it returns how many distinct messages came.
func delivered(t testing.TB, msgs, got [][]byte) int {
	t.Helper()
	idx := indexOf(msgs)
	seen := make(map[int]bool, len(got))
	for _, m := range got {
		i, ok := idx[string(m)]
		if !ok {
			t.Fatalf("got a %d-byte message % x… that was never sent", len(m), m[:min(len(m), 8)])
		}
		if seen[i] {
			t.Fatalf("got message %d twice, want it once", i)
		}
		seen[i] = true
	}
	return len(seen)
}
