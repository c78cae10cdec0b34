package cluster

import (
	"errors"
	"path/filepath"
	"strconv"
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

// TestRetriedEntryAppliesOnce: a proposal retried after its leader lost the lead (its
// first copy committed all the same) is applied once and answers as the first copy
// did, so a retried create succeeds; the same create proposed anew is still refused.
func TestRetriedEntryAppliesOnce(t *testing.T) {
	s, err := store.Open(filepath.Join(t.TempDir(), "umbra.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := &fsm{bolt: s}
	create := func(id string) []byte {
		return []byte(`{"id":"` + id + `","commands":[{"op":"create","kind":"services","record":{"id":"s1","name":"video"},"at":"2026-01-01T00:00:00Z"}]}`)
	}
	for _, step := range []struct {
		name  string
		index uint64
		data  []byte
		want  error
	}{
		{"the proposal", 1, create("a1"), nil},
		{"its retry", 2, create("a1"), nil},
		{"a new proposal of the same create", 3, create("b2"), store.ErrExists},
		{"a retry of the refused one", 4, create("b2"), store.ErrExists},
	} {
		resp, _ := f.Apply(&raft.Log{Index: step.index, Data: step.data}).(error)
		if !errors.Is(resp, step.want) || (step.want == nil && resp != nil) {
			t.Errorf("%s: Apply = %v, want %v", step.name, resp, step.want)
		}
	}
	if got := s.AppliedIndex(); got != 4 {
		t.Errorf("applied index %d, want 4 (a retry records its index, for the followers waiting on it)", got)
	}
	recs, err := s.List(store.Services)
	if err != nil || len(recs) != 1 {
		t.Errorf("services %d (%v), want 1", len(recs), err)
	}
}

// TestFSMForgetsOldEntries: the FSM remembers the last recentEntries ids only.
func TestFSMForgetsOldEntries(t *testing.T) {
	var f fsm
	for i := range recentEntries + 1 {
		f.remember(strconv.Itoa(i), nil)
	}
	if _, ok := f.seen["0"]; ok || len(f.seen) != recentEntries || len(f.order) != recentEntries {
		t.Errorf("after %d ids: %d remembered, oldest kept %v; want %d, the oldest forgotten", recentEntries+1, len(f.seen), ok, recentEntries)
	}
}
