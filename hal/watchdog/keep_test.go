package watchdog

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// eventTimeout only bounds a broken test; no test waits on it when the code works.
const eventTimeout = 10 * time.Second

const (
	interval      = 5 * time.Second
	healthTimeout = time.Second
)

// keepHarness runs Keep on a fake clock with a health function the test steers.
type keepHarness struct {
	clock  *clockwork.FakeClock
	pets   atomic.Int32
	checks chan bool
	health atomic.Pointer[func(context.Context) error]
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
}

func startKeep(t *testing.T) *keepHarness {
	t.Helper()
	h := &keepHarness{clock: clockwork.NewFakeClock(), checks: make(chan bool, 16), done: make(chan error, 1)}
	h.setHealth(func(context.Context) error { return nil })
	h.ctx, h.cancel = context.WithCancel(t.Context())
	t.Cleanup(h.cancel)
	cfg := KeepConfig{
		Pet:           func() error { h.pets.Add(1); return nil },
		Interval:      interval,
		Healthy:       func(ctx context.Context) error { return (*h.health.Load())(ctx) },
		HealthTimeout: healthTimeout,
		Clock:         h.clock,
		OnCheck:       func(ok bool) { h.checks <- ok },
	}
	go func() { h.done <- Keep(h.ctx, cfg) }()
	return h
}

func (h *keepHarness) setHealth(f func(context.Context) error) { h.health.Store(&f) }

// check waits for the next check's outcome and the pet count after it.
func (h *keepHarness) check(t *testing.T) (healthy bool, pets int) {
	t.Helper()
	select {
	case ok := <-h.checks:
		return ok, int(h.pets.Load())
	case <-time.After(eventTimeout):
		t.Fatalf("no health check within %v", eventTimeout)
		return false, 0
	}
}

// expect waits for the next check and compares it with what is wanted.
func (h *keepHarness) expect(t *testing.T, wantHealthy bool, wantPets int) {
	t.Helper()
	if ok, pets := h.check(t); ok != wantHealthy || pets != wantPets {
		t.Fatalf("check: healthy %v with %d pets, want healthy %v with %d pets", ok, pets, wantHealthy, wantPets)
	}
}

// waitTimers blocks until Keep has armed n timers (its ticker counts as one).
func (h *keepHarness) waitTimers(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, eventTimeout)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, n); err != nil {
		t.Fatalf("Keep armed fewer than %d timers: %v", n, err)
	}
}

func TestPetsEveryIntervalWhileHealthy(t *testing.T) {
	h := startKeep(t)
	h.expect(t, true, 1) // at once, without waiting an interval
	for want := 2; want <= 4; want++ {
		h.clock.Advance(interval)
		h.expect(t, true, want)
	}
}

// TestNotPettedWhileTheProgramHangs is the point of the package: a program whose health
// check stops answering stops petting, so the watchdog fires.
func TestNotPettedWhileTheProgramHangs(t *testing.T) {
	h := startKeep(t)
	h.expect(t, true, 1)

	release := make(chan struct{})
	var calls atomic.Int32
	h.setHealth(func(ctx context.Context) error {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	h.clock.Advance(interval)
	h.waitTimers(t, 2) // the ticker and the health check's timeout
	h.clock.Advance(healthTimeout)
	h.expect(t, false, 1)
	for range 3 {
		h.clock.Advance(interval - healthTimeout) // to the next tick
		h.waitTimers(t, 2)
		h.clock.Advance(healthTimeout)
		h.expect(t, false, 1)
	}
	// The one call runs on its own goroutine, which a slow (emulated) machine may not
	// have scheduled yet: wait for it, then check no second call was started.
	deadline := time.Now().Add(eventTimeout)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // poll interval
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("health called %d times while hung, want 1: checks must not pile up", got)
	}

	// The hung call answers at last; the next check takes that answer and pets again.
	close(release)
	h.setHealth(func(context.Context) error { return nil })
	h.clock.Advance(interval - healthTimeout)
	h.expect(t, true, 2)
}

func TestNotPettedWhileUnhealthy(t *testing.T) {
	h := startKeep(t)
	h.expect(t, true, 1)
	h.setHealth(func(context.Context) error { return errors.New("status loop stuck") })
	h.clock.Advance(interval)
	h.expect(t, false, 1)
	h.clock.Advance(interval)
	h.expect(t, false, 1)
	h.setHealth(func(context.Context) error { return nil })
	h.clock.Advance(interval)
	h.expect(t, true, 2)
}

func TestKeepEndsWithItsContext(t *testing.T) {
	h := startKeep(t)
	h.expect(t, true, 1)
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Keep = %v, want nil", err)
		}
	case <-time.After(eventTimeout):
		t.Fatalf("Keep did not return within %v of cancel", eventTimeout)
	}
}

func TestKeepRefusesAnEmptyConfig(t *testing.T) {
	if err := Keep(t.Context(), KeepConfig{}); err == nil {
		t.Error("Keep(KeepConfig{}) = nil, want an error")
	}
}
