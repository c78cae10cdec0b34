package events

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a time source the tests move.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, path string, c *clock) *Log {
	t.Helper()
	l, err := Open(path, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestEventsSurviveARestartInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	l := open(t, path, c)
	for i := range 3 {
		l.Add(Event{Type: Created, Kind: "service", Name: fmt.Sprint("s", i)})
		c.advance(time.Second)
	}
	l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("event file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	again := open(t, path, c)
	again.Add(Event{Type: Deleted, Kind: "service", Name: "s0"})
	got := again.Since(time.Time{})
	if len(got) != 4 {
		t.Fatalf("events after a restart = %d, want 4", len(got))
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d, want %d", i, e.Seq, i+1)
		}
	}
	if got[3].Type != Deleted || got[0].Name != "s0" {
		t.Errorf("events = %+v, want the three creates then the delete", got)
	}
	if since := again.Since(c.Now().Add(-1500 * time.Millisecond)); len(since) != 2 {
		t.Errorf("events in the last 1.5 s = %d, want 2", len(since))
	}
}

func TestTrailIsBoundedOnDiskAndInMemory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	l := open(t, path, c)
	reason := string(make([]byte, 1000))
	n := 2*fileLimit/1000 + memoryEvents/2
	for i := range n {
		l.Add(Event{Type: CircuitRefused, Name: fmt.Sprint("svc", i), Reason: reason})
	}
	var onDisk int64
	for _, p := range []string{path, path + ".1"} {
		if fi, err := os.Stat(p); err == nil {
			onDisk += fi.Size()
		}
	}
	if onDisk > 2*fileLimit {
		t.Errorf("on disk: %d bytes, want at most %d", onDisk, 2*fileLimit)
	}
	if got := len(l.Since(time.Time{})); got != memoryEvents {
		t.Errorf("in memory: %d events, want %d", got, memoryEvents)
	}
}

func TestFollowSeesEveryEventOnce(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	l := open(t, filepath.Join(t.TempDir(), "events.log"), c)
	l.Add(Event{Type: Created, Name: "before"})
	past, next, stop := l.Follow(time.Time{})
	defer stop()
	l.Add(Event{Type: Created, Name: "after"})
	if len(past) != 1 || past[0].Name != "before" {
		t.Errorf("past = %+v, want the one event before following", past)
	}
	select {
	case e := <-next:
		if e.Name != "after" {
			t.Errorf("followed %q, want after", e.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event followed")
	}
}

func TestLaggingFollowerIsCutOff(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	l := open(t, filepath.Join(t.TempDir(), "events.log"), c)
	_, next, stop := l.Follow(time.Time{})
	defer stop()
	for range followerBuffer + 1 {
		l.Add(Event{Type: Created, Name: "x"})
	}
	n := 0
	for range next {
		n++
	}
	if n != followerBuffer {
		t.Errorf("a follower that never read got %d events before its stream ended, want %d", n, followerBuffer)
	}
}
