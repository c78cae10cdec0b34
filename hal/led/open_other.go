//go:build !linux

package led

import (
	"errors"
	"fmt"

	"periph.io/x/conn/v3/gpio"

	"github.com/umbranet/umbra/boards"
)

// Open finds no LED off Linux: status LEDs are reached through Linux's sysfs and GPIO.
func Open(b boards.Board) (gpio.PinOut, error) {
	return nil, fmt.Errorf("%w (board %s): %w", ErrNoLED, b.ID, errors.ErrUnsupported)
}
