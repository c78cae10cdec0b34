package cluster

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/umbranet/umbra/controller/store"
)

// fsm applies committed log entries to the member's bbolt store.
type fsm struct{ bolt *store.Bolt }

// Apply performs one entry's command; what it returns (nil or the command's error) is
// the response the leader hands back to whoever proposed the entry.
func (f *fsm) Apply(l *raft.Log) any {
	var e entry
	if err := json.Unmarshal(l.Data, &e); err != nil {
		return fmt.Errorf("cluster: entry %d: %w", l.Index, err)
	}
	return f.bolt.ApplyIndexed(l.Index, e.Commands...)
}

// entry is a log entry: the commands it applies in one transaction (one, save for a
// bulk load).
type entry struct {
	Commands []store.Command `json:"commands"`
}

// Snapshot opens a read transaction on the FSM goroutine, so it sees exactly the
// entries applied so far; Persist copies it out while new entries keep applying.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.bolt.Snapshot()
	if err != nil {
		return nil, err
	}
	return &fsmSnapshot{s: s}, nil
}

// Restore replaces the store with a snapshot's bbolt file.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.bolt.Restore(rc)
}

type fsmSnapshot struct{ s *store.Snapshot }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.s.Release() }
