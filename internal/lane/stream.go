package lane

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/third_party/kcp-go"
)

// Streams carry a TCP circuit's bytes over the lane, for radio links where QUIC's
// NewReno reads every random loss as congestion and collapses. Each stream is a KCP
// session (xtaci/kcp-go: selective-repeat ARQ with fast retransmit) in its
// no-congestion-window mode, sealed in lane packets like datagrams; what limits it is
// its send window, which the lane sizes from queueing delay (window.go), never from
// loss. Inside KCP, the bytes are framed so that an end of stream travels in order
// with them: a frame is a two-byte length and that many bytes, and an empty frame is
// the end.
const (
	// kindStream packets carry one KCP packet; its first four bytes (little-endian) are
	// the stream's conversation id.
	kindStream byte = 3
	// streamMTU is the largest KCP packet: what fits a 1,200-byte radio packet with the
	// lane's own overhead.
	streamMTU = 1200 - Overhead
	// streamInbox is how many packets wait for a stream's KCP session to read them.
	streamInbox = 1024
	// maxFrame is the largest frame of stream bytes.
	maxFrame = 1<<16 - 1
	// KCP's timing: flush every 10 ms, fast retransmit after 2 duplicate
	// acknowledgements, no congestion window.
	kcpInterval = 10
	kcpResend   = 2
	kcpNoDelay  = 1
	// kcpRTOMargin: KCP's retransmission timeout is at least this percent of the
	// smoothed round trip over it.
	kcpRTOMargin = 50
)

// Errors of streams.
var (
	// ErrStreamExists is a second stream with the same id on one lane.
	ErrStreamExists = errors.New("lane: stream id in use")
	// ErrStreamClosed is a stream used after Close.
	ErrStreamClosed = errors.New("lane: stream closed")
)

// Stream is one reliable, ordered byte stream over a lane. Both ends open it with the
// same id, which the circuit's setup agreed on.
type Stream struct {
	l    *Lane
	id   uint32
	pc   *streamPacketConn
	sess *kcp.UDPSession

	rmu     sync.Mutex
	hdr     [2]byte
	hdrN    int
	pending int         // bytes of the current frame not yet read
	eof     atomic.Bool // the peer ended its side

	wmu    sync.Mutex
	wbuf   []byte
	closed bool // our side ended

	failMu sync.Mutex
	failed error // set by Fail: every later call returns it
}

// OpenStream opens the stream id on this lane.
func (l *Lane) OpenStream(id uint32) (*Stream, error) {
	pc := &streamPacketConn{l: l, id: id, inbox: make(chan []byte, streamInbox), done: make(chan struct{})}
	l.streamMu.Lock()
	if l.streams == nil {
		l.streams = map[uint32]*streamPacketConn{}
	}
	if l.streams[id] != nil {
		l.streamMu.Unlock()
		return nil, ErrStreamExists
	}
	l.streams[id] = pc
	l.streamMu.Unlock()
	sess, err := kcp.NewConn3(id, pc.RemoteAddr(), nil, 0, 0, pc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	sess.SetNoDelay(kcpNoDelay, kcpInterval, kcpResend, 1)
	sess.SetStreamMode(true)
	sess.SetACKNoDelay(true)
	sess.SetWriteDelay(false)
	sess.SetHoldPartial(true)
	sess.SetMtu(streamMTU)
	sess.SetRTOMargin(kcpRTOMargin)
	s := &Stream{l: l, id: id, pc: pc, sess: sess}
	l.win.add(s)
	return s, nil
}

// deliverStream hands one KCP packet to its stream; packets of streams not open (yet)
// are dropped, and KCP sends them again.
func (l *Lane) deliverStream(pkt []byte) {
	if len(pkt) < 4 {
		return
	}
	id := binary.LittleEndian.Uint32(pkt)
	l.streamMu.Lock()
	pc := l.streams[id]
	l.streamMu.Unlock()
	if pc != nil {
		pc.deliver(pkt)
	}
}

// Read reads the stream's bytes; io.EOF once the peer ended its side.
func (s *Stream) Read(b []byte) (int, error) {
	if err := s.failure(); err != nil {
		return 0, err
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for s.pending == 0 {
		if s.eof.Load() {
			return 0, io.EOF
		}
		n, err := s.sess.Read(s.hdr[s.hdrN:])
		if err != nil {
			return 0, s.readErr(err)
		}
		s.hdrN += n
		if s.hdrN < 2 {
			continue
		}
		s.hdrN = 0
		s.pending = int(binary.BigEndian.Uint16(s.hdr[:]))
		if s.pending == 0 {
			s.eof.Store(true)
		}
	}
	n, err := s.sess.Read(b[:min(len(b), s.pending)])
	s.pending -= n
	if err != nil {
		return n, s.readErr(err)
	}
	return n, nil
}

func (s *Stream) readErr(err error) error {
	if f := s.failure(); f != nil {
		return f
	}
	return err
}

// Write sends b on the stream.
func (s *Stream) Write(b []byte) (int, error) {
	if err := s.failure(); err != nil {
		return 0, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return 0, ErrStreamClosed
	}
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), maxFrame)]
		s.wbuf = binary.BigEndian.AppendUint16(s.wbuf[:0], uint16(len(chunk)))
		s.wbuf = append(s.wbuf, chunk...)
		if _, err := s.sess.Write(s.wbuf); err != nil {
			if f := s.failure(); f != nil {
				err = f
			}
			return written, err
		}
		written += len(chunk)
		b = b[len(chunk):]
	}
	return written, nil
}

// CloseWrite ends our side of the stream: the peer reads io.EOF after our last byte.
func (s *Stream) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	_, err := s.sess.Write([]byte{0, 0})
	return err
}

// Fail ends the stream at once in both directions: every call from now on returns
// err, and the stream's packets are dropped. The caller tells the peer by other means
// (the circuit's QUIC stream).
func (s *Stream) Fail(err error) {
	s.failMu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.failMu.Unlock()
	s.release()
}

// Close ends our side of the stream, as CloseWrite does, and frees the stream
// closeGrace after the peer has ended its side too (time for KCP to resend what was
// lost of the last bytes), or closeLinger after Close if the peer never does. Fail
// frees it at once.
func (s *Stream) Close() error {
	err := s.CloseWrite()
	go s.linger()
	return err
}

// Stream teardown timing.
const (
	closeGrace  = 10 * time.Second
	closeLinger = time.Minute
)

func (s *Stream) linger() {
	deadline := time.Now().Add(closeLinger)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !s.eof.Load() && time.Now().Before(deadline) {
		select {
		case <-tick.C:
		case <-s.pc.done:
			return
		}
	}
	select {
	case <-time.After(closeGrace):
	case <-s.pc.done:
		return
	}
	s.Fail(ErrStreamClosed)
}

// release frees the stream's session and id.
func (s *Stream) release() {
	s.sess.Close()
	s.pc.Close()
	s.l.win.remove(s)
}

func (s *Stream) failure() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failed
}

// SetDeadline sets both directions' deadlines.
func (s *Stream) SetDeadline(t time.Time) error { return s.sess.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.sess.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.sess.SetWriteDeadline(t) }

// setWindow sets how many packets the stream may have in flight: sent and not yet
// acknowledged. The sequence span may be spanPerWindow times that, so that a lost
// packet's wait for its retransmission does not stall the stream, while what waits in
// KCP to be sent stays bounded.
func (s *Stream) setWindow(packets int) {
	s.sess.SetInflightLimit(packets)
	s.sess.SetWindowSize(min(maxWindow, spanPerWindow*packets), maxWindow)
}

// windowLimited reports whether the window held back the stream's data since the
// last call. It never waits for the KCP session's lock.
func (s *Stream) windowLimited() bool { return s.sess.InflightLimited() }

// spanPerWindow is how far past the in-flight window a stream's sequence span may reach.
const spanPerWindow = 4

// streamPacketConn is the packet connection a stream's KCP session reads and writes:
// its packets go out sealed on the lane, and the lane's demultiplexer feeds it.
type streamPacketConn struct {
	l     *Lane
	id    uint32
	inbox chan []byte
	once  sync.Once
	done  chan struct{}
}

// laneAddr names the far end of a lane to KCP, which wants an address.
type laneAddr struct{}

func (laneAddr) Network() string { return "umbra-lane" }
func (laneAddr) String() string  { return "lane" }

func (c *streamPacketConn) deliver(pkt []byte) {
	c.roundTripsFrom(pkt, time.Now())
	select {
	case c.inbox <- append(getPacket()[:0], pkt...):
	default: // KCP is far behind; it asks again
	}
}

func (c *streamPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.inbox:
		n := copy(b, p)
		putPacket(p)
		return n, laneAddr{}, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *streamPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	if len(b) < pacedSize {
		c.l.clockFrom(b, time.Now())
		// Acknowledgements and window probes: holding them back behind the data's pace
		// would stretch the peer's round trip into spurious retransmissions.
		c.l.sendPaced(kindStream, b)
		if carriesData(b) {
			// A small packet with data is interactive traffic (a keystroke, a command's
			// answer) or the tail of a transfer: nothing follows it whose acknowledgement
			// could tell KCP it was lost, so only the retransmission timeout, a second or
			// more on a slow radio, would. A copy costs a few bytes and saves that wait
			// unless both are lost.
			c.l.sendPaced(kindStream, b)
		}
		return len(b), nil
	}
	c.l.queueStream(b)
	return len(b), nil
}

// KCP's segment commands and header size.
const (
	kcpSegHeader = 24
	kcpCmdPush   = 81 // IKCP_CMD_PUSH
	kcpCmdAck    = 82 // IKCP_CMD_ACK
)

// kcpSegment is what the lane reads of a KCP segment's header: its conversation (the
// stream), command, timestamp, sequence number and data length. An acknowledgement's
// timestamp and sequence number are the acknowledged segment's, echoed.
type kcpSegment struct {
	conv, ts, sn uint32
	cmd          byte
	dataLen      int
}

// eachSegment calls f with each segment of the KCP packet b, until f returns false or
// the packet ends. A KCP packet is a run of segments, each a 24-byte header
// (conversation, command, fragment, window, timestamp, sequence number, cumulative
// acknowledgement, length; little-endian) and length bytes of data.
func eachSegment(b []byte, f func(kcpSegment) bool) {
	for len(b) >= kcpSegHeader {
		length := binary.LittleEndian.Uint32(b[20:])
		if uint64(length) > uint64(len(b)-kcpSegHeader) { // compared unsigned: int is 32 bits on ARMv6/v7
			return
		}
		seg := kcpSegment{conv: binary.LittleEndian.Uint32(b), cmd: b[4], ts: binary.LittleEndian.Uint32(b[8:]), sn: binary.LittleEndian.Uint32(b[12:]), dataLen: int(length)}
		if !f(seg) {
			return
		}
		b = b[kcpSegHeader+seg.dataLen:]
	}
}

// carriesData reports whether the KCP packet b holds a segment of stream data, not only
// acknowledgements or window probes.
func carriesData(b []byte) bool {
	data := false
	eachSegment(b, func(seg kcpSegment) bool {
		data = seg.cmd == kcpCmdPush && seg.dataLen > 0
		return !data
	})
	return data
}

// clockFrom hands the packet's data segments, sent now, to the window, which learns
// KCP's clock from their timestamps and how long each waited to leave.
func (l *Lane) clockFrom(b []byte, now time.Time) {
	l.win.eachLocked(b, kcpCmdPush, func(seg kcpSegment) { l.win.sentLocked(seg, now) })
}

// roundTripsFrom hands the packet's acknowledgements, arrived now, to the window, which
// takes their round trips from the timestamps they echo.
func (c *streamPacketConn) roundTripsFrom(b []byte, now time.Time) {
	c.l.win.eachLocked(b, kcpCmdAck, func(seg kcpSegment) { c.l.win.ackedLocked(seg, now) })
}

// pacedSize is the smallest stream packet queued for the stream writer's pacing: one
// that carries a full segment of data, not only acknowledgements (24 bytes each in KCP).
const pacedSize = 256

// streamOutQueue bounds the stream packets waiting to be paced out; beyond it they are
// dropped, and KCP sends them again.
const streamOutQueue = 4096

// queueStream hands one stream packet to the lane's paced writer. It never waits: KCP
// calls it holding its session's lock.
func (l *Lane) queueStream(b []byte) {
	l.writeOnce.Do(func() {
		l.streamOut = make(chan []byte, streamOutQueue)
		go l.writeStreams()
	})
	select {
	case l.streamOut <- append(getPacket()[:0], b...):
	default:
	}
}

// writeStreams sends queued stream packets, each in its pacing slot, until the lane
// closes.
func (l *Lane) writeStreams() {
	for {
		select {
		case b := <-l.streamOut:
			if wait := l.streamPace.reserve(time.Now()); wait > 0 {
				time.Sleep(wait)
			}
			l.clockFrom(b, time.Now())
			l.send(kindStream, b)
			putPacket(b)
		case <-l.done:
			return
		}
	}
}

func (c *streamPacketConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		c.l.streamMu.Lock()
		if c.l.streams[c.id] == c {
			delete(c.l.streams, c.id)
		}
		c.l.streamMu.Unlock()
	})
	return nil
}

func (c *streamPacketConn) LocalAddr() net.Addr              { return laneAddr{} }
func (c *streamPacketConn) RemoteAddr() net.Addr             { return laneAddr{} }
func (c *streamPacketConn) SetDeadline(time.Time) error      { return nil }
func (c *streamPacketConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamPacketConn) SetWriteDeadline(time.Time) error { return nil }
