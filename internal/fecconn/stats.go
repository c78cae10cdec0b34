package fecconn

import "sync/atomic"

// Stats counts what a Conn has done since Wrap. Packets are QUIC packets (or other
// payloads) unless named shim packets.
type Stats struct {
	// DataSent counts packets sent protected, one data packet each.
	DataSent uint64
	// ParitySent counts parity packets sent.
	ParitySent uint64
	// BlocksSent counts blocks closed; BlocksFlushed those the flush delay closed with
	// fewer than K packets.
	BlocksSent, BlocksFlushed uint64
	// PassedOut and PassedIn count packets sent and received unchanged: not QUIC,
	// too long, or to and from peers that do not use the shim.
	PassedOut, PassedIn uint64
	// DataReceived counts data packets taken (not duplicates, stale or malformed).
	DataReceived uint64
	// Recovered counts packets rebuilt from parity.
	Recovered uint64
	// Unrepaired counts gaps released past without their packet: lost for good, as
	// far as the shim knows. Late counts those whose packet came afterwards all the
	// same, and was released then.
	Unrepaired, Late uint64
	// Duplicates counts shim packets already held or released, ignored.
	Duplicates uint64
	// Stale counts shim packets too far behind or ahead of their peer's window,
	// dropped; Resyncs counts receivers restarted because a run of them agreed.
	Stale, Resyncs uint64
	// Malformed counts shim packets refused (bad header, length or shape, or
	// disagreeing with their block); Corrupt counts rebuilt packets refused because
	// their length, padding or first byte was wrong.
	Malformed, Corrupt uint64
	// QueueDrops counts packets released while the read queue was full, dropped.
	QueueDrops uint64
	// Peers is the number of peers with shim state now; PeersEvicted counts those
	// forgotten to make room, PeersExpired those forgotten for idleness.
	Peers, PeersEvicted, PeersExpired uint64
}

// counters are a Conn's live Stats.
type counters struct {
	dataSent, paritySent, blocksSent, blocksFlushed atomic.Uint64
	passedOut, passedIn                             atomic.Uint64
	dataReceived, recovered, unrepaired, late       atomic.Uint64
	duplicates, stale, resyncs, malformed, corrupt  atomic.Uint64
	queueDrops, peersEvicted, peersExpired          atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		DataSent: c.dataSent.Load(), ParitySent: c.paritySent.Load(),
		BlocksSent: c.blocksSent.Load(), BlocksFlushed: c.blocksFlushed.Load(),
		PassedOut: c.passedOut.Load(), PassedIn: c.passedIn.Load(),
		DataReceived: c.dataReceived.Load(), Recovered: c.recovered.Load(),
		Unrepaired: c.unrepaired.Load(), Late: c.late.Load(),
		Duplicates: c.duplicates.Load(), Stale: c.stale.Load(), Resyncs: c.resyncs.Load(),
		Malformed: c.malformed.Load(), Corrupt: c.corrupt.Load(),
		QueueDrops:   c.queueDrops.Load(),
		PeersEvicted: c.peersEvicted.Load(), PeersExpired: c.peersExpired.Load(),
	}
}
