package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"periph.io/x/conn/v3/gpio"

	"github.com/umbranet/umbra/boards"
	"github.com/umbranet/umbra/hal/board"
	"github.com/umbranet/umbra/hal/led"
)

// --led values besides a pin's name.
const (
	ledAuto = "auto"
	ledNone = "none"
	// ledSysfsPrefix and ledGPIOPrefix name a pin the way `umbra-agent board` prints it.
	ledSysfsPrefix = "sysfs:"
	ledGPIOPrefix  = "gpio:"
)

// openStatusLED opens the LED --led names: "none" for no LED; "auto" for the detected
// board's, where a board or machine without one is normal and logged at debug only;
// "sysfs:NAME" for a kernel LED; "gpio:NAME" or "NAME" for a GPIO line (inverted when
// activeLow). A LED named explicitly that cannot be opened is an error. It returns nil
// when there is no LED to drive.
func openStatusLED(spec string, activeLow bool, log *slog.Logger) (gpio.PinOut, error) {
	switch {
	case spec == ledNone || spec == "":
		return nil, nil
	case spec == ledAuto:
		info, err := board.Detect(board.Config{})
		if err != nil {
			log.Warn("status LED: board detection failed; running without the LED", "err", err)
			return nil, nil
		}
		if info.Board.StatusLED == (boards.StatusLED{}) {
			// Most machines: no LED, and no reason to load periph's drivers.
			log.Debug("no status LED", "board", info.Board.ID)
			return nil, nil
		}
		pin, err := led.Open(info.Board)
		switch {
		case errors.Is(err, led.ErrNoLED) || errors.Is(err, led.ErrAbsent):
			log.Debug("no status LED", "board", info.Board.ID, "reason", err)
			return nil, nil
		case err != nil:
			// A LED is a courtesy: a board whose LED refuses (permissions on the
			// trigger, say) still runs the agent.
			log.Warn("status LED: running without it", "board", info.Board.ID, "err", err)
			return nil, nil
		}
		log.Debug("status LED", "board", info.Board.ID, "led", info.Board.StatusLED.String())
		return pin, nil
	}
	var sl boards.StatusLED
	if name, ok := strings.CutPrefix(spec, ledSysfsPrefix); ok {
		sl.Sysfs = name
	} else {
		sl.GPIO, sl.ActiveLow = strings.TrimPrefix(spec, ledGPIOPrefix), activeLow
	}
	pin, err := led.Open(boards.Board{ID: "--led " + spec, StatusLED: sl})
	if err != nil {
		return nil, fmt.Errorf("status LED %q: %w", spec, err)
	}
	return pin, nil
}
