package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/pki"
)

// Paths between members, under the management API's port; only a peer controller's
// certificate may use them.
const (
	pathApply   = "/v1/cluster/apply"
	pathMembers = "/v1/cluster/members"
	pathStatus  = "/v1/cluster/status"
	// PathBackup streams a consistent image of the store to the member's own
	// controller certificate (umbra controller backup).
	PathBackup = "/v1/cluster/backup"
)

// Bounds of the member-to-member calls.
const (
	// forwardTimeout bounds one forwarded write; a leader that takes longer is taken
	// for gone and the write waits for the next one.
	forwardTimeout = 5 * time.Second
	// maxEntry caps a forwarded entry (a bulk load is proposed on the leader).
	maxEntry = 64 << 20
	// maxAnswer caps a member's answer.
	maxAnswer = 1 << 20
)

// Codes of a member's refusal on the wire: a follower turns them back into the store's
// errors, so a caller of Apply sees the same error wherever the leader is.
var codes = map[string]error{
	"not_found":     store.ErrNotFound,
	"exists":        store.ErrExists,
	"token_unknown": store.ErrTokenUnknown,
	"token_expired": store.ErrTokenExpired,
	"bad_name":      store.ErrBadName,
	"no_leader":     store.ErrNoLeader,
	"not_leader":    errNotLeaderSentinel,
}

// codedError is a refusal with the store error it stands for.
type codedError struct {
	msg      string
	sentinel error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.sentinel }

// answer is the body of a member's refusal.
type answer struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

func codeOf(err error) string {
	for c, s := range codes {
		if errors.Is(err, s) {
			return c
		}
	}
	return ""
}

// retryable reports whether a forwarded call may go to the (next) leader: the one
// asked was unreachable or no longer leads.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return errors.Is(err, errNotLeaderSentinel) || errors.Is(err, store.ErrNoLeader)
	}
	var se *statusError
	return !errors.As(err, &se)
}

// statusError is a member's refusal that carries no store code.
type statusError struct{ msg string }

func (e *statusError) Error() string { return e.msg }

// peerClient calls other members with this member's controller certificate.
type peerClient struct{ http *http.Client }

func newPeerClient(conf *tls.Config) *peerClient {
	c := conf.Clone()
	c.NextProtos = nil
	return &peerClient{http: &http.Client{Transport: &http.Transport{
		TLSClientConfig:     c,
		TLSHandshakeTimeout: forwardTimeout,
		DialContext:         (&net.Dialer{Timeout: forwardTimeout}).DialContext,
	}}}
}

func (p *peerClient) close() { p.http.CloseIdleConnections() }

// do sends body to https://addr+path and decodes the answer into out.
func (p *peerClient) do(ctx context.Context, addr, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		req.Header.Set(headerDeadline, strconv.FormatInt(d.UnixNano(), 10))
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var a answer
		json.Unmarshal(data, &a)
		if s, ok := codes[a.Code]; ok {
			return &codedError{msg: a.Error, sentinel: s}
		}
		if a.Error == "" {
			a.Error = resp.Status
		}
		return &statusError{msg: a.Error}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// headerDeadline carries, in Unix nanoseconds, when the member that forwards a write
// stops waiting for it. Members' clocks are assumed synchronized to well within
// forwardTimeout (NTP on a LAN).
const headerDeadline = "Umbra-Forward-Deadline"

// commitMargin is the time a forwarded write must have left to be proposed: enough to
// commit it and answer before its sender gives up.
const commitMargin = time.Second

// late reports whether r's sender has given up on it, or will before it can commit.
func late(r *http.Request) bool {
	ns, err := strconv.ParseInt(r.Header.Get(headerDeadline), 10, 64)
	return err == nil && time.Now().Add(commitMargin).After(time.Unix(0, ns))
}

// memberRequest asks the leader to add a member.
type memberRequest struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// Register mounts the member-to-member paths on mux.
func (n *Node) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+pathApply, n.peer(func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEntry))
		if err != nil {
			refuse(w, http.StatusBadRequest, err)
			return
		}
		var e entry
		if err := json.Unmarshal(data, &e); err != nil || len(e.Commands) == 0 {
			refuse(w, http.StatusBadRequest, errors.New("cluster: a forwarded entry must be JSON with at least one command"))
			return
		}
		// A forwarded write the follower gave up on (this member was stopped, or the
		// network held the request) must not be applied late: the caller was told it
		// failed.
		if late(r) {
			refuse(w, http.StatusGatewayTimeout, errors.New("cluster: the forwarded write arrived after its sender gave up"))
			return
		}
		index, err := n.applyLocal(data)
		if err != nil {
			refuse(w, http.StatusConflict, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(applied{Index: index})
	}))
	mux.HandleFunc("POST "+pathMembers, n.peer(func(w http.ResponseWriter, r *http.Request) {
		var m memberRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEntry)).Decode(&m); err != nil || m.Name == "" || m.Address == "" {
			refuse(w, http.StatusBadRequest, errors.New("cluster: member request needs a name and an address"))
			return
		}
		// A controller not yet in the cluster may add only itself, at an address its
		// certificate names; a member may forward another's request.
		if !n.isMember(r.TLS.VerifiedChains[0][0]) && !addsItself(r.TLS.VerifiedChains[0][0], m) {
			refuse(w, http.StatusForbidden, fmt.Errorf("cluster: a controller may add only itself, at an address its certificate names (%s at %s)", m.Name, m.Address))
			return
		}
		if err := n.AddMember(r.Context(), m.Name, m.Address); err != nil {
			refuse(w, http.StatusConflict, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("DELETE "+pathMembers+"/{name}", n.peer(func(w http.ResponseWriter, r *http.Request) {
		if err := n.removeLocal(r.PathValue("name")); err != nil {
			refuse(w, http.StatusConflict, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET "+pathStatus, n.peer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(n.Status())
	}))
	mux.HandleFunc("GET "+PathBackup, n.peer(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := n.Backup(w); err != nil {
			// Headers are gone; a cut body fails the reader's bbolt check.
			panic(http.ErrAbortHandler)
		}
	}))
}

// peer lets only a controller of this cluster through.
func (n *Node) peer(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			refuse(w, http.StatusUnauthorized, errors.New("cluster: a controller certificate is required"))
			return
		}
		leaf := r.TLS.VerifiedChains[0][0]
		err := CheckController(r.TLS.VerifiedChains[0])
		if err == nil && n.cfg.Refused != nil {
			err = n.cfg.Refused(leaf)
		}
		if err != nil {
			refuse(w, http.StatusForbidden, fmt.Errorf("cluster: %w", err))
			return
		}
		h(w, r)
	}
}

func refuse(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(answer{Error: err.Error(), Code: codeOf(err)})
}

// addsItself reports whether m names the controller whose certificate leaf is, at an
// address the certificate is valid for.
func addsItself(leaf *x509.Certificate, m memberRequest) bool {
	subj, err := pki.SubjectOf(leaf)
	host, _, herr := net.SplitHostPort(m.Address)
	return err == nil && herr == nil && subj.Name == m.Name && leaf.VerifyHostname(host) == nil
}

// isMember reports whether leaf is valid for the address of a member of the cluster.
func (n *Node) isMember(leaf *x509.Certificate) bool {
	servers, err := n.Configured()
	if err != nil {
		return false
	}
	for _, s := range servers {
		if host, _, err := net.SplitHostPort(string(s.Address)); err == nil && leaf.VerifyHostname(host) == nil {
			return true
		}
	}
	return false
}
