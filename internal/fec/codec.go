package fec

import (
	"fmt"

	"github.com/klauspost/reedsolomon"
)

const (
	// inversionCacheBudget caps the bytes of inverted matrices one codec may cache: the
	// library caches one K×K matrix per loss pattern it has rebuilt, and there are
	// Σ C(K+M, e) for e ≤ M patterns. For K=8, M=4 that is 793 patterns, 50 KB: cached.
	// For K=16, M=8 it would be millions: not cached, each rebuild inverts (K³ steps).
	inversionCacheBudget = 64 << 10
	// codecCache is how many (K, M) codecs a Decoder keeps; a peer changing its code
	// every block costs a codec construction per rebuild, not memory.
	codecCache = 4
)

// newCodec returns a Reed–Solomon codec of k data and m parity shards: systematic,
// Vandermonde-derived, so any k of its k+m shards rebuild the rest (MDS). It runs on
// the caller's goroutine: shards of a datagram are too small to split across cores.
func newCodec(k, m int) (reedsolomon.Encoder, error) {
	enc, err := reedsolomon.New(k, m,
		reedsolomon.WithMaxGoroutines(1),
		reedsolomon.WithInversionCache(inversionCacheFits(k, m)))
	if err != nil {
		return nil, fmt.Errorf("fec: codec K %d, M %d: %w", k, m, err)
	}
	return enc, nil
}

// inversionCacheFits reports whether every inverted matrix of a (k, m) codec fits
// inversionCacheBudget.
func inversionCacheFits(k, m int) bool {
	patterns, c := 0, 1 // c = C(k+m, e)
	for e := 1; e <= m; e++ {
		c = c * (k + m - e + 1) / e
		patterns += c
		if patterns*k*k > inversionCacheBudget {
			return false
		}
	}
	return true
}

// codecs is a small cache of codecs by shape, replaced round robin.
type codecs struct {
	entries [codecCache]struct {
		k, m uint8
		enc  reedsolomon.Encoder
	}
	next int
}

// get returns the codec of shape (k, m), making it if needed.
func (c *codecs) get(k, m uint8) (reedsolomon.Encoder, error) {
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
	c.next = (c.next + 1) % codecCache
	return enc, nil
}
