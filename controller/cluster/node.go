package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/pki"
)

// Defaults of Config, and the bounds of Raft's own machinery.
const (
	// DefaultApplyTimeout bounds the wait for one write to commit on the leader.
	DefaultApplyTimeout = 10 * time.Second
	// DefaultLeaderWait is how long a write waits for a leader to exist (an election
	// takes one or two election timeouts) before it is refused with store.ErrNoLeader.
	DefaultLeaderWait = 3 * time.Second
	// retainSnapshots is how many Raft snapshots stay on disk.
	retainSnapshots = 2
	// maxPool is the number of idle Raft connections kept per peer.
	maxPool = 3
	// rpcTimeout bounds one Raft RPC's I/O.
	rpcTimeout = 10 * time.Second
	// leaderPoll is how often a write waiting for a leader looks again.
	leaderPoll = 50 * time.Millisecond
	// raftFile holds the Raft log and stable store.
	raftFile = "raft.db"
)

// Config is what a member needs. Zero durations take Raft's defaults (a one-second
// heartbeat and election timeout), which suit a LAN or loopback cluster.
type Config struct {
	// Name is this member's Raft server id: the controller's name.
	Name string
	// Address is HOST:PORT the other members reach this one at.
	Address string
	// Dir holds the Raft log, stable store and snapshots.
	Dir string
	// Store is the member's bbolt store, which the log is applied to.
	Store *store.Bolt
	// Certificate is this controller's certificate (server and client auth), and
	// Roots the cluster's root.
	Certificate tls.Certificate
	Roots       *x509.CertPool
	// Refused, if set, decides whether a peer controller's verified leaf is refused
	// (a removed member's revoked certificate).
	Refused func(leaf *x509.Certificate) error
	// HeartbeatTimeout, ElectionTimeout and LeaderLeaseTimeout are Raft's (zero: its
	// defaults of 1 s, 1 s and 500 ms).
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// ApplyTimeout bounds a write's commit on the leader (DefaultApplyTimeout).
	ApplyTimeout time.Duration
	// LeaderWait bounds a write's wait for a leader (DefaultLeaderWait).
	LeaderWait time.Duration
	// Logger receives Raft's logs at warning and above; nil discards them.
	Logger *slog.Logger
}

// Node is one member: it is the controller's store.Store.
type Node struct {
	cfg    Config
	bolt   *store.Bolt
	raft   *raft.Raft
	logs   *raftboltdb.BoltStore
	layer  *StreamLayer
	trans  *raft.NetworkTransport
	client *peerClient
	// seeding, when set, is closed once Bootstrap's seed is in the log: writes wait for
	// it, so none is applied to the store before its image is taken and lost after.
	seeding chan struct{}
}

var _ store.Store = (*Node)(nil)

// Open starts the member's Raft on cfg.Dir. A member with no Raft state yet neither
// votes nor leads until Bootstrap makes it a cluster of one or a leader adds it.
func Open(cfg Config) (*Node, error) {
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = DefaultApplyTimeout
	}
	if cfg.LeaderWait == 0 {
		cfg.LeaderWait = DefaultLeaderWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: &slogWriter{log: cfg.Logger}, DisableTime: true})
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, raftFile)})
	if err != nil {
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, retainSnapshots, hl)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("cluster: snapshots: %w", err)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cfg.Certificate}, RootCAs: cfg.Roots}
	layer := newStreamLayer(cfg.Address, tlsConf)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: layer, MaxPool: maxPool, Timeout: rpcTimeout, Logger: hl})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.Logger = hl
	// The bbolt file is durable and records the index it has applied, so a restart
	// keeps it and Raft replays only the entries after the last snapshot (which the
	// store skips if it has them).
	rc.NoSnapshotRestoreOnStart = true
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	r, err := raft.NewRaft(rc, &fsm{bolt: cfg.Store}, logs, logs, snaps, trans)
	if err != nil {
		trans.Close()
		logs.Close()
		return nil, fmt.Errorf("cluster: raft: %w", err)
	}
	return &Node{cfg: cfg, bolt: cfg.Store, raft: r, logs: logs, layer: layer, trans: trans,
		client: newPeerClient(tlsConf)}, nil
}

// HasState reports whether the member has Raft state: it was bootstrapped or has
// heard from a leader.
func (n *Node) HasState() bool {
	ok, _ := raft.HasExistingState(n.logs, n.logs, noSnapshots{})
	return ok || n.raft.LastIndex() > 0
}

// Bootstrap makes a member without Raft state the only voter of a new cluster. A store
// that already holds records (one from before the store was replicated, or restored
// from a backup) is then made the cluster's first snapshot, so members that join later
// receive it whole rather than only the log after it.
func (n *Node) Bootstrap() error {
	if n.HasState() {
		return nil
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.Name), Address: raft.ServerAddress(n.cfg.Address)}}}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("cluster: bootstrap: %w", err)
	}
	if n.bolt.AppliedIndex() == 0 && !n.bolt.Empty() {
		n.seeding = make(chan struct{})
		go n.seed()
	}
	return nil
}

// seedWait bounds the wait for the first election before a store is seeded.
const seedWait = time.Minute

// seed hands the store's current image to Raft as a restored snapshot: Raft leaves a
// hole in its log after it, so every follower and later joiner installs the snapshot.
func (n *Node) seed() {
	defer close(n.seeding)
	ctx, cancel := context.WithTimeout(context.Background(), seedWait)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil || !n.IsLeader() {
		n.cfg.Logger.Warn("cluster: existing store not seeded into the log", "err", err)
		return
	}
	// Raft refuses a restore until the leader's configuration entry is committed; a
	// barrier waits for every entry before it, and a refusal that still comes (the
	// election's timing) is tried again until seedWait is up.
	for {
		err := n.seedOnce()
		if err == nil {
			n.cfg.Logger.Info("cluster: existing store seeded as the first snapshot")
			return
		}
		select {
		case <-ctx.Done():
			n.cfg.Logger.Warn("cluster: seed", "err", err)
			return
		case <-time.After(leaderPoll):
		}
	}
}

// seedOnce makes one attempt of seed's restore, after a barrier.
func (n *Node) seedOnce() error {
	if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	var buf bytes.Buffer
	if err := n.Backup(&buf); err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(buf.Len())}
	return n.raft.Restore(meta, &buf, n.cfg.ApplyTimeout)
}

// Layer is the stream layer the controller's listener hands Raft connections to.
func (n *Node) Layer() *StreamLayer { return n.layer }

// Name is this member's name.
func (n *Node) Name() string { return n.cfg.Name }

// Close stops Raft and closes the log and the store.
func (n *Node) Close() error {
	err := n.raft.Shutdown().Error()
	n.client.close()
	return errors.Join(err, n.trans.Close(), n.logs.Close(), n.bolt.Close())
}

// Leader returns the leader's name and address, empty when none is known.
func (n *Node) Leader() (name, address string) {
	addr, id := n.raft.LeaderWithID()
	return string(id), string(addr)
}

// IsLeader reports whether this member leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// WaitLeader returns once the cluster has a leader this member knows of.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		if id, _ := n.Leader(); id != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for a leader: %w", store.ErrNoLeader)
		case <-time.After(leaderPoll):
		}
	}
}

// Apply replicates cmd: on the leader it proposes the entry and returns the command's
// own result; a follower forwards it to the leader. With no leader for
// Config.LeaderWait it fails with store.ErrNoLeader.
func (n *Node) Apply(ctx context.Context, cmd store.Command) error {
	return n.propose(ctx, entry{Commands: []store.Command{cmd}})
}

// ApplyAll replicates cmds as one log entry applied in one transaction, all or none: a
// bulk load (benchmarks, tests of large fleets).
func (n *Node) ApplyAll(ctx context.Context, cmds []store.Command) error {
	if len(cmds) == 0 {
		return nil
	}
	return n.propose(ctx, entry{Commands: cmds})
}

func (n *Node) propose(ctx context.Context, e entry) error {
	if n.seeding != nil {
		select {
		case <-n.seeding:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var id [16]byte
	rand.Read(id[:])
	e.ID = hex.EncodeToString(id[:]) // the same in every retry below: see fsm.Apply
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return n.retryOnLeader(ctx, func(ctx context.Context, addr string) error {
		if addr == "" {
			_, err := n.applyLocal(data)
			return err
		}
		var a applied
		if err := n.client.do(ctx, addr, "POST", pathApply, data, &a); err != nil {
			return err
		}
		n.waitApplied(ctx, a.Index)
		return nil
	})
}

// applied is the leader's answer to a forwarded write: the entry's log index.
type applied struct {
	Index uint64 `json:"index"`
}

// Read-your-writes on a follower: after a forwarded write, the follower waits until it
// has applied the entry itself, so a read right after it (an enrollment redeemed at
// this member with the token just made) sees it.
const (
	appliedWait = 2 * time.Second
	appliedPoll = 5 * time.Millisecond
)

// waitApplied returns once this member's store applied the entry at index (Raft's own
// applied index runs ahead of the store: it counts entries handed to it), or after
// appliedWait (the write is committed either way).
func (n *Node) waitApplied(ctx context.Context, index uint64) {
	deadline := time.Now().Add(appliedWait)
	for n.bolt.AppliedIndex() < index && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(appliedPoll)
	}
}

// retryOnLeader runs op on the leader (addr "" when this member leads, the leader's
// address otherwise) until it answers, retrying while there is no leader or the
// leader changes, for at most Config.LeaderWait.
func (n *Node) retryOnLeader(ctx context.Context, op func(ctx context.Context, addr string) error) error {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	var last error
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		id, addr := n.Leader()
		switch {
		case n.IsLeader():
			err := op(ctx, "")
			if !errors.Is(err, errNotLeader) {
				return err
			}
			last = err
		case id != "":
			actx, cancel := context.WithDeadline(ctx, time.Now().Add(forwardTimeout))
			err := op(actx, addr)
			cancel()
			if !retryable(err) {
				return err
			}
			last = err
		}
		if time.Now().After(deadline) {
			return n.noLeader(last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(leaderPoll):
		}
	}
}

// noLeader is the refusal of a write that found no leader in time.
func (n *Node) noLeader(last error) error {
	voters := 0
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				voters++
			}
		}
	}
	msg := fmt.Sprintf("%s: controller %q reaches no leader (a majority of the cluster's %d voting members must be up and reachable)", store.ErrNoLeader, n.cfg.Name, voters)
	if last != nil {
		msg += "; last try: " + last.Error()
	}
	return &codedError{msg: msg, sentinel: store.ErrNoLeader}
}

// errNotLeader is what a member that lost the lead answers to a forwarded write.
var errNotLeader = &codedError{msg: "not the leader", sentinel: errNotLeaderSentinel}

var errNotLeaderSentinel = errors.New("not the leader")

// applyLocal proposes data on this member, which must lead, and returns the entry's
// index once applied here.
func (n *Node) applyLocal(data []byte) (uint64, error) {
	if !n.IsLeader() {
		return 0, errNotLeader
	}
	f := n.raft.Apply(data, n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, errNotLeader
		}
		return 0, fmt.Errorf("cluster: apply: %w", err)
	}
	if err, ok := f.Response().(error); ok {
		return f.Index(), err
	}
	return f.Index(), nil
}

// AddMember makes name at address a voter (the leader does it; a follower forwards).
func (n *Node) AddMember(ctx context.Context, name, address string) error {
	body, _ := json.Marshal(memberRequest{Name: name, Address: address})
	return n.retryOnLeader(ctx, func(ctx context.Context, addr string) error {
		if addr == "" {
			return n.addLocal(name, address)
		}
		return n.client.do(ctx, addr, "POST", pathMembers, body, nil)
	})
}

func (n *Node) addLocal(name, address string) error {
	if !n.IsLeader() {
		return errNotLeader
	}
	if err := n.raft.AddVoter(raft.ServerID(name), raft.ServerAddress(address), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return errNotLeader
		}
		return fmt.Errorf("cluster: add %s: %w", name, err)
	}
	return nil
}

// RemoveMember removes name from the cluster's configuration.
func (n *Node) RemoveMember(ctx context.Context, name string) error {
	return n.retryOnLeader(ctx, func(ctx context.Context, addr string) error {
		if addr == "" {
			return n.removeLocal(name)
		}
		return n.client.do(ctx, addr, "DELETE", pathMembers+"/"+name, nil, nil)
	})
}

func (n *Node) removeLocal(name string) error {
	if !n.IsLeader() {
		return errNotLeader
	}
	if err := n.raft.RemoveServer(raft.ServerID(name), 0, n.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return errNotLeader
		}
		return fmt.Errorf("cluster: remove %s: %w", name, err)
	}
	return nil
}

// Configured lists the cluster's members as this member's log has them.
func (n *Node) Configured() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("cluster: configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// Status is one member's view of itself.
type Status struct {
	Role string `json:"role"`
	// AppliedIndex is the last log entry the member applied.
	AppliedIndex uint64 `json:"applied_index"`
	// LastContact is how long ago a follower last heard from the leader (empty on the
	// leader).
	LastContact string `json:"last_contact,omitempty"`
	Leader      string `json:"leader,omitempty"`
}

// Status is this member's role, applied index and last contact with the leader.
func (n *Node) Status() Status {
	s := Status{Role: strings.ToLower(n.raft.State().String()), AppliedIndex: n.raft.AppliedIndex()}
	s.Leader, _ = n.Leader()
	if s.Role != "leader" {
		if lc := n.raft.LastContact(); !lc.IsZero() {
			s.LastContact = time.Since(lc).Round(time.Millisecond).String()
		}
	}
	return s
}

// StoreApplied is the index of the last log entry this member's store applied: unlike
// Status's AppliedIndex (Raft's, which counts entries handed to the FSM), what it names
// is in the store, so a read after seeing it change sees the entry's change.
func (n *Node) StoreApplied() uint64 { return n.bolt.AppliedIndex() }

// Member is one member as `edge list controllers` shows it.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	// Reachable is false when the member did not answer this member's question; its
	// role is then what this member believes.
	Reachable bool `json:"reachable"`
	Status
}

// statusTimeout bounds the question to each member in Members.
const statusTimeout = time.Second

// Members asks every member for its status (in parallel, each bounded).
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	servers, err := n.Configured()
	if err != nil {
		return nil, err
	}
	leader, _ := n.Leader()
	out := make([]Member, len(servers))
	done := make(chan struct{}, len(servers))
	for i, s := range servers {
		out[i] = Member{Name: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter}
		go func(m *Member) {
			defer func() { done <- struct{}{} }()
			if m.Name == n.cfg.Name {
				m.Status, m.Reachable = n.Status(), true
				return
			}
			qctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			var st Status
			if err := n.client.do(qctx, m.Address, "GET", pathStatus, nil, &st); err == nil {
				m.Status, m.Reachable = st, true
				return
			}
			m.Role = "follower"
			if m.Name == leader {
				m.Role = "leader"
			}
		}(&out[i])
	}
	for range servers {
		<-done
	}
	return out, nil
}

// Backup writes a consistent image of the store (a bbolt file) to w.
func (n *Node) Backup(w io.Writer) error {
	s, err := n.bolt.Snapshot()
	if err != nil {
		return err
	}
	defer s.Release()
	_, err = s.WriteTo(w)
	return err
}

// Reads are local.

// Get decodes kind/name into v.
func (n *Node) Get(kind store.Kind, name string, v any) error { return n.bolt.Get(kind, name, v) }

// GetByID decodes the record with id into v.
func (n *Node) GetByID(kind store.Kind, id string, v any) error { return n.bolt.GetByID(kind, id, v) }

// List returns every record of kind.
func (n *Node) List(kind store.Kind) ([]json.RawMessage, error) { return n.bolt.List(kind) }

// Enrollment returns the outstanding enrollment with jti.
func (n *Node) Enrollment(jti string) (store.Enrollment, error) { return n.bolt.Enrollment(jti) }

// Revoked reports whether serial was revoked.
func (n *Node) Revoked(serial string) (bool, error) { return n.bolt.Revoked(serial) }

// Revocations lists every revoked serial.
func (n *Node) Revocations() ([]store.Revocation, error) { return n.bolt.Revocations() }

// EnrollmentsOf lists the outstanding tokens of subject kind/id.
func (n *Node) EnrollmentsOf(kind store.Kind, id string) ([]store.Enrollment, error) {
	return n.bolt.EnrollmentsOf(kind, id)
}

// Dump is a deterministic image of the state.
func (n *Node) Dump() ([]byte, error) { return n.bolt.Dump() }

// CheckController accepts a verified peer chain whose leaf is a controller's
// certificate (not the token signer's).
func CheckController(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	subj, err := pki.SubjectOf(chain[0])
	if err != nil || subj.Kind != pki.KindController || subj.ID == pki.SignerID {
		return fmt.Errorf("certificate %q is not a controller's", chain[0].Subject.CommonName)
	}
	return nil
}

// noSnapshots lets HasExistingState look at the log alone: a member with snapshots
// has a log too.
type noSnapshots struct{ raft.SnapshotStore }

func (noSnapshots) List() ([]*raft.SnapshotMeta, error) { return nil, nil }

// slogWriter turns hclog's lines into warnings on the controller's logger.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSpace(string(p)))
	return len(p), nil
}

// joinRetry is the pause between a joining member's requests to be added.
const joinRetry = 500 * time.Millisecond

// AskToJoin asks the members at peers, in turn, to make this member a voter, until one
// does or ctx ends. A member with Raft state is in already.
func (n *Node) AskToJoin(ctx context.Context, peers []string) error {
	body, _ := json.Marshal(memberRequest{Name: n.cfg.Name, Address: n.cfg.Address})
	for {
		for _, p := range peers {
			if n.HasState() {
				return nil
			}
			actx, cancel := context.WithTimeout(ctx, forwardTimeout+n.cfg.LeaderWait)
			err := n.client.do(actx, p, "POST", pathMembers, body, nil)
			cancel()
			if err == nil {
				return nil
			}
			n.cfg.Logger.Warn("asking to join the cluster", "peer", p, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(joinRetry):
		}
	}
}
