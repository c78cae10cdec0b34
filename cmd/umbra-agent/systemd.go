package main

import (
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemdNotify returns how to notify systemd, and its watchdog interval (WatchdogSec,
// zero when off), when the agent runs as a Type=notify service; nil and zero when
// NOTIFY_SOCKET is not set.
func systemdNotify(log *slog.Logger) (notify func(state string) (bool, error), watchdog time.Duration) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil, 0
	}
	// The environment is left set: the agent starts no child that could take
	// NOTIFY_SOCKET for its own.
	notify = func(state string) (bool, error) { return daemon.SdNotify(false, state) }
	watchdog, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: ignoring WATCHDOG_USEC", "err", err)
		watchdog = 0
	}
	return notify, watchdog
}
