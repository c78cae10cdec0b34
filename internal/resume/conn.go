package resume

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultWindow        = 1 << 20               // bytes kept for replay, and the receive window
	DefaultAckDelay      = 10 * time.Millisecond // longest wait before acknowledging consumed bytes
	DefaultDetachTimeout = 60 * time.Second      // longest time without a stream
	DefaultCloseLinger   = 5 * time.Second       // longest time Close waits without progress
)

// resetGrace is how long a Conn that ended abnormally tries to tell the peer with a
// reset frame before it closes the stream regardless.
const resetGrace = time.Second

// Errors a Conn's Read and Write return once it has ended abnormally.
var (
	// ErrExpired means no stream was attached for Config.DetachTimeout.
	ErrExpired = errors.New("resume: no stream attached within the detach timeout")
	// ErrPeerReset means the peer aborted the connection (or gave up waiting on Close).
	ErrPeerReset = errors.New("resume: peer reset the connection")
	// ErrAborted is the error of Abort(nil).
	ErrAborted = errors.New("resume: aborted")
	// ErrReplaced is what Serve returns when a later Serve call took its place.
	ErrReplaced = errors.New("resume: stream replaced by a newer Serve")
	// ErrWriteAfterCloseWrite is Write's error after CloseWrite.
	ErrWriteAfterCloseWrite = errors.New("resume: write after CloseWrite")
)

// Config tunes a Conn; every zero field takes its default.
type Config struct {
	// Window is both the most unacknowledged bytes kept for replay (Write blocks beyond
	// it) and the receive window announced to the peer (bytes received but not yet read).
	// Memory per Conn is about 2×Window. Default DefaultWindow; raised to 4 KiB, capped at 1 GiB.
	Window int
	// AckDelay is the longest time between consuming a byte and acknowledging it; an
	// acknowledgement also goes out as soon as Window/4 bytes are unacknowledged.
	// Default DefaultAckDelay.
	AckDelay time.Duration
	// DetachTimeout is how long the Conn survives with no stream attached (from New, and
	// from each stream's failure) before it ends with ErrExpired. Default DefaultDetachTimeout.
	DetachTimeout time.Duration
	// CloseLinger is how long a closed Conn keeps a stream attached while the peer makes
	// no progress acknowledging its last bytes or sending its end of stream, before it
	// resets the connection. Default DefaultCloseLinger.
	CloseLinger time.Duration
	// LocalAddr and RemoteAddr are what the net.Conn methods return; optional.
	LocalAddr, RemoteAddr net.Addr
}

// Stats counts a Conn's traffic.
type Stats struct {
	Sent          uint64 // application bytes transmitted at least once
	Received      uint64 // application bytes received
	Retransmitted uint64 // application bytes transmitted again after a resume
	Resumes       int    // streams after the first on which the resume headers were exchanged
}

// Conn is one end of a resumable byte stream: a net.Conn (with CloseWrite) whose bytes
// survive the replacement of the stream underneath, which Serve attaches.
type Conn struct {
	cfg    Config
	window uint64 // cfg.Window as a uint64

	readLock, writeLock chan struct{} // one Read and one Write at a time (chan so waiting honours deadlines)
	readWake            chan struct{} // data, end of stream or an error for Read
	writeWake           chan struct{} // room in the replay buffer for Write
	sendWake            chan struct{} // something for the stream writer
	closedCh            chan struct{} // closed by Close
	done                chan struct{} // closed when the Conn has ended
	rd, wd              deadline

	mu sync.Mutex

	// Send direction. The replay buffer sbuf holds stream offsets [sendBase, wrote) at
	// offset%window. A fin, once queued, sits at offset wrote and takes one offset.
	sbuf       []byte
	sendBase   uint64 // offsets below it the peer has; they are dropped
	wrote      uint64 // bytes the application has written
	sendNext   uint64 // next offset to transmit on the current stream
	sendHigh   uint64 // highest offset ever transmitted, plus one
	finQueued  bool   // CloseWrite or Close was called
	peerAcked  uint64 // the peer's consumed offset, from its acks
	peerWindow uint64 // the peer's receive window, from its header
	busy       bool   // the stream writer is transmitting from busyFrom without the lock
	busyFrom   uint64

	// Receive direction. rbuf holds offsets [consumed, recvd) at offset%window.
	rbuf       []byte
	recvd      uint64 // bytes received from the peer
	consumed   uint64 // bytes read by the application (or discarded after Close)
	peerFin    bool   // the peer's fin arrived, at offset peerFinal
	peerFinal  uint64
	ackSent    uint64    // ack value handed to the stream writer
	ackWritten uint64    // ack value written to a stream without error
	ackDue     time.Time // when the pending ack must go out; zero if none is pending

	// Lifecycle.
	closed       bool     // Close was called
	ended        bool     // done is closed
	err          error    // why the Conn ended; nil if it ended cleanly
	sendReset    bool     // tell the peer with a reset frame
	sess         *session // the attached stream, if any
	attachedOnce bool
	detachTimer  *time.Timer
	lingerTimer  *time.Timer
	lastProgress time.Time
	stats        Stats
}

// New returns a Conn with no stream attached; Serve attaches one.
func New(cfg Config) *Conn {
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	cfg.Window = min(max(cfg.Window, minWindow), maxWindow)
	if cfg.AckDelay <= 0 {
		cfg.AckDelay = DefaultAckDelay
	}
	if cfg.DetachTimeout <= 0 {
		cfg.DetachTimeout = DefaultDetachTimeout
	}
	if cfg.CloseLinger <= 0 {
		cfg.CloseLinger = DefaultCloseLinger
	}
	c := &Conn{
		cfg:       cfg,
		window:    uint64(cfg.Window),
		readLock:  make(chan struct{}, 1),
		writeLock: make(chan struct{}, 1),
		readWake:  make(chan struct{}, 1),
		writeWake: make(chan struct{}, 1),
		sendWake:  make(chan struct{}, 1),
		closedCh:  make(chan struct{}),
		done:      make(chan struct{}),
		rd:        makeDeadline(),
		wd:        makeDeadline(),
		sbuf:      make([]byte, cfg.Window),
		rbuf:      make([]byte, cfg.Window),
	}
	c.mu.Lock()
	c.detachTimer = time.AfterFunc(cfg.DetachTimeout, c.expire)
	c.mu.Unlock()
	return c
}

// Read reads received bytes in order; it returns io.EOF after the peer's CloseWrite or
// Close once every byte before it has been read.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.acquire(c.readLock, &c.rd); err != nil {
		return 0, err
	}
	defer func() { <-c.readLock }()
	for {
		if isClosed(c.rd.wait()) {
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		if err := c.readErrLocked(); err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		if avail := c.recvd - c.consumed; avail > 0 {
			start, consumed := c.consumed%c.window, c.consumed
			c.mu.Unlock()
			// [consumed, recvd) belongs to Read until consumed moves: copy without the lock.
			n := copy(p[:min(uint64(len(p)), avail)], c.rbuf[start:])
			if uint64(n) < avail && n < len(p) {
				n += copy(p[n:min(uint64(len(p)), avail)], c.rbuf)
			}
			c.mu.Lock()
			if err := c.readErrLocked(); err != nil || c.consumed != consumed {
				c.mu.Unlock()
				if err == nil {
					err = net.ErrClosed
				}
				return 0, err
			}
			c.consumed += uint64(n)
			wake := c.scheduleAckLocked()
			c.mu.Unlock()
			if wake {
				signal(c.sendWake)
			}
			return n, nil
		}
		if c.peerFin {
			c.mu.Unlock()
			return 0, io.EOF
		}
		c.mu.Unlock()
		select {
		case <-c.readWake:
		case <-c.rd.wait():
		case <-c.done:
		case <-c.closedCh:
		}
	}
}

// readErrLocked is the error Read returns now, if any.
func (c *Conn) readErrLocked() error {
	if c.closed {
		return net.ErrClosed
	}
	if c.err != nil {
		return c.err
	}
	if c.ended && !c.peerFin {
		return net.ErrClosed
	}
	return nil
}

// scheduleAckLocked notes newly consumed bytes for acknowledgement and reports whether
// the stream writer must look now.
func (c *Conn) scheduleAckLocked() bool {
	av := c.ackValueLocked()
	if av <= c.ackSent {
		return false
	}
	if av-c.ackSent >= c.window/4 || (c.peerFin && av == c.peerFinal+1) {
		return true
	}
	if c.ackDue.IsZero() {
		c.ackDue = time.Now().Add(c.cfg.AckDelay)
		return true
	}
	return false
}

// ackValueLocked is what an ack sent now says: bytes consumed, plus one once the fin is.
func (c *Conn) ackValueLocked() uint64 {
	if c.peerFin && c.consumed == c.peerFinal {
		return c.consumed + 1
	}
	return c.consumed
}

// Write copies p into the replay buffer for transmission, blocking while the buffer
// holds Window unacknowledged bytes.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.acquire(c.writeLock, &c.wd); err != nil {
		return 0, err
	}
	defer func() { <-c.writeLock }()
	total := 0
	for {
		if isClosed(c.wd.wait()) {
			return total, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		if err := c.writeErrLocked(); err != nil {
			c.mu.Unlock()
			return total, err
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return total, nil
		}
		base := c.sendBase
		if c.busy && c.busyFrom < base {
			base = c.busyFrom // the stream writer still reads those bytes
		}
		if free := c.window - (c.wrote - base); free > 0 {
			start := c.wrote % c.window
			n := int(min(free, uint64(len(p)), c.window-start))
			c.mu.Unlock()
			// [wrote, base+window) belongs to Write until wrote moves: copy without the lock.
			copy(c.sbuf[start:], p[:n])
			c.mu.Lock()
			if err := c.writeErrLocked(); err != nil {
				c.mu.Unlock()
				return total, err
			}
			c.wrote += uint64(n)
			c.mu.Unlock()
			signal(c.sendWake)
			p = p[n:]
			total += n
			continue
		}
		c.mu.Unlock()
		select {
		case <-c.writeWake:
		case <-c.wd.wait():
		case <-c.done:
		case <-c.closedCh:
		}
	}
}

// writeErrLocked is the error Write returns now, if any.
func (c *Conn) writeErrLocked() error {
	switch {
	case c.closed:
		return net.ErrClosed
	case c.err != nil:
		return c.err
	case c.finQueued:
		return ErrWriteAfterCloseWrite
	case c.ended:
		return net.ErrClosed
	}
	return nil
}

// acquire takes a one-slot lock, giving up at the deadline, Close or the Conn's end.
func (c *Conn) acquire(lock chan struct{}, d *deadline) error {
	select {
	case lock <- struct{}{}:
		return nil
	default:
	}
	select {
	case lock <- struct{}{}:
		return nil
	case <-d.wait():
		return os.ErrDeadlineExceeded
	case <-c.closedCh:
		return net.ErrClosed
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.err != nil {
			return c.err
		}
		return net.ErrClosed
	}
}

// CloseWrite ends the sending direction: the peer reads io.EOF after the bytes written so far.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return net.ErrClosed
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.finQueued = true
	c.mu.Unlock()
	signal(c.sendWake)
	return nil
}

// Close ends the Conn in order: it sends the end of stream if CloseWrite has not, drops
// unread bytes, and lets Serve finish once both directions are done and acknowledged
// (or CloseLinger passes without progress). Pending and later Read and Write calls
// return net.ErrClosed. Close does not wait.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	close(c.closedCh)
	if c.ended {
		c.mu.Unlock()
		return nil
	}
	c.finQueued = true
	c.consumed = c.recvd
	if c.ackValueLocked() > c.ackSent {
		c.ackDue = time.Now()
	}
	c.lastProgress = time.Now()
	c.lingerTimer = time.AfterFunc(c.cfg.CloseLinger, c.lingerCheck)
	c.checkFinishedLocked()
	c.mu.Unlock()
	signal(c.sendWake)
	return nil
}

// lingerCheck ends a closed Conn whose peer has made no progress for CloseLinger while
// a stream was attached. Without a stream, DetachTimeout applies instead.
func (c *Conn) lingerCheck() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	if c.sess == nil {
		c.lingerTimer.Reset(c.cfg.CloseLinger)
		return
	}
	if left := c.cfg.CloseLinger - time.Since(c.lastProgress); left > 0 {
		c.lingerTimer.Reset(left)
		return
	}
	c.sendReset = true
	c.endLocked(nil) // the application asked for the end; Serve reports it as clean
}

// Abort ends the Conn now: pending and later Read and Write calls return err (ErrAborted
// if nil), the peer is told with a reset frame if a stream is attached, and Serve returns err.
func (c *Conn) Abort(err error) {
	if err == nil {
		err = ErrAborted
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.sendReset = true
	c.endLocked(err)
}

// expire ends a Conn that has had no stream for DetachTimeout.
func (c *Conn) expire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.sess != nil {
		return
	}
	c.endLocked(ErrExpired)
}

// checkFinishedLocked ends the Conn cleanly once both directions are done: this end's
// fin acknowledged by the peer, and the peer's fin consumed and acknowledged on a stream.
func (c *Conn) checkFinishedLocked() {
	if !c.ended && c.finQueued && c.peerAcked == c.wrote+1 && c.peerFin && c.ackWritten == c.peerFinal+1 {
		c.endLocked(nil)
	}
}

// endLocked ends the Conn with err (nil: cleanly) and wakes everything waiting on it.
func (c *Conn) endLocked(err error) {
	if c.ended {
		return
	}
	c.ended = true
	c.err = err
	close(c.done)
	c.detachTimer.Stop()
	if c.lingerTimer != nil {
		c.lingerTimer.Stop()
	}
	if s := c.sess; s != nil && c.sendReset {
		// The stream writer sends the reset; a stream that does not take it in time is closed.
		s.grace = time.AfterFunc(resetGrace, func() { s.stopWith(nil) })
	}
}

// Done is closed when the Conn has ended: cleanly, by Abort, expiry or a peer's reset.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the Conn ended: nil while it lives or if it ended cleanly.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stats returns the Conn's traffic counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// LocalAddr returns Config.LocalAddr, or a placeholder address.
func (c *Conn) LocalAddr() net.Addr {
	if c.cfg.LocalAddr != nil {
		return c.cfg.LocalAddr
	}
	return addr{}
}

// RemoteAddr returns Config.RemoteAddr, or a placeholder address.
func (c *Conn) RemoteAddr() net.Addr {
	if c.cfg.RemoteAddr != nil {
		return c.cfg.RemoteAddr
	}
	return addr{}
}

// SetDeadline sets both the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline makes pending and later Reads fail with os.ErrDeadlineExceeded after t.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

// SetWriteDeadline makes pending and later Writes fail with os.ErrDeadlineExceeded after t.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wd.set(t)
	return nil
}

// addr is the placeholder address of a Conn without configured addresses.
type addr struct{}

func (addr) Network() string { return "resume" }
func (addr) String() string  { return "resume" }
