// Package lane carries circuit datagrams between an agent and its router beside QUIC, on
// the QUIC connection's own UDP socket (quic-go's Transport.WriteTo and
// ReadNonQUICPacket), sealed with keys exported from that connection's TLS session.
// QUIC's congestion control reads every random radio loss as congestion and throttles
// datagrams with the rest; the lane does not. Only a circuit breaker limits it, and it
// trips on queueing delay, the sign of real congestion, never on loss.
package lane

import (
	"context"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/internal/seal"
)

// Wire: Marker, the lane's id, then the sealed kind byte and body. quic-go hands every
// packet whose first byte has both top bits clear to ReadNonQUICPacket, so Marker keeps
// lane packets apart from QUIC's; the id finds the lane without trusting the source
// address, which changes when a device roams.
const (
	// Marker is the first byte of every lane packet.
	Marker     byte = 0x01
	idSize          = 8
	headerSize      = 1 + idSize
	// Overhead is what the lane adds to a datagram.
	Overhead = headerSize + seal.Overhead + 1
	// MaxPacket bounds a lane packet; larger ones are refused unread.
	MaxPacket = 1500
)

// Kinds of lane packet, the first byte inside the seal.
const (
	kindData byte = iota
	kindPing      // client → server: send time, the client's standing and minimum RTT
	kindPong      // server → client: the ping's body, echoed
)

const (
	labelClient = "umbra lane client to router"
	labelServer = "umbra lane router to client"
	labelID     = "umbra lane id"
	pingSize    = 8 + 4 + 4
	// standingSamples is how many of the newest round-trip samples the standing round
	// trip is the least of: a second's pings.
	standingSamples = 4
)

// Errors of Send and Receive.
var (
	// ErrThrottled is a datagram the circuit breaker dropped.
	ErrThrottled = errors.New("lane: throttled by the congestion breaker")
	// ErrNotLane is a packet that is not a lane packet, or not this lane's.
	ErrNotLane = errors.New("lane: not a packet of this lane")
	// ErrTooLarge is a datagram or packet over MaxPacket.
	ErrTooLarge = errors.New("lane: packet too large")
)

// ID names a lane in its packets. Both ends derive it from the TLS session.
type ID [idSize]byte

// ParseID returns the lane id of a lane packet.
func ParseID(pkt []byte) (ID, bool) {
	var id ID
	if len(pkt) < headerSize || pkt[0] != Marker {
		return id, false
	}
	copy(id[:], pkt[1:headerSize])
	return id, true
}

// WriteFunc sends one packet on the QUIC connection's socket: quic.Transport.WriteTo. It
// must not keep b, which the lane reuses once it returns.
type WriteFunc func(b []byte, addr net.Addr) (int, error)

// Config tunes a lane; the zero value is the default.
type Config struct {
	// Floor is the rate in bytes per second the breaker never throttles below, so a
	// telemetry flow is never starved by a queue someone else filled. Default 32 KB/s.
	Floor float64
	// PingEvery is how often the client measures the round trip. Default 250 ms.
	PingEvery time.Duration
}

// Stats are a lane's counters and figures.
type Stats struct {
	Sent, Received uint64
	// Throttled counts datagrams the breaker dropped; Rejected, packets that failed
	// to authenticate or were replayed.
	Throttled, Rejected uint64
	// RTT and MinRTT are the client's measures of the round trip over the lane.
	RTT, MinRTT time.Duration
	// Limit is the breaker's rate limit in bytes per second, 0 when it has none.
	Limit float64
	// Streams is how many streams are open; Window, the packets they may have in flight.
	Streams, Window int
}

// Lane is one end of the lane of one QUIC connection.
type Lane struct {
	id         ID
	client     bool
	header     [headerSize]byte
	sealer     *seal.Sealer
	opener     *seal.Opener
	write      WriteFunc
	cfg        Config
	brk        *breaker
	pace       pacer // datagrams' and control packets'
	streamPace pacer // streams' data packets, through writeStreams
	win        *windowControl

	streamMu  sync.Mutex
	streams   map[uint32]*streamPacketConn // open streams by id
	streamOut chan []byte                  // stream packets waiting for their pacing slot; made with the first stream
	writeOnce sync.Once
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	peer atomic.Pointer[net.UDPAddr] // where packets go; the server follows the client

	mu          sync.Mutex // guards the RTT figures, measured by the client
	srtt        time.Duration
	recent      [20]time.Duration // the last samples: the base round trip is their minimum, over about 5 s
	recentCount int

	sent, received, rejected atomic.Uint64
}

// New makes the lane of the QUIC connection whose TLS state is cs: client is the side
// that dialed. Packets go to peer through write.
func New(cs tls.ConnectionState, client bool, write WriteFunc, peer net.Addr, cfg Config) (*Lane, error) {
	sendLabel, recvLabel := labelClient, labelServer
	if !client {
		sendLabel, recvLabel = recvLabel, sendLabel
	}
	send, recv, err := seal.Keys(cs, sendLabel, recvLabel)
	if err != nil {
		return nil, fmt.Errorf("lane: %w", err)
	}
	idb, err := cs.ExportKeyingMaterial(labelID, nil, idSize)
	if err != nil {
		return nil, fmt.Errorf("lane: export id: %w", err)
	}
	ua, ok := peer.(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("lane: peer %v is not a UDP address", peer)
	}
	return newLane(ID(idb), client, send, recv, write, ua, cfg), nil
}

func newLane(id ID, client bool, send, recv cipher.AEAD, write WriteFunc, peer *net.UDPAddr, cfg Config) *Lane {
	if cfg.Floor <= 0 {
		cfg.Floor = 32 << 10
	}
	if cfg.PingEvery <= 0 {
		cfg.PingEvery = 250 * time.Millisecond
	}
	l := &Lane{id: id, client: client, sealer: seal.NewSealer(send), opener: seal.NewOpener(recv), write: write, cfg: cfg, brk: newBreaker(cfg.Floor),
		done: make(chan struct{})}
	l.win = newWindowControl(l.done, &l.streamPace)
	l.header[0] = Marker
	copy(l.header[1:], id[:])
	l.peer.Store(peer)
	return l
}

// ID is the lane's id, which a server files the lane under.
func (l *Lane) ID() ID { return l.id }

// Send carries one datagram to the other end, unless the breaker drops it. A burst
// beyond paceBurst packets is spread out, so Send may wait a few microseconds.
func (l *Lane) Send(payload []byte) error {
	if len(payload)+Overhead > MaxPacket {
		return ErrTooLarge
	}
	if !l.brk.allow(len(payload)+Overhead, time.Now()) {
		return ErrThrottled
	}
	return l.sendPaced(kindData, payload)
}

// sendPaced sends once the pacer gives the packet a slot.
func (l *Lane) sendPaced(kind byte, body []byte) error {
	if wait := l.pace.reserve(time.Now()); wait > 0 {
		time.Sleep(wait)
	}
	return l.send(kind, body)
}

// Close ends the lane's streams; the lane sends and receives nothing more that matters.
func (l *Lane) Close() {
	l.closeOnce.Do(func() { close(l.done) })
	l.streamMu.Lock()
	var open []*streamPacketConn
	for _, pc := range l.streams {
		open = append(open, pc)
	}
	l.streamMu.Unlock()
	for _, pc := range open {
		pc.Close()
	}
}

func (l *Lane) send(kind byte, body []byte) error {
	buf, inner := getPacket(), getPacket()
	defer putPacket(buf)
	defer putPacket(inner)
	in := append(append(inner[:0], kind), body...)
	pkt := l.sealer.Seal(append(buf[:0], l.header[:]...), in, l.header[:])
	if _, err := l.write(pkt, l.peer.Load()); err != nil {
		return fmt.Errorf("lane: send: %w", err)
	}
	l.sent.Add(1)
	return nil
}

// Receive opens one packet from the socket, arrived from from. It returns the datagram
// it carries appended to dst, or nil with no error for the lane's own pings and pongs,
// which it answers or measures here.
func (l *Lane) Receive(dst, pkt []byte, from net.Addr) ([]byte, error) {
	if len(pkt) > MaxPacket {
		return nil, ErrTooLarge
	}
	id, ok := ParseID(pkt)
	if !ok || id != l.id {
		return nil, ErrNotLane
	}
	inner := getPacket()
	defer putPacket(inner)
	in, newest, err := l.opener.Open(inner[:0], pkt[headerSize:], pkt[:headerSize])
	if err != nil || len(in) == 0 {
		l.rejected.Add(1)
		if err == nil {
			err = errors.New("lane: empty packet")
		}
		return nil, err
	}
	l.received.Add(1)
	if newest && !l.client {
		// The client's newest packet says where it is now: it may have roamed.
		if ua, ok := from.(*net.UDPAddr); ok {
			l.peer.Store(ua)
		}
	}
	kind, body := in[0], in[1:]
	switch kind {
	case kindStream:
		l.deliverStream(body)
	case kindData:
		return append(dst, body...), nil
	case kindPing:
		if l.client || len(body) != pingSize {
			return nil, nil
		}
		standing := time.Duration(binary.BigEndian.Uint32(body[8:])) * time.Microsecond
		minRTT := time.Duration(binary.BigEndian.Uint32(body[12:])) * time.Microsecond
		l.brk.observe(standing, minRTT, time.Now())
		l.send(kindPong, body)
	case kindPong:
		if !l.client || len(body) != pingSize {
			return nil, nil
		}
		sent := time.Unix(0, int64(binary.BigEndian.Uint64(body)))
		if rtt := time.Since(sent); rtt > 0 && rtt < time.Minute {
			l.sample(rtt)
		}
	}
	return nil, nil
}

// sample adds one round-trip measure and hands the figures to the breaker.
func (l *Lane) sample(rtt time.Duration) {
	l.mu.Lock()
	if l.srtt == 0 {
		l.srtt = rtt
	} else {
		l.srtt = (7*l.srtt + rtt) / 8
	}
	l.recent[l.recentCount%len(l.recent)] = rtt
	l.recentCount++
	standing, minRTT := l.standingLocked(), l.minRTTLocked()
	l.mu.Unlock()
	l.brk.observe(standing, minRTT, time.Now())
}

// standingLocked is the round trip with the path's jitter taken out, which is what a
// queue adds to: the least of the last standingSamples, about a second's. A queue
// raises every sample and so this one; jitter spreads samples around the base, and the
// smoothed round trip with them, so a breaker moved on the smoothed figure would read a
// jittery radio (LTE, ±50 ms each way) as a standing queue. Copa calls this the standing
// RTT. (The streams' window reads their own acknowledgements instead: window.go.)
func (l *Lane) standingLocked() time.Duration { return l.leastLocked(standingSamples) }

// minRTTLocked is the base round trip: the least of all the samples kept, about 5 s.
func (l *Lane) minRTTLocked() time.Duration { return l.leastLocked(len(l.recent)) }

// leastLocked is the least of the newest n round-trip samples, 0 before the first.
func (l *Lane) leastLocked(n int) time.Duration {
	var least time.Duration
	for i := range min(l.recentCount, n) {
		rtt := l.recent[(l.recentCount-1-i)%len(l.recent)]
		if least == 0 || rtt < least {
			least = rtt
		}
	}
	return least
}

// Run pings the server every PingEvery until ctx ends, so the client knows the round
// trip (and the breakers of both ends with it) and the server knows where the client is.
// The server's end answers pings as they come and has nothing to run: there Run returns
// at once.
func (l *Lane) Run(ctx context.Context) {
	if !l.client {
		return
	}
	tick := time.NewTicker(l.cfg.PingEvery)
	defer tick.Stop()
	for {
		var body [pingSize]byte
		binary.BigEndian.PutUint64(body[:], uint64(time.Now().UnixNano()))
		l.mu.Lock()
		binary.BigEndian.PutUint32(body[8:], clampMicros(l.standingLocked()))
		binary.BigEndian.PutUint32(body[12:], clampMicros(l.minRTTLocked()))
		l.mu.Unlock()
		l.send(kindPing, body[:]) // a lost ping is a lost ping
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func clampMicros(d time.Duration) uint32 {
	return uint32(min(d.Microseconds(), 1<<32-1))
}

// Stats returns the lane's counters and figures.
func (l *Lane) Stats() Stats {
	l.mu.Lock()
	srtt, minRTT := l.srtt, l.minRTTLocked()
	l.mu.Unlock()
	l.streamMu.Lock()
	streams := len(l.streams)
	l.streamMu.Unlock()
	return Stats{
		Streams: streams, Window: l.win.window(),
		Sent: l.sent.Load(), Received: l.received.Load(),
		Throttled: l.brk.throttled.Load(), Rejected: l.rejected.Load(),
		RTT: srtt, MinRTT: minRTT, Limit: l.brk.limit(),
	}
}
