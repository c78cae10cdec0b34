package fec

import (
	"fmt"
	"time"

	"github.com/klauspost/reedsolomon"
)

// EncoderStats counts what an Encoder has sent since it was made.
type EncoderStats struct {
	// Messages counts data packets: one per message.
	Messages uint64
	// Parity counts parity packets.
	Parity uint64
	// Blocks counts blocks closed, full or not.
	Blocks uint64
	// Flushed counts blocks closed by the flush delay (Poll, Flush, or an Add past the
	// deadline) with fewer than K messages.
	Flushed uint64
}

// Encoder protects one flow direction: it sends each message at once as a data packet,
// and after K messages, or when the flush delay has passed since the block's first (or
// the idle flush since its latest), the block's M parity packets (fewer for a short
// block with Config.Proportional). The packets it returns live in buffers it reuses:
// valid until the next call. It allocates nothing after the first blocks, and is not
// safe for concurrent use: the goroutine that sends a direction owns its Encoder.
type Encoder struct {
	cfg   Config
	codec reedsolomon.Encoder

	block   uint16    // ID of the open block
	n       int       // messages in the open block
	opened  time.Time // when the open block got its first message
	last    time.Time // when the open block got its latest message
	longest int       // longest message in the open block

	data   [][]byte    // K buffers: header, message, padding (HeaderLen + MaxMessage + 1)
	lens   []int       // message length in each data buffer
	parity [2][][]byte // two sets of M buffers, alternating by block: header and shard
	set    int         // parity set of the open block
	shards [][]byte    // K+M shard views handed to the codec
	zero   []byte      // MaxMessage+1 zeros: the absent messages of a short block
	out    [][]byte    // packets returned by the current call
	stats  EncoderStats
}

// NewEncoder returns an Encoder for cfg.
func NewEncoder(cfg Config) (*Encoder, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	codec, err := newCodec(cfg.K, cfg.M)
	if err != nil {
		return nil, err
	}
	stride := cfg.MaxMessage + 1
	e := &Encoder{
		cfg:    cfg,
		codec:  codec,
		data:   make([][]byte, cfg.K),
		lens:   make([]int, cfg.K),
		shards: make([][]byte, cfg.K+cfg.M),
		zero:   make([]byte, stride),
		out:    make([][]byte, 0, 2*cfg.M+1),
	}
	for i := range e.data {
		e.data[i] = make([]byte, HeaderLen+stride)
	}
	for s := range e.parity {
		e.parity[s] = make([][]byte, cfg.M)
		for j := range e.parity[s] {
			e.parity[s][j] = make([]byte, parityHeaderLen+stride)
		}
	}
	return e, nil
}

// Add sends msg: it returns the packets to send now, in order. The first is msg's data
// packet, unless the open block's flush delay had passed at now, in which case that
// block's parity comes first; the block msg completes adds its parity after. A message
// longer than MaxMessage is refused with ErrTooLarge and changes nothing.
func (e *Encoder) Add(msg []byte, now time.Time) ([][]byte, error) {
	if len(msg) > e.cfg.MaxMessage {
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge, len(msg), e.cfg.MaxMessage)
	}
	e.out = e.out[:0]
	if e.due(now) {
		e.close()
	}
	if e.n == 0 {
		e.opened = now
	}
	e.last = now
	i := e.n
	h := header{block: e.block, index: uint8(i), k: uint8(e.cfg.K), m: uint8(e.cfg.M)}
	pkt := e.data[i][:HeaderLen+len(msg)]
	h.put(pkt)
	copy(pkt[HeaderLen:], msg)
	e.lens[i] = len(msg)
	e.longest = max(e.longest, len(msg))
	e.n++
	e.stats.Messages++
	// Capped, so a caller appending to the packet cannot reach the padding.
	e.out = append(e.out, pkt[:len(pkt):len(pkt)])
	if e.n == e.cfg.K {
		e.close()
	}
	return e.out, nil
}

// Poll returns the open block's parity packets if its flush delay has passed at now,
// and nothing otherwise. Call it at Deadline.
func (e *Encoder) Poll(now time.Time) [][]byte {
	e.out = e.out[:0]
	if e.due(now) {
		e.close()
	}
	return e.out
}

// due reports whether the open block must close at now: its flush delay has passed
// since its first message, or its idle flush since its latest.
func (e *Encoder) due(now time.Time) bool {
	if e.n == 0 {
		return false
	}
	d, _ := e.Deadline()
	return !now.Before(d)
}

// Flush returns the open block's parity packets now, whatever its deadline; nothing if
// no block is open. Call it before a flow falls silent, e.g. when it ends.
func (e *Encoder) Flush() [][]byte {
	e.out = e.out[:0]
	if e.n > 0 {
		e.close()
	}
	return e.out
}

// Deadline returns when the open block must be flushed with Poll, and false if no
// block is open.
func (e *Encoder) Deadline() (time.Time, bool) {
	if e.n == 0 {
		return time.Time{}, false
	}
	d := e.opened.Add(e.cfg.FlushDelay)
	if e.cfg.IdleFlush > 0 {
		if idle := e.last.Add(e.cfg.IdleFlush); idle.Before(d) {
			d = idle
		}
	}
	return d, true
}

// parityFor is how many parity packets a block of n messages sends: M, or with
// Config.Proportional ⌈n·M/K⌉ and at least min(M, 2).
func (e *Encoder) parityFor(n int) int {
	if !e.cfg.Proportional || n >= e.cfg.K {
		return e.cfg.M
	}
	p := (n*e.cfg.M + e.cfg.K - 1) / e.cfg.K
	return min(e.cfg.M, max(p, 2))
}

// Stats returns the counters so far.
func (e *Encoder) Stats() EncoderStats { return e.stats }

// close computes the open block's parity, appends its packets to e.out and starts the
// next block. Each shard is its message, the padding marker and zeros up to one byte
// past the block's longest message; a short block's missing messages are all zeros,
// which the decoder knows without being sent them.
func (e *Encoder) close() {
	size := e.longest + 1
	for i := range e.cfg.K {
		if i >= e.n {
			e.shards[i] = e.zero[:size]
			continue
		}
		shard := e.data[i][HeaderLen : HeaderLen+size]
		shard[e.lens[i]] = paddingMarker
		clear(shard[e.lens[i]+1:])
		e.shards[i] = shard
	}
	parity := e.parity[e.set]
	for j := range e.cfg.M {
		h := header{block: e.block, index: uint8(e.cfg.K + j), k: uint8(e.cfg.K), m: uint8(e.cfg.M), count: uint8(e.n)}
		pkt := parity[j][:parityHeaderLen+size]
		h.put(pkt)
		e.shards[e.cfg.K+j] = pkt[parityHeaderLen:]
	}
	// Cannot fail: K+M shards, all of size ≥ 1, the codec's own shape.
	if err := e.codec.Encode(e.shards); err != nil {
		panic(fmt.Sprintf("fec: encode: %v", err))
	}
	// With Proportional a short block sends only its first parity shards: any K of the
	// K+M shards rebuild the block, and its absent messages are known.
	sent := e.parityFor(e.n)
	for j := range sent {
		pkt := parity[j][:parityHeaderLen+size]
		e.out = append(e.out, pkt[:len(pkt):len(pkt)])
	}
	e.stats.Parity += uint64(sent)
	e.stats.Blocks++
	if e.n < e.cfg.K {
		e.stats.Flushed++
	}
	e.block++
	e.n, e.longest = 0, 0
	e.set ^= 1
}

// Reshape changes the code of the blocks to come to k messages and m parity packets
// (as Config.K and Config.M), so a sender can follow a loss rate that changes. It
// closes the open block first and returns its parity packets, as Flush does; block IDs
// run on, so the peer's Decoder, which reads each block's shape from its packets,
// needs no word of it. A shape Config would refuse is refused with ErrConfig and
// changes nothing.
func (e *Encoder) Reshape(k, m int) ([][]byte, error) {
	cfg := e.cfg
	cfg.K, cfg.M = k, m
	if _, err := cfg.normalize(); err != nil || k == 0 || m == 0 {
		return nil, fmt.Errorf("%w: K %d, M %d", ErrConfig, k, m)
	}
	out := e.Flush()
	if k == e.cfg.K && m == e.cfg.M {
		return out, nil
	}
	codec, err := newCodec(k, m)
	if err != nil {
		return nil, err
	}
	stride := e.cfg.MaxMessage + 1
	for len(e.data) < k {
		e.data = append(e.data, make([]byte, HeaderLen+stride))
	}
	for s := range e.parity {
		for len(e.parity[s]) < m {
			e.parity[s] = append(e.parity[s], make([]byte, parityHeaderLen+stride))
		}
	}
	if len(e.lens) < k {
		e.lens = make([]int, k)
	}
	if len(e.shards) < k+m {
		e.shards = make([][]byte, k+m)
	}
	e.shards = e.shards[:k+m]
	e.cfg.K, e.cfg.M, e.codec = k, m, codec
	return out, nil
}

// Pending returns how many messages the open block holds: 0 right after a block closed.
func (e *Encoder) Pending() int { return e.n }
