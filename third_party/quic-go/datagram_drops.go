package quic

// DatagramDrops counts the DATAGRAM frames a connection dropped by itself, which RFC 9221
// allows and upstream quic-go only logs (umbra: umbra-datagram-drops.patch).
type DatagramDrops struct {
	// Receiving counts frames that arrived while the queue of received datagrams (128)
	// was full: the application did not call ReceiveDatagram fast enough.
	Receiving uint64
	// Sending counts frames SendDatagram queued that then fit no packet, because the
	// path's packet size shrank in the meantime.
	Sending uint64
}

// DatagramsDropped returns the DATAGRAM frames this connection dropped so far. A full
// send queue drops nothing: SendDatagram waits for room.
func (c *Conn) DatagramsDropped() DatagramDrops {
	return DatagramDrops{
		Receiving: c.datagramQueue.droppedReceiving.Load(),
		Sending:   c.datagramQueue.droppedSending.Load(),
	}
}
