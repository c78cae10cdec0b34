package paths

import (
	"fmt"
	"math"
	"time"
)

// Cost terms. Every controller must use the same ones, or two controllers would pick
// different paths for the same graph.
const (
	// HopCost is added for every link a path crosses: the forwarding work of one more
	// router (a relay drone decrypts nothing but still copies every packet), and the tie
	// breaker that makes the path with fewer hops win at equal latency.
	HopCost = time.Millisecond

	// MaxLinkCost caps one link's cost, so a link with loss close to 1 stays the last
	// resort rather than overflowing a path's sum: paths of up to 150 million hops
	// cannot overflow.
	MaxLinkCost = time.Minute
)

// Link is one router-to-router link and its last reported health. A link is usable both
// ways; the controller keeps at most one link per pair of routers.
type Link struct {
	// A and B name the routers at the two ends; the order does not matter.
	A, B string
	// RTT is the smoothed round-trip time the routers measured on the link. Zero is
	// allowed and counts as free (a link on one host).
	RTT time.Duration
	// Loss is the fraction of packets lost, from 0 to 1. A link losing everything is
	// unusable.
	Loss float64
	// Up is false for a link that is down; it is never used.
	Up bool
}

// validate reports why l cannot be part of a graph.
func (l Link) validate() error {
	switch {
	case l.A == "" || l.B == "":
		return fmt.Errorf("paths: link %q–%q: empty router name", l.A, l.B)
	case l.A == l.B:
		return fmt.Errorf("paths: link %q–%q: a router cannot link to itself", l.A, l.B)
	case l.RTT < 0:
		return fmt.Errorf("paths: link %q–%q: negative RTT %v", l.A, l.B, l.RTT)
	case !(l.Loss >= 0 && l.Loss <= 1): // also rejects NaN
		return fmt.Errorf("paths: link %q–%q: loss %v outside [0, 1]", l.A, l.B, l.Loss)
	}
	return nil
}

// LinkCost is what crossing l costs a path, and false if l cannot be used (down, or
// losing every packet):
//
//	cost = min(RTT / (1 − Loss), MaxLinkCost) + HopCost
//
// Why RTT / (1 − Loss): QUIC notices a lost packet and resends it about one RTT later,
// and the resent packet may be lost again, so a packet needs on average 1/(1 − Loss)
// tries and costs RTT·Loss/(1 − Loss) more than on a clean link; RTT plus that is
// RTT/(1 − Loss). A 30 % loss link thus weighs like a clean link with 1.43 times its
// RTT, so a clean link of similar RTT wins, while a much faster lossy link can still
// beat a slow clean one. Summed along a path, the cost reads as the circuit's expected
// round trip plus one millisecond per hop.
func LinkCost(l Link) (time.Duration, bool) {
	if !l.Up || !(l.Loss < 1) || l.RTT < 0 {
		return 0, false
	}
	loss := max(l.Loss, 0)
	// The explicit float64 conversions keep the compiler from fusing operations, so
	// every platform computes the same bits and every controller the same paths.
	c := float64(l.RTT) / float64(1-loss)
	if c >= float64(MaxLinkCost) {
		return MaxLinkCost + HopCost, true
	}
	return time.Duration(math.Round(c)) + HopCost, true
}
