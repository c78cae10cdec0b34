package fecconn

import (
	"fmt"

	"github.com/klauspost/reedsolomon"
)

// newCodec returns a Reed–Solomon codec of k data and m parity shards: systematic and
// MDS, so any k of its k+m shards rebuild the rest. It runs on the caller's goroutine
// (shards of a QUIC packet are too small to split) and caches no inverted matrices:
// inverting a matrix of at most 63×63 costs less than a packet's trip through the
// kernel, and a cache per peer would grow with every loss pattern.
func newCodec(k, m int) (reedsolomon.Encoder, error) {
	enc, err := reedsolomon.New(k, m, reedsolomon.WithMaxGoroutines(1), reedsolomon.WithInversionCache(false))
	if err != nil {
		return nil, fmt.Errorf("fecconn: codec K %d, M %d: %w", k, m, err)
	}
	return enc, nil
}

// codecCacheSize is how many codec shapes a Conn keeps for rebuilding: a peer's
// short blocks use fewer parity packets, so up to M shapes per K. A peer changing its
// code every block costs a construction per rebuild, not memory.
const codecCacheSize = 8

// codecCache holds a Conn's rebuilding codecs by shape, replaced round robin.
type codecCache struct {
	entries [codecCacheSize]struct {
		k, m uint8
		enc  reedsolomon.Encoder
	}
	next int
}

// get returns the codec of shape (k, m), making it if needed.
func (c *codecCache) get(k, m uint8) (reedsolomon.Encoder, error) {
	for _, e := range c.entries {
		if e.enc != nil && e.k == k && e.m == m {
			return e.enc, nil
		}
	}
	enc, err := newCodec(int(k), int(m))
	if err != nil {
		return nil, err
	}
	e := &c.entries[c.next]
	e.k, e.m, e.enc = k, m, enc
	c.next = (c.next + 1) % codecCacheSize
	return enc, nil
}
