package fec

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// kinds describes packets as a string: d for data, p for parity.
func kinds(pkts [][]byte) string {
	var s []byte
	for _, p := range pkts {
		if p[2] < p[3] {
			s = append(s, 'd')
		} else {
			s = append(s, 'p')
		}
	}
	return string(s)
}

func TestEncoderSendsDataAtOnceAndParityAtBlockEnd(t *testing.T) {
	enc, _ := NewEncoder(Config{K: 4, M: 2})
	var got []string
	for i := range 9 {
		pkts, err := enc.Add(message(i, 30), t0)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, kinds(pkts))
	}
	want := []string{"d", "d", "d", "dpp", "d", "d", "d", "dpp", "d"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got packets %q per message, want %q", got, want)
		}
	}
	if s := enc.Stats(); s.Messages != 9 || s.Parity != 4 || s.Blocks != 2 || s.Flushed != 0 {
		t.Fatalf("got stats %+v, want 9 messages, 4 parity, 2 full blocks", s)
	}
}

func TestEncoderFlushesAfterTheDelay(t *testing.T) {
	cfg := Config{K: 8, M: 2, FlushDelay: 20 * time.Millisecond}
	enc, _ := NewEncoder(cfg)
	if _, ok := enc.Deadline(); ok {
		t.Fatalf("got a deadline with no block open, want none")
	}
	enc.Add(message(0, 10), t0)
	enc.Add(message(1, 10), t0.Add(5*time.Millisecond))
	deadline, ok := enc.Deadline()
	if want := t0.Add(20 * time.Millisecond); !ok || !deadline.Equal(want) {
		t.Fatalf("got deadline %v (%v), want %v: 20 ms after the block's first message", deadline, ok, want)
	}
	if pkts := enc.Poll(t0.Add(19 * time.Millisecond)); len(pkts) != 0 {
		t.Fatalf("got %d packets polling before the deadline, want none", len(pkts))
	}
	pkts := enc.Poll(deadline)
	if kinds(pkts) != "pp" {
		t.Fatalf("got packets %q at the deadline, want the 2 parity", kinds(pkts))
	}
	if pkts[0][5] != 2 {
		t.Fatalf("got parity saying %d messages, want 2", pkts[0][5])
	}
	if pkts := enc.Poll(deadline.Add(time.Hour)); len(pkts) != 0 {
		t.Fatalf("got %d packets polling with no block open, want none", len(pkts))
	}
	if s := enc.Stats(); s.Flushed != 1 {
		t.Fatalf("got %d blocks flushed, want 1", s.Flushed)
	}
}

func TestEncoderAddPastTheDeadlineClosesTheBlockFirst(t *testing.T) {
	enc, _ := NewEncoder(Config{K: 2, M: 1})
	enc.Add(message(0, 10), t0)
	pkts, _ := enc.Add(message(1, 10), t0.Add(time.Second))
	if kinds(pkts) != "pd" {
		t.Fatalf("got packets %q, want the old block's parity, then the new message", kinds(pkts))
	}
	if pkts[0][0] != 0 || pkts[0][1] != 0 || pkts[1][1] != 1 {
		t.Fatalf("got blocks %d and %d, want 0 then 1", pkts[0][1], pkts[1][1])
	}
}

func TestEncoderFlush(t *testing.T) {
	enc, _ := NewEncoder(Config{})
	if pkts := enc.Flush(); len(pkts) != 0 {
		t.Fatalf("got %d packets flushing nothing, want none", len(pkts))
	}
	enc.Add(message(0, 10), t0)
	if pkts := enc.Flush(); kinds(pkts) != "pp" {
		t.Fatalf("got %q flushing one message, want 2 parity", kinds(pkts))
	}
}

func TestEncoderRefusesOversizeMessages(t *testing.T) {
	enc, _ := NewEncoder(Config{MaxMessage: 100})
	if _, err := enc.Add(make([]byte, 101), t0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v for 101 bytes, want %v", err, ErrTooLarge)
	}
	pkts, err := enc.Add(make([]byte, 100), t0)
	if err != nil || len(pkts) != 1 || pkts[0][2] != 0 {
		t.Fatalf("got %d packets (err %v) for 100 bytes, want data packet 0", len(pkts), err)
	}
}

func TestPacketsFitTheOverhead(t *testing.T) {
	cfg := Config{K: 4, M: 2, MaxMessage: 500}
	pkts := encodeAll(t, cfg, messages(11, 8, 500, 500), 0)
	for _, p := range pkts {
		if len(p.b) > cfg.MaxMessage+PacketOverhead {
			t.Fatalf("got a %d-byte packet, want at most %d (MaxMessage + PacketOverhead)", len(p.b), cfg.MaxMessage+PacketOverhead)
		}
	}
	// Data packets cost only their header.
	if len(pkts[0].b) != 500+HeaderLen {
		t.Fatalf("got a %d-byte data packet for 500 bytes, want %d", len(pkts[0].b), 500+HeaderLen)
	}
}

func TestPacketsAreCappedSoAppendsCannotClobber(t *testing.T) {
	enc, _ := NewEncoder(Config{K: 2, M: 1})
	var pkts [][]byte
	for i := range 2 {
		got, _ := enc.Add(message(i, 10), t0)
		pkts = append(pkts, got...)
	}
	for i, p := range pkts {
		if cap(p) != len(p) {
			t.Fatalf("got packet %d with capacity %d past its %d bytes, want none", i, cap(p), len(p))
		}
	}
}

func TestEncodeAllocatesNothingOnceWarm(t *testing.T) {
	enc, _ := NewEncoder(Config{})
	msg := message(0, 1200)
	now := t0
	send := func() {
		now = now.Add(time.Millisecond)
		enc.Poll(now)
		enc.Add(msg, now)
	}
	send()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 1000 {
		send()
	}
	runtime.ReadMemStats(&after)
	// The codec's scratch pool (a sync.Pool of []byte, on amd64 and arm64) boxes a
	// slice header per block it encodes; the race detector also empties pools at
	// random, so it may make a scratch buffer again. Nothing else allocates.
	if n, most := after.Mallocs-before.Mallocs, 2*1000/DefaultK; n > uint64(most) {
		t.Fatalf("got %d allocations over 1,000 messages, want at most %d (two a block)", n, most)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		err  bool
	}{
		{"zero-is-defaults", Config{}, false},
		{"widest", Config{K: 63, M: 1}, false},
		{"k-too-big", Config{K: 64}, true},
		{"k-plus-m-too-big", Config{K: 40, M: 25}, true},
		{"negative-k", Config{K: -1}, true},
		{"negative-flush", Config{FlushDelay: -time.Millisecond}, true},
		{"expiry-not-past-flush", Config{FlushDelay: time.Second, Expiry: time.Second}, true},
		{"too-many-blocks", Config{Blocks: MaxBlocks + 1}, true},
		{"message-too-big", Config{MaxMessage: MaxMessageLimit + 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errE := NewEncoder(tc.cfg)
			_, errD := NewDecoder(tc.cfg)
			if (errE != nil) != tc.err || (errD != nil) != tc.err {
				t.Fatalf("got errors %v and %v, want error: %v", errE, errD, tc.err)
			}
			if tc.err && !errors.Is(errE, ErrConfig) {
				t.Fatalf("got %v, want %v", errE, ErrConfig)
			}
		})
	}
	if got := (Config{}).Overhead(); got != 0.25 {
		t.Fatalf("got default overhead %v, want 0.25", got)
	}
	if c, _ := (Config{Blocks: 33}).normalize(); c.Blocks != 64 {
		t.Fatalf("got %d blocks for 33, want 64 (the next power of two)", c.Blocks)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{block: 0, index: 0, k: 1, m: 1},
		{block: 65535, index: 62, k: 63, m: 1},
		{block: 300, index: 9, k: 8, m: 2, count: 5},
	} {
		b := make([]byte, h.len()+3)
		h.put(b)
		got, body, err := parseHeader(b)
		if err != nil || got != h || len(body) != 3 {
			t.Fatalf("got %+v, %d-byte body (err %v), want %+v and 3", got, len(body), err, h)
		}
	}
}

// TestEncoderClosesAFrameWhenItsBurstEnds: with an idle flush a video frame's packets,
// sent back to back, make a block of their own whose parity follows the frame's last
// packet by the idle flush, and a short block's parity is in proportion to its size.
func TestEncoderClosesAFrameWhenItsBurstEnds(t *testing.T) {
	cfg := Config{K: 16, M: 8, FlushDelay: 30 * time.Millisecond, IdleFlush: 3 * time.Millisecond, Proportional: true}
	enc, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := range 5 { // a frame of five packets, 0.1 ms apart
		enc.Add(message(i, 100), now)
		now = now.Add(100 * time.Microsecond)
	}
	d, ok := enc.Deadline()
	if want := t0.Add(400*time.Microsecond + 3*time.Millisecond); !ok || !d.Equal(want) {
		t.Fatalf("got deadline %v, want %v: the idle flush after the frame's last packet", d.Sub(t0), want.Sub(t0))
	}
	if got := kinds(enc.Poll(d)); got != "ppp" {
		t.Fatalf("got %q at the idle deadline, want ppp: ⌈5·8/16⌉ parity packets", got)
	}
	// A frame of 40 packets: two full blocks of 16 with 8 parity each, then 8 with 4.
	var got string
	for i := range 40 {
		pkts, _ := enc.Add(message(i, 100), now)
		got += kinds(pkts)
	}
	got += kinds(enc.Poll(now.Add(3 * time.Millisecond)))
	want := strings.Repeat("d", 16) + strings.Repeat("p", 8) + strings.Repeat("d", 16) + strings.Repeat("p", 8) + strings.Repeat("d", 8) + "pppp"
	if got != want {
		t.Fatalf("got packets %q, want %q", got, want)
	}
	if _, err := NewEncoder(Config{FlushDelay: 10 * time.Millisecond, IdleFlush: 10 * time.Millisecond}); !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v for an idle flush as long as the flush delay, want ErrConfig", err)
	}
}

// TestProportionalParityRebuildsShortBlocks: a short block's fewer parity packets
// still rebuild as many of its lost messages as they number.
func TestProportionalParityRebuildsShortBlocks(t *testing.T) {
	cfg := Config{K: 16, M: 8, FlushDelay: 30 * time.Millisecond, IdleFlush: 3 * time.Millisecond, Proportional: true}
	enc, _ := NewEncoder(cfg)
	dec, _ := NewDecoder(cfg)
	var pkts [][]byte
	for i := range 6 {
		p, _ := enc.Add(message(i, 50+i), t0)
		for _, b := range p {
			pkts = append(pkts, append([]byte(nil), b...))
		}
	}
	for _, b := range enc.Flush() {
		pkts = append(pkts, append([]byte(nil), b...))
	}
	if len(pkts) != 6+3 {
		t.Fatalf("got %d packets, want 6 data and 3 parity", len(pkts))
	}
	got := map[string]bool{}
	for i, p := range pkts {
		if i == 1 || i == 2 || i == 4 { // three of six messages lost
			continue
		}
		msgs, err := dec.Add(p, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got[string(m)] = true
		}
	}
	for i := range 6 {
		if !got[string(message(i, 50+i))] {
			t.Errorf("message %d was not delivered or rebuilt", i)
		}
	}
	if s := dec.Stats(); s.Recovered != 3 {
		t.Errorf("got %d recovered, want 3", s.Recovered)
	}
}
