package linksim

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Link is the configuration of an emulated link: an Impairment for each direction and
// a link-wide blackout. All methods are safe to call while traffic flows; packets
// entering the link after a change see the new settings, packets already in flight
// keep the timing they were given.
type Link struct {
	up, down atomic.Pointer[Impairment]

	// epoch is the monotonic origin of blackoutUntil.
	epoch time.Time
	// blackout is the on/off blackout set by SetBlackout.
	blackout atomic.Bool
	// blackoutUntil ends the timed blackout set by Blackout, in nanoseconds after epoch.
	blackoutUntil atomic.Int64
	// onDrop, when set, sees every packet the link drops (OnDrop).
	onDrop atomic.Pointer[DropFunc]
}

// DropFunc sees one packet the link dropped: its direction (up is client to target,
// side A to side B) and its bytes, valid only during the call.
type DropFunc func(up bool, pkt []byte)

// OnDrop makes fn see every packet either direction drops from now on, for whatever
// reason, so a test can tell which of its packets the link lost; nil stops it. fn runs
// on the packet's path: it must be quick and must not keep pkt.
func (l *Link) OnDrop(fn DropFunc) {
	if fn == nil {
		l.onDrop.Store(nil)
		return
	}
	l.onDrop.Store(&fn)
}

// NewLink returns a Link whose Up (client to target, side A to side B) and Down (the
// other way) directions start with the given impairments.
func NewLink(up, down Impairment) (*Link, error) {
	l := &Link{epoch: time.Now()}
	if err := l.SetUp(up); err != nil {
		return nil, err
	}
	if err := l.SetDown(down); err != nil {
		return nil, err
	}
	return l, nil
}

// Up returns the current impairment of the client-to-target direction.
func (l *Link) Up() Impairment { return *l.up.Load() }

// Down returns the current impairment of the target-to-client direction.
func (l *Link) Down() Impairment { return *l.down.Load() }

// SetUp replaces the impairment of the client-to-target direction.
func (l *Link) SetUp(imp Impairment) error { return store(&l.up, imp) }

// SetDown replaces the impairment of the target-to-client direction.
func (l *Link) SetDown(imp Impairment) error { return store(&l.down, imp) }

// SetBoth gives both directions the same impairment.
func (l *Link) SetBoth(imp Impairment) error {
	if err := imp.Validate(); err != nil {
		return err
	}
	_ = store(&l.up, imp)
	_ = store(&l.down, imp)
	return nil
}

func store(p *atomic.Pointer[Impairment], imp Impairment) error {
	if err := imp.Validate(); err != nil {
		return err
	}
	p.Store(&imp)
	return nil
}

// SetBlackout starts (on) or ends (off) a blackout of both directions. Turning it off
// also ends a timed blackout started by Blackout; Impairment.Blackout is not touched.
func (l *Link) SetBlackout(on bool) {
	l.blackout.Store(on)
	if !on {
		l.blackoutUntil.Store(0)
	}
}

// Blackout drops everything in both directions for d from now, then lifts by itself.
// It never shortens a timed blackout already running; d <= 0 does nothing.
func (l *Link) Blackout(d time.Duration) {
	if d <= 0 {
		return
	}
	until := int64(time.Since(l.epoch) + d)
	for {
		cur := l.blackoutUntil.Load()
		if cur >= until || l.blackoutUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// BlackedOut reports whether a link-wide blackout (SetBlackout or Blackout) is in force.
func (l *Link) BlackedOut() bool {
	return l.blackout.Load() || int64(time.Since(l.epoch)) < l.blackoutUntil.Load()
}

// Step is one entry of a schedule run by Link.Run.
type Step struct {
	// At is when the step fires, as an offset from the start of Run.
	At time.Duration
	// Up and Down, when non-nil, replace that direction's impairment. Nil leaves it.
	Up, Down *Impairment
	// Blackout, when positive, starts a timed blackout of this length (Link.Blackout).
	// Zero starts none.
	Blackout time.Duration
}

// Run applies steps at their offsets from now, in order of At, and returns nil once
// the last has been applied, or ctx.Err() if ctx ends first. Invalid steps are
// reported before anything is applied.
func (l *Link) Run(ctx context.Context, steps []Step) error {
	for i, s := range steps {
		for _, imp := range []*Impairment{s.Up, s.Down} {
			if imp == nil {
				continue
			}
			if err := imp.Validate(); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
		}
		if s.At < 0 {
			return fmt.Errorf("linksim: step %d: At = %v, want >= 0", i, s.At)
		}
	}
	sorted := slices.Clone(steps)
	slices.SortStableFunc(sorted, func(a, b Step) int { return cmp.Compare(a.At, b.At) })

	start := time.Now()
	for _, s := range sorted {
		if wait := s.At - time.Since(start); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		l.apply(s)
	}
	return nil
}

// apply carries out one validated step.
func (l *Link) apply(s Step) {
	if s.Up != nil {
		_ = l.SetUp(*s.Up)
	}
	if s.Down != nil {
		_ = l.SetDown(*s.Down)
	}
	l.Blackout(s.Blackout)
}
