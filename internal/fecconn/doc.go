// Package fecconn protects the QUIC packets of a radio hop with forward error
// correction, below QUIC: a net.PacketConn that quic-go reads and writes, which sends
// every packet to a peer that speaks it inside an internal/fec block and adds the
// block's parity, and which rebuilds a lost packet from the parity before quic-go
// notices the loss. A stream delivers in order, so on a radio that loses 10 % each way
// every hole holds up everything behind it for a round trip and a half until its
// repair comes; rebuilt a few tens of milliseconds after the loss, it holds up almost
// nothing. transport.Radio turns it on (Profile.FEC).
//
// # Packets
//
// A protected packet is an internal/fec packet (a QUIC packet as a block's message, or
// a parity shard) after a 6-byte prefix:
//
//	kind       1 byte    0x11 block of full packets, 0x12 block of small packets
//	                     (256 bytes or fewer: acknowledgements), 0x10 hello (no more)
//	loss       1 byte    the random loss of the receiver's packets on their way here,
//	                     in 256ths, as this end counts it
//	sequence   2 bytes   big-endian, +1 per packet this Conn sends to that peer
//	sent at    2 bytes   big-endian, the sender's clock in milliseconds, mod 65,536
//
// Small packets have blocks of their own because a block's parity is as long as its
// longest packet. The kind's 0x40 bit is clear, so no QUIC stack takes such a packet
// for one of its own (RFC 9000's fixed bit): quic-go drops it. That is how a Conn
// learns its peer speaks it: it sends plain QUIC packets, and a hello beside them
// every HelloEvery, until a prefixed packet comes back from that address; from then on
// everything it sends there is protected. A peer without a Conn never answers so, and
// keeps getting plain QUIC. Plain QUIC packets that come in pass through untouched.
//
// # Choosing the code
//
// Each side counts the gaps in the sequence numbers it receives and reports the loss
// in every packet it sends back; the sender picks, for that loss, the smallest number
// of parity packets M per block of Shards packets that leaves a packet lost with
// probability under ResidualLoss (independent losses; the table in internal/fec's
// doc). Blocks of 64: on a clean link one parity packet (1.6 % more packets, which
// keeps the loss measured), at 1 % 4, at 5 % 9, at 10 % 15, at 20 % 24, at 30 % 32.
// That is for a path of ResidualRTT (400 ms) or longer; a shorter one, whose holes QUIC
// repairs sooner, may leave more (the square of how many times shorter, in halvings):
// at 10 %, 13 at 200 ms and 9 at 50 ms. The QUIC connection's congestion controller
// tells the Conn its peer's base round trip (BaseRTT).
// A block not full after FlushDelay is closed short, with parity in proportion.
//
// Parity spent on a congested link's losses would only congest it more: it goes out
// beside QUIC's congestion control. So the count leaves those out. A queue drops
// packets only when it is nearly full, while random loss strikes whatever the queue;
// the sent-at field gives each packet's one-way delay up to the clocks' offset, and
// only packets that waited little (under half the most seen, or 20 ms) are counted.
// And a run of losses counts as one gap, as a fade takes a run of packets at once,
// which no block survives anyway; random loss at p leaves p(1−p) gaps per packet.
// When the controller finds the path longer (a base round trip 40 ms or more above
// the last), the one-way delay it had is forgotten, or every packet of the longer path
// would look queued. The count averages the last 512 packets or so, or the last few
// seconds when the link only trickles, so a lossy minute's parity is gone within
// seconds of idle, not carried into the next transfer.
//
// # Congestion control
//
// The connection's controller must not take the parity's share of the link for its
// own. Overhead tells it, per peer, how many bytes this Conn writes beside each byte of
// QUIC packets; internal/congestion keeps its model in bytes on the wire and paces the
// connection at the model over 1 + the overhead (third_party/quic-go's
// umbra-with-peer.patch hands the controller its peer's address for this). A link that
// carried too little for a second to measure reports its code's overhead instead.
package fecconn
