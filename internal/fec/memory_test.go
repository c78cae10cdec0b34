package fec

import (
	"encoding/binary"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// Shape of the hostile stream in TestHostileHeadersStayWithinTheBound.
const (
	hostilePackets = 10_000
	// hostileSlack is the Decoder's memory outside its shard buffers: block table,
	// zeros, codec cache (a 64-shard codec's tables are some KB), and what the runtime
	// keeps around a GC.
	hostileSlack = 512 << 10
)

// hostile returns packet i of a stream an attacker controlling the headers might send.
// Blocks sit near a slowly advancing front, within the window, so each gathers many
// shards (a block ID far ahead would only make the rest look stale: FuzzDecoder covers
// that). Even blocks are the widest there is, K=63, M=1, and get only data, the longest
// allowed, so they never complete and hold as many buffers as they can; odd blocks
// change shape packet by packet, churning the codec cache and making the Decoder
// rebuild garbage from parity. One packet in 16 is longer than allowed.
func hostile(rng *rand.Rand, i, maxMessage int) []byte {
	h := header{block: uint16(i/64 + rng.IntN(24))}
	var body int
	switch k := 1 + rng.IntN(MaxShards-1); {
	case h.block%2 == 0:
		h.k, h.m, h.index = MaxShards-1, 1, uint8(rng.IntN(MaxShards-1))
		body = maxMessage
	case rng.IntN(2) == 0:
		h.k, h.m, h.index = uint8(k), uint8(1+rng.IntN(MaxShards-k)), uint8(rng.IntN(k))
		body = rng.IntN(maxMessage + 1)
	default:
		h.k, h.m = uint8(k), uint8(1+rng.IntN(MaxShards-k))
		h.index = h.k + uint8(rng.IntN(int(h.m)))
		h.count = uint8(1 + rng.IntN(k))
		body = 1 + rng.IntN(maxMessage+1)
	}
	if rng.IntN(16) == 0 {
		body += maxMessage + 1 + rng.IntN(1<<16) // refused before anything is kept
	}
	pkt := make([]byte, h.len()+body)
	h.put(pkt)
	for i := h.len(); i+8 <= len(pkt); i += 8 {
		binary.LittleEndian.PutUint64(pkt[i:], rng.Uint64())
	}
	return pkt
}

func TestHostileHeadersStayWithinTheBound(t *testing.T) {
	cfg := Config{} // the decoder expects K=8, M=2; the attacker sends up to 64 shards a block
	dec, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 12))
	pkts := make([][]byte, hostilePackets)
	for i := range pkts {
		pkts[i] = hostile(rng, i, DefaultMaxMessage)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	deadline := time.Now().Add(time.Minute)
	for i := range hostilePackets {
		if time.Now().After(deadline) {
			t.Fatalf("got %d packets through in a minute, want %d: the decoder is too slow on hostile input", i, hostilePackets)
		}
		dec.Add(pkts[i], t0.Add(time.Duration(i)*time.Microsecond))
		if dec.Buffered() > dec.BufferBound() {
			t.Fatalf("packet %d: got %d bytes of buffers, want at most %d", i, dec.Buffered(), dec.BufferBound())
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(dec)
	runtime.KeepAlive(pkts)

	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	bound := int64(dec.BufferBound() + hostileSlack)
	t.Logf("heap grew %d KiB over %d hostile packets; buffer bound %d KiB; stats %+v",
		grown>>10, hostilePackets, dec.BufferBound()>>10, dec.Stats())
	if grown > bound {
		t.Fatalf("got the heap %d KiB larger, want at most %d KiB (buffer bound + slack)", grown>>10, bound>>10)
	}
	if s := dec.Stats(); s.Malformed == 0 || s.Evicted == 0 {
		t.Fatalf("got stats %+v, want refused packets and evicted blocks: the stream did not attack", s)
	}
}
