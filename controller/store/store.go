// Package store is the controller's state: identities, routers, services, policies,
// outstanding enrollments and revoked certificate serials, in one bbolt file. Every write
// is a Command applied in a single transaction, so a Raft log could replicate the same
// commands later; reads never write.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout version written into a new store and checked on open.
const SchemaVersion = 1

// openTimeout bounds the wait for bbolt's file lock (another controller on the same dir).
const openTimeout = 2 * time.Second

var (
	bucketMeta        = []byte("meta")
	bucketEnrollments = []byte("enrollments")
	bucketRevoked     = []byte("revoked")
	keySchema         = []byte("schema")
	// keyApplied holds the index of the last replicated log entry applied, written in
	// the same transaction as the entry's change, so a restart never applies one twice.
	keyApplied  = []byte("applied_index")
	namesSuffix = "/names"
)

// Errors a caller may match with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrTokenUnknown = errors.New("token unknown or already used")
	ErrTokenExpired = errors.New("token expired")
	ErrBadName      = errors.New("bad name: use 1-64 letters, digits, '.', '_' or '-'")
	// ErrNoLeader: a replicated store cannot write now, because this member reaches no
	// leader (it is cut off from a majority of the cluster, or an election is running).
	ErrNoLeader = errors.New("no leader")
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName reports whether name may name a record.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Op is what a Command does.
type Op string

// The operations.
const (
	// OpCreate stores Record (and Enrollment, if set) under Kind.
	OpCreate Op = "create"
	// OpDelete removes Kind/Name, revokes its certificate and drops its enrollments.
	OpDelete Op = "delete"
	// OpEnroll consumes Enrollment JTI and records Cert on its subject, revoking the
	// certificate the subject had before (a replaced or wiped device re-enrolled).
	OpEnroll Op = "enroll"
	// OpSetCert records Cert on Kind/Name (certificates the controller issues itself).
	OpSetCert Op = "set-cert"
	// OpReissue adds Enrollment, a new one-time token for the existing subject it names,
	// and drops that subject's other outstanding tokens.
	OpReissue Op = "reissue"
	// OpUpdate replaces the record Kind/Name with Record, keeping its id, name, creation
	// time and certificate as stored.
	OpUpdate Op = "update"
)

// Command is one write. It carries its own time so that replaying it gives the same state.
type Command struct {
	Op         Op              `json:"op"`
	Kind       Kind            `json:"kind,omitempty"`
	Name       string          `json:"name,omitempty"`
	Record     json.RawMessage `json:"record,omitempty"`
	Enrollment *Enrollment     `json:"enrollment,omitempty"`
	JTI        string          `json:"jti,omitempty"`
	Cert       *Cert           `json:"cert,omitempty"`
	At         time.Time       `json:"at"`
}

// Store is the controller's state behind commands.
type Store interface {
	// Apply performs one command atomically.
	Apply(ctx context.Context, cmd Command) error
	// Get decodes Kind/name into v.
	Get(kind Kind, name string, v any) error
	// GetByID decodes the record with id into v.
	GetByID(kind Kind, id string, v any) error
	// List returns every record of kind, sorted by name.
	List(kind Kind) ([]json.RawMessage, error)
	// Enrollment returns the outstanding enrollment with jti.
	Enrollment(jti string) (Enrollment, error)
	// Revoked reports whether a certificate serial was revoked.
	Revoked(serial string) (bool, error)
	// Revocations lists every revoked serial.
	Revocations() ([]Revocation, error)
	// EnrollmentsOf lists the outstanding one-time tokens of subject kind/id.
	EnrollmentsOf(kind Kind, id string) ([]Enrollment, error)
	// Dump is a deterministic image of the whole state, for tests and backups.
	Dump() ([]byte, error)
	// Close releases the store.
	Close() error
}

// Bolt is the bbolt-backed Store.
type Bolt struct {
	path string
	// mu guards db against Restore swapping the file under a reader.
	mu sync.RWMutex
	db *bolt.DB
}

// Open opens or creates the store file at path.
func Open(path string) (*Bolt, error) {
	db, err := openDB(path)
	if err != nil {
		return nil, err
	}
	return &Bolt{path: path, db: db}, nil
}

// openDB opens the file at path and creates the buckets a store needs.
func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			var ver int
			if err := json.Unmarshal(v, &ver); err != nil || ver != SchemaVersion {
				return fmt.Errorf("schema version %s, this controller reads %d", v, SchemaVersion)
			}
		} else if err := meta.Put(keySchema, []byte(fmt.Sprint(SchemaVersion))); err != nil {
			return err
		}
		names := [][]byte{bucketEnrollments, bucketRevoked}
		for _, k := range append(Kinds[:len(Kinds):len(Kinds)], Controllers) {
			names = append(names, []byte(k), []byte(string(k)+namesSuffix))
		}
		for _, n := range names {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return db, nil
}

// Close closes the file.
func (s *Bolt) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}

// view runs fn in a read transaction.
func (s *Bolt) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(fn)
}

// update runs fn in a write transaction.
func (s *Bolt) update(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Update(fn)
}

// Apply performs cmd in one transaction.
func (s *Bolt) Apply(ctx context.Context, cmd Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error { return apply(tx, cmd) })
}

// ApplyIndexed performs cmds (one, or a bulk load's many), the replicated log entry at
// index, in one transaction that
// also records index as applied. An entry at or below the recorded index was applied
// before (a restart replays the log after the last snapshot) and is skipped. A command
// that fails is refused by every member the
// same way, and records nothing, not even its index: a refused request changes no stored
// state, and should a restart replay it, the same state refuses it again.
func (s *Bolt) ApplyIndexed(index uint64, cmds ...Command) error {
	var cmdErr error
	err := s.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if appliedIn(meta) >= index {
			return nil
		}
		for i, cmd := range cmds {
			if cmdErr = apply(tx, cmd); cmdErr != nil {
				if len(cmds) > 1 {
					cmdErr = fmt.Errorf("command %d: %w", i, cmdErr)
				}
				return cmdErr // rolls the entry's partial writes back
			}
		}
		return meta.Put(keyApplied, []byte(strconv.FormatUint(index, 10)))
	})
	if cmdErr != nil {
		return cmdErr
	}
	if err != nil {
		return fmt.Errorf("store: apply entry %d: %w", index, err)
	}
	return nil
}

func appliedIn(meta *bolt.Bucket) uint64 {
	n, _ := strconv.ParseUint(string(meta.Get(keyApplied)), 10, 64)
	return n
}

// AppliedIndex is the index of the last replicated entry applied (0 for none).
func (s *Bolt) AppliedIndex() uint64 {
	var n uint64
	s.view(func(tx *bolt.Tx) error {
		n = appliedIn(tx.Bucket(bucketMeta))
		return nil
	})
	return n
}

// Snapshot is a consistent image of the store as of the moment it was taken, held open
// until Release.
type Snapshot struct {
	tx *bolt.Tx
	s  *Bolt
}

// Snapshot opens a read transaction whose view WriteTo copies out as a bbolt file.
func (s *Bolt) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	tx, err := s.db.Begin(false)
	if err != nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	return &Snapshot{tx: tx, s: s}, nil
}

// WriteTo writes the snapshot as a complete bbolt file.
func (p *Snapshot) WriteTo(w io.Writer) (int64, error) { return p.tx.WriteTo(w) }

// Release ends the snapshot's read transaction.
func (p *Snapshot) Release() {
	if p.tx != nil {
		p.tx.Rollback()
		p.tx = nil
		p.s.mu.RUnlock()
	}
}

// Restore replaces the store with the bbolt file read from r (a Snapshot's image). The
// image is written beside the store and checked before it replaces it, so a bad image
// leaves the store as it was.
func (s *Bolt) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = CheckFile(tmp)
	}
	if err == nil {
		var db *bolt.DB
		if db, err = openDB(tmp); err == nil {
			err = db.Close()
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("store: restore: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	db, err := openDB(s.path)
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	s.db = db
	return nil
}

// ApplyAll performs cmds in one transaction, all or none: bulk loads (benchmarks, tests
// of large fleets) that one fsync per record would make take minutes. A cluster
// replicates such a load as one log entry (cluster.Node.ApplyAll).
func (s *Bolt) ApplyAll(ctx context.Context, cmds []Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		for i, cmd := range cmds {
			if err := apply(tx, cmd); err != nil {
				return fmt.Errorf("command %d: %w", i, err)
			}
		}
		return nil
	})
}

func apply(tx *bolt.Tx, cmd Command) error {
	switch cmd.Op {
	case OpCreate:
		return applyCreate(tx, cmd)
	case OpDelete:
		return applyDelete(tx, cmd)
	case OpUpdate:
		return applyUpdate(tx, cmd)
	case OpReissue:
		return applyReissue(tx, cmd)
	case OpEnroll:
		return applyEnroll(tx, cmd)
	case OpSetCert:
		id, err := idOf(tx, cmd.Kind, cmd.Name)
		if err != nil {
			return err
		}
		return setCert(tx, cmd.Kind, id, cmd.Cert)
	}
	return fmt.Errorf("store: unknown op %q", cmd.Op)
}

func applyCreate(tx *bolt.Tx, cmd Command) error {
	var m Meta
	if err := json.Unmarshal(cmd.Record, &m); err != nil {
		return fmt.Errorf("store: create: %w", err)
	}
	if !ValidName(m.Name) {
		return fmt.Errorf("%s %q: %w", Singular(cmd.Kind), m.Name, ErrBadName)
	}
	b, names := buckets(tx, cmd.Kind)
	if b == nil {
		return fmt.Errorf("store: unknown kind %q", cmd.Kind)
	}
	if names.Get([]byte(m.Name)) != nil {
		return fmt.Errorf("%s %q: %w", Singular(cmd.Kind), m.Name, ErrExists)
	}
	if m.ID == "" || b.Get([]byte(m.ID)) != nil {
		return fmt.Errorf("store: create %s: missing or duplicate id", cmd.Kind)
	}
	if err := b.Put([]byte(m.ID), cmd.Record); err != nil {
		return err
	}
	if err := names.Put([]byte(m.Name), []byte(m.ID)); err != nil {
		return err
	}
	if e := cmd.Enrollment; e != nil {
		if e.SubjectID != m.ID || e.Kind != cmd.Kind {
			return errors.New("store: create: enrollment names another subject")
		}
		return putJSON(tx.Bucket(bucketEnrollments), e.JTI, e)
	}
	return nil
}

func applyDelete(tx *bolt.Tx, cmd Command) error {
	b, names := buckets(tx, cmd.Kind)
	if b == nil {
		return fmt.Errorf("store: unknown kind %q", cmd.Kind)
	}
	id, err := idOf(tx, cmd.Kind, cmd.Name)
	if err != nil {
		return err
	}
	var withCert struct {
		Cert *Cert `json:"cert"`
	}
	if err := json.Unmarshal(b.Get([]byte(id)), &withCert); err != nil {
		return fmt.Errorf("store: delete: %w", err)
	}
	if c := withCert.Cert; c != nil {
		r := Revocation{Serial: c.Serial, Kind: cmd.Kind, Name: cmd.Name, RevokedAt: cmd.At, NotAfter: c.NotAfter}
		if err := putJSON(tx.Bucket(bucketRevoked), c.Serial, r); err != nil {
			return err
		}
	}
	// Drop the subject's outstanding tokens, so a token of a deleted identity is unknown.
	if err := dropEnrollments(tx, cmd.Kind, id); err != nil {
		return err
	}
	if err := names.Delete([]byte(cmd.Name)); err != nil {
		return err
	}
	return b.Delete([]byte(id))
}

// storedFields are what an update never changes: who the record is, when it was made,
// and the certificate enrollment gave it.
var storedFields = []string{"id", "name", "created_at", "cert"}

func applyUpdate(tx *bolt.Tx, cmd Command) error {
	b, _ := buckets(tx, cmd.Kind)
	if b == nil {
		return fmt.Errorf("store: unknown kind %q", cmd.Kind)
	}
	id, err := idOf(tx, cmd.Kind, cmd.Name)
	if err != nil {
		return err
	}
	var old, next map[string]json.RawMessage
	if err := json.Unmarshal(b.Get([]byte(id)), &old); err != nil {
		return fmt.Errorf("store: update: %w", err)
	}
	if err := json.Unmarshal(cmd.Record, &next); err != nil || next == nil {
		return fmt.Errorf("store: update: record is not a JSON object: %v", err)
	}
	for _, f := range storedFields {
		if v, ok := old[f]; ok {
			next[f] = v
		} else {
			delete(next, f)
		}
	}
	out, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("store: update: %w", err)
	}
	return b.Put([]byte(id), out)
}

// dropEnrollments deletes every outstanding token of subject kind/id.
func dropEnrollments(tx *bolt.Tx, kind Kind, id string) error {
	enr := tx.Bucket(bucketEnrollments)
	var stale [][]byte
	err := enr.ForEach(func(k, v []byte) error {
		var e Enrollment
		if json.Unmarshal(v, &e) == nil && e.Kind == kind && e.SubjectID == id {
			stale = append(stale, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := enr.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func applyReissue(tx *bolt.Tx, cmd Command) error {
	e := cmd.Enrollment
	if e == nil || e.JTI == "" {
		return errors.New("store: reissue: no enrollment")
	}
	b, _ := buckets(tx, e.Kind)
	if b == nil || (e.Kind != Identities && e.Kind != Routers) {
		return fmt.Errorf("store: reissue: kind %q enrolls nothing", e.Kind)
	}
	if b.Get([]byte(e.SubjectID)) == nil {
		return fmt.Errorf("%s: %w", Singular(e.Kind), ErrNotFound)
	}
	if err := dropEnrollments(tx, e.Kind, e.SubjectID); err != nil {
		return err
	}
	return putJSON(tx.Bucket(bucketEnrollments), e.JTI, e)
}

// revokeCurrent revokes the certificate subject kind/id holds, if any.
func revokeCurrent(tx *bolt.Tx, kind Kind, id string, at time.Time) error {
	b, _ := buckets(tx, kind)
	v := b.Get([]byte(id))
	if v == nil {
		return fmt.Errorf("%s: %w", Singular(kind), ErrNotFound)
	}
	var rec struct {
		Meta
		Cert *Cert `json:"cert"`
	}
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("store: revoke: %w", err)
	}
	if rec.Cert == nil {
		return nil
	}
	r := Revocation{Serial: rec.Cert.Serial, Kind: kind, Name: rec.Name, RevokedAt: at, NotAfter: rec.Cert.NotAfter}
	return putJSON(tx.Bucket(bucketRevoked), r.Serial, r)
}

// EnrollmentsOf lists the outstanding tokens of subject kind/id.
func (s *Bolt) EnrollmentsOf(kind Kind, id string) ([]Enrollment, error) {
	var out []Enrollment
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnrollments).ForEach(func(_, v []byte) error {
			var e Enrollment
			if json.Unmarshal(v, &e) == nil && e.Kind == kind && e.SubjectID == id {
				out = append(out, e)
			}
			return nil
		})
	})
	return out, err
}

func applyEnroll(tx *bolt.Tx, cmd Command) error {
	enr := tx.Bucket(bucketEnrollments)
	v := enr.Get([]byte(cmd.JTI))
	if v == nil {
		return ErrTokenUnknown
	}
	var e Enrollment
	if err := json.Unmarshal(v, &e); err != nil {
		return fmt.Errorf("store: enroll: %w", err)
	}
	if e.Kind != cmd.Kind {
		return ErrTokenUnknown
	}
	if !cmd.At.Before(e.ExpiresAt) {
		return ErrTokenExpired
	}
	if err := revokeCurrent(tx, e.Kind, e.SubjectID, cmd.At); err != nil {
		return err
	}
	if err := setCert(tx, e.Kind, e.SubjectID, cmd.Cert); err != nil {
		return err
	}
	return enr.Delete([]byte(cmd.JTI))
}

func setCert(tx *bolt.Tx, kind Kind, id string, c *Cert) error {
	b, _ := buckets(tx, kind)
	if b == nil || c == nil {
		return fmt.Errorf("store: set cert: bad kind %q or no certificate", kind)
	}
	v := b.Get([]byte(id))
	if v == nil {
		return fmt.Errorf("%s: %w", Singular(kind), ErrNotFound)
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(v, &rec); err != nil {
		return fmt.Errorf("store: set cert: %w", err)
	}
	cj, err := json.Marshal(c)
	if err != nil {
		return err
	}
	rec["cert"] = cj
	out, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), out)
}

// Get decodes kind/name into v.
func (s *Bolt) Get(kind Kind, name string, v any) error {
	return s.view(func(tx *bolt.Tx) error {
		id, err := idOf(tx, kind, name)
		if err != nil {
			return err
		}
		b, _ := buckets(tx, kind)
		return json.Unmarshal(b.Get([]byte(id)), v)
	})
}

// GetByID decodes the kind record with id into v.
func (s *Bolt) GetByID(kind Kind, id string, v any) error {
	return s.view(func(tx *bolt.Tx) error {
		b, _ := buckets(tx, kind)
		if b == nil {
			return fmt.Errorf("store: unknown kind %q", kind)
		}
		data := b.Get([]byte(id))
		if data == nil {
			return fmt.Errorf("%s: %w", Singular(kind), ErrNotFound)
		}
		return json.Unmarshal(data, v)
	})
}

// List returns every record of kind, sorted by name.
func (s *Bolt) List(kind Kind) ([]json.RawMessage, error) {
	var out []json.RawMessage
	err := s.view(func(tx *bolt.Tx) error {
		b, names := buckets(tx, kind)
		if b == nil {
			return fmt.Errorf("store: unknown kind %q", kind)
		}
		// The names bucket iterates in name order.
		return names.ForEach(func(_, id []byte) error {
			out = append(out, append(json.RawMessage(nil), b.Get(id)...))
			return nil
		})
	})
	return out, err
}

// Enrollment returns the outstanding enrollment with jti.
func (s *Bolt) Enrollment(jti string) (Enrollment, error) {
	var e Enrollment
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEnrollments).Get([]byte(jti))
		if v == nil {
			return ErrTokenUnknown
		}
		return json.Unmarshal(v, &e)
	})
	return e, err
}

// Revoked reports whether serial was revoked.
func (s *Bolt) Revoked(serial string) (bool, error) {
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketRevoked).Get([]byte(serial)) != nil
		return nil
	})
	return found, err
}

// Revocations lists every revoked serial.
func (s *Bolt) Revocations() ([]Revocation, error) {
	var out []Revocation
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRevoked).ForEach(func(_, v []byte) error {
			var r Revocation
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// Dump writes every bucket as sorted "bucket key value" lines.
func (s *Bolt) Dump() ([]byte, error) {
	var buf bytes.Buffer
	err := s.view(func(tx *bolt.Tx) error {
		var names []string
		_ = tx.ForEach(func(n []byte, _ *bolt.Bucket) error {
			names = append(names, string(n))
			return nil
		})
		sort.Strings(names)
		for _, n := range names {
			_ = tx.Bucket([]byte(n)).ForEach(func(k, v []byte) error {
				fmt.Fprintf(&buf, "%s %s %s\n", n, k, v)
				return nil
			})
		}
		return nil
	})
	return buf.Bytes(), err
}

func buckets(tx *bolt.Tx, kind Kind) (records, names *bolt.Bucket) {
	return tx.Bucket([]byte(kind)), tx.Bucket([]byte(string(kind) + namesSuffix))
}

func idOf(tx *bolt.Tx, kind Kind, name string) (string, error) {
	_, names := buckets(tx, kind)
	if names == nil {
		return "", fmt.Errorf("store: unknown kind %q", kind)
	}
	id := names.Get([]byte(name))
	if id == nil {
		return "", fmt.Errorf("%s %q: %w", Singular(kind), name, ErrNotFound)
	}
	return string(id), nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

// singular names one record of kind in messages: "identity", "service-policy".
func Singular(k Kind) string {
	switch k {
	case Identities:
		return "identity"
	case ServicePolicies:
		return "service-policy"
	case EdgeRouterPolicies:
		return "edge-router-policy"
	}
	s := string(k)
	return s[:len(s)-1]
}

// ResetApplied forgets the index of the last replicated entry applied: a store restored
// from a backup starts a new cluster, whose log begins again at 1.
func (s *Bolt) ResetApplied() error {
	return s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyApplied) })
}

// Empty reports whether the store holds no record, token or revocation.
func (s *Bolt) Empty() bool {
	empty := true
	s.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if !bytes.Equal(name, bucketMeta) {
				if k, _ := b.Cursor().First(); k != nil {
					empty = false
				}
			}
			return nil
		})
	})
	return empty
}
