package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/datagram"
	"github.com/umbranet/umbra/internal/fec"
)

// Reasons a UDP circuit's datagram is dropped in the agent, as `umbra-agent status`
// (datagrams.dropped) and umbra_agent_udp_datagrams_dropped_total{reason} name them: a
// fixed set, one per stage of the pipeline, so a lost video frame can be traced to
// the stage that lost it.
const (
	// udpDropQueueFull: the flow's send queue (udpQueue deep) was full and its oldest
	// datagram made room for a new one.
	udpDropQueueFull = "queue_full"
	// udpDropStale: the datagram waited longer than udpStale to be sent (a circuit being
	// set up, a stalled link).
	udpDropStale = "stale"
	// udpDropOversize: larger than a datagram can carry.
	udpDropOversize = "oversize"
	// udpDropSendError: quic-go dropped it after it was queued: it no longer fit a
	// packet once the path's packet size shrank (counted per link, by quic-go).
	udpDropSendError = "send_error"
	// udpDropReceiveFull: it arrived while quic-go's queue of received datagrams on the
	// link was full (this agent's reader fell behind; counted per link, by quic-go).
	udpDropReceiveFull = "receive_full"
	// udpDropNoCircuit: the flow's circuit could not be set up; datagrams are dropped
	// until it is dialed again (udpRetryAfter).
	udpDropNoCircuit = "no_circuit"
	// udpDropAuth: it did not open under the circuit's end-to-end key.
	udpDropAuth = "auth"
	// udpDropMalformed: it opened but did not decode (coding, FEC or fragment header).
	udpDropMalformed = "malformed"
	// udpDropFECUnrecovered: the sender's forward error correction was on, the
	// datagram's packet was lost on the way, and its block closed (the decoder's
	// expiry, or evicted by newer blocks) without enough parity to rebuild it.
	udpDropFECUnrecovered = "fec_unrecovered"
	// udpDropIncomplete: a datagram split into fragments lost one on the way, and the
	// reassembler gave the rest up at its deadline.
	udpDropIncomplete = "incomplete"
	// udpDropUnknownCircuit: it arrived for a circuit this agent has no end of (not
	// yet, or no longer).
	udpDropUnknownCircuit = "unknown_circuit"
	// udpDropReaderBehind: it arrived whole, but its reader (a program's PacketConn or
	// PacketListener, or the agent's delivery to a local socket) had packetInbox
	// datagrams waiting unread.
	udpDropReaderBehind = "reader_behind"
)

// udpDropReasons lists the reasons in the order status and metrics show them.
var udpDropReasons = []string{udpDropQueueFull, udpDropStale, udpDropOversize, udpDropSendError, udpDropReceiveFull,
	udpDropNoCircuit, udpDropAuth, udpDropMalformed, udpDropFECUnrecovered, udpDropIncomplete, udpDropUnknownCircuit,
	udpDropReaderBehind}

// udpCounters count what the agent's UDP circuits carried and dropped, all circuits
// together: the datagram path adds to atomics, status reads them.
type udpCounters struct {
	sent, delivered, recovered, late, held atomic.Uint64
	dropped                                [12]atomic.Uint64 // by udpDropReasons' index
}

// drop counts n datagrams dropped for reason.
func (c *udpCounters) drop(reason string, n uint64) {
	if n == 0 {
		return
	}
	for i, r := range udpDropReasons {
		if r == reason {
			c.dropped[i].Add(n)
			return
		}
	}
}

// DatagramStatus is what the agent's UDP circuits carried, both directions, all
// circuits together, since it started.
type DatagramStatus struct {
	// Sent counts datagrams taken from local UDP peers to carry; Delivered, datagrams
	// handed to local UDP peers.
	Sent      uint64 `json:"sent"`
	Delivered uint64 `json:"delivered"`
	// RecoveredFEC counts delivered datagrams whose packet was lost on the way and that
	// forward error correction rebuilt.
	RecoveredFEC uint64 `json:"recovered_fec"`
	// Held counts datagrams that waited for an earlier one of their flow (lost, or
	// being rebuilt) so that they were delivered in order; Late, datagrams delivered
	// after a later one of their flow, once the wait for them was given up.
	Held uint64 `json:"held"`
	Late uint64 `json:"late"`
	// Dropped counts datagrams dropped in this agent, or known lost on the way, by
	// reason: queue_full, stale, oversize, send_error, no_circuit (sending);
	// receive_full, auth, malformed, fec_unrecovered, incomplete, unknown_circuit
	// (receiving). A datagram lost on the
	// radio without FEC or fragments is not counted anywhere here: the link's own
	// figures (loss_percent) show it.
	Dropped map[string]uint64 `json:"dropped"`
}

// status returns the counters as status shows them.
func (c *udpCounters) status() DatagramStatus {
	st := DatagramStatus{
		Sent: c.sent.Load(), Delivered: c.delivered.Load(), RecoveredFEC: c.recovered.Load(),
		Held: c.held.Load(), Late: c.late.Load(), Dropped: map[string]uint64{},
	}
	for i, r := range udpDropReasons {
		st.Dropped[r] = c.dropped[i].Load()
	}
	return st
}

// receiveCounts remembers one circuit end's decoder, reassembler and orderer figures
// as last added to the agent's counters, so each datagram adds only what changed.
type receiveCounts struct {
	recovered, lost, incomplete, held, late uint64
}

// update adds to c what changed in an end's figures since the last call. The decoder
// takes a message off Lost when it arrives after all; what was counted stays counted.
func (rc *receiveCounts) update(c *udpCounters, f fec.DecoderStats, r datagram.Stats, o datagram.OrderStats) {
	incomplete := r.DroppedIncomplete + r.DroppedEvicted
	c.recovered.Add(f.Recovered - rc.recovered)
	if f.Lost > rc.lost {
		c.drop(udpDropFECUnrecovered, f.Lost-rc.lost)
		rc.lost = f.Lost
	}
	c.drop(udpDropIncomplete, incomplete-rc.incomplete)
	c.held.Add(o.Held - rc.held)
	c.late.Add(o.Late - rc.late)
	rc.recovered, rc.incomplete, rc.held, rc.late = f.Recovered, incomplete, o.Held, o.Late
}

// datagramMetrics are the UDP circuits' figures as metric families.
func datagramMetrics(d DatagramStatus) []metric {
	counter := func(name, help string, v uint64) metric {
		return metric{name: name, help: help, kind: "counter", samples: []sample{{value: float64(v)}}}
	}
	dropped := metric{name: "umbra_agent_udp_datagrams_dropped_total", kind: "counter",
		help: "UDP circuit datagrams dropped in this agent or known lost on the way, by reason (the stage that lost them)."}
	for _, r := range udpDropReasons {
		dropped.samples = append(dropped.samples, sample{[][2]string{{"reason", r}}, float64(d.Dropped[r])})
	}
	return []metric{
		counter("umbra_agent_udp_datagrams_sent_total", "Datagrams taken from local UDP peers to carry over UDP circuits.", d.Sent),
		counter("umbra_agent_udp_datagrams_delivered_total", "Datagrams of UDP circuits handed to local UDP peers.", d.Delivered),
		counter("umbra_agent_udp_datagrams_recovered_total", "Delivered datagrams lost on the way and rebuilt by forward error correction.", d.RecoveredFEC),
		counter("umbra_agent_udp_datagrams_held_total", "Datagrams that waited for an earlier one of their flow, to be delivered in order.", d.Held),
		counter("umbra_agent_udp_datagrams_late_total", "Datagrams delivered after a later one of their flow, the wait for them given up.", d.Late),
		dropped,
	}
}

// Datagrams that arrive for a circuit before this agent has its end: a hosting agent
// makes the end once the end-to-end handshake is done, and the dialer's first datagrams
// (a video's first keyframe, queued while the circuit was set up) may come before the
// handshake's last flight, or that flight may be lost and sent again. Dropped, they cost
// a keyframe and the 20–30 frames that depend on it; held, they are delivered in order
// when the end comes.
const (
	// earlyMax bounds the datagrams held for all circuits together.
	earlyMax = 1024
	// earlyAge is how long one is held: a lost handshake flight's retransmission on a
	// slow radio, and then some.
	earlyAge = 2 * time.Second
)

// earlyDatagrams holds datagrams of circuits this agent has no end of yet.
type earlyDatagrams struct {
	mu     sync.Mutex
	byCirc map[earlyKey][]earlyDatagram
	n      int
}

type earlyKey struct {
	conn *quic.Conn
	cid  uint64
}

type earlyDatagram struct {
	at  time.Time
	pkt []byte
}

// put keeps a copy of pkt for circuit cid on conn. It returns how many datagrams it
// dropped: those held too long, and pkt itself if there is no room.
func (q *earlyDatagrams) put(conn *quic.Conn, cid uint64, pkt []byte) (dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for k, ds := range q.byCirc {
		if now.Sub(ds[len(ds)-1].at) > earlyAge { // the newest is too old: the circuit is not coming
			dropped += uint64(len(ds))
			q.n -= len(ds)
			delete(q.byCirc, k)
		}
	}
	if q.n >= earlyMax {
		return dropped + 1
	}
	if q.byCirc == nil {
		q.byCirc = map[earlyKey][]earlyDatagram{}
	}
	k := earlyKey{conn, cid}
	q.byCirc[k] = append(q.byCirc[k], earlyDatagram{now, append([]byte(nil), pkt...)})
	q.n++
	return dropped
}

// take returns and forgets what is held for circuit cid on conn, oldest first, those
// held too long left out and counted as dropped.
func (q *earlyDatagrams) take(conn *quic.Conn, cid uint64) (pkts [][]byte, dropped uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := earlyKey{conn, cid}
	ds := q.byCirc[k]
	if len(ds) == 0 {
		return nil, 0
	}
	delete(q.byCirc, k)
	q.n -= len(ds)
	pkts = make([][]byte, 0, len(ds))
	for _, d := range ds {
		if time.Since(d.at) <= earlyAge {
			pkts = append(pkts, d.pkt)
		} else {
			dropped++
		}
	}
	return pkts, dropped
}
