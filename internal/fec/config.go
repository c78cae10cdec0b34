package fec

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// Defaults of Config; doc.go explains how they were chosen.
const (
	// DefaultK is the number of data shards (messages) per block.
	DefaultK = 8
	// DefaultM is the number of parity shards per block: 25 % more packets, and a block
	// survives any 2 losses among its 10 packets (99.6 % delivery at 5 % random loss).
	DefaultM = 2
	// DefaultFlushDelay is the longest a block stays open waiting for K messages before
	// its parity is sent, so sparse telemetry is protected within 20 ms.
	DefaultFlushDelay = 20 * time.Millisecond
	// DefaultExpiry is how long a decoder waits for a block's missing shards, counted
	// from its first packet; the same bound as a UDP circuit's reassembly deadline.
	DefaultExpiry = 500 * time.Millisecond
	// DefaultBlocks is how many blocks a decoder tracks at once.
	DefaultBlocks = 32
	// DefaultMaxMessage is the longest message an encoder takes and a decoder accepts:
	// more than any QUIC datagram payload on a 1,500-byte MTU path.
	DefaultMaxMessage = 1400

	// MaxShards caps K+M, so one block's shards fit a 64-bit mask.
	MaxShards = 64
	// MaxBlocks caps Config.Blocks: block IDs are 16 bits, compared by serial number
	// arithmetic (RFC 1982), which needs the window far below 32,768.
	MaxBlocks = 1024
	// MaxMessageLimit caps Config.MaxMessage: the largest UDP payload over IPv4.
	MaxMessageLimit = 65_507
)

// ErrConfig means a Config field is out of range.
var ErrConfig = errors.New("fec: bad config")

// Config sets the code of one flow direction. Give the Encoder and the Decoder of a
// direction the same Config: K and M travel in every packet, so a Decoder follows
// whatever code its peer uses, but its memory bound is computed from its own K and M.
// The zero value means every default.
type Config struct {
	// K is the number of messages per block, 1 to MaxShards-1. A block survives the
	// loss of any M of its K+M packets. Zero means DefaultK.
	K int
	// M is the number of parity packets per block, 1 to MaxShards-K. Zero means
	// DefaultM.
	M int
	// FlushDelay is how long an Encoder keeps a block open for more messages after its
	// first one; then it sends the block's parity with however few messages it holds.
	// It bounds how late a recovered message can be. Zero means DefaultFlushDelay.
	FlushDelay time.Duration
	// IdleFlush, when set, also closes a block once no message has come for this long:
	// the burst that filled it (a video frame's packets, which an encoder sends back to
	// back) has ended, so its parity goes out a moment after the frame instead of
	// FlushDelay after its start, and the next frame starts a block of its own. It
	// must be under FlushDelay. Zero: blocks close only when full or at FlushDelay.
	IdleFlush time.Duration
	// Proportional, when set, makes a block closed short (by FlushDelay or IdleFlush)
	// send parity in proportion to the messages it holds, ⌈n·M/K⌉ and at least
	// min(M, 2), instead of all M: a frame of 5 packets in K=16, M=8 blocks costs 3
	// parity packets, not 8. The Decoder needs no setting for it: it rebuilds a block
	// from any K of its shards, the absent messages of a short block counting as known.
	Proportional bool
	// Expiry is how long a Decoder keeps a block open for its missing packets, counted
	// from the block's first packet; it must exceed FlushDelay. Zero means
	// DefaultExpiry.
	Expiry time.Duration
	// Blocks is how many blocks a Decoder tracks at once, rounded up to a power of two,
	// at most MaxBlocks: packets of blocks older than the newest minus Blocks are
	// dropped, and the Decoder buffers at most Blocks×(K+M) shards (at least
	// MaxShards). Zero means DefaultBlocks.
	Blocks int
	// MaxMessage is the longest message, in bytes, at most MaxMessageLimit. Packets are
	// up to PacketOverhead bytes longer. Zero means DefaultMaxMessage.
	MaxMessage int
}

// Overhead is the parity a full block adds per message sent, M/K: 0.25 for the
// defaults. A block the flush delay closes early costs more: M parity packets for fewer
// than K messages. Every packet also carries a header (HeaderLen, PacketOverhead).
// It is 0 for a Config that NewEncoder would refuse.
func (c Config) Overhead() float64 {
	c, err := c.normalize()
	if err != nil {
		return 0
	}
	return float64(c.M) / float64(c.K)
}

// normalize fills defaults, checks ranges and rounds Blocks up to a power of two.
func (c Config) normalize() (Config, error) {
	if c.K == 0 {
		c.K = DefaultK
	}
	if c.M == 0 {
		c.M = DefaultM
	}
	if c.FlushDelay == 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.Expiry == 0 {
		c.Expiry = DefaultExpiry
	}
	if c.Blocks == 0 {
		c.Blocks = DefaultBlocks
	}
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	switch {
	case c.K < 1 || c.K > MaxShards-1:
		return c, fmt.Errorf("%w: K %d, want 1 to %d", ErrConfig, c.K, MaxShards-1)
	case c.M < 1 || c.K+c.M > MaxShards:
		return c, fmt.Errorf("%w: M %d, want 1 to %d with K %d", ErrConfig, c.M, MaxShards-c.K, c.K)
	case c.FlushDelay < 0:
		return c, fmt.Errorf("%w: flush delay %v is negative", ErrConfig, c.FlushDelay)
	case c.IdleFlush < 0 || c.IdleFlush >= c.FlushDelay && c.IdleFlush > 0:
		return c, fmt.Errorf("%w: idle flush %v, want 0 or under the flush delay %v", ErrConfig, c.IdleFlush, c.FlushDelay)
	case c.Expiry <= c.FlushDelay:
		return c, fmt.Errorf("%w: expiry %v, want more than the flush delay %v", ErrConfig, c.Expiry, c.FlushDelay)
	case c.Blocks < 1 || c.Blocks > MaxBlocks:
		return c, fmt.Errorf("%w: blocks %d, want 1 to %d", ErrConfig, c.Blocks, MaxBlocks)
	case c.MaxMessage < 1 || c.MaxMessage > MaxMessageLimit:
		return c, fmt.Errorf("%w: max message %d, want 1 to %d", ErrConfig, c.MaxMessage, MaxMessageLimit)
	}
	c.Blocks = 1 << bits.Len(uint(c.Blocks-1))
	return c, nil
}
