package led

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/umbranet/umbra/boards"
)

// eventTimeout only bounds a broken test; no test waits on it when the code works.
const eventTimeout = 10 * time.Second

// change is one level written to the pin, at a time on the fake clock since the start.
type change struct {
	at    time.Duration
	level gpio.Level
}

// recorder is a periph test pin that reports every level written to it, stamped with
// the fake clock, so a test can follow the pattern step by step without sleeping.
type recorder struct {
	*gpiotest.Pin
	clock   *clockwork.FakeClock
	start   time.Time
	changes chan change
	fail    error // returned by Out when set
}

func newRecorder(clock *clockwork.FakeClock) *recorder {
	return &recorder{
		Pin:   &gpiotest.Pin{N: "LED", Num: 42, Clock: clock},
		clock: clock, start: clock.Now(), changes: make(chan change, 64),
	}
}

func (r *recorder) Out(l gpio.Level) error {
	if r.fail != nil {
		return r.fail
	}
	if err := r.Pin.Out(l); err != nil {
		return err
	}
	r.changes <- change{r.clock.Since(r.start), l}
	return nil
}

// next returns the next level written.
func (r *recorder) next(t *testing.T) change {
	t.Helper()
	select {
	case c := <-r.changes:
		return c
	case <-time.After(eventTimeout):
		t.Fatalf("no level written within %v", eventTimeout)
		return change{}
	}
}

// harness runs an LED on a recorder pin with a fake clock.
type harness struct {
	clock  *clockwork.FakeClock
	pin    *recorder
	led    *LED
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
	now    time.Duration // where the test has advanced the clock to
}

func start(t *testing.T, initial State) *harness {
	t.Helper()
	clock := clockwork.NewFakeClock()
	h := &harness{clock: clock, pin: newRecorder(clock), done: make(chan error, 1)}
	h.led = New(Config{Pin: h.pin, Clock: clock, Initial: initial})
	h.ctx, h.cancel = context.WithCancel(t.Context())
	t.Cleanup(h.cancel)
	go func() { h.done <- h.led.Run(h.ctx) }()
	return h
}

// expect checks that the pin goes through want, advancing the fake clock from one
// change to the next once Run is waiting on its timer.
func (h *harness) expect(t *testing.T, want ...change) {
	t.Helper()
	for i, w := range want {
		if i > 0 {
			h.advanceTo(t, w.at)
		}
		if got := h.pin.next(t); got != w {
			t.Fatalf("change %d: got %v at %v, want %v at %v", i, got.level, got.at, w.level, w.at)
		}
	}
}

// advanceTo moves the fake clock to at once Run has armed its timer.
func (h *harness) advanceTo(t *testing.T, at time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, eventTimeout)
	defer cancel()
	if err := h.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatalf("Run armed no timer: %v", err)
	}
	h.clock.Advance(at - h.now)
	h.now = at
}

const ms = time.Millisecond

func TestPatterns(t *testing.T) {
	on, off := gpio.High, gpio.Low
	tests := []struct {
		name  string
		state State
		want  []change
	}{
		{"connecting-blinks-fast", Connecting, []change{
			{0, on}, {100 * ms, off}, {200 * ms, on}, {300 * ms, off}, {400 * ms, on},
		}},
		{"stalled-blinks-twice-then-pauses", Stalled, []change{
			{0, on}, {100 * ms, off}, {300 * ms, on}, {400 * ms, off},
			{1000 * ms, on}, {1100 * ms, off}, {1300 * ms, on},
		}},
		{"down-blinks-slowly", Down, []change{
			{0, on}, {1000 * ms, off}, {2000 * ms, on}, {3000 * ms, off},
		}},
		{"no-initial-state-shows-down", "", []change{
			{0, on}, {1000 * ms, off}, {2000 * ms, on},
		}},
		{"unknown-state-shows-down", "sideways", []change{
			{0, on}, {1000 * ms, off}, {2000 * ms, on},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.state)
			h.expect(t, tt.want...)
		})
	}
}

// TestUpHoldsTheLEDOn: up is solid, so ten seconds later the LED has not changed and the
// next level written is the one the next state starts with.
func TestUpHoldsTheLEDOn(t *testing.T) {
	h := start(t, Up)
	h.expect(t, change{0, gpio.High})
	h.clock.Advance(10 * time.Second)
	h.now = 10 * time.Second
	h.led.Set(Down)
	h.expect(t, change{10 * time.Second, gpio.High}, change{11 * time.Second, gpio.Low})
}

func TestStateChangeRestartsThePattern(t *testing.T) {
	h := start(t, Connecting)
	h.expect(t, change{0, gpio.High}, change{100 * ms, gpio.Low})
	h.advanceTo(t, 150*ms) // halfway through the off step
	h.led.Set(Stalled)
	h.expect(t,
		change{150 * ms, gpio.High}, change{250 * ms, gpio.Low},
		change{450 * ms, gpio.High}, change{550 * ms, gpio.Low}, change{1150 * ms, gpio.High})
}

func TestSettingTheSameStateKeepsThePatternRunning(t *testing.T) {
	h := start(t, Connecting)
	h.expect(t, change{0, gpio.High})
	h.advanceTo(t, 50*ms)
	h.led.Set(Connecting)
	h.advanceTo(t, 100*ms)
	if got, want := h.pin.next(t), (change{100 * ms, gpio.Low}); got != want {
		t.Errorf("got %v at %v, want %v at %v (the pattern restarted)", got.level, got.at, want.level, want.at)
	}
}

func TestCancelTurnsTheLEDOff(t *testing.T) {
	h := start(t, Up)
	h.expect(t, change{0, gpio.High})
	h.cancel()
	if got := h.pin.next(t); got.level != gpio.Low {
		t.Errorf("after cancel: got %v, want %v", got.level, gpio.Low)
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(eventTimeout):
		t.Fatalf("Run did not return within %v of cancel", eventTimeout)
	}
	if got := h.pin.Read(); got != gpio.Low {
		t.Errorf("pin after Run: got %v, want %v", got, gpio.Low)
	}
}

func TestPinErrorEndsRun(t *testing.T) {
	clock := clockwork.NewFakeClock()
	pin := newRecorder(clock)
	pin.fail = errors.New("EBUSY")
	err := New(Config{Pin: pin, Clock: clock}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "LED(42)") || !strings.Contains(err.Error(), "EBUSY") {
		t.Errorf("Run = %v, want an error naming LED(42) and EBUSY", err)
	}
}

func TestActiveLowInvertsTheLevel(t *testing.T) {
	for _, tt := range []struct {
		name string
		set  gpio.Level
		want gpio.Level
	}{
		{"lit-drives-the-line-low", gpio.High, gpio.Low},
		{"dark-drives-the-line-high", gpio.Low, gpio.High},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &gpiotest.Pin{N: "GPIO47", Num: 47}
			if err := ActiveLow(p).Out(tt.set); err != nil {
				t.Fatal(err)
			}
			if got := p.Read(); got != tt.want {
				t.Errorf("line: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOpenBoardWithoutLED(t *testing.T) {
	_, err := Open(boards.GenericARM64)
	if !errors.Is(err, ErrNoLED) {
		t.Errorf("Open(generic-arm64) = %v, want ErrNoLED", err)
	}
}
