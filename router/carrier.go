package router

import (
	"io"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/lane"
)

// circuitStream carries a circuit's bytes across one hop: a QUIC stream, or on an
// agent's radio hop a stream on its datagram lane (lane.Circuit), which random loss
// does not slow down as it does QUIC's.
type circuitStream interface {
	io.Reader
	io.Writer
	// Close ends the sending direction: the far side reads an end of stream.
	Close() error
	// cancel resets both directions with code.
	cancel(code quic.StreamErrorCode)
	// finish frees what the hop holds once both directions have ended.
	finish()
}

// quicStream is a hop on a QUIC stream.
type quicStream struct{ *quic.Stream }

func (s quicStream) cancel(code quic.StreamErrorCode) {
	s.CancelRead(code)
	s.CancelWrite(code)
}

// finish: both directions of a QUIC stream that ended are already done with.
func (quicStream) finish() {}

// laneStream is a hop on an agent's lane.
type laneStream struct{ *lane.Circuit }

func (s laneStream) cancel(code quic.StreamErrorCode) { s.Cancel(code) }

func (s laneStream) finish() { s.Finish() }
