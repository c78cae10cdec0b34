package router

import (
	"context"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/grant"
	"github.com/umbranet/umbra/internal/wire"
)

// A circuit stays registered with the controller for as long as this router carries it,
// so that a deletion ends it whenever it is made. The first router of its path holds it:
// on the control stream that carried its grant and, each time the control link comes
// back after a drop (perhaps to a restarted controller that never heard of it), on a new
// stream where the router says it carries the circuit (wire.Carry) and the controller
// re-checks it against the current policy. While the control link is down the circuit
// lives on by its grant.
const (
	// carryRetry spaces the attempts to register a circuit again while the control link
	// flaps (up, but failing the request).
	carryRetry = 200 * time.Millisecond
)

// holdCircuit keeps the circuit g (signed as raw) registered with the controller until
// done closes or ctx ends, starting on cs, the control stream of its dial. It returns the
// controller's revocation, or nil when the circuit ended otherwise. It releases cs and
// every stream it opens.
func (r *Router) holdCircuit(ctx context.Context, g grant.Grant, raw []byte, cs *quic.Stream, done <-chan struct{}) *wire.Revoke {
	for {
		rev, dropped := waitHeld(ctx, cs, done)
		releaseStream(cs)
		if !dropped {
			return rev
		}
		r.log.Debug("circuit's control stream dropped; registering it again when the link is back", "circuit", g.Circuit)
		cs, rev = r.carryAgain(ctx, g, raw, done)
		if cs == nil {
			return rev
		}
	}
}

// waitHeld waits on a held control stream for the circuit's end, a revocation, or the
// stream's drop (dropped: the control link went down).
func waitHeld(ctx context.Context, cs *quic.Stream, done <-chan struct{}) (rev *wire.Revoke, dropped bool) {
	select {
	case <-done:
		return nil, false
	case <-ctx.Done():
		return nil, false
	case rev := <-watchRevoke(cs):
		return rev, rev == nil
	}
}

// carryAgain waits for the control link and tells the controller this router carries
// the circuit. It returns the stream the controller now holds the circuit on, or the
// controller's revocation; neither when the circuit ended first or the controller will
// not hold it (the circuit then lives on by its grant).
func (r *Router) carryAgain(ctx context.Context, g grant.Grant, raw []byte, done <-chan struct{}) (*quic.Stream, *wire.Revoke) {
	for {
		if up, isUp := r.controlUp(); !isUp {
			select {
			case <-done:
				return nil, nil
			case <-ctx.Done():
				return nil, nil
			case <-up:
			}
		}
		cs, rt, body, err := r.ask(ctx, wire.TypeCarry, wire.Carry{Grant: raw})
		switch {
		case err == nil && rt == wire.TypeCarryAck:
			r.log.Debug("circuit registered again", "circuit", g.Circuit)
			return cs, nil
		case err == nil:
			releaseStream(cs)
			return nil, carryAnswer(rt, body)
		case !isNoController(err):
			r.log.Warn("controller will not hold circuit; it lives on by its grant", "circuit", g.Circuit, "err", err)
			return nil, nil
		}
		select {
		case <-done:
			return nil, nil
		case <-ctx.Done():
			return nil, nil
		case <-time.After(carryRetry):
		}
	}
}

// carryAnswer reads a controller's answer to wire.Carry other than its acceptance: a
// revocation, or anything else, which ends the circuit too, since the controller did
// not say the policy allows it.
func carryAnswer(rt wire.Type, body []byte) *wire.Revoke {
	var rev wire.Revoke
	if rt != wire.TypeRevoke || wire.Unmarshal(body, &rev) != nil {
		return &wire.Revoke{Reason: "unexpected answer to carry"}
	}
	return &rev
}

// releaseStream closes both directions of a control stream this router holds.
func releaseStream(cs *quic.Stream) {
	cs.Close()
	cs.CancelRead(0)
}
