// Package fecconn is a net.PacketConn that sits under quic-go and protects QUIC's
// packets with Reed–Solomon forward error correction, so that most random losses of a
// drone radio are repaired before QUIC sees them and its congestion controller
// (NewReno, which reads every loss as congestion) keeps its window open.
//
//	shim, err := fecconn.Wrap(udpConn, fecconn.Config{Initiate: true})
//	...
//	tr := &quic.Transport{Conn: shim}
//
// It owns the shim's wire format, per-peer encoding and in-order release. It must not
// look inside QUIC packets, and it authenticates nothing: QUIC does (README.md).
//
// # Sending
//
// Every QUIC packet (first byte with bit 0x40 or 0x80 set) to a peer the Conn encodes
// for goes out at once as a data packet, 6 bytes longer. After K of them, or
// FlushDelay after the block's first, the block's parity follows: M packets for a full
// block, ceil(n·M/K) for a block of n < K closed by the flush delay. The code is
// Reed–Solomon over GF(2^8) (github.com/klauspost/reedsolomon): any K of a block's
// shards rebuild the rest. Shards are equal-sized: each is the packet's 2-byte length,
// the packet and zeros up to the block's longest; a short block's absent packets are
// all zeros, known to both ends and never sent.
//
// A Conn with Config.Initiate encodes towards every peer; without it, towards a peer
// only once a valid shim data packet carrying a QUIC packet has come from that peer.
// Everything else — non-QUIC packets (umbra's 0x01 packets), packets too long to
// protect, packets to peers not encoded for — passes unchanged, both ways.
//
// # Receiving
//
// A recovered packet delivered after later ones is no use to QUIC: with a packet
// threshold of 3 it has declared the packet lost and cut its window already. So a
// receiver releases each peer's packets in sequence. When a gap appears, later
// packets wait until the gap is rebuilt; or it is known unrepairable, because a
// packet of a later block arrived (the sender sends a block's parity before the next
// block, so on a first-in first-out link everything of the gap's block that will come
// has come); or the oldest waiting packet has waited Hold. The wait is bounded by a
// window of 128 sequence numbers per peer; a packet further ahead releases the window.
//
// # Packets
//
// Multi-byte fields are big-endian. A data packet:
//
//	0x02       1 byte    Magic: quic-go takes it as non-QUIC, umbra's lane uses 0x01
//	kind|index 1 byte    top bits 00; low 6 bits: the packet's index in its block
//	sequence   4 bytes   per peer and direction, +1 per data packet
//	packet     rest      the QUIC packet
//
// A parity packet:
//
//	0x02       1 byte    Magic
//	kind|index 1 byte    top bits 01; low 6 bits: parity index j, below M
//	first      4 bytes   sequence number of the block's first packet
//	K          1 byte    data shards of the code, 1..63
//	count      1 byte    packets in the block, 1..K
//	M          1 byte    parity shards of this block, 1..64-K
//	shard      rest      2 + the block's longest packet, in bytes
//
// So a data packet is DataOverhead (6) bytes longer than its QUIC packet, and a
// parity packet at most Overhead (11) bytes longer than the block's longest. Kind 10
// is kept for a feedback packet (loss reports for adaptive M), not yet sent.
//
// # MTU
//
// quic-go never sends less than 1,200 bytes in a packet that carries an Initial, so
// the path must carry 1,200 + Overhead bytes of UDP payload (1,239 bytes of IPv4
// packet). A Conn has no SyscallConn, so quic-go cannot set the don't-fragment bit and
// leaves path-MTU discovery off by itself; set quic.Config.DisablePathMTUDiscovery
// anyway, and keep InitialPacketSize at most the path's UDP payload less Overhead
// (transport.Radio's 1,200 fits a 1,500-byte path).
//
// # Memory
//
// Per peer: a window of 128 received packets, 32 parity packets waiting for their
// block and one block being sent, each at most MaxPacket; peers are capped at
// MaxPeers (the least recently heard is forgotten) and forgotten after IdleTimeout.
// Config.MemoryBound gives the total; for the defaults, 256 peers, it is about 67 MB,
// allocated only as peers send. Plain peers cost nothing.
package fecconn
