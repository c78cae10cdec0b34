package fecconn

import (
	"cmp"
	"errors"
	"fmt"
	"time"
)

// Defaults of Config; doc.go explains how they were chosen.
const (
	// DefaultK is the number of QUIC packets per block.
	DefaultK = 8
	// DefaultM is the number of parity packets per block: 50 % more packets, and a
	// block survives any 4 losses among its 12 (99.8 % of packets at 10 % loss).
	DefaultM = 4
	// DefaultFlushDelay is the longest a block waits for K packets before its parity
	// is sent, so a slow sender (ACKs, telemetry, keepalives) is protected within it.
	// quic-go paces a 10 Mbit/s flow at about a packet a millisecond, so 20 ms lets
	// its blocks fill; 5 ms closed most of them short and cost 10–60 % of goodput at
	// 10–20 % loss (README.md).
	DefaultFlushDelay = 20 * time.Millisecond
	// DefaultHold is the longest a packet that arrived after a gap is held back while
	// the gap waits for repair. Most gaps are settled sooner: when their block is
	// rebuilt, or when a packet of a later block shows it cannot be.
	DefaultHold = 50 * time.Millisecond
	// DefaultMaxPeers caps the remote addresses a Conn keeps state for.
	DefaultMaxPeers = 256
	// DefaultIdleTimeout forgets a peer silent in both directions for this long.
	DefaultIdleTimeout = time.Minute
	// DefaultMaxPacket is the largest UDP payload the shim handles, its header
	// included: 1,500-byte Ethernet MTU less IPv4 and UDP headers. Longer packets
	// pass unprotected.
	DefaultMaxPacket = 1472
	// DefaultQueuePackets bounds the packets released to the reader and not yet read.
	DefaultQueuePackets = 1024

	// MaxShards caps K+M: the shard index travels in 6 bits.
	MaxShards = 64
	// window is how many consecutive sequence numbers a receiver tracks per peer:
	// packets held for release and packets kept to rebuild their block's losses. It
	// bounds the hold buffer; a packet this far ahead of a gap releases it.
	window = 128
	// paritySlots is how many parity packets a receiver keeps per peer while their
	// block is incomplete; the oldest is replaced first.
	paritySlots = 32
	// maxJump is how far past the window a sequence number may leap and still be taken
	// as the same stream (after a blackout that lost many packets); beyond it a
	// packet is out of step and dropped, unless resyncAfter such packets agree.
	maxJump = 4 * window
	// resyncAfter is how many out-of-step packets, within a window of each other,
	// restart a receiver at their place: the peer restarted its sequence.
	resyncAfter = 8
	// sweepEvery is how often idle peers are looked for, as a share of IdleTimeout.
	sweepDivisor = 4
)

// ErrConfig means a Config field is out of range.
var ErrConfig = errors.New("fecconn: bad config")

// Config sets a Conn's code and bounds. The zero value means every default, with
// in-order release on and encoding only towards peers that use the shim themselves.
type Config struct {
	// K is the number of QUIC packets per block, 1 to MaxShards-M. Zero means
	// DefaultK.
	K int
	// M is the number of parity packets sent after each block, 1 to MaxShards-K. A
	// block survives the loss of any M of its K+M packets. Zero means DefaultM.
	M int
	// FlushDelay is how long a block stays open for more packets after its first;
	// then its parity is sent with however few it holds. Zero means DefaultFlushDelay.
	FlushDelay time.Duration
	// Hold is the longest a received packet is held back behind a gap before being
	// released anyway. It should exceed FlushDelay plus the time the link takes to
	// carry K+M packets. Zero means DefaultHold.
	Hold time.Duration
	// Unordered releases every packet the moment it arrives or is rebuilt, as a plain
	// socket would, instead of in sequence. It exists to measure what in-order
	// release is worth; QUIC does worse without it (see README.md).
	Unordered bool
	// Initiate encodes towards every peer from the first packet: a client that knows
	// its peer runs the shim. Without it a Conn encodes towards a peer only once a
	// valid shim packet has come from that peer, and talks plain QUIC to the others.
	Initiate bool
	// MaxPeers caps the remote addresses with shim state; when full, the one heard
	// from least recently is forgotten. Zero means DefaultMaxPeers.
	MaxPeers int
	// IdleTimeout forgets a peer after this long without a packet either way. Zero
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxPacket is the largest UDP payload the shim sends or takes, its header
	// included; QUIC packets longer than MaxPacket-Overhead are sent unprotected.
	// Zero means DefaultMaxPacket.
	MaxPacket int
	// QueuePackets bounds the packets released and waiting for ReadFrom; more are
	// dropped, as a full socket buffer would drop them. Zero means
	// DefaultQueuePackets.
	QueuePackets int
}

// normalize fills defaults and checks ranges.
func (c Config) normalize() (Config, error) {
	c.K = cmp.Or(c.K, DefaultK)
	c.M = cmp.Or(c.M, DefaultM)
	c.FlushDelay = cmp.Or(c.FlushDelay, DefaultFlushDelay)
	c.Hold = cmp.Or(c.Hold, DefaultHold)
	c.MaxPeers = cmp.Or(c.MaxPeers, DefaultMaxPeers)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxPacket = cmp.Or(c.MaxPacket, DefaultMaxPacket)
	c.QueuePackets = cmp.Or(c.QueuePackets, DefaultQueuePackets)
	switch {
	case c.K < 1 || c.K > MaxShards-1:
		return c, fmt.Errorf("%w: K %d, want 1 to %d", ErrConfig, c.K, MaxShards-1)
	case c.M < 1 || c.K+c.M > MaxShards:
		return c, fmt.Errorf("%w: M %d, want 1 to %d with K %d", ErrConfig, c.M, MaxShards-c.K, c.K)
	case c.FlushDelay < 0 || c.Hold < 0 || c.IdleTimeout < 0:
		return c, fmt.Errorf("%w: negative duration", ErrConfig)
	case c.MaxPeers < 1:
		return c, fmt.Errorf("%w: max peers %d, want at least 1", ErrConfig, c.MaxPeers)
	case c.MaxPacket <= Overhead || c.MaxPacket > maxUDPPayload:
		return c, fmt.Errorf("%w: max packet %d, want %d to %d", ErrConfig, c.MaxPacket, Overhead+1, maxUDPPayload)
	case c.QueuePackets < 1:
		return c, fmt.Errorf("%w: queue %d packets, want at least 1", ErrConfig, c.QueuePackets)
	}
	return c, nil
}

// MemoryBound is the most bytes of packet buffers a Conn with this Config holds:
// per peer, window received packets, paritySlots parity packets and one block of K+M
// packets being sent, each up to MaxPacket; plus the release queue. It is 0 for a
// Config that Wrap would refuse.
func (c Config) MemoryBound() int {
	c, err := c.normalize()
	if err != nil {
		return 0
	}
	perPeer := (window + paritySlots + c.K + c.M + 1) * (c.MaxPacket + lenPrefix)
	return c.MaxPeers*perPeer + c.QueuePackets*c.MaxPacket
}
