package agent

import (
	"fmt"
	"io"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/lane"
)

// carrier is what a TCP circuit's resumable stream runs over on the agent's hop: a
// QUIC stream, or a stream of the link's datagram lane bound to the QUIC stream that
// set the circuit up (lane.Circuit), which random radio loss does not slow down.
type carrier interface {
	io.ReadWriteCloser
	// cancel drops the hop: its path broke or a new one replaced it.
	cancel()
	// finish frees the hop once the circuit has ended.
	finish()
}

// quicCarrier is a hop on a QUIC stream.
type quicCarrier struct{ *quic.Stream }

func (c quicCarrier) cancel() {
	c.CancelRead(0)
	c.CancelWrite(0)
}

func (c quicCarrier) finish() { c.cancel() }

// laneCarrier is a hop on a lane stream.
type laneCarrier struct{ *lane.Circuit }

func (c laneCarrier) cancel() { c.Cancel(0) }

func (c laneCarrier) finish() { c.Finish() }

// wantsLaneStream reports whether circuits on conn should ask for lane streams.
func (a *Agent) wantsLaneStream(conn *quic.Conn) bool {
	a.udpMu.Lock()
	defer a.udpMu.Unlock()
	ll := a.lanes[conn]
	return ll != nil && ll.streams.Load()
}

// carrierFor makes the carrier of a circuit whose setup ran on s: the lane stream id
// on conn's lane when onLane, else s itself.
func (a *Agent) carrierFor(conn *quic.Conn, s *quic.Stream, id uint64, onLane bool) (carrier, error) {
	if !onLane {
		return quicCarrier{s}, nil
	}
	a.udpMu.Lock()
	ll := a.lanes[conn]
	a.udpMu.Unlock()
	if ll == nil {
		return nil, fmt.Errorf("lane stream %d: the link has no lane", id)
	}
	data, err := ll.lane.OpenStream(uint32(id))
	if err != nil {
		return nil, fmt.Errorf("lane stream %d: %w", id, err)
	}
	return laneCarrier{lane.NewCircuit(data, s)}, nil
}
