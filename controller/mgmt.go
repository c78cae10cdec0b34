package controller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/policy"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/role"
	"github.com/umbranet/umbra/internal/strictjson"
	"github.com/umbranet/umbra/internal/svcaddr"
	"github.com/umbranet/umbra/internal/transport"
)

func (c *Controller) tlsConfig() *tls.Config {
	chain, key := c.ca.ServerChain()
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: chain, PrivateKey: key, Leaf: c.ca.Server}},
		// Enrolling devices have no certificate yet; every admin path checks for one.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  c.ca.Roots(),
		// One port: HTTPS for the management API, and Raft between controllers.
		NextProtos: []string{"http/1.1", transport.ALPNRaft},
	}
}

// Handler is the management API: enrollment endpoints open to anyone with a token, and
// /v1/KIND[/NAME] for admins.
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+enroll.PathCACerts, c.serveCACerts)
	mux.HandleFunc("POST "+enroll.PathEnroll, c.auditRefusals(c.serveEnroll))
	mux.Handle("GET "+api.PathEdgeRouters, c.identity(c.serveEdgeRouters))
	mux.Handle("POST "+api.PathEnrollments, c.allow(role.Admin, c.serveReissue))
	mux.Handle("GET "+api.PathEvents, c.allow(role.Reader, c.serveEvents))
	mux.Handle("POST "+api.PathEvents, c.allow(role.Reader, c.serveAudit))
	mux.Handle("GET "+api.PathPolicyAdvisor+"{identity}/{service}", c.allow(role.Reader, c.serveAdvice))
	mux.Handle("GET "+api.PathControllers, c.allow(role.Reader, c.serveControllers))
	mux.Handle("POST "+api.PathControllers, c.allow(role.Admin, c.serveCreateController))
	mux.Handle("DELETE "+api.PathControllers+"/{name}", c.allow(role.Admin, c.serveDeleteController))
	mux.HandleFunc("POST "+enroll.PathJoin, c.auditRefusals(c.serveJoin))
	mux.Handle("GET /v1/{kind}", c.allow(role.Reader, c.serveList))
	mux.Handle("POST /v1/{kind}", c.allow(role.Admin, c.serveCreate))
	mux.Handle("GET /v1/{kind}/{name}", c.allow(role.Reader, c.serveGet))
	// An update needs at least an operator here, and serveUpdate checks what it edits.
	mux.Handle("PATCH /v1/{kind}/{name}", c.allow(role.Operator, c.serveUpdate))
	mux.Handle("DELETE /v1/{kind}/{name}", c.allow(role.Admin, c.serveDelete))
	c.node.Register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer lists the cluster's members, so clients follow its changes.
		w.Header().Set(api.HeaderControllers, strings.Join(c.ControllerURLs(), ","))
		mux.ServeHTTP(w, r)
	})
}

// callerKey is the request context key under which allow leaves the calling identity.
type callerKey struct{}

// allow lets a request through only with a current certificate of an identity whose
// role is at least min, and leaves that identity in the request's context (callerOf).
// A device (no role) gets nothing; a weaker role is refused with api.CodeForbidden.
func (c *Controller) allow(min role.Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeCodedError(w, http.StatusUnauthorized, api.CodeUnauthenticated, "a client certificate of an identity with a management role is required")
			return
		}
		id, err := c.currentIdentity(r.TLS.VerifiedChains[0][0])
		if err != nil {
			writeCodedError(w, http.StatusForbidden, api.CodeForbidden, err.Error())
			return
		}
		if !c.permit(w, id, min, r.Method+" "+r.URL.Path) {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, id)))
	})
}

// permit answers 403 api.CodeForbidden, and returns false, unless id's role is at least
// need for what (a method and path, or what an update edits).
func (c *Controller) permit(w http.ResponseWriter, id store.Identity, need role.Role, what string) bool {
	have := role.Of(id.Role, id.Admin)
	if have == role.None {
		writeCodedError(w, http.StatusForbidden, api.CodeForbidden, fmt.Sprintf("identity %q has no management role (it is not an admin, operator or reader)", id.Name))
		return false
	}
	if !have.AtLeast(need) {
		writeCodedError(w, http.StatusForbidden, api.CodeForbidden, fmt.Sprintf("identity %q has role %s; %s needs %s", id.Name, have, what, need))
		return false
	}
	return true
}

// callerOf is the identity allow let through.
func callerOf(r *http.Request) store.Identity {
	id, _ := r.Context().Value(callerKey{}).(store.Identity)
	return id
}

// currentIdentity returns the identity whose current, unrevoked certificate leaf is.
func (c *Controller) currentIdentity(leaf *x509.Certificate) (store.Identity, error) {
	var id store.Identity
	subj, err := pki.SubjectOf(leaf)
	if err != nil || subj.Kind != pki.KindIdentity {
		return id, errors.New("only identities may use the management API")
	}
	if err := c.store.GetByID(store.Identities, subj.ID, &id); err != nil {
		return id, errors.New("identity unknown or deleted")
	}
	serial := pki.SerialString(leaf)
	if revoked, _ := c.store.Revoked(serial); revoked || id.Cert == nil || id.Cert.Serial != serial {
		return id, errors.New("certificate revoked or replaced")
	}
	return id, nil
}

// identity lets a request through with any identity's current certificate, and hands
// the handler that identity.
func (c *Controller) identity(h func(http.ResponseWriter, *http.Request, store.Identity)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			writeError(w, http.StatusUnauthorized, "a client certificate of an identity is required")
			return
		}
		id, err := c.currentIdentity(r.TLS.VerifiedChains[0][0])
		if err != nil {
			writeError(w, http.StatusForbidden, err.Error())
			return
		}
		h(w, r, id)
	})
}

// serveEdgeRouters lists the routers the caller's edge-router policies allow.
func (c *Controller) serveEdgeRouters(w http.ResponseWriter, r *http.Request, id store.Identity) {
	pol, err := policy.Load(c.store)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	routers, err := pol.Routers(c.store, id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	recs := []json.RawMessage{}
	for _, rt := range routers {
		raw, _ := json.Marshal(struct {
			Name string `json:"name"`
			ID   string `json:"id"`
		}{rt.Name, rt.ID})
		recs = append(recs, raw)
	}
	writeJSON(w, http.StatusOK, c.withOnline(recs))
}

func (c *Controller) serveCACerts(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Write(c.ca.Bundle())
}

func (c *Controller) serveList(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	switch kind {
	case "links":
		writeJSON(w, http.StatusOK, c.linkInfos())
		return
	case "revocations":
		revs, err := c.store.Revocations()
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if revs == nil {
			revs = []store.Revocation{}
		}
		writeJSON(w, http.StatusOK, revs)
		return
	}
	k, ok := parseKind(kind)
	if !ok {
		writeError(w, http.StatusNotFound, "unknown kind "+kind)
		return
	}
	recs, err := c.store.List(k)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if k == store.Routers {
		recs = c.withOnline(recs)
	}
	if k == store.Identities {
		recs = c.withPresence(recs)
	}
	if recs == nil {
		recs = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (c *Controller) serveGet(w http.ResponseWriter, r *http.Request) {
	k, ok := parseKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown kind "+r.PathValue("kind"))
		return
	}
	var rec json.RawMessage
	if err := c.store.Get(k, r.PathValue("name"), &rec); err != nil {
		writeStoreError(w, err)
		return
	}
	if k == store.Routers {
		rec = c.withOnline([]json.RawMessage{rec})[0]
	}
	if k == store.Identities {
		rec = c.withPresence([]json.RawMessage{rec})[0]
	}
	if k == store.Identities || k == store.Routers {
		rec = c.withEnrollment(k, rec)
	}
	writeJSON(w, http.StatusOK, rec)
}

func (c *Controller) serveDelete(w http.ResponseWriter, r *http.Request) {
	k, ok := parseKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown kind "+r.PathValue("kind"))
		return
	}
	cmd := store.Command{Op: store.OpDelete, Kind: k, Name: r.PathValue("name"), At: c.cfg.Now().UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		writeStoreError(w, err)
		return
	}
	c.log.Info("deleted", "kind", k, "name", cmd.Name)
	c.event(events.Event{Type: events.Deleted, Kind: store.Singular(k), Name: cmd.Name})
	c.enforce(r.Context())
	c.announceChanged(r.Context())
	w.WriteHeader(http.StatusNoContent)
}

func (c *Controller) serveCreate(w http.ResponseWriter, r *http.Request) {
	k, ok := parseKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown kind "+r.PathValue("kind"))
		return
	}
	var (
		rec any
		enr *store.Enrollment
		err error
	)
	switch k {
	case store.Identities:
		var req api.CreateIdentity
		if !decode(w, r, &req) {
			return
		}
		id := store.Identity{Meta: c.newMeta(req.Name), Attributes: nonNil(req.Attributes)}
		rl, roleErr := createRole(req.Role, req.Admin)
		id.Role, id.Admin = role.Fields(rl)
		life, lifeErr := c.tokenLifetime(req.Expires)
		rec, err = id, firstError(roleErr, lifeErr, checkAttributes(req.Attributes))
		enr = c.newEnrollment(k, id.ID, enroll.MethodOTT, life)
	case store.Routers:
		var req api.CreateRouter
		if !decode(w, r, &req) {
			return
		}
		rt := store.Router{Meta: c.newMeta(req.Name), Attributes: nonNil(req.Attributes)}
		var life time.Duration
		life, err = c.tokenLifetime(req.Expires)
		rec, err = rt, firstError(err, checkAttributes(req.Attributes))
		enr = c.newEnrollment(k, rt.ID, enroll.MethodRouter, life)
	case store.Services:
		var req api.CreateService
		if !decode(w, r, &req) {
			return
		}
		rec = store.Service{Meta: c.newMeta(req.Name), Attributes: nonNil(req.Attributes), Host: req.Host, Intercept: req.Intercept}
		err = firstError(checkAttributes(req.Attributes), checkAddress("host", req.Host), checkAddress("intercept", req.Intercept))
	case store.ServicePolicies:
		var req api.CreateServicePolicy
		if !decode(w, r, &req) {
			return
		}
		if req.Type != store.PolicyDial && req.Type != store.PolicyBind {
			err = fmt.Errorf("policy type %q: want dial or bind", req.Type)
		} else {
			err = firstError(checkRoles("identities", req.Identities), checkRoles("services", req.Services))
		}
		rec = store.ServicePolicy{Meta: c.newMeta(req.Name), Type: req.Type, Identities: req.Identities, Services: req.Services}
	case store.EdgeRouterPolicies:
		var req api.CreateEdgeRouterPolicy
		if !decode(w, r, &req) {
			return
		}
		err = firstError(checkRoles("identities", req.Identities), checkRoles("routers", req.Routers))
		rec = store.EdgeRouterPolicy{Meta: c.newMeta(req.Name), Identities: req.Identities, Routers: req.Routers}
	}
	if err != nil {
		writeCodedError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	raw, _ := json.Marshal(rec)
	var meta store.Meta
	json.Unmarshal(raw, &meta)
	out := api.Created{Name: meta.Name, ID: meta.ID, Warnings: c.roleWarnings(rec)}
	if enr != nil {
		out.ExpiresAt = &enr.ExpiresAt
		if out.JWT, err = c.token(enr); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	cmd := store.Command{Op: store.OpCreate, Kind: k, Record: raw, Enrollment: enr, At: c.cfg.Now().UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		writeStoreError(w, err)
		return
	}
	c.log.Info("created", "kind", k, "name", meta.Name)
	c.event(events.Event{Type: events.Created, Kind: store.Singular(k), Name: meta.Name})
	c.announceChanged(r.Context())
	writeJSON(w, http.StatusCreated, out)
}

// createRole is a new identity's role from a create's role and admin fields: admin=true
// is role admin, and the two must not disagree.
func createRole(name string, admin bool) (role.Role, error) {
	r, err := role.Parse(name)
	if err != nil {
		return role.None, err
	}
	if admin && r != role.None && r != role.Admin {
		return role.None, fmt.Errorf("admin=true and role %s disagree: admin=true is role admin", r)
	}
	if admin {
		return role.Admin, nil
	}
	return r, nil
}

// decode reads one JSON value of at most api.MaxBodySize into v, strictly: field names
// exactly as tagged, no unknown or repeated keys, nothing after the value. Every handler
// that reads a body reads it here; a refusal answers 400 (413 when too large) with
// api.CodeBadRequest, before anything is stored.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	err := decodeBody(w, r, v)
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeCodedError(w, http.StatusRequestEntityTooLarge, api.CodeBadRequest, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit))
		return false
	}
	writeCodedError(w, http.StatusBadRequest, api.CodeBadRequest, "malformed JSON body: "+err.Error())
	return false
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodySize))
	if err != nil {
		return err
	}
	return strictjson.Decode(data, v)
}

func parseKind(s string) (store.Kind, bool) {
	for _, k := range store.Kinds {
		if string(k) == s {
			return k, true
		}
	}
	return "", false
}

var attrRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func checkAttributes(attrs []string) error {
	for _, a := range attrs {
		if !attrRE.MatchString(a) {
			return fmt.Errorf("attribute %q: use letters, digits, '.', '_' or '-' (no '#' or '@')", a)
		}
	}
	return nil
}

// checkRoles accepts #all, #attribute and @name.
func checkRoles(field string, roles []string) error {
	if len(roles) == 0 {
		return fmt.Errorf("%s: at least one role (#all, #attribute or @name) is required", field)
	}
	for _, r := range roles {
		switch {
		case strings.HasPrefix(r, "#") && attrRE.MatchString(r[1:]):
		case strings.HasPrefix(r, "@") && store.ValidName(r[1:]):
		default:
			return fmt.Errorf("%s: role %q: want #all, #attribute or @name", field, r)
		}
	}
	return nil
}

// checkAddress accepts a service address (svcaddr.Parse: PROTO:HOST:PORT, PROTO tcp or
// udp, a valid hostname or IP literal, port 1-65535), or nothing.
func checkAddress(field, v string) error {
	if v == "" {
		return nil
	}
	if _, err := svcaddr.Parse(v); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

// firstError returns the first of errs that is not nil, so that a refusal stays one line
// (errors.Join would put each on its own).
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// withOnline adds "online": true|false to router records.
func (c *Controller) withOnline(recs []json.RawMessage) []json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]json.RawMessage, len(recs))
	for i, raw := range recs {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			out[i] = raw
			continue
		}
		id, _ := m["id"].(string)
		st, online := c.online[id]
		m["online"] = online
		if online {
			m["advertise"] = st.advertise
			m["version"] = st.software
		}
		out[i], _ = json.Marshal(m)
	}
	return out
}

// presenceWindow is how recently a router must have relayed a request for an identity
// for it to count as online: a linked agent asks for its services every 10 s, so two
// missed asks and a margin.
const presenceWindow = 25 * time.Second

// withPresence adds to identity records what an operator looks for first: "role" (the
// effective one, also for records from before roles), "enrolled",
// "cert_expires", "online", "last_seen" (when a router last relayed for it),
// "router" (which one) and, while online, "link_rtt_ms" and "link_loss_pct" (its link
// to that router, as the router last reported it).
func (c *Controller) withPresence(recs []json.RawMessage) []json.RawMessage {
	now := c.cfg.Now()
	out := make([]json.RawMessage, len(recs))
	for i, raw := range recs {
		var m map[string]any
		var id store.Identity
		if json.Unmarshal(raw, &m) != nil || json.Unmarshal(raw, &id) != nil {
			out[i] = raw
			continue
		}
		m["role"] = string(role.Of(id.Role, id.Admin))
		m["enrolled"] = id.Cert != nil
		if id.Cert != nil {
			m["cert_expires"] = id.Cert.NotAfter
		}
		c.mu.Lock()
		seen, ok := c.seen[id.ID]
		via := c.via[id.ID]
		al, measured := c.agentLinks[id.ID]
		c.mu.Unlock()
		m["online"] = ok && now.Sub(seen) < presenceWindow
		if ok {
			m["last_seen"] = seen.UTC().Truncate(time.Second)
			m["router"] = c.routerNames([]string{via})[0]
		}
		if measured && m["online"] == true {
			m["link_rtt_ms"] = float64(al.RTTMicros) / 1000
			m["link_loss_pct"] = float64(al.LossPermille) / 10
		}
		out[i], _ = json.Marshal(m)
	}
	return out
}

// withEnrollment adds "enrollment_expires_at" to an identity or router record that has
// an unused one-time token: until then a device may still enroll as it.
func (c *Controller) withEnrollment(k store.Kind, raw json.RawMessage) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	id, _ := m["id"].(string)
	enrs, err := c.store.EnrollmentsOf(k, id)
	if err != nil || len(enrs) == 0 {
		return raw
	}
	latest := enrs[0].ExpiresAt
	for _, e := range enrs[1:] {
		if e.ExpiresAt.After(latest) {
			latest = e.ExpiresAt
		}
	}
	m["enrollment_expires_at"] = latest
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

func writeStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrBadName):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, store.ErrNoLeader):
		writeCodedError(w, http.StatusServiceUnavailable, api.CodeNoLeader, err.Error())
	default:
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.Error{Error: msg})
}

// writeCodedError answers with msg and a code a program can act on without reading it.
func writeCodedError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.Error{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
