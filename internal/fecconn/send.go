package fecconn

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/klauspost/reedsolomon"
)

// sender protects the packets sent to one peer: each goes out at once as a data
// packet, and after K of them, or FlushDelay after the block's first, the block's M
// parity packets follow. It is not safe for concurrent use; the peer's send lock
// guards it.
type sender struct {
	k, m       int
	flushDelay time.Duration
	maxPayload int                   // longest QUIC packet it protects
	codecs     []reedsolomon.Encoder // by parity count 1..m, made as needed

	seq     uint32    // sequence number of the next data packet
	first   uint32    // sequence number of the open block's first packet
	n       int       // packets in the open block
	longest int       // longest packet in the open block
	opened  time.Time // when the open block got its first packet

	shards [][]byte // k: data shards (length prefix, packet, zeros)
	views  [][]byte // k+m shard views handed to the codec
	parity [][]byte // m buffers: parity header, then the shard the codec fills
	zero   []byte   // the absent packets of a short block
	wire   []byte   // the data packet being sent: header and packet
	stats  *counters
}

// emitFunc sends one shim packet to the peer.
type emitFunc func(pkt []byte) error

func newSender(cfg Config, stats *counters) (*sender, error) {
	maxPayload := cfg.MaxPacket - Overhead
	shard := lenPrefix + maxPayload
	s := &sender{
		k: cfg.K, m: cfg.M, flushDelay: cfg.FlushDelay, maxPayload: maxPayload,
		codecs: make([]reedsolomon.Encoder, cfg.M+1),
		// A random start, so a restarted sender is unlikely to fall in the window its
		// peer's receiver still tracks.
		seq:    rand.Uint32(),
		shards: make([][]byte, cfg.K),
		views:  make([][]byte, cfg.K+cfg.M),
		parity: make([][]byte, cfg.M),
		zero:   make([]byte, shard),
		wire:   make([]byte, dataHeaderLen+maxPayload),
		stats:  stats,
	}
	for i := range cfg.K {
		s.shards[i] = make([]byte, shard)
	}
	for j := range s.parity {
		s.parity[j] = make([]byte, parityHeaderLen+shard)
	}
	return s, nil
}

// send protects one QUIC packet of at most maxPayload bytes: it emits its data packet
// and, if the packet fills the block, the block's parity. A block whose flush delay
// had passed at now is closed first.
func (s *sender) send(pkt []byte, now time.Time, emit emitFunc) error {
	if s.n > 0 && !now.Before(s.opened.Add(s.flushDelay)) {
		if err := s.close(emit); err != nil {
			return err
		}
	}
	if s.n == 0 {
		s.first, s.opened = s.seq, now
	}
	i := s.n
	putData(s.wire, uint8(i), s.seq)
	n := copy(s.wire[dataHeaderLen:], pkt)
	shard := s.shards[i]
	binary.BigEndian.PutUint16(shard, uint16(n))
	copy(shard[lenPrefix:], pkt)
	s.longest = max(s.longest, n)
	s.n++
	s.seq++
	s.stats.dataSent.Add(1)
	if err := emit(s.wire[:dataHeaderLen+n]); err != nil {
		return err
	}
	if s.n == s.k {
		return s.close(emit)
	}
	return nil
}

// deadline returns when the open block must be closed, and false if none is open.
func (s *sender) deadline() (time.Time, bool) {
	if s.n == 0 {
		return time.Time{}, false
	}
	return s.opened.Add(s.flushDelay), true
}

// poll closes the open block if its flush delay has passed at now.
func (s *sender) poll(now time.Time, emit emitFunc) error {
	if s.n > 0 && !now.Before(s.opened.Add(s.flushDelay)) {
		return s.close(emit)
	}
	return nil
}

// parityFor is the number of parity packets of a block of n packets: M for a full
// block, and for one the flush delay closed early the same share, rounded up, so a
// sender pacing fewer than K packets per flush delay pays M/K and not more.
func (s *sender) parityFor(n int) int { return max(1, (n*s.m+s.k-1)/s.k) }

// close computes the open block's parity, emits it and starts a new block. Every
// shard is the packet's length, the packet and zeros up to the longest packet's
// shard; a short block's absent packets are all zeros, known to both ends.
func (s *sender) close(emit emitFunc) error {
	size := lenPrefix + s.longest
	m := s.parityFor(s.n)
	if s.codecs[m] == nil {
		codec, err := newCodec(s.k, m)
		if err != nil {
			return err
		}
		s.codecs[m] = codec
	}
	views := s.views[:s.k+m]
	for i := range s.k {
		if i >= s.n {
			views[i] = s.zero[:size]
			continue
		}
		sh := s.shards[i][:size]
		clear(sh[lenPrefix+int(binary.BigEndian.Uint16(sh)):])
		views[i] = sh
	}
	for j := range m {
		views[s.k+j] = s.parity[j][parityHeaderLen : parityHeaderLen+size]
	}
	n := s.n
	first := s.first
	s.n, s.longest = 0, 0
	// Cannot fail: k+m shards of one size ≥ 1, the codec's own shape.
	if err := s.codecs[m].Encode(views); err != nil {
		return fmt.Errorf("fecconn: encode: %w", err)
	}
	s.stats.blocksSent.Add(1)
	if n < s.k {
		s.stats.blocksFlushed.Add(1)
	}
	var firstErr error
	for j := range m {
		pkt := s.parity[j][:parityHeaderLen+size]
		putParity(pkt, parityPacket{index: uint8(j), first: first, k: uint8(s.k), count: uint8(n), m: uint8(m)})
		s.stats.paritySent.Add(1)
		if err := emit(pkt); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
