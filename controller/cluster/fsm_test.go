package cluster

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/umbranet/umbra/controller/store"
)

// FuzzApplyEntry feeds arbitrary log entries to the FSM: no panic, and an entry it
// refuses changes nothing, not even the applied index.
func FuzzApplyEntry(f *testing.F) {
	f.Add([]byte(`{"commands":[{"op":"create","kind":"services","record":{"id":"s1","name":"video"},"at":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"commands":[{"op":"delete","kind":"identities","name":"drone1","at":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"commands":[]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := store.Open(filepath.Join(t.TempDir(), "umbra.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		before, _ := s.Dump()
		resp := (&fsm{bolt: s}).Apply(&raft.Log{Index: 1, Data: data})
		if err, _ := resp.(error); err != nil {
			if after, _ := s.Dump(); string(after) != string(before) {
				t.Errorf("a refused entry changed the store: %v", err)
			}
		}
	})
}
