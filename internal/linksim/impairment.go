package linksim

import (
	"errors"
	"fmt"
	"time"
)

// Defaults used when the matching Impairment field is zero.
const (
	// defaultQueuePackets bounds the rate limiter's queue when Impairment.QueuePackets
	// is zero. At 10 Mbit/s and 1200-byte datagrams it is about 100 ms of buffering.
	defaultQueuePackets = 100
	// defaultReorderDelay is how long a reordered packet is held back when
	// Impairment.ReorderDelay is zero: long enough for a few following packets to pass it.
	defaultReorderDelay = 10 * time.Millisecond
)

// Impairment describes what one direction of a link does to the packets it carries.
// The zero value is a clean link: nothing is dropped, delayed, reordered or capped.
type Impairment struct {
	// Loss is the probability (0..1) that a packet is dropped, independently of all
	// others. Zero means no random loss.
	Loss float64

	// PGoodToBad is the per-packet probability (0..1) that the Gilbert–Elliott channel
	// moves from its good state to its bad state. Zero disables the model: the channel
	// stays good and LossInGood, PBadToGood and LossInBad are ignored.
	PGoodToBad float64
	// PBadToGood is the per-packet probability (0..1) of moving from the bad state back
	// to the good one; the mean burst length in the bad state is 1/PBadToGood. Zero
	// means 1−PGoodToBad, as in netem's gemodel.
	PBadToGood float64
	// LossInBad is the probability (0..1) that a packet is lost while the channel is
	// bad. Zero means 1: every packet in the bad state is lost (the plain Gilbert model).
	LossInBad float64
	// LossInGood is the probability (0..1) that a packet is lost while the channel is
	// good. Zero means no loss in the good state.
	LossInGood float64

	// Delay is the one-way propagation delay added to every packet. Zero means none.
	Delay time.Duration
	// Jitter varies Delay uniformly within ±Jitter. The link stays first-in first-out:
	// a packet is never delivered before the one sent ahead of it, so jitter alone
	// does not reorder (use Reorder for that). Zero means no jitter.
	Jitter time.Duration

	// Reorder is the probability (0..1) that a packet is held back by ReorderDelay so
	// that packets sent after it overtake it. Zero means packets stay in order.
	Reorder float64
	// ReorderDelay is how long a reordered packet is held back. Zero means 10 ms.
	ReorderDelay time.Duration

	// Duplicate is the probability (0..1) that a packet is delivered twice. Zero means
	// no duplicates.
	Duplicate float64

	// RateBitsPerSec caps the link's throughput: each packet occupies the link for its
	// size (MTU-level, see MTU) times 8 divided by this rate, and packets wait in a
	// first-in first-out queue for their turn. Zero means no cap.
	RateBitsPerSec int64
	// QueuePackets bounds the queue in front of the rate cap; a packet arriving at a
	// full queue is dropped (tail drop). Zero means 100. Ignored without a rate cap.
	QueuePackets int

	// MTU is the largest packet the link carries, in bytes at the IP level: the UDP
	// proxy counts a datagram as its payload plus its IP and UDP headers (28 bytes
	// over IPv4, 48 over IPv6), the netns link the whole IP packet. Larger packets
	// are dropped. Zero means no limit.
	MTU int

	// Blackout drops every packet while true, as when the radio is out of range.
	// Link.SetBlackout and Link.Blackout black out both directions without editing
	// this field. False means the direction carries traffic.
	Blackout bool
}

// Validate reports the first field that is out of range, or nil.
func (imp Impairment) Validate() error {
	if err := imp.check(); err != nil {
		return fmt.Errorf("%w", err)
	}
	return nil
}

// check is Validate without the package prefix, for callers that add their own context.
func (imp Impairment) check() error {
	probs := []struct {
		name string
		v    float64
	}{
		{"Loss", imp.Loss},
		{"PGoodToBad", imp.PGoodToBad},
		{"PBadToGood", imp.PBadToGood},
		{"LossInBad", imp.LossInBad},
		{"LossInGood", imp.LossInGood},
		{"Reorder", imp.Reorder},
		{"Duplicate", imp.Duplicate},
	}
	for _, p := range probs {
		// The negated form also rejects NaN.
		if !(p.v >= 0 && p.v <= 1) {
			return fmt.Errorf("%s = %v, want a probability in [0, 1]", p.name, p.v)
		}
	}
	durs := []struct {
		name string
		v    time.Duration
	}{
		{"Delay", imp.Delay},
		{"Jitter", imp.Jitter},
		{"ReorderDelay", imp.ReorderDelay},
	}
	for _, d := range durs {
		if d.v < 0 {
			return fmt.Errorf("%s = %v, want >= 0", d.name, d.v)
		}
	}
	switch {
	case imp.RateBitsPerSec < 0:
		return fmt.Errorf("RateBitsPerSec = %d, want >= 0", imp.RateBitsPerSec)
	case imp.QueuePackets < 0:
		return fmt.Errorf("QueuePackets = %d, want >= 0", imp.QueuePackets)
	case imp.MTU < 0:
		return fmt.Errorf("MTU = %d, want >= 0", imp.MTU)
	}
	return nil
}

// pBadToGood returns PBadToGood with its zero default applied.
func (imp *Impairment) pBadToGood() float64 {
	if imp.PBadToGood == 0 {
		return 1 - imp.PGoodToBad
	}
	return imp.PBadToGood
}

// lossInBad returns LossInBad with its zero default applied.
func (imp *Impairment) lossInBad() float64 {
	if imp.LossInBad == 0 {
		return 1
	}
	return imp.LossInBad
}

// queueLimit returns QueuePackets with its zero default applied.
func (imp *Impairment) queueLimit() int {
	if imp.QueuePackets == 0 {
		return defaultQueuePackets
	}
	return imp.QueuePackets
}

// reorderDelay returns ReorderDelay with its zero default applied.
func (imp *Impairment) reorderDelay() time.Duration {
	if imp.ReorderDelay == 0 {
		return defaultReorderDelay
	}
	return imp.ReorderDelay
}

// errNilLink is returned by constructors handed a nil *Link.
var errNilLink = errors.New("linksim: nil Link")
