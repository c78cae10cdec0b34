package led

import (
	"errors"
	"testing"

	"github.com/umbranet/umbra/boards"
)

// TestOpenAbsentLED: a board whose LED this machine lacks (the test machine is no Pi)
// reads as ErrAbsent, the normal "no LED here" state, never as a fault.
func TestOpenAbsentLED(t *testing.T) {
	for _, tt := range []struct {
		name string
		led  boards.StatusLED
	}{
		{"kernel-led-only", boards.StatusLED{Sysfs: "umbra-test-no-such-led"}},
		{"gpio-line-only", boards.StatusLED{GPIO: "UMBRA_TEST_NO_SUCH_GPIO"}},
		{"kernel-led-then-gpio", boards.StatusLED{Sysfs: "umbra-test-no-such-led", GPIO: "UMBRA_TEST_NO_SUCH_GPIO"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(boards.Board{ID: "test", StatusLED: tt.led})
			if !errors.Is(err, ErrAbsent) {
				t.Errorf("Open = %v, want ErrAbsent", err)
			}
		})
	}
}
