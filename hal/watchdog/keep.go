package watchdog

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
)

// DefaultHealthTimeout is how long a health check may take before the program counts as
// hung: a program whose own loops are alive answers in microseconds.
const DefaultHealthTimeout = time.Second

// KeepConfig says what to pet, how often, and how to tell that the program is healthy.
type KeepConfig struct {
	// Pet tells the watchdog the program is alive: (*Device).Keepalive, or sending
	// systemd WATCHDOG=1. Required.
	Pet func() error
	// Interval is the time between checks, each followed by a pet when healthy. Required.
	// A third of a hardware watchdog's timeout, half of systemd's WatchdogSec, leaves room
	// for a late check.
	Interval time.Duration
	// Healthy reports whether the program works; nil means it does. A call that has not
	// returned within HealthTimeout counts as unhealthy, and the next check waits for that
	// same call instead of starting another, so a hung program does not pile up
	// goroutines. Nil Healthy means always healthy.
	Healthy func(context.Context) error
	// HealthTimeout bounds one check. Zero means DefaultHealthTimeout.
	HealthTimeout time.Duration
	// Name says which watchdog this is, in logs ("/dev/watchdog", "systemd").
	Name string
	// Logger is told when the program turns unhealthy or healthy again and when a pet
	// fails; nil discards.
	Logger *slog.Logger
	// Clock times the checks. Nil means the real clock; tests pass a fake one.
	Clock clockwork.Clock
	// OnCheck, when set, is told the outcome of every check once the pet (if any) is done.
	OnCheck func(healthy bool)
}

// Keep checks the program's health every Interval, starting at once, and pets the
// watchdog after each check that finds it healthy, until ctx ends; then it returns nil.
// It returns an error only for a config it cannot run.
func Keep(ctx context.Context, cfg KeepConfig) error {
	if cfg.Pet == nil || cfg.Interval <= 0 {
		return errors.New("watchdog: keep: Pet and a positive Interval are required")
	}
	k := keeper{cfg: cfg}
	if k.cfg.HealthTimeout <= 0 {
		k.cfg.HealthTimeout = DefaultHealthTimeout
	}
	if k.cfg.Clock == nil {
		k.cfg.Clock = clockwork.NewRealClock()
	}
	if k.cfg.Logger == nil {
		k.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	k.log = k.cfg.Logger.With("watchdog", cfg.Name)
	tick := k.cfg.Clock.NewTicker(cfg.Interval)
	defer tick.Stop()
	healthy, petOK := true, true // what was last logged
	for {
		err := k.check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil && healthy:
			k.log.Warn("not petting the watchdog: unhealthy", "err", err)
		case err == nil && !healthy:
			k.log.Info("healthy again; petting the watchdog")
		}
		healthy = err == nil
		if healthy {
			perr := cfg.Pet()
			switch {
			case perr != nil && petOK:
				k.log.Warn("pet failed", "err", perr)
			case perr == nil && !petOK:
				k.log.Info("pet works again")
			}
			petOK = perr == nil
		}
		if cfg.OnCheck != nil {
			cfg.OnCheck(healthy)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.Chan():
		}
	}
}

type keeper struct {
	cfg KeepConfig
	log *slog.Logger
	// pending is the result of the health call in flight, nil when none is.
	pending chan error
}

// errHung is what a check reports when the health call did not answer in time.
var errHung = errors.New("health check did not answer in time")

// check waits up to HealthTimeout for an answer from Healthy, starting a call unless an
// earlier one is still in flight, and returns it.
func (k *keeper) check(ctx context.Context) error {
	if k.cfg.Healthy == nil {
		return nil
	}
	if k.pending == nil {
		ch := make(chan error, 1)
		go func() { ch <- k.cfg.Healthy(ctx) }()
		k.pending = ch
	}
	t := k.cfg.Clock.NewTimer(k.cfg.HealthTimeout)
	defer t.Stop()
	select {
	case err := <-k.pending:
		k.pending = nil
		return err
	case <-t.Chan():
		return errHung
	case <-ctx.Done():
		return ctx.Err()
	}
}
