package fecconn

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire layout; doc.go draws it.
const (
	// Magic is the first byte of every shim packet. quic-go takes a packet whose first
	// byte has both top bits clear as non-QUIC; umbra keeps 0x01 for another use.
	Magic = 0x02
	// DataOverhead is what the shim adds to every QUIC packet it protects: Magic, the
	// kind and shard index, and the 32-bit sequence number.
	DataOverhead = dataHeaderLen
	// Overhead is the most a shim packet exceeds the longest QUIC packet of its block:
	// a parity packet's header and the 2-byte length every shard carries. The largest
	// QUIC packet must fit the path's MTU less this.
	Overhead = parityHeaderLen + lenPrefix

	dataHeaderLen   = 6 // Magic, kind|index, sequence number
	parityHeaderLen = 9 // Magic, kind|index, first sequence number, K, count, M
	lenPrefix       = 2 // each shard starts with its packet's length
	kindMask        = 0xc0
	indexMask       = 0x3f
	kindData        = 0x00
	kindParity      = 0x40
	maxUDPPayload   = 65_507
)

// Errors of shim packet decoding, wrapped with the values at fault.
var (
	// ErrTruncated means the packet ends inside its header or carries nothing.
	ErrTruncated = errors.New("fecconn: truncated packet")
	// ErrKind means the packet is a shim packet of a kind this version does not know.
	ErrKind = errors.New("fecconn: unknown packet kind")
	// ErrShape means a parity packet's K, M, count or index is out of range.
	ErrShape = errors.New("fecconn: bad block shape")
)

// dataPacket is a decoded data packet: one QUIC packet with its place in the stream.
type dataPacket struct {
	index   uint8  // place in its block, so the block starts at seq-index
	seq     uint32 // per-peer sequence number of data packets
	payload []byte // the QUIC packet
}

// parityPacket is a decoded parity packet of the block [first, first+count).
type parityPacket struct {
	index    uint8 // parity index, 0..m-1
	first    uint32
	k, count uint8 // the code's data shards; packets in the block (fewer: flushed early)
	m        uint8
	shard    []byte // lenPrefix plus the block's longest packet, in bytes
}

// putData writes a data packet's header into b, which has room for dataHeaderLen.
func putData(b []byte, index uint8, seq uint32) {
	b[0], b[1] = Magic, kindData|index
	binary.BigEndian.PutUint32(b[2:], seq)
}

// putParity writes a parity packet's header into b, which has room for
// parityHeaderLen.
func putParity(b []byte, p parityPacket) {
	b[0], b[1] = Magic, kindParity|p.index
	binary.BigEndian.PutUint32(b[2:], p.first)
	b[6], b[7], b[8] = p.k, p.count, p.m
}

// kind returns the kind bits of a shim packet, which starts with Magic and has at
// least two bytes.
func kind(pkt []byte) byte { return pkt[1] & kindMask }

// parseData decodes a data packet. The payload aliases pkt.
func parseData(pkt []byte) (dataPacket, error) {
	if len(pkt) <= dataHeaderLen {
		return dataPacket{}, fmt.Errorf("%w: data packet of %d bytes, need more than %d", ErrTruncated, len(pkt), dataHeaderLen)
	}
	if pkt[0] != Magic || kind(pkt) != kindData {
		return dataPacket{}, fmt.Errorf("%w: %#x %#x", ErrKind, pkt[0], pkt[1])
	}
	return dataPacket{
		index:   pkt[1] & indexMask,
		seq:     binary.BigEndian.Uint32(pkt[2:]),
		payload: pkt[dataHeaderLen:],
	}, nil
}

// parseParity decodes a parity packet and checks its shape. The shard aliases pkt.
func parseParity(pkt []byte) (parityPacket, error) {
	if len(pkt) <= parityHeaderLen+lenPrefix {
		return parityPacket{}, fmt.Errorf("%w: parity packet of %d bytes, need more than %d", ErrTruncated, len(pkt), parityHeaderLen+lenPrefix)
	}
	if pkt[0] != Magic || kind(pkt) != kindParity {
		return parityPacket{}, fmt.Errorf("%w: %#x %#x", ErrKind, pkt[0], pkt[1])
	}
	p := parityPacket{
		index: pkt[1] & indexMask,
		first: binary.BigEndian.Uint32(pkt[2:]),
		k:     pkt[6], count: pkt[7], m: pkt[8],
		shard: pkt[parityHeaderLen:],
	}
	switch {
	case p.k == 0 || p.m == 0 || int(p.k)+int(p.m) > MaxShards:
		return parityPacket{}, fmt.Errorf("%w: K %d, M %d", ErrShape, p.k, p.m)
	case p.count == 0 || p.count > p.k:
		return parityPacket{}, fmt.Errorf("%w: %d packets in a block of K %d", ErrShape, p.count, p.k)
	case p.index >= p.m:
		return parityPacket{}, fmt.Errorf("%w: parity index %d of M %d", ErrShape, p.index, p.m)
	}
	return p, nil
}

// isQUIC reports whether a packet may be QUIC by quic-go's own test: the fixed bit
// (0x40) of a short header, or the long-header bit (0x80).
func isQUIC(pkt []byte) bool { return len(pkt) > 0 && pkt[0]&0xc0 != 0 }

// seqAfter reports whether a comes after b in 32-bit serial number arithmetic.
func seqAfter(a, b uint32) bool { return int32(a-b) > 0 }
