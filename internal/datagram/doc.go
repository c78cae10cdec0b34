// Package datagram frames umbra's UDP circuits: UDP services (MAVLink telemetry, RTP
// video) carried in QUIC DATAGRAM frames (RFC 9221) between agents, through routers.
//
// Every QUIC datagram umbra sends has this layout (varints are RFC 9000 §16, always in
// their shortest encoding, so every header has exactly one byte form):
//
//	circuit ID     varint   per QUIC connection; routers read and rewrite it
//	---- end-to-end part: agents seal it, routers never read it ----
//	message ID     varint   per circuit, wraps at MessageIDLimit
//	fragment index 1 byte   0 ≤ index < count
//	fragment count 1 byte   1 = unfragmented, at most MaxFragments
//	payload        the rest
//
// The package owns five mechanisms: the header codec (header.go), splitting a UDP
// payload into fragments that fit one QUIC datagram (split.go), reassembling them with
// bounded time and memory (reassemble.go), a drop-oldest queue that keeps the agent's
// UDP read loop from blocking on quic-go's SendDatagram, bounded in count, bytes and age
// so a video's bursts fit and what is too old to show goes first (queue.go), and an
// orderer that delivers messages in message-ID order, holding those behind a gap a
// moment for the gap to be rebuilt by forward error correction (order.go).
//
// It must not touch QUIC, sockets or keys: callers pass bytes in and take bytes out, and
// sealing the end-to-end part is the agent's business (its cost enters as the overhead
// argument of Split).
package datagram
