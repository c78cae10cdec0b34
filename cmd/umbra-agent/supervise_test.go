package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/hal/led"
)

const (
	// eventTimeout bounds waiting for something that should happen; generous, since
	// the machine is shared.
	eventTimeout = 10 * time.Second
	// quietPeriod is how long a test watches for something that must not happen: many
	// times the intervals below.
	quietPeriod = time.Second
	// Short timings so that a test sees many beats in its quiet period.
	testPoll          = 10 * time.Millisecond
	testHealthTimeout = 50 * time.Millisecond
	testSdWatchdog    = 100 * time.Millisecond // a pet every 50 ms
	testHwTimeout     = 150 * time.Millisecond // a pet every 50 ms
)

// fakeAgent runs until its context ends and answers Status with what the test sets, or
// not at all while hung.
type fakeAgent struct {
	mu    sync.Mutex
	links []agent.LinkStatus
	hung  chan struct{} // Status blocks until it is closed; nil: answers at once
}

func (f *fakeAgent) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (f *fakeAgent) Status() agent.Status {
	f.mu.Lock()
	hung := f.hung
	links := append([]agent.LinkStatus(nil), f.links...)
	f.mu.Unlock()
	if hung != nil {
		<-hung
	}
	return agent.Status{Identity: "drone", Links: links}
}

func (f *fakeAgent) setLinks(states ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links = nil
	for i, s := range states {
		f.links = append(f.links, agent.LinkStatus{Router: "r" + string(rune('0'+i)), State: s})
	}
}

// hang makes Status stop answering until the returned function is called.
func (f *fakeAgent) hang() (resume func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.hung = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.hung = nil
		f.mu.Unlock()
		close(ch)
	}
}

// fakeWatchdog counts pets and records the magic close.
type fakeWatchdog struct {
	pets   atomic.Int32
	closes atomic.Int32
	// petsAfterClose counts pets of a closed watchdog, which must never happen.
	petsAfterClose atomic.Int32
}

func (w *fakeWatchdog) Name() string           { return "fake-watchdog" }
func (w *fakeWatchdog) Timeout() time.Duration { return testHwTimeout }
func (w *fakeWatchdog) Keepalive() error {
	if w.closes.Load() > 0 {
		w.petsAfterClose.Add(1)
	}
	w.pets.Add(1)
	return nil
}
func (w *fakeWatchdog) Close() error { w.closes.Add(1); return nil }

// notifySocket listens where systemd would and returns the messages the agent sends.
func notifySocket(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

// startSupervisor runs s until the test ends and returns a function that stops it and
// returns run's error.
func startSupervisor(t *testing.T, s *supervisor) (stop func() error) {
	t.Helper()
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.healthTimeout, s.statusPoll, s.readyPoll = testHealthTimeout, testPoll, testPoll
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	stopped := false
	stop = func() error {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			stopped = true
			return err
		case <-time.After(eventTimeout):
			t.Fatalf("run did not return within %v of cancel", eventTimeout)
			return nil
		}
	}
	t.Cleanup(func() {
		if !stopped {
			stop()
		}
	})
	return stop
}

// next returns the next message, failing the test after eventTimeout.
func next(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(eventTimeout):
		t.Fatalf("no systemd notification within %v", eventTimeout)
		return ""
	}
}

// waitFor returns once msgs delivers want, failing after eventTimeout.
func waitFor(t *testing.T, msgs <-chan string, want string) {
	t.Helper()
	deadline := time.After(eventTimeout)
	for {
		select {
		case m := <-msgs:
			if m == want {
				return
			}
		case <-deadline:
			t.Fatalf("no %s within %v", want, eventTimeout)
		}
	}
}

// quiet fails if msgs delivers unwanted within quietPeriod.
func quiet(t *testing.T, msgs <-chan string, unwanted string) {
	t.Helper()
	end := time.After(quietPeriod)
	for {
		select {
		case m := <-msgs:
			if m == unwanted {
				t.Fatalf("got %s, want none", unwanted)
			}
		case <-end:
			return
		}
	}
}

// drain empties msgs of what was sent so far, allowing one beat for a message in flight.
func drain(msgs <-chan string) {
	end := time.After(testSdWatchdog)
	for {
		select {
		case <-msgs:
		case <-end:
			return
		}
	}
}

func TestSystemdReadyOnceTheAgentKnowsItsRouters(t *testing.T) {
	msgs := notifySocket(t)
	a := &fakeAgent{}
	notify, _ := systemdNotify(slog.New(slog.DiscardHandler))
	if notify == nil {
		t.Fatal("systemdNotify found no NOTIFY_SOCKET")
	}
	stop := startSupervisor(t, &supervisor{agent: a, notify: notify})
	quiet(t, msgs, sdReady) // no router list yet: not ready
	a.setLinks("connecting")
	if got := next(t, msgs); got != sdReady {
		t.Fatalf("first notification %q, want %q", got, sdReady)
	}
	if err := stop(); err != nil {
		t.Fatalf("run = %v, want nil", err)
	}
	if got := next(t, msgs); got != sdStopping {
		t.Errorf("notification at stop %q, want %q", got, sdStopping)
	}
}

func TestNotUnderSystemdNothingIsSent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "100000")
	if notify, wd := systemdNotify(slog.New(slog.DiscardHandler)); notify != nil || wd != 0 {
		t.Errorf("systemdNotify without NOTIFY_SOCKET = (%v, %v), want (nil, 0)", notify != nil, wd)
	}
}

// TestSystemdWatchdogOnlyWhileHealthy: WATCHDOG=1 goes out at half of WATCHDOG_USEC while
// the agent answers, stops while it hangs (so systemd restarts it), and resumes after.
func TestSystemdWatchdogOnlyWhileHealthy(t *testing.T) {
	msgs := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000")
	notify, interval := systemdNotify(slog.New(slog.DiscardHandler))
	if interval != testSdWatchdog {
		t.Fatalf("watchdog interval from WATCHDOG_USEC=100000: got %v, want %v", interval, testSdWatchdog)
	}
	a := &fakeAgent{}
	a.setLinks("down") // a link that is down is no reason to restart
	startSupervisor(t, &supervisor{agent: a, notify: notify, sdWatchdog: interval})
	waitFor(t, msgs, sdReady)
	for range 3 {
		waitFor(t, msgs, sdWatchdog)
	}
	resume := a.hang()
	drain(msgs)
	quiet(t, msgs, sdWatchdog)
	resume()
	waitFor(t, msgs, sdWatchdog)
}

func TestHardwareWatchdogPettedWhileHealthyAndDisarmedAtStop(t *testing.T) {
	a := &fakeAgent{}
	wd := &fakeWatchdog{}
	stop := startSupervisor(t, &supervisor{agent: a, watchdog: wd})
	pollUntil(t, "three pets", func() bool { return wd.pets.Load() >= 3 })

	resume := a.hang()
	time.Sleep(testHealthTimeout + testHwTimeout/hwPetsPerTimeout) // a check in flight may still pet
	before := wd.pets.Load()
	time.Sleep(quietPeriod)
	if got := wd.pets.Load(); got != before {
		t.Fatalf("pets while the agent hung: got %d, want 0", got-before)
	}
	resume()
	pollUntil(t, "a pet after the agent answers again", func() bool { return wd.pets.Load() > before })

	if err := stop(); err != nil {
		t.Fatalf("run = %v, want nil", err)
	}
	if got := wd.closes.Load(); got != 1 {
		t.Errorf("magic closes at stop: got %d, want 1", got)
	}
	if got := wd.petsAfterClose.Load(); got != 0 {
		t.Errorf("pets after the magic close: got %d, want 0", got)
	}
}

// errAgent stops at once with an error.
type errAgent struct{ fakeAgent }

func (*errAgent) Run(context.Context) error {
	return errors.New("status socket: another agent is running")
}

func TestAgentErrorDisarmsAndIsReturned(t *testing.T) {
	wd := &fakeWatchdog{}
	s := &supervisor{agent: &errAgent{}, watchdog: wd, log: slog.New(slog.DiscardHandler), statusPoll: testPoll, healthTimeout: testHealthTimeout}
	err := s.run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Errorf("run = %v, want the agent's error", err)
	}
	if got := wd.closes.Load(); got != 1 {
		t.Errorf("magic closes: got %d, want 1", got)
	}
}

func TestLEDFollowsTheLinks(t *testing.T) {
	a := &fakeAgent{}
	l := led.New(led.Config{Pin: &gpiotest.Pin{N: "LED"}})
	startSupervisor(t, &supervisor{agent: a, led: l})
	for _, tt := range []struct {
		links []string
		want  led.State
	}{
		{nil, led.Down},
		{[]string{"connecting"}, led.Connecting},
		{[]string{"down", "up"}, led.Up},
		{[]string{"down", "down"}, led.Down},
	} {
		a.setLinks(tt.links...)
		pollUntil(t, "LED "+string(tt.want), func() bool { return l.State() == tt.want })
	}
}

func TestLinkLEDState(t *testing.T) {
	tests := []struct {
		name  string
		links []string
		want  led.State
	}{
		{"no-routers-yet-is-down", nil, led.Down},
		{"all-down-is-down", []string{"down", "down"}, led.Down},
		{"connecting-beats-down", []string{"down", "connecting"}, led.Connecting},
		{"stalled-beats-connecting", []string{"connecting", "stalled"}, led.Stalled},
		{"one-up-is-up", []string{"stalled", "up", "down"}, led.Up},
		{"unknown-state-counts-as-down", []string{"sideways"}, led.Down},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var links []agent.LinkStatus
			for _, s := range tt.links {
				links = append(links, agent.LinkStatus{State: s})
			}
			if got := linkLEDState(links); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOpenStatusLED(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, spec := range []string{"none", "auto"} {
		// This machine is no board with a LED: auto finds none, and that is no error.
		pin, err := openStatusLED(spec, false, log)
		if pin != nil || err != nil {
			t.Errorf("openStatusLED(%q) = (%v, %v), want no LED and no error", spec, pin, err)
		}
	}
	for _, spec := range []string{"GPIO_UMBRA_TEST", "gpio:GPIO_UMBRA_TEST", "sysfs:umbra-test"} {
		_, err := openStatusLED(spec, false, log)
		if !errors.Is(err, led.ErrAbsent) || !strings.Contains(err.Error(), spec) {
			t.Errorf("openStatusLED(%q) = %v, want ErrAbsent naming the flag", spec, err)
		}
	}
}

// pollUntil polls cond until it holds, failing after eventTimeout.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(eventTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, eventTimeout)
		}
		time.Sleep(testPoll)
	}
}
