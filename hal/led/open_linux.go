package led

import (
	"fmt"
	"os"
	"path/filepath"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"
	"periph.io/x/host/v3/sysfs"

	"github.com/umbranet/umbra/boards"
)

const (
	// sysfsLEDs is where the kernel lists the LEDs it drives.
	sysfsLEDs = "/sys/class/leds"
	// noTrigger detaches an LED from kernel events (mmc0 activity, heartbeat) so that
	// what the agent writes stays lit.
	noTrigger = "none"
	// legacyPiACT is the ACT LED's name on Raspberry Pi kernels before 6.1 (Raspberry Pi
	// OS Bullseye and older), which called it led0.
	legacyPiACT = "led0"
)

// Open returns b's status LED as a pin for Config.Pin: the kernel LED named by
// b.StatusLED.Sysfs, taken from its trigger, when the kernel declares it; otherwise the
// GPIO line b.StatusLED.GPIO, inverted when the LED is active low. See boards.StatusLED
// for why the kernel LED comes first.
func Open(b boards.Board) (gpio.PinOut, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("led: periph: %w", err)
	}
	if name := b.StatusLED.Sysfs; name != "" {
		names := []string{name}
		if name == "ACT" {
			// Older Raspberry Pi kernels name the same LED led0; an image may be either.
			names = append(names, legacyPiACT)
		}
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(sysfsLEDs, n)); err != nil {
				continue
			}
			if err := os.WriteFile(filepath.Join(sysfsLEDs, n, "trigger"), []byte(noTrigger), 0o644); err != nil {
				return nil, fmt.Errorf("led: take %s from its kernel trigger: %w", n, err)
			}
			l, err := sysfs.LEDByName(n)
			if err != nil {
				return nil, fmt.Errorf("led: %s: %w", n, err)
			}
			return l, nil
		}
	}
	if name := b.StatusLED.GPIO; name != "" {
		p := gpioreg.ByName(name)
		if p == nil {
			return nil, fmt.Errorf("%w: no GPIO %s", ErrAbsent, name)
		}
		if b.StatusLED.ActiveLow {
			return ActiveLow(p), nil
		}
		return p, nil
	}
	if b.StatusLED.Sysfs != "" {
		return nil, fmt.Errorf("%w: no %s under %s", ErrAbsent, b.StatusLED.Sysfs, sysfsLEDs)
	}
	return nil, fmt.Errorf("%w (board %s)", ErrNoLED, b.ID)
}
