package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Poll calls cond every pollEvery until it holds, and fails once timeout passes or ctx
// ends first, naming what it waited for and cond's last error.
func Poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%s: not within %v: %w", what, timeout, err)
			}
			return fmt.Errorf("%s: not within %v", what, timeout)
		case <-tick.C:
		}
	}
}

// WaitUntil polls cond for the test t until it holds, and fails t once timeout passes.
func WaitUntil(t TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Poll(context.Background(), timeout, what, func() (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("%v", err)
	}
}

// WaitFile polls path until text stands in it n times, for ReadyTimeout at most.
func WaitFile(ctx context.Context, path, text string, n int) error {
	err := Poll(ctx, ReadyTimeout, fmt.Sprintf("%s: %q", filepath.Base(path), text), func() (bool, error) {
		return CountInFile(path, text) >= n, nil
	})
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// CountInFile counts how often text stands in the file at path (0 if it cannot read it).
func CountInFile(path, text string) int {
	data, _ := os.ReadFile(path)
	return strings.Count(string(data), text)
}

// WaitListening polls until a TCP connection to addr succeeds, for timeout at most.
func WaitListening(ctx context.Context, addr string, timeout time.Duration) error {
	return Poll(ctx, timeout, addr+" listening", func() (bool, error) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, err
		}
		c.Close()
		return true, nil
	})
}

// Logs gathers the files matching glob (the lab's *.log), each cut to its last max
// bytes when max is above 0, for a failure's message.
func Logs(glob string, max int) string {
	var b strings.Builder
	files, _ := filepath.Glob(glob)
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if max > 0 && len(data) > max {
			data = data[len(data)-max:]
		}
		fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(f), data)
	}
	return b.String()
}
