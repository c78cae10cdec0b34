// Package led shows the agent's link state on the board's status LED: solid when the link
// is up, a fast blink while connecting, a double blink when the link is stalled, a slow
// blink when it is down. It owns the patterns and the goroutine that plays them on any
// periph gpio.PinOut; which pin that is comes from the board's data (see Open). It knows
// nothing of links beyond the State it is told.
package led

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
)

// State is the link state the LED shows. The values are those `umbra-agent status`
// prints, plus "stalled" for a link that is up but carries nothing.
type State string

const (
	Up         State = "up"
	Connecting State = "connecting"
	Stalled    State = "stalled"
	Down       State = "down"
)

// Blink timings: the fast blink is quick enough to read as "busy" (5 Hz), the slow blink
// slow enough to read as "idle, waiting" (0.5 Hz), and the double blink's pause is long
// enough to tell its pairs apart.
const (
	fastBlink        = 100 * time.Millisecond
	doubleBlinkFlash = 100 * time.Millisecond
	doubleBlinkGap   = 200 * time.Millisecond
	doubleBlinkPause = 600 * time.Millisecond
	slowBlink        = time.Second
)

// ErrNoLED is returned by Open for a board with no status LED umbra can drive.
var ErrNoLED = errors.New("led: the board has no status LED")

// ErrAbsent is returned by Open when the board's data names a status LED but this
// machine has neither its kernel LED nor its GPIO line: an image without the LED's
// device-tree node, a board detected wrongly, or a test machine. Like ErrNoLED it is a
// normal state, not a fault.
var ErrAbsent = errors.New("led: the status LED is not on this machine")

// Step is one part of a pattern: the LED at Level for For. A For of zero holds the level
// until the state changes.
type Step struct {
	Level gpio.Level
	For   time.Duration
}

// Pattern is one period of a blink pattern; it repeats until the state changes.
type Pattern []Step

// patterns maps every state to what the LED does in it.
var patterns = map[State]Pattern{
	Up:         {{gpio.High, 0}},
	Connecting: {{gpio.High, fastBlink}, {gpio.Low, fastBlink}},
	Stalled: {
		{gpio.High, doubleBlinkFlash}, {gpio.Low, doubleBlinkGap},
		{gpio.High, doubleBlinkFlash}, {gpio.Low, doubleBlinkPause},
	},
	Down: {{gpio.High, slowBlink}, {gpio.Low, slowBlink}},
}

// PatternFor returns the pattern shown in state s; a state it does not know shows as Down.
func PatternFor(s State) Pattern {
	if p, ok := patterns[s]; ok {
		return append(Pattern(nil), p...)
	}
	return PatternFor(Down)
}

// Config says which pin to drive and with what clock.
type Config struct {
	// Pin is the LED. Required. High lights it; a pin whose LED is active low must
	// invert (the sysfs LEDs Open returns do so in the kernel).
	Pin gpio.PinOut
	// Clock times the patterns. Nil means the real clock; tests pass a fake one.
	Clock clockwork.Clock
	// Initial is the state shown until the first Set. Empty means Down: an agent that
	// has just started has no link yet.
	Initial State
}

// LED plays the pattern of the latest state set on one pin. Set may be called from any
// goroutine; Run drives the pin.
type LED struct {
	pin   gpio.PinOut
	clock clockwork.Clock

	mu      sync.Mutex
	state   State
	changed chan struct{} // holds one token when state changed since Run last looked
}

// New returns an LED showing cfg.Initial; nothing is driven until Run.
func New(cfg Config) *LED {
	l := &LED{pin: cfg.Pin, clock: cfg.Clock, state: cfg.Initial, changed: make(chan struct{}, 1)}
	if l.clock == nil {
		l.clock = clockwork.NewRealClock()
	}
	if l.state == "" {
		l.state = Down
	}
	return l
}

// Set shows s from now on, restarting its pattern from the first step. Setting the state
// already shown changes nothing, so callers may report the state as often as they like.
func (l *LED) Set(s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s == l.state {
		return
	}
	l.state = s
	select {
	case l.changed <- struct{}{}:
	default: // Run has a wake-up pending and will read the newest state.
	}
}

// State returns the state shown.
func (l *LED) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Run drives the pin until ctx ends, then turns the LED off and returns nil. It returns
// an error, leaving the LED as it was, when the pin refuses a level.
func (l *LED) Run(ctx context.Context) error {
	// A Set before Run left a wake-up behind; the state it announced is read now.
	select {
	case <-l.changed:
	default:
	}
	pattern, step := PatternFor(l.State()), 0
	for {
		s := pattern[step]
		if err := l.pin.Out(s.Level); err != nil {
			return fmt.Errorf("led %s: %w", l.pin, err)
		}
		var expired <-chan time.Time // nil for a held step: never fires
		var timer clockwork.Timer
		if s.For > 0 {
			timer = l.clock.NewTimer(s.For)
			expired = timer.Chan()
		}
		select {
		case <-ctx.Done():
			stop(timer)
			if err := l.pin.Out(gpio.Low); err != nil {
				return fmt.Errorf("led %s: %w", l.pin, err)
			}
			return nil
		case <-l.changed:
			stop(timer)
			pattern, step = PatternFor(l.State()), 0
		case <-expired:
			step = (step + 1) % len(pattern)
		}
	}
}

func stop(t clockwork.Timer) {
	if t != nil {
		t.Stop()
	}
}
