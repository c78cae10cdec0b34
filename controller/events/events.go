// Package events is the controller's audit trail: what changed, who enrolled, which
// routers and links came and went, which circuits opened, closed or were refused. It
// keeps the newest events in memory for `umbra edge events`, hands each new one to
// followers as it happens, and appends them to a file in the data directory that is
// rotated at a fixed size, so the trail is bounded in memory and on disk and survives a
// restart. It must not decide anything: callers say what happened.
package events

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Bounds of the trail.
const (
	// memoryEvents is how many of the newest events are kept in memory (about 2 MB).
	memoryEvents = 10000
	// fileLimit is the size at which the event file is rotated to FILE.1, replacing the
	// previous one: at most twice this is on disk.
	fileLimit = 4 << 20
	// followerBuffer is how many events a follower may lag behind before its stream is
	// ended: a stalled reader must not hold the controller up.
	followerBuffer = 256
)

// Event types. Entities use the kind's singular name in Kind.
const (
	Created           = "created"
	Updated           = "updated"
	Deleted           = "deleted"
	Enrolled          = "enrolled"
	EnrollmentRefused = "enrollment-refused"
	EnrollmentIssued  = "enrollment-issued"
	IdentityOnline    = "identity-online"
	IdentityOffline   = "identity-offline"
	RouterOnline      = "router-online"
	RouterOffline     = "router-offline"
	LinkUp            = "link-up"
	LinkDown          = "link-down"
	Hosting           = "hosting"
	HostingEnded      = "hosting-ended"
	CircuitOpened     = "circuit-opened"
	CircuitClosed     = "circuit-closed"
	CircuitRefused    = "circuit-refused"
	// MCPCall is one tool call `umbra mcp` made for an AI assistant: Name is the tool,
	// Identity the identity the server acts as, Client the assistant's MCP client name,
	// Reason the outcome (ok, error, refused).
	MCPCall = "mcp-call"
)

// Event is one thing that happened, as `umbra edge events -o json` prints it.
type Event struct {
	// Seq numbers events in the order they were added, from 1, across restarts.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	// Name is the record, router, link ("a-b") or service the event is about.
	Name string `json:"name"`
	// Kind is the record's kind for entity events (identity, service, …).
	Kind     string   `json:"kind,omitempty"`
	Identity string   `json:"identity,omitempty"`
	Service  string   `json:"service,omitempty"`
	Circuit  string   `json:"circuit,omitempty"`
	Path     []string `json:"path,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	// Client is the program a call was made through (an MCP client's name).
	Client string `json:"client,omitempty"`
}

// Log is the trail. It is safe for concurrent use.
type Log struct {
	path string

	mu        sync.Mutex
	ring      []Event // the newest events, oldest first
	seq       uint64
	file      *os.File
	size      int64
	followers map[chan Event]struct{}
	now       func() time.Time
}

// Open loads the newest events from the file at path (and its rotated predecessor) and
// appends new ones to it. now stamps events; nil is time.Now.
func Open(path string, now func() time.Time) (*Log, error) {
	if now == nil {
		now = time.Now
	}
	l := &Log{path: path, followers: map[chan Event]struct{}{}, now: now}
	for _, p := range []string{path + ".1", path} {
		if err := l.load(p); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("events: %w", err)
	}
	l.file, l.size = f, fi.Size()
	return l, nil
}

// load reads the events of one file into the ring; a torn last line (a crash mid-write)
// and lines that do not parse are skipped.
func (l *Log) load(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Seq > l.seq {
			l.seq = e.Seq
			l.remember(e)
		}
	}
	return nil
}

// remember keeps e among the newest events.
func (l *Log) remember(e Event) {
	if len(l.ring) == memoryEvents {
		copy(l.ring, l.ring[1:])
		l.ring = l.ring[:memoryEvents-1]
	}
	l.ring = append(l.ring, e)
}

// Add records e, stamped with the time and the next sequence number, and hands it to
// every follower. A failure to write the file is returned but the event is kept in
// memory and followed all the same.
func (l *Log) Add(e Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	e.Seq, e.Time = l.seq, l.now().UTC()
	l.remember(e)
	for ch := range l.followers {
		select {
		case ch <- e:
		default:
			// Too far behind: end its stream rather than block the controller.
			close(ch)
			delete(l.followers, ch)
		}
	}
	return l.write(e)
}

// write appends e to the file, rotating it first once it has reached fileLimit.
func (l *Log) write(e Event) error {
	if l.file == nil {
		return nil
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	line = append(line, '\n')
	if l.size+int64(len(line)) > fileLimit {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.file.Write(line)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return nil
}

func (l *Log) rotate() error {
	l.file.Close()
	l.file = nil
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("events: rotate: %w", err)
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("events: rotate: %w", err)
	}
	l.file, l.size = f, 0
	return nil
}

// Since returns the remembered events at or after t, oldest first.
func (l *Log) Since(t time.Time) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.ring {
		if !e.Time.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// Follow returns the remembered events at or after t and a channel of every event added
// from now on, with no gap and no repeat between the two. The channel is closed when
// stop is called or when the follower lags too far behind.
func (l *Log) Follow(t time.Time) (past []Event, next <-chan Event, stop func()) {
	ch := make(chan Event, followerBuffer)
	l.mu.Lock()
	for _, e := range l.ring {
		if !e.Time.Before(t) {
			past = append(past, e)
		}
	}
	l.followers[ch] = struct{}{}
	l.mu.Unlock()
	stop = func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.followers[ch]; ok {
			delete(l.followers, ch)
			close(ch)
		}
	}
	return past, ch, stop
}

// Close closes the file and ends every follower's stream.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.followers {
		close(ch)
		delete(l.followers, ch)
	}
	if l.file == nil {
		return nil
	}
	err := l.file.Close()
	l.file = nil
	return err
}
