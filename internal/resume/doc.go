// Package resume carries one reliable, ordered byte stream across a succession of
// underlying streams, so an agent-to-agent circuit can move to a new path (a relay died,
// the radio link was replaced) without losing, repeating or reordering a byte. A Conn is
// a net.Conn; the end-to-end TLS session runs on top of it and never sees a swap.
// Routers never see inside it: they splice the streams Serve is given.
//
// It owns sequence numbers, acknowledgements, the bounded replay and receive buffers and
// the resume handshake. It does not find new streams: its owner does, and hands each to
// Serve; Serve's return (and Done) tell the owner when to look for the next one.
//
// # Wire format
//
// Every stream begins with a 20-byte resume header from each side, sent at once (neither
// waits for the other's):
//
//	"UMRS" | version (1) | reserved (3, zero) | receive window (4) | received (8)
//
// Integers are big-endian. Received counts every byte this side has received from the
// peer on all streams so far, plus one if it has received the peer's end of stream. Each
// side checks the peer's count against what it has sent (a count beyond it, or behind
// what the peer acknowledged earlier, fails Serve and leaves the Conn untouched), drops
// what the peer has from its replay buffer and resumes sending at that offset. A frame
// cut in half by the old stream's failure is thus discarded by the receiver and sent
// again whole. The receive window (4 KiB to 1 GiB) caps how far past the last
// acknowledged offset the peer may send.
//
// Frames follow, each a type byte and its body:
//
//	0x01 DATA  | length (4) | payload (1..65536 bytes): the next bytes of the stream
//	0x02 ACK   | offset (8): the sender has consumed (read) every byte below offset,
//	             plus one once it has consumed the end of stream
//	0x03 FIN   | offset (8): the sender's stream ends at offset (the next DATA offset);
//	             the FIN occupies one offset of its own, so it is acknowledged and
//	             replayed like a byte
//	0x04 RESET : the sender ended the connection abnormally (Abort, or Close's linger
//	             ran out); the receiver's Read and Write fail with ErrPeerReset
//
// Offsets are implicit in DATA: a stream carries bytes from the offset the peer's header
// named, in order. An ACK reports consumption, not arrival, so it is also the flow
// control: the sender transmits only up to the peer's acknowledged offset plus its
// window, and keeps the unacknowledged bytes (at most its own Window) for replay. The
// receiver acknowledges once a quarter of its window is unacknowledged, AckDelay after
// the first unacknowledged byte was read, at once for an end of stream, and at the start
// of every stream (the last ACK may have been lost with the old one); an ACK also rides
// along with any DATA or FIN that is being sent anyway.
//
// The Conn ends cleanly when both ends of stream are acknowledged; Serve then returns nil
// and closes the stream. Without a stream it waits Config.DetachTimeout for the next.
package resume
