// Package fecconn protects the QUIC packets of a radio hop with forward error
// correction, below QUIC: a net.PacketConn that quic-go reads and writes, which sends
// every packet to a peer that speaks it inside an internal/fec block and adds the
// block's parity, and which rebuilds a lost packet from the parity before quic-go
// notices the loss. A stream delivers in order, so on a radio that loses 10 % each way
// every hole holds up everything behind it for a round trip and a half until its
// repair comes; rebuilt a few tens of milliseconds after the loss, it holds up almost
// nothing.
//
// # Packets
//
// A protected packet is an internal/fec packet (a QUIC packet as a block's message, or
// a parity shard) after a 4-byte prefix:
//
//	kind       1 byte    0x11 block packet, 0x10 hello (nothing follows)
//	loss       1 byte    share of the receiver's packets lost on their way here, in 256ths
//	sequence   2 bytes   big-endian, +1 per packet this Conn sends to that peer
//
// The kind's 0x40 bit is clear, so no QUIC stack takes such a packet for one of its
// own (RFC 9000's fixed bit): quic-go drops it. That is how a Conn learns its peer
// speaks it: it sends plain QUIC packets, and a hello beside them every HelloEvery,
// until a prefixed packet comes back from that address; from then on everything it
// sends there is protected. A peer without a Conn never answers so, and keeps
// getting plain QUIC. Plain QUIC packets that come in pass through untouched.
//
// # Choosing the code
//
// Each side counts the gaps in the sequence numbers it receives and reports the loss
// in every packet it sends back; the sender picks, for that loss, the smallest number
// of parity packets M per block of Shards packets that leaves a packet lost with
// probability under ResidualLoss (independent losses; the table in internal/fec's
// doc). On a clean link that is one parity packet in 64 (1.6 % more packets), which
// keeps the loss measured; at 10 % loss 15 in 64 (31 %). A block not full after
// FlushDelay is closed short, with parity in proportion.
package fecconn
