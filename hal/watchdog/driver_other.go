//go:build !linux

package watchdog

import (
	"errors"
	"fmt"
)

// openDriver fails off Linux: /dev/watchdog and its ioctls are Linux's.
func openDriver(path string) (driver, error) {
	return nil, fmt.Errorf("watchdog: %s: %w", path, errors.ErrUnsupported)
}

func hint(err error) error { return err }
