package lane

import (
	"errors"
	"io"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// Circuit is one hop of a circuit whose bytes ride a lane stream: the QUIC stream that
// set the circuit up stays open beside it, carrying no bytes, to carry its resets,
// which must not wait behind the bytes. A reset of the control stream fails the lane
// stream with the reset, code and all; its normal end leaves the lane stream closeGrace
// to finish.
type Circuit struct {
	*Stream
	ctl *quic.Stream
}

// NewCircuit binds data to the control stream ctl and starts watching ctl.
func NewCircuit(data *Stream, ctl *quic.Stream) *Circuit {
	c := &Circuit{Stream: data, ctl: ctl}
	go c.watch()
	return c
}

// watch reads the control stream, on which the peer sends nothing more: a read ends
// only with its end or its reset.
func (c *Circuit) watch() {
	var b [64]byte
	var err error
	for err == nil {
		_, err = c.ctl.Read(b[:])
	}
	if !errors.Is(err, io.EOF) {
		c.Stream.Fail(err)
		return
	}
	select {
	case <-time.After(closeGrace):
		c.Stream.Fail(ErrStreamClosed)
	case <-c.Stream.pc.done:
	}
}

// Cancel resets the circuit's hop: the control stream with code, which the peer reads
// as the circuit's failure, and the lane stream at once.
func (c *Circuit) Cancel(code quic.StreamErrorCode) {
	c.ctl.CancelRead(code)
	c.ctl.CancelWrite(code)
	c.Stream.Fail(&quic.StreamError{StreamID: c.ctl.StreamID(), ErrorCode: code})
}

// Close ends the sending direction only, as a QUIC stream's Close does: the peer reads
// an end of stream after the last byte. Finish frees the rest.
func (c *Circuit) Close() error { return c.CloseWrite() }

// Finish ends the hop normally: the control stream's end tells the peer, and the lane
// stream closes once its last bytes are through (Stream.Close).
func (c *Circuit) Finish() {
	c.ctl.Close()
	c.Stream.Close() // the stream's own Close: its end, then its release once through
}
