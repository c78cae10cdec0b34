package linksim

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestImpairmentValidate(t *testing.T) {
	tests := []struct {
		name  string
		imp   Impairment
		valid bool
	}{
		{"zero impairment is a valid clean link", Impairment{}, true},
		{"certain loss is valid", Impairment{Loss: 1}, true},
		{"loss above one is rejected", Impairment{Loss: 1.1}, false},
		{"negative duplicate probability is rejected", Impairment{Duplicate: -0.1}, false},
		{"NaN reorder probability is rejected", Impairment{Reorder: math.NaN()}, false},
		{"gilbert-elliott probability above one is rejected", Impairment{PGoodToBad: 2}, false},
		{"negative delay is rejected", Impairment{Delay: -time.Millisecond}, false},
		{"negative jitter is rejected", Impairment{Jitter: -time.Millisecond}, false},
		{"negative rate is rejected", Impairment{RateBitsPerSec: -1}, false},
		{"negative queue is rejected", Impairment{QueuePackets: -1}, false},
		{"negative mtu is rejected", Impairment{MTU: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.imp.Validate()
			if got := err == nil; got != tt.valid {
				t.Errorf("got Validate() = %v, want valid %v", err, tt.valid)
			}
			link, _ := NewLink(Impairment{}, Impairment{})
			if got := link.SetBoth(tt.imp) == nil; got != tt.valid {
				t.Errorf("got SetBoth accepted %v, want %v", got, tt.valid)
			}
			if !tt.valid && link.Up() != (Impairment{}) {
				t.Errorf("got Up() = %+v after a rejected SetBoth, want it unchanged", link.Up())
			}
		})
	}
}

func TestLinkBlackout(t *testing.T) {
	const short = 50 * time.Millisecond
	link, _ := NewLink(Impairment{}, Impairment{})

	link.SetBlackout(true)
	if !link.BlackedOut() {
		t.Errorf("got BlackedOut() = false after SetBlackout(true), want true")
	}
	link.SetBlackout(false)
	if link.BlackedOut() {
		t.Errorf("got BlackedOut() = true after SetBlackout(false), want false")
	}

	link.Blackout(time.Hour)
	link.SetBlackout(false)
	if link.BlackedOut() {
		t.Errorf("got BlackedOut() = true after SetBlackout(false) ended a timed blackout, want false")
	}

	start := time.Now()
	link.Blackout(short)
	link.Blackout(time.Nanosecond) // must not shorten the blackout in force
	if !link.BlackedOut() {
		t.Errorf("got BlackedOut() = false right after Blackout(%v), want true", short)
	}
	waitFor(t, settleTimeout, "the timed blackout to end", func() bool { return !link.BlackedOut() })
	if got := time.Since(start); got < short {
		t.Errorf("got blackout of %v, want >= %v", got, short)
	}
}

func TestLinkRunAppliesSchedule(t *testing.T) {
	lossy := Impairment{Loss: 0.5}
	slow := Impairment{Delay: time.Second}
	link, _ := NewLink(Impairment{}, Impairment{})
	steps := []Step{
		// Out of order on purpose: Run sorts by At.
		{At: 20 * time.Millisecond, Down: &slow, Blackout: time.Hour},
		{At: 0, Up: &lossy},
	}
	start := time.Now()
	if err := link.Run(context.Background(), steps); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := time.Since(start); got < 20*time.Millisecond {
		t.Errorf("got Run done after %v, want >= 20ms", got)
	}
	if got := link.Up(); got != lossy {
		t.Errorf("got Up() = %+v, want %+v", got, lossy)
	}
	if got := link.Down(); got != slow {
		t.Errorf("got Down() = %+v, want %+v", got, slow)
	}
	if !link.BlackedOut() {
		t.Errorf("got BlackedOut() = false, want the scheduled blackout in force")
	}
}

func TestLinkRunStops(t *testing.T) {
	bad := Impairment{Loss: 2}
	tests := []struct {
		name    string
		steps   []Step
		cancel  bool
		wantErr error
	}{
		{"an invalid step is reported before anything runs", []Step{{At: 0, Up: &bad}}, false, nil},
		{"a cancelled context stops a pending step", []Step{{At: time.Hour, Blackout: time.Hour}}, true, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			link, _ := NewLink(Impairment{}, Impairment{})
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			} else {
				defer cancel()
			}
			err := link.Run(ctx, tt.steps)
			if err == nil {
				t.Fatalf("got Run() = nil, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got Run() = %v, want %v", err, tt.wantErr)
			}
			if link.BlackedOut() || link.Up() != (Impairment{}) {
				t.Errorf("got the link changed by a stopped Run, want it untouched")
			}
		})
	}
}
