package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTemp(t *testing.T) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "umbra.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func createIdentity(t *testing.T, s Store, id, name string, enr *Enrollment) error {
	t.Helper()
	raw, _ := json.Marshal(Identity{Meta: Meta{ID: id, Name: name}, Attributes: []string{"drone"}})
	return s.Apply(context.Background(), Command{Op: OpCreate, Kind: Identities, Record: raw, Enrollment: enr, At: time.Now()})
}

func TestNamesAreUniquePerKind(t *testing.T) {
	s, _ := openTemp(t)
	if err := createIdentity(t, s, "id1", "drone1", nil); err != nil {
		t.Fatal(err)
	}
	if err := createIdentity(t, s, "id2", "drone1", nil); !errors.Is(err, ErrExists) {
		t.Errorf("second drone1: got %v, want ErrExists", err)
	}
	raw, _ := json.Marshal(Service{Meta: Meta{ID: "svc1", Name: "drone1"}})
	if err := s.Apply(context.Background(), Command{Op: OpCreate, Kind: Services, Record: raw}); err != nil {
		t.Errorf("a service may share an identity's name: %v", err)
	}
}

func TestEnrollmentIsConsumedOnce(t *testing.T) {
	s, _ := openTemp(t)
	enr := &Enrollment{JTI: "jti1", Kind: Identities, SubjectID: "id1", Method: "ott", ExpiresAt: time.Now().Add(time.Hour)}
	if err := createIdentity(t, s, "id1", "drone1", enr); err != nil {
		t.Fatal(err)
	}
	const racers = 8
	var wg sync.WaitGroup
	errs := make(chan error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Apply(context.Background(), Command{Op: OpEnroll, Kind: Identities, JTI: "jti1",
				Cert: &Cert{Serial: string(rune('a' + i))}, At: time.Now()})
		}()
	}
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrTokenUnknown):
			t.Errorf("loser: got %v, want ErrTokenUnknown", err)
		}
	}
	if won != 1 {
		t.Errorf("enrollments that succeeded = %d, want 1", won)
	}
}

func TestExpiredEnrollmentRefusedAndKept(t *testing.T) {
	s, _ := openTemp(t)
	exp := time.Now().Add(time.Hour)
	enr := &Enrollment{JTI: "jti1", Kind: Identities, SubjectID: "id1", ExpiresAt: exp}
	if err := createIdentity(t, s, "id1", "drone1", enr); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Dump()
	err := s.Apply(context.Background(), Command{Op: OpEnroll, Kind: Identities, JTI: "jti1", Cert: &Cert{Serial: "1"}, At: exp})
	if !errors.Is(err, ErrTokenExpired) {
		t.Errorf("got %v, want ErrTokenExpired", err)
	}
	if after, _ := s.Dump(); string(after) != string(before) {
		t.Errorf("a refused enrollment changed the store")
	}
}

func TestDeleteRevokesCertificateAndDropsTokens(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	enr := &Enrollment{JTI: "jti1", Kind: Identities, SubjectID: "id1", ExpiresAt: time.Now().Add(time.Hour)}
	if err := createIdentity(t, s, "id1", "drone1", enr); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, Command{Op: OpSetCert, Kind: Identities, Name: "drone1", Cert: &Cert{Serial: "abc"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, Command{Op: OpDelete, Kind: Identities, Name: "drone1", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if revoked, _ := s.Revoked("abc"); !revoked {
		t.Errorf("serial abc revoked = false, want true")
	}
	if _, err := s.Enrollment("jti1"); !errors.Is(err, ErrTokenUnknown) {
		t.Errorf("token of deleted identity: got %v, want ErrTokenUnknown", err)
	}
	var id Identity
	if err := s.Get(Identities, "drone1", &id); !errors.Is(err, ErrNotFound) {
		t.Errorf("get deleted: got %v, want ErrNotFound", err)
	}
	if err := createIdentity(t, s, "id2", "drone1", nil); err != nil {
		t.Errorf("the name of a deleted identity is free again: %v", err)
	}
}

func TestStateSurvivesReopen(t *testing.T) {
	s, path := openTemp(t)
	if err := createIdentity(t, s, "id1", "drone1", nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var id Identity
	if err := s2.Get(Identities, "drone1", &id); err != nil || id.ID != "id1" {
		t.Errorf("after reopen: got %+v %v, want id1", id, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, path := openTemp(t)
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchema, []byte("99")) })
	s.Close()
	if _, err := Open(path); err == nil {
		t.Errorf("opening a store of schema 99: got no error, want a refusal")
	}
}

func TestListIsSortedByName(t *testing.T) {
	s, _ := openTemp(t)
	for i, n := range []string{"c", "a", "b"} {
		if err := createIdentity(t, s, string(rune('x'+i)), n, nil); err != nil {
			t.Fatal(err)
		}
	}
	recs, _ := s.List(Identities)
	var got []string
	for _, r := range recs {
		var m Meta
		json.Unmarshal(r, &m)
		got = append(got, m.Name)
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("names = %v, want [a b c]", got)
	}
}

// TestApplyAllIsAllOrNothing: a bulk load with one bad command stores none of them.
func TestApplyAllIsAllOrNothing(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := func(name string) json.RawMessage {
		raw, _ := json.Marshal(Identity{Meta: Meta{ID: name + "-id", Name: name}, Attributes: []string{}})
		return raw
	}
	ctx := context.Background()
	bad := []Command{{Op: OpCreate, Kind: Identities, Record: rec("a")}, {Op: OpCreate, Kind: Identities, Record: rec("a")}}
	if err := s.ApplyAll(ctx, bad); err == nil {
		t.Fatal("a bulk load with a duplicate succeeded")
	}
	if recs, _ := s.List(Identities); len(recs) != 0 {
		t.Errorf("%d records after a refused bulk load, want 0", len(recs))
	}
	good := []Command{{Op: OpCreate, Kind: Identities, Record: rec("a")}, {Op: OpCreate, Kind: Identities, Record: rec("b")}}
	if err := s.ApplyAll(ctx, good); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.List(Identities); len(recs) != 2 {
		t.Errorf("%d records after a bulk load of 2, want 2", len(recs))
	}
}

// TestApplyIndexedSkipsReplayedEntries: an entry at or below the recorded index (a
// restart replaying the log) is not applied twice; a refused entry records nothing.
func TestApplyIndexedSkipsReplayedEntries(t *testing.T) {
	s, _ := openTemp(t)
	raw, _ := json.Marshal(Identity{Meta: Meta{ID: "id1", Name: "drone1"}})
	create := Command{Op: OpCreate, Kind: Identities, Record: raw, At: time.Now()}
	if err := s.ApplyIndexed(5, create); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyIndexed(5, create); err != nil {
		t.Errorf("replayed entry 5: got %v, want it skipped", err)
	}
	if got := s.AppliedIndex(); got != 5 {
		t.Errorf("applied index = %d, want 5", got)
	}
	before, _ := s.Dump()
	if err := s.ApplyIndexed(6, create); !errors.Is(err, ErrExists) {
		t.Errorf("entry 6 (a duplicate): got %v, want ErrExists", err)
	}
	if after, _ := s.Dump(); string(after) != string(before) {
		t.Errorf("a refused entry changed the store:\n%s\nwant\n%s", after, before)
	}
	bulk := []Command{
		{Op: OpCreate, Kind: Services, Record: json.RawMessage(`{"id":"s1","name":"video"}`), At: time.Now()},
		{Op: OpCreate, Kind: Services, Record: json.RawMessage(`{"id":"s1","name":"telemetry"}`), At: time.Now()},
	}
	if err := s.ApplyIndexed(7, bulk...); err == nil {
		t.Error("a bulk entry with a bad command: got nil, want an error")
	}
	if err := s.Get(Services, "video", &Service{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused bulk entry stored part of itself: %v", err)
	}
}

// TestRestoreReplacesTheStoreOrNothing: a snapshot's image replaces the store; a
// garbled image leaves it as it was.
func TestRestoreReplacesTheStoreOrNothing(t *testing.T) {
	src, _ := openTemp(t)
	if err := createIdentity(t, src, "id1", "drone1", nil); err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var image bytes.Buffer
	_, err = snap.WriteTo(&image)
	snap.Release()
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := openTemp(t)
	if !dst.Empty() {
		t.Error("a new store is not Empty")
	}
	if err := createIdentity(t, dst, "id2", "drone2", nil); err != nil {
		t.Fatal(err)
	}
	before, _ := dst.Dump()
	if err := dst.Restore(bytes.NewReader(image.Bytes()[:image.Len()/2])); err == nil {
		t.Error("restore of half an image: got nil, want an error")
	}
	if after, _ := dst.Dump(); string(after) != string(before) {
		t.Error("a refused restore changed the store")
	}
	if err := dst.Restore(bytes.NewReader(image.Bytes())); err != nil {
		t.Fatal(err)
	}
	want, _ := src.Dump()
	if got, _ := dst.Dump(); string(got) != string(want) {
		t.Errorf("restored store:\n%s\nwant\n%s", got, want)
	}
	if dst.Empty() {
		t.Error("a store with an identity is Empty")
	}
}
