package resume

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// readBufSize is the stream reader's buffer for frame headers; payloads larger than it
// are read straight into the receive buffer.
const readBufSize = 16 << 10

// session is one attached stream.
type session struct {
	s        io.ReadWriteCloser
	hdrRecvd uint64 // the received offset this end announced in its header

	// Under Conn.mu.
	ready    bool // the peer's header has been applied
	forceAck bool // send the current ack even if unchanged (the last may have been lost)
	grace    *time.Timer

	stopOnce   sync.Once
	stop       chan struct{} // closed to end the session
	err        error         // why it ended; set before stop is closed
	readerDone chan struct{}
	finished   chan struct{} // closed when Serve has detached the session

	// Stream writer's scratch, reused for every frame.
	bufs  net.Buffers
	iov   [3][]byte
	head  [offsetFrameLen + dataHeaderLen]byte
	tail  [offsetFrameLen]byte
	hello [headerLen]byte
	timer *time.Timer

	// Stream reader's scratch.
	br      *bufio.Reader
	hbuf    [headerLen]byte
	scratch [8]byte
}

// stopWith ends the session with err (the first call wins) and closes the stream,
// expiring its deadlines first where it has them so blocked calls return.
func (s *session) stopWith(err error) {
	s.stopOnce.Do(func() {
		s.err = err
		close(s.stop)
		past := time.Unix(1, 0)
		if d, ok := s.s.(interface{ SetReadDeadline(time.Time) error }); ok {
			d.SetReadDeadline(past)
		}
		if d, ok := s.s.(interface{ SetWriteDeadline(time.Time) error }); ok {
			d.SetWriteDeadline(past)
		}
		s.s.Close()
	})
}

// Serve runs the Conn over s until s fails or the Conn ends. It first exchanges resume
// headers with the peer (magic, version, receive window and how many bytes each side has
// received), drops replay bytes the peer already has, retransmits the rest, then carries
// data and acks.
//
// Serve returns nil when the Conn ended cleanly (both directions done, or Close's
// linger ran out), the Conn's error if it was aborted or reset, and otherwise the error
// that broke s; then the Conn is detached and Read and Write block until the next Serve
// (or DetachTimeout). A Serve call while another runs replaces it (the older returns
// ErrReplaced). Serve closes s before it returns; closing s (or its read deadline, which
// Serve sets when s has one) must unblock a pending Read on s.
func (c *Conn) Serve(ctx context.Context, s io.ReadWriteCloser) error {
	c.mu.Lock()
	for c.sess != nil && !c.ended {
		old := c.sess
		c.mu.Unlock()
		old.stopWith(ErrReplaced)
		<-old.finished
		c.mu.Lock()
	}
	if c.ended {
		err := c.err
		c.mu.Unlock()
		s.Close()
		if err == nil {
			err = net.ErrClosed
		}
		return fmt.Errorf("resume: serve on an ended conn: %w", err)
	}
	sess := &session{
		s:          s,
		hdrRecvd:   c.recvd,
		stop:       make(chan struct{}),
		readerDone: make(chan struct{}),
		finished:   make(chan struct{}),
		br:         bufio.NewReaderSize(s, readBufSize),
		timer:      time.NewTimer(time.Hour),
	}
	sess.timer.Stop()
	if c.peerFin {
		sess.hdrRecvd++ // the fin counts as one received offset
	}
	c.sess = sess
	c.detachTimer.Stop()
	c.lastProgress = time.Now()
	c.mu.Unlock()

	stopCtx := context.AfterFunc(ctx, func() { sess.stopWith(fmt.Errorf("resume: serve: %w", ctx.Err())) })
	go c.readLoop(sess)
	werr := c.writeLoop(sess)
	sess.stopWith(werr)
	<-sess.readerDone
	stopCtx()

	c.mu.Lock()
	if sess.grace != nil {
		sess.grace.Stop()
	}
	c.sess = nil
	c.busy = false
	if !c.ended {
		c.detachTimer.Reset(c.cfg.DetachTimeout)
	}
	ended, cerr := c.ended, c.err
	c.mu.Unlock()
	close(sess.finished)
	if ended {
		return cerr
	}
	return sess.err
}

// writeLoop writes this end's header, then frames, until the session stops, the
// stream fails or the Conn ends. It returns the stream's error, if any.
func (c *Conn) writeLoop(sess *session) error {
	h := appendHello(sess.hello[:0], hello{window: uint32(c.window), recvd: sess.hdrRecvd})
	if _, err := sess.s.Write(h); err != nil {
		return fmt.Errorf("resume: write header: %w", err)
	}
	for {
		c.mu.Lock()
		var (
			head, payload, tail []byte
			ackVal              uint64
			sentAck             bool
		)
		for {
			if c.ended {
				reset := c.sendReset
				c.mu.Unlock()
				if reset {
					sess.s.Write([]byte{frameReset}) // best effort: the peer learns why the stream ends
				}
				return nil
			}
			if isClosed(sess.stop) {
				c.mu.Unlock()
				return nil
			}
			var timerC <-chan time.Time
			if sess.ready {
				head, payload, tail, ackVal, sentAck = c.nextFramesLocked(sess)
				if head != nil || tail != nil {
					break
				}
				if !c.ackDue.IsZero() {
					sess.timer.Reset(time.Until(c.ackDue))
					timerC = sess.timer.C
				}
			}
			c.mu.Unlock()
			select {
			case <-c.sendWake:
			case <-timerC:
			case <-sess.stop:
			case <-c.done:
			}
			if timerC != nil {
				sess.timer.Stop()
			}
			c.mu.Lock()
		}
		c.mu.Unlock()

		sess.bufs = sess.iov[:0]
		for _, b := range [...][]byte{head, payload, tail} {
			if len(b) > 0 {
				sess.bufs = append(sess.bufs, b)
			}
		}
		_, err := sess.bufs.WriteTo(sess.s)

		c.mu.Lock()
		c.busy = false
		if err == nil && sentAck {
			c.ackWritten = ackVal
			c.checkFinishedLocked()
		}
		c.mu.Unlock()
		signal(c.writeWake)
		if err != nil {
			return fmt.Errorf("resume: write stream: %w", err)
		}
	}
}

// nextFramesLocked decides what the stream writer sends next: an ack (head), a data
// frame (its header in head, its payload in the replay buffer) and a fin (tail). It
// returns nil slices when nothing is due. It advances the send state as if the write
// will succeed; a failed stream is replayed from the peer's next header anyway.
func (c *Conn) nextFramesLocked(sess *session) (head, payload, tail []byte, ackVal uint64, sentAck bool) {
	// Data the peer's window and the replay buffer allow, up to one frame and the buffer's end.
	var n uint64
	if limit := c.peerAcked + c.peerWindow; c.sendNext < c.wrote && c.sendNext < limit {
		n = min(c.wrote-c.sendNext, limit-c.sendNext, maxPayload, c.window-c.sendNext%c.window)
	}
	fin := c.finQueued && c.sendNext+n == c.wrote // once sent, sendNext is wrote+1

	av := c.ackValueLocked()
	ack := false
	if av > c.ackSent || sess.forceAck {
		switch {
		case n > 0 || fin || sess.forceAck:
			ack = true // piggyback on what goes anyway
		case av-c.ackSent >= c.window/4 || (c.peerFin && av == c.peerFinal+1):
			ack = true
		case c.ackDue.IsZero():
			c.ackDue = time.Now().Add(c.cfg.AckDelay)
		case !time.Now().Before(c.ackDue):
			ack = true
		}
	}
	if !ack && n == 0 && !fin {
		return nil, nil, nil, 0, false
	}

	head = sess.head[:0]
	if ack {
		head = appendOffsetFrame(head, frameAck, av)
		c.ackSent = av
		c.ackDue = time.Time{}
		sess.forceAck = false
	}
	if n > 0 {
		start := c.sendNext % c.window
		head = appendDataHeader(head, int(n))
		payload = c.sbuf[start : start+n]
		c.busy, c.busyFrom = true, c.sendNext
		if c.sendNext < c.sendHigh {
			c.stats.Retransmitted += min(c.sendHigh, c.sendNext+n) - c.sendNext
		}
		c.sendNext += n
		if c.sendNext > c.sendHigh {
			c.stats.Sent += c.sendNext - max(c.sendHigh, c.sendNext-n)
			c.sendHigh = c.sendNext
		}
	}
	if fin {
		tail = appendOffsetFrame(sess.tail[:0], frameFin, c.wrote)
		c.sendNext = c.wrote + 1
		c.sendHigh = max(c.sendHigh, c.sendNext)
	}
	return head, payload, tail, av, ack
}

// readLoop runs the stream reader and stops the session with its error.
func (c *Conn) readLoop(sess *session) {
	defer close(sess.readerDone)
	sess.stopWith(c.readStream(sess))
}

// readStream reads the peer's header, applies it, then applies frames until the
// stream fails, the peer sends something invalid or the Conn ends.
func (c *Conn) readStream(sess *session) error {
	if _, err := io.ReadFull(sess.br, sess.hbuf[:]); err != nil {
		return fmt.Errorf("resume: read header: %w", err)
	}
	h, err := parseHello(sess.hbuf[:])
	if err != nil {
		return err
	}
	c.mu.Lock()
	err = c.applyHelloLocked(sess, h)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	signal(c.sendWake)

	for {
		f, err := readFrame(sess.br, &sess.scratch)
		if err != nil {
			if isClosed(c.done) {
				return nil
			}
			return fmt.Errorf("resume: read stream: %w", err)
		}
		switch f.typ {
		case frameData:
			err = c.readData(sess, f.val)
		case frameAck:
			err = c.applyAck(f.val)
		case frameFin:
			err = c.applyFin(f.val)
		case frameReset:
			c.mu.Lock()
			c.endLocked(ErrPeerReset)
			c.mu.Unlock()
			return ErrPeerReset
		}
		if err != nil {
			return err
		}
	}
}

// applyHelloLocked checks the peer's header against what this end sent and rewinds the
// send position to what the peer has.
func (c *Conn) applyHelloLocked(sess *session, h hello) error {
	if h.recvd > c.sendHigh {
		return fmt.Errorf("resume: peer claims offset %d beyond the %d bytes sent", h.recvd, c.sendHigh)
	}
	if floor := max(c.sendBase, c.peerAcked); h.recvd < floor {
		return fmt.Errorf("resume: peer claims offset %d, behind the %d it acknowledged before", h.recvd, floor)
	}
	c.sendNext = h.recvd
	c.sendBase = max(c.sendBase, min(h.recvd, c.wrote))
	c.peerWindow = uint64(h.window)
	if c.attachedOnce {
		c.stats.Resumes++
	}
	c.attachedOnce = true
	sess.ready = true
	sess.forceAck = c.ackValueLocked() > 0
	return nil
}

// readData reads a data frame's payload of n bytes into the receive buffer.
func (c *Conn) readData(sess *session, n uint64) error {
	c.mu.Lock()
	recvd, consumed := c.recvd, c.consumed
	fin := c.peerFin
	c.mu.Unlock()
	if fin {
		return fmt.Errorf("resume: peer sent %d bytes after its end of stream", n)
	}
	if recvd+n > consumed+c.window {
		return fmt.Errorf("resume: peer sent %d bytes past the %d-byte window", recvd+n-consumed-c.window, c.window)
	}
	// [recvd, consumed+window) belongs to the stream reader until recvd moves.
	start := recvd % c.window
	first := min(n, c.window-start)
	if _, err := io.ReadFull(sess.br, c.rbuf[start:start+first]); err != nil {
		return fmt.Errorf("resume: read stream: %w", midFrame(err))
	}
	if first < n {
		if _, err := io.ReadFull(sess.br, c.rbuf[:n-first]); err != nil {
			return fmt.Errorf("resume: read stream: %w", midFrame(err))
		}
	}
	c.mu.Lock()
	c.recvd += n
	c.stats.Received += n
	wake := false
	if c.closed {
		c.consumed = c.recvd // nobody reads any more: discard, but acknowledge
		wake = c.scheduleAckLocked()
	}
	c.mu.Unlock()
	signal(c.readWake)
	if wake {
		signal(c.sendWake)
	}
	return nil
}

// applyAck records the peer's consumed offset, freeing replay buffer and window.
func (c *Conn) applyAck(v uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v > c.sendHigh {
		return fmt.Errorf("resume: peer acknowledges offset %d beyond the %d bytes sent", v, c.sendHigh)
	}
	if v < c.peerAcked {
		return fmt.Errorf("resume: peer acknowledges offset %d after %d", v, c.peerAcked)
	}
	if v > c.peerAcked && c.closed {
		c.lastProgress = time.Now()
	}
	c.peerAcked = v
	c.sendBase = max(c.sendBase, min(v, c.wrote))
	c.checkFinishedLocked()
	signal(c.writeWake)
	signal(c.sendWake)
	return nil
}

// applyFin records the peer's end of stream at offset off.
func (c *Conn) applyFin(off uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.peerFin {
		return fmt.Errorf("resume: peer sent a second end of stream")
	}
	if off != c.recvd {
		return fmt.Errorf("resume: peer ends its stream at offset %d, but %d bytes arrived", off, c.recvd)
	}
	c.peerFin, c.peerFinal = true, off
	if c.closed {
		c.lastProgress = time.Now()
	}
	signal(c.readWake)
	if c.scheduleAckLocked() {
		signal(c.sendWake)
	}
	return nil
}
