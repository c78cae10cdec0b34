package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/hal/led"
	"github.com/umbranet/umbra/hal/watchdog"
)

// Supervision timing.
const (
	// statusPoll is how often the LED reads the agent's status: a link change shows on the
	// LED within a quarter of a second.
	statusPoll = 250 * time.Millisecond
	// readyPoll is how often the agent's status is read until it is ready; reading it is
	// a mutex and a few maps, and systemd's dependents wait on READY=1.
	readyPoll = 20 * time.Millisecond
	// hwPetsPerTimeout is how many pets fit in the hardware watchdog's timeout: three
	// leave room for one late check (15 s on a Pi: a pet every 5 s).
	hwPetsPerTimeout = 3
	// sdPetsPerTimeout is the same for systemd's WatchdogSec, whose documentation asks
	// for a pet every half of WATCHDOG_USEC.
	sdPetsPerTimeout = 2
)

// Messages to systemd (sd_notify(3)).
const (
	sdReady    = "READY=1"
	sdWatchdog = "WATCHDOG=1"
	sdStopping = "STOPPING=1"
)

// agentRunner is what supervision needs of the agent: *agent.Agent, or a fake in tests.
type agentRunner interface {
	Run(ctx context.Context) error
	Status() agent.Status
}

// hwWatchdog is an open hardware watchdog: *watchdog.Device, or a fake in tests.
type hwWatchdog interface {
	Name() string
	Timeout() time.Duration
	Keepalive() error
	Close() error
}

// supervisor runs the agent together with what watches it on a real board: the status
// LED, systemd's readiness and watchdog notifications, and the hardware watchdog. Every
// watchdog is petted only while the agent is healthy, which means that it answers
// Status within healthTimeout: its own loops are alive. A link that is down is not
// unhealthy: a drone behind a hill must not reboot.
type supervisor struct {
	agent agentRunner
	// watchdog is the hardware watchdog; nil means none. It is disarmed when the agent
	// stops on purpose.
	watchdog hwWatchdog
	// led shows the link state; nil means no LED.
	led *led.LED
	// notify sends one message to systemd and reports whether anyone listens; nil
	// means never run under systemd.
	notify func(state string) (bool, error)
	// sdWatchdog is systemd's WatchdogSec for this service; zero means off.
	sdWatchdog time.Duration
	// healthTimeout bounds one health check; zero means watchdog.DefaultHealthTimeout.
	healthTimeout time.Duration
	// statusPoll is how often the LED reads the status; zero means statusPoll.
	statusPoll time.Duration
	// readyPoll is how often the status is read until the agent is ready; zero means
	// readyPoll.
	readyPoll time.Duration
	log       *slog.Logger
}

// run runs the agent until ctx ends or the agent stops, and returns the agent's error.
func (s *supervisor) run(ctx context.Context) error {
	if s.statusPoll <= 0 {
		s.statusPoll = statusPoll
	}
	if s.readyPoll <= 0 {
		s.readyPoll = readyPoll
	}
	runCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	runErr := make(chan error, 1)
	go func() { runErr <- s.agent.Run(runCtx) }()

	// The watchers end before the agent does, so nothing is petted while it stops.
	watchCtx, stopWatching := context.WithCancel(runCtx)
	var watchers sync.WaitGroup
	healthy := func(context.Context) error {
		s.agent.Status()
		return nil
	}
	keep := func(cfg watchdog.KeepConfig) {
		cfg.Healthy, cfg.HealthTimeout, cfg.Logger = healthy, s.healthTimeout, s.log
		watchers.Go(func() { _ = watchdog.Keep(watchCtx, cfg) })
	}
	if s.watchdog != nil {
		s.log.Info("hardware watchdog armed", "device", s.watchdog.Name(), "timeout", s.watchdog.Timeout())
		keep(watchdog.KeepConfig{Name: s.watchdog.Name(), Pet: s.watchdog.Keepalive,
			Interval: s.watchdog.Timeout() / hwPetsPerTimeout})
	}
	if s.notify != nil {
		watchers.Go(func() { s.announceReady(watchCtx) })
		if s.sdWatchdog > 0 {
			keep(watchdog.KeepConfig{Name: "systemd", Pet: func() error { _, err := s.notify(sdWatchdog); return err },
				Interval: s.sdWatchdog / sdPetsPerTimeout})
		}
	}
	if s.led != nil {
		watchers.Go(func() { s.showLinks(watchCtx) })
	}

	var err error
	stopped := false
	select {
	case err = <-runErr:
		stopped = true
	case <-ctx.Done():
	}
	if s.notify != nil {
		s.notifyOnce(sdStopping)
	}
	stopWatching()
	watchers.Wait()
	if s.watchdog != nil {
		// The agent stops on purpose: a stop must not reboot the board.
		if cerr := s.watchdog.Close(); cerr != nil {
			s.log.Warn("hardware watchdog", "err", cerr)
		} else {
			s.log.Info("hardware watchdog disarmed", "device", s.watchdog.Name())
		}
	}
	if !stopped {
		err = <-runErr
	}
	return err
}

// announceReady tells systemd READY=1 once the agent runs: it answers Status and has
// its routers, so its links are being kept.
func (s *supervisor) announceReady(ctx context.Context) {
	tick := time.NewTicker(s.readyPoll)
	defer tick.Stop()
	for len(s.agent.Status().Links) == 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	s.notifyOnce(sdReady)
}

// notifyOnce sends state to systemd, logging a failure.
func (s *supervisor) notifyOnce(state string) {
	if _, err := s.notify(state); err != nil {
		s.log.Warn("systemd notify", "state", state, "err", err)
	}
}

// showLinks plays the link state on the LED until ctx ends.
func (s *supervisor) showLinks(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.led.Set(linkLEDState(s.agent.Status().Links))
	var done sync.WaitGroup
	done.Go(func() {
		if err := s.led.Run(ctx); err != nil {
			// The LED is a courtesy: the agent runs on without it.
			s.log.Warn("status LED stopped", "err", err)
			cancel()
		}
	})
	defer done.Wait()
	tick := time.NewTicker(s.statusPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.led.Set(linkLEDState(s.agent.Status().Links))
		}
	}
}

// Link states as agent.LinkStatus names them. "stalled" (a link that is up but carries
// nothing) is the LED's own; the agent's link manager is to report it.
const (
	linkUp         = "up"
	linkStalled    = "stalled"
	linkConnecting = "connecting"
)

// linkLEDState is what the LED shows for the agent's links: the best of them, in the
// order up, stalled, connecting, down. No link at all (routers not known yet) is down.
func linkLEDState(links []agent.LinkStatus) led.State {
	best := led.Down
	for _, l := range links {
		switch l.State {
		case linkUp:
			return led.Up
		case linkStalled:
			best = led.Stalled
		case linkConnecting:
			if best == led.Down {
				best = led.Connecting
			}
		}
	}
	return best
}
