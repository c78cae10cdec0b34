package fecconn

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// quicLike returns n packets of distinct lengths whose first byte passes isQUIC.
func quicLike(n int) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		p := bytes.Repeat([]byte{byte(i)}, 20+i*7%50)
		p[0] = 0x40 | byte(i%64)
		pkts[i] = p
	}
	return pkts
}

// encodeAll returns the shim packets a sender with cfg emits for pkts, sent at t0,
// with the last block flushed.
func encodeAll(t testing.TB, cfg Config, pkts [][]byte) [][]byte {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	var st counters
	s, err := newSender(cfg, &st)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	emit := func(p []byte) error { out = append(out, bytes.Clone(p)); return nil }
	for _, p := range pkts {
		if err := s.send(p, t0, emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.poll(t0.Add(cfg.FlushDelay), emit); err != nil {
		t.Fatal(err)
	}
	return out
}

// testReceiver is a receiver whose releases the test reads.
type testReceiver struct {
	*receiver
	got   [][]byte
	stats *counters
}

func newTestReceiver(t testing.TB, cfg Config) *testReceiver {
	t.Helper()
	cfg, err := cfg.normalize()
	if err != nil {
		t.Fatal(err)
	}
	tr := &testReceiver{stats: &counters{}}
	tr.receiver = newReceiver(cfg, newDecodeScratch(cfg.MaxPacket-Overhead), func(b []byte) {
		tr.got = append(tr.got, bytes.Clone(b))
	}, tr.stats)
	return tr
}

// feed gives the receiver the shim packets at the given indices of wire, at now.
func (tr *testReceiver) feed(t testing.TB, wire [][]byte, now time.Time, idx ...int) {
	t.Helper()
	for _, i := range idx {
		if err := tr.add(wire[i], now); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
}

// wantReleased checks the packets released so far are want, in order.
func (tr *testReceiver) wantReleased(t testing.TB, want ...[]byte) {
	t.Helper()
	if len(tr.got) != len(want) {
		t.Fatalf("released %d packets, want %d", len(tr.got), len(want))
	}
	for i := range want {
		if !bytes.Equal(tr.got[i], want[i]) {
			t.Fatalf("release %d: got % x, want % x", i, tr.got[i][:4], want[i][:4])
		}
	}
}

// A block of K=4, M=2 on the wire: data 0..3, parity 4..5; the next block 6..11.
var smallCode = Config{K: 4, M: 2, FlushDelay: 10 * time.Millisecond, Hold: 30 * time.Millisecond}

func TestRebuildsALostPacketAndReleasesInSequence(t *testing.T) {
	pkts := quicLike(8)
	wire := encodeAll(t, smallCode, pkts)
	if len(wire) != 12 {
		t.Fatalf("got %d shim packets for 8 packets at K=4, M=2, want 12", len(wire))
	}
	r := newTestReceiver(t, smallCode)
	r.feed(t, wire, t0, 0, 2, 3)
	r.wantReleased(t, pkts[0]) // 2 and 3 wait behind the gap at 1
	r.feed(t, wire, t0, 4)
	r.wantReleased(t, pkts[:4]...)
	r.feed(t, wire, t0, 6, 7, 8, 9, 10, 11)
	r.wantReleased(t, pkts...)
	if got := r.stats.recovered.Load(); got != 1 {
		t.Errorf("recovered %d, want 1", got)
	}
}

func TestGivesUpAGapOnceALaterBlockArrives(t *testing.T) {
	pkts := quicLike(8)
	wire := encodeAll(t, smallCode, pkts)
	r := newTestReceiver(t, smallCode)
	// Block 0 keeps only 0, 3 and one parity: 3 of the 4 it needs.
	r.feed(t, wire, t0, 0, 3, 4)
	r.wantReleased(t, pkts[0])
	r.feed(t, wire, t0, 6) // block 1's first packet: block 0 is over
	r.wantReleased(t, pkts[0], pkts[3], pkts[4])
	if got := r.stats.unrepaired.Load(); got != 2 {
		t.Errorf("unrepaired %d, want 2", got)
	}
	if !r.deadline.IsZero() {
		t.Errorf("deadline %v with nothing held, want none", r.deadline)
	}
}

func TestGivesUpAGapOnceItsBlocksParityCannotRepairIt(t *testing.T) {
	pkts := quicLike(4)
	wire := encodeAll(t, smallCode, pkts)
	r := newTestReceiver(t, smallCode)
	// 1, 3 and the first parity lost: with the last parity, 3 of the 4 needed.
	r.feed(t, wire, t0, 0, 2)
	r.wantReleased(t, pkts[0])
	r.feed(t, wire, t0, 5)
	r.wantReleased(t, pkts[0], pkts[2])
	if got := r.stats.unrepaired.Load(); got != 1 {
		t.Errorf("unrepaired %d, want 1 (packet 3 is past the last packet held)", got)
	}
	if !r.deadline.IsZero() {
		t.Errorf("deadline %v with nothing held, want none", r.deadline)
	}
}

func TestReleasesAfterTheHoldWhenTheBlockStaysOpen(t *testing.T) {
	pkts := quicLike(3)
	wire := encodeAll(t, smallCode, pkts) // a short block: 3 data, 2 parity
	r := newTestReceiver(t, smallCode)
	r.feed(t, wire, t0, 0, 2) // 1 and both parity lost, nothing after
	r.wantReleased(t, pkts[0])
	if want := t0.Add(smallCode.Hold); !r.deadline.Equal(want) {
		t.Fatalf("deadline %v, want %v", r.deadline, want)
	}
	r.tick(t0.Add(smallCode.Hold - time.Millisecond))
	r.wantReleased(t, pkts[0])
	r.tick(t0.Add(smallCode.Hold))
	r.wantReleased(t, pkts[0], pkts[2])
}

func TestUnorderedReleasesOnArrival(t *testing.T) {
	pkts := quicLike(4)
	wire := encodeAll(t, smallCode, pkts)
	cfg := smallCode
	cfg.Unordered = true
	r := newTestReceiver(t, cfg)
	r.feed(t, wire, t0, 0, 2, 3)
	r.wantReleased(t, pkts[0], pkts[2], pkts[3])
	r.feed(t, wire, t0, 4)
	r.wantReleased(t, pkts[0], pkts[2], pkts[3], pkts[1])
}

func TestDuplicatesAreIgnoredAndLatePacketsReleasedOnce(t *testing.T) {
	pkts := quicLike(8)
	wire := encodeAll(t, smallCode, pkts)
	r := newTestReceiver(t, smallCode)
	r.feed(t, wire, t0, 0, 0, 2, 3, 6) // 1 lost, parity lost, block 1 begins
	r.wantReleased(t, pkts[0], pkts[2], pkts[3], pkts[4])
	r.feed(t, wire, t0, 1, 1, 2) // 1 late, then twice more
	r.wantReleased(t, pkts[0], pkts[2], pkts[3], pkts[4], pkts[1])
	if d, l := r.stats.duplicates.Load(), r.stats.late.Load(); d != 3 || l != 1 {
		t.Errorf("duplicates %d, late %d; want 3, 1", d, l)
	}
}

func TestTheHoldBufferIsBoundedByTheWindow(t *testing.T) {
	cfg := Config{K: 63, M: 1}
	pkts := quicLike(2 * window)
	wire := encodeAll(t, cfg, pkts)
	r := newTestReceiver(t, cfg)
	// Lose packet 0 and feed the rest of its block: all wait behind it.
	for _, w := range wire[1:63] {
		r.feed(t, [][]byte{w}, t0, 0)
	}
	if r.held != 62 || len(r.got) != 0 {
		t.Fatalf("held %d, released %d; want 62 held, none released", r.held, len(r.got))
	}
	// A forged far-ahead packet, within maxJump: the window moves, releasing in order.
	far := bytes.Clone(wire[1])
	putData(far, 0, r.next+window+10)
	r.feed(t, [][]byte{far}, t0, 0)
	if r.held > window {
		t.Fatalf("held %d, want at most %d", r.held, window)
	}
	r.wantReleased(t, append(pkts[1:63:63], wire[1][dataHeaderLen:])...)
}

func TestAPeerThatRestartsItsNumberingIsFollowed(t *testing.T) {
	pkts := quicLike(4)
	r := newTestReceiver(t, smallCode)
	r.feed(t, encodeAll(t, smallCode, pkts), t0, 0)
	// A new sender starts at another random sequence number.
	var restarted [][]byte
	for i := range resyncAfter + 4 {
		w := encodeAll(t, Config{K: 1, M: 1}, [][]byte{pkts[i%4]})
		putData(w[0], 0, r.next+1<<30+uint32(i))
		restarted = append(restarted, w[0])
	}
	r.feed(t, restarted, t0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
	if got := r.stats.resyncs.Load(); got != 1 {
		t.Fatalf("resyncs %d, want 1", got)
	}
	// The packet that made the run agree and those after it are released.
	if want := 1 + 5; len(r.got) != want {
		t.Errorf("released %d packets, want %d", len(r.got), want)
	}
}

func TestForgedParityRebuildsNothingThatFailsItsChecks(t *testing.T) {
	pkts := quicLike(4)
	wire := encodeAll(t, smallCode, pkts)
	r := newTestReceiver(t, smallCode)
	forged := bytes.Clone(wire[4])
	for i := parityHeaderLen; i < len(forged); i++ {
		forged[i] ^= 0x5a
	}
	r.feed(t, [][]byte{forged}, t0, 0)
	r.feed(t, wire, t0, 0, 2, 3)
	// Packet 1 rebuilt from forged parity: refused by its length, padding or first
	// byte, or released corrupt (QUIC's AEAD rejects it; see the QUIC test).
	rebuilt, corrupt := r.stats.recovered.Load(), r.stats.corrupt.Load()
	if rebuilt+corrupt != 1 {
		t.Fatalf("rebuilt %d, refused %d; want one of the two", rebuilt, corrupt)
	}
	for _, g := range r.got[1:] {
		if bytes.Equal(g, pkts[1]) {
			t.Fatal("forged parity rebuilt the true packet")
		}
	}
}

func TestMalformedPacketsAreRefused(t *testing.T) {
	wire := encodeAll(t, smallCode, quicLike(4))
	cases := map[string][]byte{
		"empty-after-magic":   {Magic},
		"data-header-only":    wire[0][:dataHeaderLen],
		"parity-header-only":  wire[4][:parityHeaderLen+lenPrefix],
		"unknown-kind":        {Magic, 0xc0, 1, 2, 3, 4, 5, 6, 7},
		"parity-k-zero":       withByte(wire[4], 6, 0),
		"parity-m-zero":       withByte(wire[4], 8, 0),
		"parity-count-over-k": withByte(wire[4], 7, 5),
		"parity-index-over-m": withByte(wire[4], 1, kindParity|3),
		"parity-k-plus-m-65":  withByte(withByte(wire[4], 6, 63), 8, 2),
		"data-too-long":       append(bytes.Clone(wire[0]), make([]byte, DefaultMaxPacket)...),
	}
	for name, pkt := range cases {
		t.Run(name, func(t *testing.T) {
			r := newTestReceiver(t, smallCode)
			if err := r.add(pkt, t0); err == nil {
				t.Fatalf("add % x: got no error, want one", pkt[:min(len(pkt), 10)])
			}
			if len(r.got) != 0 || r.held != 0 {
				t.Fatalf("released %d, held %d after a refused packet, want nothing", len(r.got), r.held)
			}
		})
	}
}

func withByte(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

func TestShortBlocksPayParityInProportion(t *testing.T) {
	for _, tc := range []struct{ k, m, n, want int }{
		{8, 4, 8, 4}, {8, 4, 5, 3}, {8, 4, 2, 1}, {8, 4, 1, 1}, {16, 8, 3, 2}, {8, 6, 1, 1},
	} {
		t.Run(fmt.Sprintf("K%d-M%d-n%d", tc.k, tc.m, tc.n), func(t *testing.T) {
			wire := encodeAll(t, Config{K: tc.k, M: tc.m}, quicLike(tc.n))
			if got := len(wire) - tc.n; got != tc.want {
				t.Fatalf("got %d parity packets, want %d", got, tc.want)
			}
		})
	}
}
