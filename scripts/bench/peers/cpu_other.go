//go:build !linux

package peers

import (
	"errors"
	"fmt"
)

// treeCPUSeconds needs /proc/PID/stat, which only Linux has.
func treeCPUSeconds(pid int) (float64, error) {
	return 0, fmt.Errorf("cpu time of pid %d: %w", pid, errors.ErrUnsupported)
}

// descendants would need /proc to find a process's children; elsewhere it finds none.
func descendants(pid int) []int { return nil }
