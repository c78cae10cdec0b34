package fec

import (
	"bytes"
	"cmp"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestCleanLinkDeliversEverythingOnceInOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		gap  time.Duration
	}{
		{"full-blocks", Config{}, time.Millisecond},
		{"every-block-flushed-early", Config{}, 15 * time.Millisecond},
		{"one-message-blocks", Config{K: 1, M: 1}, time.Millisecond},
		{"wide-blocks", Config{K: 40, M: 24}, 100 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := messages(1, 500, 0, 300)
			got, dec := decodeAll(t, tc.cfg, encodeAll(t, tc.cfg, msgs, tc.gap))
			if !slices.EqualFunc(got, msgs, bytes.Equal) {
				t.Fatalf("got %d messages, want the %d sent in order", len(got), len(msgs))
			}
			s := dec.Stats()
			if s.Recovered != 0 || s.Lost != 0 || s.Duplicates != 0 || s.Malformed != 0 {
				t.Fatalf("got stats %+v, want nothing recovered, lost, duplicated or refused", s)
			}
		})
	}
}

func TestDataIsDeliveredWhenItArrives(t *testing.T) {
	enc, _ := NewEncoder(Config{})
	dec, _ := NewDecoder(Config{})
	for i := range 3 {
		pkts, err := enc.Add(message(i, 50), t0)
		if err != nil || len(pkts) != 1 {
			t.Fatalf("Add: got %d packets (err %v), want the data packet alone", len(pkts), err)
		}
		got, err := dec.Add(pkts[0], t0)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], message(i, 50)) {
			t.Fatalf("got %q (err %v) from message %d's data packet, want the message at once", got, err, i)
		}
	}
}

func TestLostMessagesAreRebuilt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		count int   // messages sent
		drop  []int // packet positions dropped, in send order
		want  []int // messages delivered, in delivery order
		rec   uint64
		lost  uint64
	}{
		// Packets 0-7 are data, 8-9 parity.
		{"one-data-lost", Config{}, 8, []int{3}, []int{0, 1, 2, 4, 5, 6, 7, 3}, 1, 0},
		{"two-data-lost", Config{}, 8, []int{0, 7}, []int{1, 2, 3, 4, 5, 6, 0, 7}, 2, 0},
		{"data-and-parity-lost", Config{}, 8, []int{2, 8}, []int{0, 1, 3, 4, 5, 6, 7, 2}, 1, 0},
		{"three-lost-is-too-many", Config{}, 8, []int{1, 2, 3}, []int{0, 4, 5, 6, 7}, 0, 3},
		// 3 messages flushed early: packets 0-2 data, 3-4 parity; 5 zero shards are known.
		{"short-block-two-lost", Config{}, 3, []int{0, 2}, []int{1, 0, 2}, 2, 0},
		{"short-block-all-data-lost", Config{K: 8, M: 3}, 3, []int{0, 1, 2}, []int{0, 1, 2}, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := messages(2, tc.count, 0, 200)
			pkts := encodeAll(t, tc.cfg, msgs, time.Millisecond)
			var kept []packet
			for i, p := range pkts {
				if !slices.Contains(tc.drop, i) {
					kept = append(kept, p)
				}
			}
			got, dec := decodeAll(t, tc.cfg, kept)
			dec.Expire(t0.Add(time.Hour))
			var want [][]byte
			for _, i := range tc.want {
				want = append(want, msgs[i])
			}
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("got %d messages %q, want messages %v", len(got), got, tc.want)
			}
			if s := dec.Stats(); s.Recovered != tc.rec || s.Lost != tc.lost {
				t.Fatalf("got %d recovered and %d lost, want %d and %d (stats %+v)", s.Recovered, s.Lost, tc.rec, tc.lost, s)
			}
		})
	}
}

func TestVariableLengthsSurviveRebuilding(t *testing.T) {
	// Empty, one byte, the longest, and messages ending in zeros or in the padding
	// marker itself: each must come back with its exact length.
	cfg := Config{K: 6, M: 6, MaxMessage: 1000}
	msgs := [][]byte{
		{},
		{0x80},
		bytes.Repeat([]byte{0xaa}, 1000),
		append(message(3, 40), 0, 0, 0),
		append(message(4, 10), 0x80, 0),
		append(message(5, 10), 0x80),
	}
	pkts := encodeAll(t, cfg, msgs, time.Millisecond)
	// Only the parity arrives: every message is rebuilt from it.
	got, dec := decodeAll(t, cfg, pkts[len(msgs):])
	if !slices.EqualFunc(got, msgs, bytes.Equal) {
		t.Fatalf("got lengths %v, want %v", lengths(got), lengths(msgs))
	}
	if s := dec.Stats(); s.Recovered != uint64(len(msgs)) {
		t.Fatalf("got %d recovered, want %d", s.Recovered, len(msgs))
	}
	// The empty and the longest message arrive and help rebuild the others.
	got, _ = decodeAll(t, cfg, append([]packet{pkts[0], pkts[2]}, pkts[len(msgs):len(msgs)+4]...))
	want := [][]byte{msgs[0], msgs[2], msgs[1], msgs[3], msgs[4], msgs[5]}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("got lengths %v, want %v", lengths(got), lengths(want))
	}
}

func lengths(msgs [][]byte) []int {
	var n []int
	for _, m := range msgs {
		n = append(n, len(m))
	}
	return n
}

func TestReorderedPacketsDeliverEverythingOnce(t *testing.T) {
	cfg := Config{}
	msgs := messages(3, 2000, 1, 300)
	pkts := encodeAll(t, cfg, msgs, time.Millisecond)
	// Each packet moves up to 40 places (5 blocks) from where it was sent, and 10 % are
	// lost, so parity often comes before the data it rebuilds.
	rng := rand.New(rand.NewPCG(3, 3))
	keys := make([]float64, len(pkts))
	for i := range keys {
		keys[i] = float64(i) + rng.Float64()*40
	}
	order := make([]int, len(pkts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(keys[a], keys[b]) })
	var moved []packet
	for i, j := range order {
		moved = append(moved, packet{at: pkts[i].at, b: pkts[j].b})
	}
	moved = lose(moved, 0.10, 3)
	got, dec := decodeAll(t, cfg, moved)
	n := delivered(t, msgs, got)
	if min := len(msgs) * 95 / 100; n < min {
		t.Fatalf("got %d of %d messages, want at least %d (stats %+v)", n, len(msgs), min, dec.Stats())
	}
	if s := dec.Stats(); s.Recovered == 0 || s.Stale != 0 {
		t.Fatalf("got stats %+v, want messages recovered and no stale packet", s)
	}
}

func TestDuplicatesAreDeliveredOnce(t *testing.T) {
	cfg := Config{}
	msgs := messages(4, 400, 0, 200)
	pkts := encodeAll(t, cfg, msgs, time.Millisecond)
	// Every packet twice, the copy 1 to 30 packets later; some originals lost so
	// rebuilt messages can be duplicated by late originals too.
	rng := rand.New(rand.NewPCG(4, 4))
	type arrival struct {
		key float64
		b   []byte
	}
	var arrivals []arrival
	for i, p := range pkts {
		if rng.IntN(10) != 0 {
			arrivals = append(arrivals, arrival{float64(i), p.b})
		}
		arrivals = append(arrivals, arrival{float64(i) + 1.5 + float64(rng.IntN(30)), p.b})
	}
	slices.SortStableFunc(arrivals, func(a, b arrival) int { return cmp.Compare(a.key, b.key) })
	dup := make([]packet, len(arrivals))
	for i, a := range arrivals {
		dup[i] = packet{at: t0.Add(time.Duration(i) * time.Millisecond), b: a.b}
	}
	got, dec := decodeAll(t, cfg, dup)
	if n := delivered(t, msgs, got); n != len(msgs) {
		t.Fatalf("got %d of %d messages, want all", n, len(msgs))
	}
	if s := dec.Stats(); s.Duplicates+s.Late == 0 {
		t.Fatalf("got stats %+v, want duplicates counted", s)
	}
}

func TestBlocksExpire(t *testing.T) {
	cfg := Config{Expiry: 100 * time.Millisecond}
	msgs := messages(5, 8, 10, 100)
	pkts := encodeAll(t, cfg, msgs, 0)
	dec, _ := NewDecoder(cfg)
	// Messages 0-4 arrive; 5-7 and the parity are held up past the expiry.
	for _, p := range pkts[:5] {
		if _, err := dec.Add(p.b, t0); err != nil {
			t.Fatal(err)
		}
	}
	if dec.Buffered() == 0 {
		t.Fatalf("got nothing buffered for an incomplete block, want its shards kept")
	}
	dec.Expire(t0.Add(99 * time.Millisecond))
	if s := dec.Stats(); s.Expired != 0 {
		t.Fatalf("got %d blocks expired before the deadline, want 0", s.Expired)
	}
	dec.Expire(t0.Add(100 * time.Millisecond))
	s := dec.Stats()
	if s.Expired != 1 || s.Lost != 0 {
		// Without parity the block's size is unknown: nothing past message 4 is known
		// to be missing.
		t.Fatalf("got %d expired, %d lost, want 1 and 0", s.Expired, s.Lost)
	}
	// The parity arrives late: nothing is rebuilt from an expired block.
	late := t0.Add(150 * time.Millisecond)
	for _, p := range pkts[8:] {
		got, err := dec.Add(p.b, late)
		if err != nil || len(got) != 0 {
			t.Fatalf("got %d messages (err %v) from late parity, want none", len(got), err)
		}
	}
	// A late message is still new: it is delivered, once.
	for i, want := range []int{1, 0} {
		got, err := dec.Add(pkts[6].b, late)
		if err != nil || len(got) != want {
			t.Fatalf("copy %d of late message 6: got %d messages (err %v), want %d", i, len(got), err, want)
		}
	}
	if s := dec.Stats(); s.Late != 3 || s.Delivered != 6 {
		t.Fatalf("got stats %+v, want 3 late packets and 6 messages delivered", s)
	}
}

func TestExpiredBlockCountsKnownLosses(t *testing.T) {
	cfg := Config{}
	msgs := messages(6, 8, 10, 100)
	pkts := encodeAll(t, cfg, msgs, 0)
	dec, _ := NewDecoder(cfg)
	// Messages 0, 1, 2 and one parity packet, which says the block has 8: 4 shards of
	// the 8 needed, so the 5 missing messages are lost when it expires.
	for _, i := range []int{0, 1, 2, 8} {
		if _, err := dec.Add(pkts[i].b, t0); err != nil {
			t.Fatal(err)
		}
	}
	dec.Expire(t0.Add(DefaultExpiry))
	if s := dec.Stats(); s.Lost != 5 || s.Expired != 1 {
		t.Fatalf("got stats %+v, want 5 lost in 1 expired block", s)
	}
	// A lost message arriving after all is delivered and no longer counted lost.
	if got, _ := dec.Add(pkts[4].b, t0.Add(DefaultExpiry+100*time.Millisecond)); len(got) != 1 {
		t.Fatalf("got %d messages from a late data packet, want 1", len(got))
	}
	if s := dec.Stats(); s.Lost != 4 {
		t.Fatalf("got %d lost, want 4", s.Lost)
	}
}

func TestBlockIDsWrap(t *testing.T) {
	cfg := Config{K: 1, M: 1, Blocks: 4}
	enc, _ := NewEncoder(cfg)
	enc.block = 65534
	dec, _ := NewDecoder(cfg)
	for i := range 6 {
		pkts, err := enc.Add(message(i, 20), t0)
		if err != nil {
			t.Fatal(err)
		}
		// Only the parity: every message is rebuilt, across the wrap from 65535 to 0.
		got, err := dec.Add(pkts[1], t0)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], message(i, 20)) {
			t.Fatalf("block %d: got %q (err %v), want message %d", uint16(65534+i), got, err, i)
		}
	}
	if s := dec.Stats(); s.Stale != 0 || s.Recovered != 6 {
		t.Fatalf("got stats %+v, want 6 recovered, none stale", s)
	}
}

func TestPacketsOlderThanTheWindowAreDropped(t *testing.T) {
	cfg := Config{K: 1, M: 1, Blocks: 4}
	pkts := encodeAll(t, cfg, messages(7, 10, 10, 20), 0)
	dec, _ := NewDecoder(cfg)
	// Block 9, then block 6 (one of the 4 newest: taken), then block 5 (too old).
	for _, tc := range []struct {
		block int
		want  int
	}{{9, 1}, {6, 1}, {5, 0}} {
		got, err := dec.Add(pkts[2*tc.block].b, t0)
		if err != nil || len(got) != tc.want {
			t.Fatalf("block %d: got %d messages (err %v), want %d", tc.block, len(got), err, tc.want)
		}
	}
	if s := dec.Stats(); s.Stale != 1 {
		t.Fatalf("got %d stale, want 1", s.Stale)
	}
}

func TestFlowResumesAfterLongBlackout(t *testing.T) {
	// 40,000 blocks lost in a blackout: more than half the block ID range, which would
	// look like the past if the Decoder did not restart its window after a silence.
	cfg := Config{K: 1, M: 1}
	enc, _ := NewEncoder(cfg)
	dec, _ := NewDecoder(cfg)
	pkts, _ := enc.Add(message(0, 20), t0)
	if got, _ := dec.Add(pkts[0], t0); len(got) != 1 {
		t.Fatalf("got %d messages before the blackout, want 1", len(got))
	}
	enc.block += 40_000
	after := t0.Add(10 * time.Minute)
	pkts, _ = enc.Add(message(1, 20), after)
	if got, err := dec.Add(pkts[0], after); err != nil || len(got) != 1 {
		t.Fatalf("got %d messages (err %v) after the blackout, want 1 (stats %+v)", len(got), err, dec.Stats())
	}
}

func TestMalformedPacketsAreRefused(t *testing.T) {
	cfg := Config{MaxMessage: 100}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"four-bytes", []byte{0, 1, 0, 8}, ErrTruncated},
		{"k-zero", []byte{0, 1, 0, 0, 2}, ErrShape},
		{"m-zero", []byte{0, 1, 0, 8, 0}, ErrShape},
		{"k-plus-m-over-64", []byte{0, 1, 0, 60, 5}, ErrShape},
		{"k-255", []byte{0, 1, 0, 255, 255}, ErrShape},
		{"index-past-k-plus-m", []byte{0, 1, 10, 8, 2}, ErrIndex},
		{"parity-without-count", []byte{0, 1, 8, 8, 2}, ErrTruncated},
		{"parity-count-zero", []byte{0, 1, 8, 8, 2, 0, 1}, ErrIndex},
		{"parity-count-over-k", []byte{0, 1, 8, 8, 2, 9, 1}, ErrIndex},
		{"parity-empty-shard", []byte{0, 1, 8, 8, 2, 8}, ErrLength},
		{"message-over-max", append([]byte{0, 1, 0, 8, 2}, make([]byte, 101)...), ErrLength},
		{"parity-shard-over-max", append([]byte{0, 1, 8, 8, 2, 8}, make([]byte, 102)...), ErrLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, _ := NewDecoder(cfg)
			got, err := dec.Add(tc.pkt, t0)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %d messages, err %v; want none and %v", len(got), err, tc.want)
			}
			if s := dec.Stats(); s.Malformed != 1 || dec.Buffered() != 0 {
				t.Fatalf("got stats %+v and %d bytes buffered, want 1 malformed and nothing kept", s, dec.Buffered())
			}
		})
	}
}

func TestInconsistentPacketsAreRefused(t *testing.T) {
	data := func(index, k, m byte, n int) []byte { return append([]byte{0, 7, index, k, m}, make([]byte, n)...) }
	parity := func(index, k, m, count byte, n int) []byte {
		return append([]byte{0, 7, index, k, m, count}, make([]byte, n)...)
	}
	for _, tc := range []struct {
		name        string
		first, then []byte
		want        error
	}{
		{"k-changes", data(0, 8, 2, 10), data(1, 9, 2, 10), ErrInconsistent},
		{"m-changes", data(0, 8, 2, 10), data(1, 8, 3, 10), ErrInconsistent},
		{"count-changes", parity(8, 8, 2, 3, 11), parity(9, 8, 2, 4, 11), ErrInconsistent},
		{"shard-size-changes", parity(8, 8, 2, 3, 11), parity(9, 8, 2, 3, 12), ErrInconsistent},
		{"message-past-count", parity(8, 8, 2, 3, 11), data(3, 8, 2, 5), ErrIndex},
		{"count-below-message", data(5, 8, 2, 5), parity(8, 8, 2, 3, 11), ErrIndex},
		{"message-longer-than-shard", parity(8, 8, 2, 3, 11), data(1, 8, 2, 11), ErrLength},
		{"shard-shorter-than-message", data(1, 8, 2, 11), parity(8, 8, 2, 3, 11), ErrLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec, _ := NewDecoder(Config{})
			if _, err := dec.Add(tc.first, t0); err != nil {
				t.Fatalf("first packet: %v", err)
			}
			before := dec.Stats()
			got, err := dec.Add(tc.then, t0)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("got %d messages, err %v; want none and %v", len(got), err, tc.want)
			}
			after := dec.Stats()
			after.Malformed--
			if after != before {
				t.Fatalf("got stats %+v after a refused packet, want %+v and one more malformed", after, before)
			}
		})
	}
}

func TestCorruptParityDeliversNothingRebuilt(t *testing.T) {
	cfg := Config{}
	msgs := messages(8, 8, 10, 100)
	pkts := encodeAll(t, cfg, msgs, 0)
	dec, _ := NewDecoder(cfg)
	for _, p := range pkts[:6] {
		dec.Add(p.b, t0)
	}
	// Both parity packets, their shards scrambled (the sealing layer would have refused
	// them; a buggy peer might still send them).
	for i, p := range pkts[8:] {
		b := bytes.Clone(p.b)
		for j := parityHeaderLen; j < len(b); j++ {
			b[j] ^= byte(j)
		}
		got, err := dec.Add(b, t0)
		if i == 1 && (!errors.Is(err, ErrCorrupt) || len(got) != 0) {
			t.Fatalf("got %d messages, err %v; want none and %v", len(got), err, ErrCorrupt)
		}
	}
	if s := dec.Stats(); s.Recovered != 0 || s.Lost != 2 {
		t.Fatalf("got stats %+v, want nothing recovered, 2 lost", s)
	}
}

func TestDecoderStaysWithinItsBuffersWhenBlocksPileUp(t *testing.T) {
	// Incomplete blocks, never expiring within the test: each holds 7 shards of 10, and
	// the newest evict the oldest once the buffers run out.
	cfg := Config{Blocks: 8}
	msgs := messages(9, 8*100, 10, 100)
	pkts := encodeAll(t, cfg, msgs, 0)
	dec, _ := NewDecoder(cfg)
	for i, p := range pkts {
		if i%10 < 7 {
			dec.Add(p.b, t0)
		}
		if dec.Buffered() > dec.BufferBound() {
			t.Fatalf("got %d bytes buffered, want at most %d", dec.Buffered(), dec.BufferBound())
		}
	}
	if s := dec.Stats(); s.Evicted == 0 {
		t.Fatalf("got stats %+v, want old blocks evicted", s)
	}
}

func TestBuffersRunningOutEvictTheOldestBlock(t *testing.T) {
	// The peer's blocks are far wider than this decoder's own K+M, so two blocks need
	// more than its 64 buffers: the older one gives way, the newer one still rebuilds.
	wide := Config{K: 40, M: 20, Blocks: 2}
	msgs := messages(13, 80, 10, 100)
	pkts := encodeAll(t, wide, msgs, 0)
	dec, _ := NewDecoder(Config{K: 2, M: 1, Blocks: 2})
	var got [][]byte
	for i, p := range pkts {
		// Each block loses message 39 and all its parity but one; the first block loses
		// message 38 too, so it cannot rebuild and holds its 39 buffers.
		if i%60 == 39 || i%60 >= 41 || i == 38 {
			continue
		}
		out, err := dec.Add(p.b, t0)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, out...)
		if dec.Buffered() > dec.BufferBound() {
			t.Fatalf("got %d bytes buffered, want at most %d", dec.Buffered(), dec.BufferBound())
		}
	}
	s := dec.Stats()
	if s.Evicted != 1 || s.Lost != 2 || s.Recovered != 1 {
		t.Fatalf("got stats %+v, want the first block evicted with 2 lost, the second's lost message recovered", s)
	}
	if n := delivered(t, msgs, got); n != 78 {
		t.Fatalf("got %d messages, want 78", n)
	}
}

func TestDecodeAllocatesNothingOnceWarm(t *testing.T) {
	cfg := Config{}
	pkts := encodeAll(t, cfg, messages(15, 8*50, 1200, 1200), 0)
	dec, _ := NewDecoder(cfg)
	// A first pass through the window: each slot makes its shard table once, and the
	// buffers the blocks need are made, then reused.
	const warm = DefaultBlocks * (DefaultK + DefaultM)
	for _, p := range pkts[:warm] {
		dec.Add(p.b, t0)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, p := range pkts[warm:] {
		dec.Add(p.b, t0)
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n != 0 {
		t.Fatalf("got %d allocations over %d packets on a clean link, want 0", n, len(pkts)-warm)
	}
}
