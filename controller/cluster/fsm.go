package cluster

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/umbranet/umbra/controller/store"
)

// recentEntries is how many entries' ids (and responses) the FSM remembers to tell a
// retried proposal from a new one: a proposal is retried within its LeaderWait and
// the client's failover window, a few seconds, far fewer writes than this.
const recentEntries = 1024

// fsm applies committed log entries to the member's bbolt store.
type fsm struct {
	bolt *store.Bolt
	// seen holds the responses of the last recentEntries entries that carried an id,
	// and order their ids, oldest first. Only the FSM goroutine touches them.
	seen  map[string]error
	order []string
}

// Apply performs one entry's command; what it returns (nil or the command's error) is
// the response the leader hands back to whoever proposed the entry. An entry whose id
// was applied already is a proposal retried after its leader lost the lead before it
// could answer (raft.ErrLeadershipLost: the entry may still commit): it is not applied
// again, and answers what the first copy did, so a retried create does not fail as
// already existing.
func (f *fsm) Apply(l *raft.Log) any {
	var e entry
	if err := json.Unmarshal(l.Data, &e); err != nil {
		return fmt.Errorf("cluster: entry %d: %w", l.Index, err)
	}
	if resp, ok := f.seen[e.ID]; ok && e.ID != "" {
		if err := f.bolt.ApplyIndexed(l.Index); err != nil { // the index only
			return err
		}
		return resp
	}
	err := f.bolt.ApplyIndexed(l.Index, e.Commands...)
	f.remember(e.ID, err)
	return err
}

// remember records the response of the entry with id.
func (f *fsm) remember(id string, resp error) {
	if id == "" {
		return
	}
	if f.seen == nil {
		f.seen = make(map[string]error, recentEntries)
	}
	if len(f.order) == recentEntries {
		delete(f.seen, f.order[0])
		f.order = f.order[1:]
	}
	f.seen[id] = resp
	f.order = append(f.order, id)
}

// entry is a log entry: the commands it applies in one transaction (one, save for a
// bulk load).
type entry struct {
	Commands []store.Command `json:"commands"`
	// ID names the proposal, drawn once however many times it is retried (see
	// fsm.Apply); empty in entries written before it existed.
	ID string `json:"id,omitempty"`
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
