package controller

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/controller/ca"
	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/wire"
)

// serveControllers lists the cluster's members: GET /v1/controllers.
func (c *Controller) serveControllers(w http.ResponseWriter, r *http.Request) {
	members, err := c.node.Members(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
	writeJSON(w, http.StatusOK, members)
}

// serveCreateController records a future member and answers its one-time join token:
// POST /v1/controllers with an api.CreateController.
func (c *Controller) serveCreateController(w http.ResponseWriter, r *http.Request) {
	var req api.CreateController
	if !decode(w, r, &req) {
		return
	}
	life, err := c.tokenLifetime(req.Expires)
	if err != nil {
		writeCodedError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	if servers, err := c.node.Configured(); err == nil {
		for _, s := range servers {
			if string(s.ID) == req.Name {
				writeError(w, http.StatusConflict, fmt.Sprintf("controller %q: %v", req.Name, store.ErrExists))
				return
			}
		}
	}
	rec := store.Controller{Meta: c.newMeta(req.Name)}
	raw, _ := json.Marshal(rec)
	enr := c.newEnrollment(store.Controllers, rec.ID, enroll.MethodController, life)
	jwt, err := c.token(enr)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cmd := store.Command{Op: store.OpCreate, Kind: store.Controllers, Record: raw, Enrollment: enr, At: c.cfg.Now().UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		writeStoreError(w, err)
		return
	}
	c.log.Info("created", "kind", store.Controllers, "name", rec.Name)
	c.event(events.Event{Type: events.Created, Kind: "controller", Name: rec.Name})
	writeJSON(w, http.StatusCreated, api.Created{Name: rec.Name, ID: rec.ID, JWT: jwt, ExpiresAt: &enr.ExpiresAt})
}

// serveDeleteController removes a member from the cluster and revokes its certificate:
// DELETE /v1/controllers/NAME.
func (c *Controller) serveDeleteController(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	member := false
	if servers, err := c.node.Configured(); err == nil {
		for _, s := range servers {
			member = member || string(s.ID) == name
		}
		if member && len(servers) == 1 {
			writeError(w, http.StatusConflict, fmt.Sprintf("controller %q is the cluster's only member", name))
			return
		}
	}
	if member {
		if err := c.node.RemoveMember(r.Context(), name); err != nil {
			writeStoreError(w, err)
			return
		}
	}
	cmd := store.Command{Op: store.OpDelete, Kind: store.Controllers, Name: name, At: c.cfg.Now().UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil && !(member && errors.Is(err, store.ErrNotFound)) {
		writeStoreError(w, err)
		return
	}
	c.log.Info("deleted", "kind", store.Controllers, "name", name)
	c.event(events.Event{Type: events.Deleted, Kind: "controller", Name: name})
	w.WriteHeader(http.StatusNoContent)
}

// serveJoin redeems a controller's join token (POST enroll.PathJoin): everything is
// checked before the token is spent. The answer carries the cluster's signing material,
// over the TLS connection the joiner pinned by the token's root fingerprint.
func (c *Controller) serveJoin(w http.ResponseWriter, r *http.Request) {
	var req enroll.JoinRequest
	if !decode(w, r, &req) {
		return
	}
	now := c.cfg.Now()
	claims, err := enroll.Verify(req.Token, &c.ca.SignerKey().PublicKey, now)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	if subtle.ConstantTimeCompare([]byte(claims.RootFingerprint), []byte(c.ca.RootFingerprint())) != 1 {
		writeError(w, http.StatusUnauthorized, "token pins another cluster's root")
		return
	}
	enr, err := c.store.Enrollment(claims.ID)
	if err != nil || enr.Kind != store.Controllers || enr.SubjectID != claims.Subject || enr.Method != claims.Method {
		writeError(w, http.StatusUnauthorized, errTokenRefused)
		return
	}
	host, _, err := net.SplitHostPort(req.Address)
	if err != nil || host == "" {
		writeCodedError(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("address %q: want HOST:PORT", req.Address))
		return
	}
	csr, err := parseCSR(req.CSR)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var rec store.Controller
	if err := c.store.GetByID(store.Controllers, enr.SubjectID, &rec); err != nil {
		writeError(w, http.StatusUnauthorized, errTokenRefused)
		return
	}
	subj := pki.Subject{Kind: pki.KindController, ID: rec.ID, Name: rec.Name}
	cert, err := c.ca.IssueController(subj, csr.PublicKey, []string{host}, now)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	material, err := c.ca.Material()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cmd := store.Command{Op: store.OpEnroll, Kind: store.Controllers, JTI: claims.ID, Cert: certInfo(cert), At: now.UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		switch {
		case errors.Is(err, store.ErrTokenExpired):
			writeError(w, http.StatusUnauthorized, "join: token expired")
		case errors.Is(err, store.ErrTokenUnknown), errors.Is(err, store.ErrNotFound):
			writeError(w, http.StatusUnauthorized, errTokenRefused)
		default:
			writeStoreError(w, err)
		}
		return
	}
	rec.Address = req.Address
	raw, _ := json.Marshal(rec)
	if err := c.store.Apply(r.Context(), store.Command{Op: store.OpUpdate, Kind: store.Controllers, Name: rec.Name, Record: raw, At: now.UTC()}); err != nil {
		writeStoreError(w, err)
		return
	}
	c.log.Info("controller joined", "name", rec.Name, "address", req.Address)
	c.event(events.Event{Type: events.Enrolled, Kind: "controller", Name: rec.Name})
	writeJSON(w, http.StatusOK, enroll.JoinResponse{
		Name: rec.Name, ID: rec.ID, Cert: string(c.ca.ChainFor(cert)),
		Root: material.Root, Intermediate: material.Intermediate, IntermediateKey: material.IntermediateKey,
		Signer: material.Signer, SignerKey: material.SignerKey, Peers: c.peerAddresses(),
	})
}

// peerAddresses are the addresses of the cluster's members as this member knows them.
func (c *Controller) peerAddresses() []string {
	servers, err := c.node.Configured()
	if err != nil {
		return []string{c.cfg.Address()}
	}
	out := make([]string, 0, len(servers))
	for _, s := range servers {
		out = append(out, string(s.Address))
	}
	return out
}

// ControllerURLs are the management URLs of every member, in the order of the
// cluster's configuration, the same on every member: routers and clients that try them
// in turn land on the same member, and so share its view of who is online.
func (c *Controller) ControllerURLs() []string {
	self := c.cfg.Address()
	out := make([]string, 0, 3)
	for _, a := range c.peerAddresses() {
		if a == self {
			out = append(out, c.cfg.URL)
		} else {
			out = append(out, "https://"+a)
		}
	}
	return out
}

// Join makes cfg.DataDir a new member of the cluster that issued token: it redeems the
// token (verifying the cluster as enrollment does), then writes the PKI and
// controller.json. Nothing is written unless the cluster accepted the token; the
// member is added to the cluster on its first run. cfg.Listen is where it will listen.
func Join(ctx context.Context, cfg Config, token string) error {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, configFile)); err == nil {
		return fmt.Errorf("controller join: %s already holds a controller", cfg.DataDir)
	}
	if cfg.URL == "" {
		host, _, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return fmt.Errorf("controller join: --listen %q: want HOST:PORT", cfg.Listen)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("controller join: --listen %q names no address the other controllers can reach: give --url https://HOST:PORT", cfg.Listen)
		}
		cfg.URL = "https://" + cfg.Listen
	}
	key, err := pki.NewKey()
	if err != nil {
		return fmt.Errorf("controller join: %w", err)
	}
	resp, err := enroll.JoinController(ctx, token, cfg.Address(), key)
	if err != nil {
		return fmt.Errorf("controller join: %w", err)
	}
	chain, err := pki.ParseCerts([]byte(resp.Cert))
	if err != nil {
		return fmt.Errorf("controller join: %w", err)
	}
	created := false
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	fail := func(err error) error {
		if created {
			os.RemoveAll(cfg.DataDir)
		}
		return fmt.Errorf("controller join: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fail(err)
	}
	m := ca.Material{Root: resp.Root, Intermediate: resp.Intermediate, IntermediateKey: resp.IntermediateKey, Signer: resp.Signer, SignerKey: resp.SignerKey}
	if _, err := ca.Install(filepath.Join(cfg.DataDir, pkiDir), m, chain[0], key); err != nil {
		return fail(err)
	}
	cfg.Name, cfg.Joined, cfg.Peers = resp.Name, true, resp.Peers
	cfg.fill()
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := identity.WriteFileAtomic(filepath.Join(cfg.DataDir, configFile), append(data, '\n'), 0o600); err != nil {
		return fail(err)
	}
	return nil
}

// membersPoll is how often a controller looks for a change of the cluster's members to
// push to its routers.
const membersPoll = time.Second

// watchMembers pushes the cluster's members to this controller's routers whenever they
// change, until ctx ends. Each member pushes to the routers connected to it.
func (c *Controller) watchMembers(ctx context.Context) {
	last := strings.Join(c.ControllerURLs(), ",")
	t := time.NewTicker(membersPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		urls := c.ControllerURLs()
		if now := strings.Join(urls, ","); now != last {
			last = now
			c.log.Info("controller cluster changed", "controllers", urls)
			c.mu.Lock()
			var conns []*quic.Conn
			for _, st := range c.online {
				conns = append(conns, st.conn)
			}
			c.mu.Unlock()
			c.push(ctx, conns, wire.TypeControllers, wire.Controllers{URLs: urls})
		}
	}
}
