package fec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Header layout; doc.go draws it.
const (
	// HeaderLen is the header of a data packet: block ID (2 bytes), shard index, K, M.
	HeaderLen = 5
	// parityHeaderLen is the header of a parity packet: HeaderLen and the block's
	// message count.
	parityHeaderLen = HeaderLen + 1
	// PacketOverhead is the most a packet exceeds the longest message of its block: a
	// parity packet carries a 6-byte header and a shard one byte longer than that
	// message (the padding marker). Callers that size messages to fit a datagram
	// reserve it.
	PacketOverhead = parityHeaderLen + 1
	// paddingMarker ends every message inside its shard; zeros follow it up to the
	// shard size (ISO/IEC 7816-4 padding), so a rebuilt shard gives its message length.
	paddingMarker = 0x80
)

// Errors of packet decoding, wrapped with the values at fault; test with errors.Is.
var (
	// ErrTruncated means the packet ends inside its header.
	ErrTruncated = errors.New("fec: truncated header")
	// ErrShape means K or M is out of range: K ≥ 1, M ≥ 1, K+M ≤ MaxShards.
	ErrShape = errors.New("fec: bad block shape")
	// ErrIndex means the shard index is not below K+M, or a parity packet's message
	// count is 0 or above K, or a data index is not below that count.
	ErrIndex = errors.New("fec: shard index out of range")
	// ErrLength means a message or parity shard is longer than MaxMessage allows, or a
	// parity shard is empty or too short for a message of its block.
	ErrLength = errors.New("fec: bad length")
	// ErrInconsistent means a packet disagrees with earlier packets of its block: K, M,
	// message count or parity shard size changed.
	ErrInconsistent = errors.New("fec: packet inconsistent with its block")
	// ErrCorrupt means a rebuilt message lacks its padding marker: the block's parity
	// does not match its data, so nothing rebuilt from it is delivered.
	ErrCorrupt = errors.New("fec: rebuilt shard corrupt")
	// ErrTooLarge means a message given to an Encoder exceeds MaxMessage.
	ErrTooLarge = errors.New("fec: message too large")
)

// header is the decoded header of one packet.
type header struct {
	block uint16
	index uint8 // data 0..k-1, parity k..k+m-1
	k, m  uint8
	count uint8 // parity only: messages in the block, 1..k
}

func (h header) parity() bool { return h.index >= h.k }

// len is the header's encoded length.
func (h header) len() int {
	if h.parity() {
		return parityHeaderLen
	}
	return HeaderLen
}

// put writes h at the start of b, which has room for h.len() bytes.
func (h header) put(b []byte) {
	binary.BigEndian.PutUint16(b, h.block)
	b[2], b[3], b[4] = h.index, h.k, h.m
	if h.parity() {
		b[5] = h.count
	}
}

// parseHeader decodes the header of pkt and returns it with the body after it: a data
// packet's message, or a parity packet's shard. It checks the header alone; lengths
// against a Config, and agreement within a block, are the Decoder's to check.
func parseHeader(pkt []byte) (header, []byte, error) {
	if len(pkt) < HeaderLen {
		return header{}, nil, fmt.Errorf("%w: %d bytes, need %d", ErrTruncated, len(pkt), HeaderLen)
	}
	h := header{block: binary.BigEndian.Uint16(pkt), index: pkt[2], k: pkt[3], m: pkt[4]}
	if h.k == 0 || h.m == 0 || int(h.k)+int(h.m) > MaxShards {
		return header{}, nil, fmt.Errorf("%w: K %d, M %d", ErrShape, h.k, h.m)
	}
	if int(h.index) >= int(h.k)+int(h.m) {
		return header{}, nil, fmt.Errorf("%w: index %d of %d shards", ErrIndex, h.index, int(h.k)+int(h.m))
	}
	if !h.parity() {
		return h, pkt[HeaderLen:], nil
	}
	if len(pkt) < parityHeaderLen {
		return header{}, nil, fmt.Errorf("%w: parity packet of %d bytes, need %d", ErrTruncated, len(pkt), parityHeaderLen)
	}
	h.count = pkt[HeaderLen]
	if h.count == 0 || h.count > h.k {
		return header{}, nil, fmt.Errorf("%w: block of %d messages, want 1 to K %d", ErrIndex, h.count, h.k)
	}
	body := pkt[parityHeaderLen:]
	if len(body) == 0 {
		return header{}, nil, fmt.Errorf("%w: empty parity shard", ErrLength)
	}
	return h, body, nil
}
