package watchdog

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDriver is a watchdog driver in memory: it records what was asked of it and clamps
// the timeout as a real driver does.
type fakeDriver struct {
	mu         sync.Mutex
	maxSecs    int   // timeouts above this are clamped; 0 means no limit
	setErr     error // returned by setTimeout
	secs       int
	keepalives int
	disarmed   int
}

func (f *fakeDriver) setTimeout(secs int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.setErr != nil {
		return f.setErr
	}
	if f.maxSecs > 0 && secs > f.maxSecs {
		secs = f.maxSecs
	}
	f.secs = secs
	return nil
}

func (f *fakeDriver) timeout() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.secs, nil
}

func (f *fakeDriver) keepalive() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keepalives++
	return nil
}

func (f *fakeDriver) disarm() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disarmed++
	return nil
}

func TestTimeout(t *testing.T) {
	tests := []struct {
		name    string
		ask     time.Duration
		maxSecs int
		want    time.Duration
	}{
		{"zero-asks-for-the-default", 0, 0, DefaultTimeout},
		{"whole-seconds-are-kept", 10 * time.Second, 0, 10 * time.Second},
		{"fractions-round-up", 2500 * time.Millisecond, 0, 3 * time.Second},
		{"the-driver-clamps-and-is-believed", 60 * time.Second, 15, 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drv := &fakeDriver{maxSecs: tt.maxSecs}
			d, err := setup("fake", drv, tt.ask)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Timeout(); got != tt.want {
				t.Errorf("Timeout() = %v, want %v", got, tt.want)
			}
			if drv.disarmed != 0 {
				t.Errorf("disarmed %d times during a good setup, want 0", drv.disarmed)
			}
		})
	}
}

func TestRefusedTimeoutDisarmsAndSaysWhy(t *testing.T) {
	drv := &fakeDriver{setErr: errors.New("EINVAL")}
	_, err := setup("/dev/watchdog0", drv, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "/dev/watchdog0") || !strings.Contains(err.Error(), "set timeout 60s") {
		t.Errorf("setup = %v, want an error naming the device and the timeout", err)
	}
	if drv.disarmed != 1 {
		t.Errorf("disarmed %d times, want 1: a watchdog left armed after a failed Open reboots the board", drv.disarmed)
	}
}

func TestKeepaliveAndClose(t *testing.T) {
	drv := &fakeDriver{}
	d, err := setup("fake", drv, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := d.Keepalive(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if err := d.Keepalive(); !errors.Is(err, ErrClosed) {
		t.Errorf("Keepalive after Close = %v, want ErrClosed", err)
	}
	if drv.keepalives != 3 || drv.disarmed != 1 {
		t.Errorf("keepalives %d, magic closes %d; want 3 and 1", drv.keepalives, drv.disarmed)
	}
}
