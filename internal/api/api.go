// Package api is the management API's wire format and its client: the JSON bodies that
// `umbra edge …` sends to the controller over HTTPS with mutual TLS, and the JSON error
// the controller answers with. The controller serves it; the CLI and tests call it.
package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/identity"
)

// Limits of the management API.
const (
	// MaxBodySize caps every request body the controller reads.
	MaxBodySize = 64 << 10
	// maxAnswerSize caps what the client reads back (a list of 10,000 identities fits).
	maxAnswerSize = 256 << 20
	// requestTimeout bounds one call from the CLI.
	requestTimeout = 60 * time.Second
)

// PathPrefix starts every management path: /v1/KIND[/NAME].
const PathPrefix = "/v1/"

// PathEdgeRouters lists the routers the calling identity may use, with their advertised
// addresses; any enrolled identity may call it.
const PathEdgeRouters = "/v1/self/routers"

// CreateIdentity is the body of POST /v1/identities.
type CreateIdentity struct {
	Name       string   `json:"name"`
	Attributes []string `json:"attributes,omitempty"`
	// Admin is the older way to say Role "admin"; the two must agree when both are given.
	Admin bool `json:"admin,omitempty"`
	// Role is the management role: "reader", "operator", "admin" (role.All), or empty
	// for a device, which may not use the management API.
	Role string `json:"role,omitempty"`
	// Expires is the enrollment token's lifetime as a Go duration ("48h"); empty is the
	// controller's default.
	Expires string `json:"expires,omitempty"`
}

// CreateRouter is the body of POST /v1/routers.
type CreateRouter struct {
	Name       string   `json:"name"`
	Attributes []string `json:"attributes,omitempty"`
	// Expires is the enrollment token's lifetime, as in CreateIdentity.
	Expires string `json:"expires,omitempty"`
}

// CreateController is the body of POST /v1/controllers: a one-time token for a new
// member of the controller cluster.
type CreateController struct {
	Name string `json:"name"`
	// Expires is the token's lifetime, as in CreateIdentity.
	Expires string `json:"expires,omitempty"`
}

// PathControllers lists (GET), creates (POST) and removes (DELETE …/NAME) the members of
// the controller cluster.
const PathControllers = "/v1/controllers"

// PathEnrollments issues a new one-time token for an existing identity or router: POST
// a CreateEnrollment, get a Created back.
const PathEnrollments = "/v1/enrollments"

// CreateEnrollment is the body of POST /v1/enrollments: a new token for the identity or
// router Name (a device replaced or wiped). When it is redeemed, the certificate the
// subject held until then is revoked; older unused tokens of the subject stop working at
// once.
type CreateEnrollment struct {
	Name string `json:"name"`
	// Kind is "identities" or "routers"; empty finds Name among both.
	Kind string `json:"kind,omitempty"`
	// Expires is the token's lifetime, as in CreateIdentity.
	Expires string `json:"expires,omitempty"`
}

// CreateService is the body of POST /v1/services.
type CreateService struct {
	Name       string   `json:"name"`
	Attributes []string `json:"attributes,omitempty"`
	Host       string   `json:"host,omitempty"`
	Intercept  string   `json:"intercept,omitempty"`
}

// CreateServicePolicy is the body of POST /v1/service-policies.
type CreateServicePolicy struct {
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Identities []string `json:"identities"`
	Services   []string `json:"services"`
}

// CreateEdgeRouterPolicy is the body of POST /v1/edge-router-policies.
type CreateEdgeRouterPolicy struct {
	Name       string   `json:"name"`
	Identities []string `json:"identities"`
	Routers    []string `json:"routers"`
}

// An update is the body of PATCH /v1/KIND/NAME: every field left out keeps its value.
// Attributes, when given, replaces the attribute set; AddAttributes and RemoveAttributes
// then edit it.

// UpdateIdentity is the body of PATCH /v1/identities/NAME.
type UpdateIdentity struct {
	Attributes       *[]string `json:"attributes,omitempty"`
	AddAttributes    []string  `json:"add_attributes,omitempty"`
	RemoveAttributes []string  `json:"remove_attributes,omitempty"`
	Admin            *bool     `json:"admin,omitempty"`
	// Role, when given, sets the management role ("" for none); only an admin may.
	Role *string `json:"role,omitempty"`
}

// UpdateRouter is the body of PATCH /v1/routers/NAME.
type UpdateRouter struct {
	Attributes       *[]string `json:"attributes,omitempty"`
	AddAttributes    []string  `json:"add_attributes,omitempty"`
	RemoveAttributes []string  `json:"remove_attributes,omitempty"`
}

// UpdateService is the body of PATCH /v1/services/NAME. An empty Host or Intercept
// clears it.
type UpdateService struct {
	Attributes       *[]string `json:"attributes,omitempty"`
	AddAttributes    []string  `json:"add_attributes,omitempty"`
	RemoveAttributes []string  `json:"remove_attributes,omitempty"`
	Host             *string   `json:"host,omitempty"`
	Intercept        *string   `json:"intercept,omitempty"`
}

// UpdateServicePolicy is the body of PATCH /v1/service-policies/NAME.
type UpdateServicePolicy struct {
	Type       *string   `json:"type,omitempty"`
	Identities *[]string `json:"identities,omitempty"`
	Services   *[]string `json:"services,omitempty"`
}

// UpdateEdgeRouterPolicy is the body of PATCH /v1/edge-router-policies/NAME.
type UpdateEdgeRouterPolicy struct {
	Identities *[]string `json:"identities,omitempty"`
	Routers    *[]string `json:"routers,omitempty"`
}

// PathPolicyAdvisor + IDENTITY/SERVICE answers whether IDENTITY could dial SERVICE now,
// with an Advice.
const PathPolicyAdvisor = "/v1/policy-advisor/"

// Advice is the policy advisor's answer: each check a dial passes, in order, and whether
// all of them pass.
type Advice struct {
	Allowed bool    `json:"allowed"`
	Checks  []Check `json:"checks"`
}

// Check is one step of a dial's authorization and routing, and what the controller found.
type Check struct {
	Check  string `json:"check"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// PathEvents answers with the controller's audit trail as JSON lines (ContentTypeEvents):
// ?since=DURATION, ?follow=true.
const PathEvents = "/v1/events"

// AuditEvent is the body of POST PathEvents: a program acting for someone else (`umbra
// mcp` for an AI assistant) records one call it made, as an event of type mcp-call naming
// the calling identity. Any identity with a management role may post one.
type AuditEvent struct {
	// Client names the program's own client (the MCP client's name), at most
	// MaxAuditField bytes of printable text.
	Client string `json:"client"`
	// Tool is what was called: letters, digits, '_' or '-', at most MaxAuditField bytes.
	Tool string `json:"tool"`
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
}

// MaxAuditField bounds each text field of an AuditEvent, so the trail stays readable.
const MaxAuditField = 128

// Outcomes of an AuditEvent.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"
	OutcomeRefused = "refused"
)

// ContentTypeEvents is the media type of PathEvents' answer: one JSON object a line.
const ContentTypeEvents = "application/x-ndjson"

// Created is the answer to a create: the new record's name and id, and for identities
// and routers the one-time enrollment token.
type Created struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	JWT  string `json:"jwt,omitempty"`
	// ExpiresAt is when JWT stops being redeemable.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Warnings name what was stored but looks wrong: a policy's @name that matches nothing.
	Warnings []string `json:"warnings,omitempty"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	// Error is one line for a person.
	Error string `json:"error"`
	// Code, when set, is what kind of refusal this is, for a program to act on
	// without reading Error (one of the Code constants).
	Code string `json:"code,omitempty"`
}

// Error codes of the API's refusals.
const (
	// CodeBadRequest: the body is not strict JSON of the endpoint's type (a field name
	// not exactly as documented, an unknown or repeated key, trailing data, too large),
	// or a field's value is invalid (a name, an attribute, a role, an address).
	CodeBadRequest = "bad_request"
	// CodeWrongTokenKind: an enrollment token of another kind than the enrolling
	// program enrolls (an identity's token given to a router, say). The token is
	// not spent.
	CodeWrongTokenKind = "wrong_token_kind"
	// CodeUnauthenticated: the request carries no client certificate.
	CodeUnauthenticated = "unauthenticated"
	// CodeForbidden: the caller's identity is unknown, revoked, or its role (none,
	// reader, operator) does not allow what it asked.
	CodeForbidden = "forbidden"
	// CodeNoLeader: the controller asked cannot write now, because it reaches no
	// leader of its cluster (it is cut off from a majority, or an election is running).
	// Reads still work there; another controller may take the write.
	CodeNoLeader = "no_leader"
)

// StatusError is the error a non-2xx answer becomes: the controller's one line, its
// code (when it gave one) and the HTTP status.
type StatusError struct {
	// Status is the HTTP status code (403, 404, …).
	Status int
	// Code is the answer's api.Error Code, empty when it gave none.
	Code string
	// Message is the controller's one line (or the status, when it gave no line).
	Message string
}

// Error is the controller's message.
func (e *StatusError) Error() string { return e.Message }

// HasCode reports whether err is, or wraps, a StatusError with code.
func HasCode(err error, code string) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

// Client calls the management API as an identity (an admin's, or an agent's asking for
// its routers). It knows every controller of the cluster the identity file lists, and
// fails over among them: a controller that does not answer, or answers that it has no
// leader, is left for the next.
type Client struct {
	bases []string
	http  *http.Client
	key   keystore.Key // closed by Close; nil when the caller owns the key

	ca      string // the identity's root, which names its cluster in members
	mu      sync.Mutex
	cur     int      // index in bases of the controller that answered last
	learned []string // the cluster's members as the last answer listed them
}

// members remembers, for the life of the process, the members each cluster (named by
// its root certificate) last listed, so that a program making a new Client for each call
// (an agent asking for its routers) still follows the cluster's changes.
var members sync.Map // root PEM → []string

// HeaderControllers is the answer header in which a controller lists the management
// URLs of every member of its cluster, comma-separated.
const HeaderControllers = "Umbra-Controllers"

// Failover bounds.
const (
	// failoverWindow bounds how long a call goes round the controllers while none
	// answers or none has a leader (an election takes a second or two).
	failoverWindow = 15 * time.Second
	// failoverPause is the pause between two rounds of the controllers.
	failoverPause = 250 * time.Millisecond
	// attemptTimeout bounds one call to one controller, so a stopped one is left.
	attemptTimeout = 15 * time.Second
	// handshakeTimeout bounds the TLS handshake with one controller.
	handshakeTimeout = 3 * time.Second
)

// NewClient opens the identity's key and returns a client for its controller. Close
// releases the key. A program that already holds the key open (an agent whose key lives
// in a TPM or secure element, which allows one session at a time) uses NewClientWithCert.
func NewClient(ctx context.Context, id *identity.File) (*Client, error) {
	cert, key, err := id.Certificate(ctx)
	if err != nil {
		return nil, err
	}
	c, err := NewClientWithCert(id, cert)
	if err != nil {
		key.Close()
		return nil, err
	}
	c.key = key
	return c, nil
}

// NewClientWithCert returns a client for id's controllers that presents cert, whose key
// the caller opened and keeps: Close leaves it open.
func NewClientWithCert(id *identity.File, cert tls.Certificate) (*Client, error) {
	roots, err := id.Roots()
	if err != nil {
		return nil, err
	}
	bases := id.ControllerURLs()
	if known, ok := members.Load(id.CA); ok {
		for _, u := range known.([]string) {
			if !slices.Contains(bases, u) {
				bases = append(bases, u)
			}
		}
	}
	for _, b := range bases {
		if _, err := url.Parse(b); err != nil {
			return nil, fmt.Errorf("api: controller URL: %w", err)
		}
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:      roots,
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS13,
		},
		TLSHandshakeTimeout: handshakeTimeout,
	}
	return &Client{bases: bases, ca: id.CA, http: &http.Client{Transport: tr, Timeout: requestTimeout}}, nil
}

// Controllers is the cluster's members as the last answer listed them (nil before any
// answer, or from a controller that does not say).
func (c *Client) Controllers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.learned
}

// base is the controller to try first.
func (c *Client) base() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bases[c.cur]
}

// Close releases the client's connections, and its key if NewClient opened it.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	if c.key == nil {
		return nil
	}
	return c.key.Close()
}

// Create posts body to /v1/KIND.
func (c *Client) Create(ctx context.Context, kind string, body any) (Created, error) {
	var out Created
	err := c.Do(ctx, http.MethodPost, PathPrefix+kind, body, &out)
	return out, err
}

// List returns every record of kind as JSON objects.
func (c *Client) List(ctx context.Context, kind string) ([]map[string]any, error) {
	var out []map[string]any
	err := c.Do(ctx, http.MethodGet, PathPrefix+kind, nil, &out)
	return out, err
}

// Get returns kind/name as a JSON object.
func (c *Client) Get(ctx context.Context, kind, name string) (map[string]any, error) {
	var out map[string]any
	err := c.Do(ctx, http.MethodGet, PathPrefix+kind+"/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Update patches kind/name with body (one of the Update types) and returns the record
// as stored afterwards.
func (c *Client) Update(ctx context.Context, kind, name string, body any) (map[string]any, error) {
	var out map[string]any
	err := c.Do(ctx, http.MethodPatch, PathPrefix+kind+"/"+url.PathEscape(name), body, &out)
	return out, err
}

// Advise asks whether identity could dial service now, and why.
func (c *Client) Advise(ctx context.Context, identity, service string) (Advice, error) {
	var out Advice
	err := c.Do(ctx, http.MethodGet, PathPolicyAdvisor+url.PathEscape(identity)+"/"+url.PathEscape(service), nil, &out)
	return out, err
}

// Events copies the audit trail to w as JSON lines: the events of the last since (all
// the controller remembers when 0), then, with follow, each new one as it happens until
// ctx ends.
func (c *Client) Events(ctx context.Context, w io.Writer, since time.Duration, follow bool) error {
	q := url.Values{}
	if since > 0 {
		q.Set("since", since.String())
	}
	if follow {
		q.Set("follow", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base()+PathEvents+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	// A followed trail stays open for as long as the caller wants: no overall timeout.
	stream := &http.Client{Transport: c.http.Transport}
	resp, err := stream.Do(req)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize))
		return errorOf(resp.StatusCode, resp.Status, data)
	}
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Audit records one call made for someone else (an AuditEvent) in the controller's trail.
func (c *Client) Audit(ctx context.Context, e AuditEvent) error {
	return c.Do(ctx, http.MethodPost, PathEvents, e, nil)
}

// Delete removes kind/name.
func (c *Client) Delete(ctx context.Context, kind, name string) error {
	return c.Do(ctx, http.MethodDelete, PathPrefix+kind+"/"+url.PathEscape(name), nil, nil)
}

// Do sends one request with a JSON body (if any) and decodes the JSON answer into out
// (if not nil). A non-2xx answer becomes an error carrying the controller's message. A
// controller that cannot be reached, or has no leader, is left for the next one the
// identity file lists, round after round for up to failoverWindow.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return fmt.Errorf("api: %w", err)
		}
	}
	c.mu.Lock()
	start, n := c.cur, len(c.bases)
	c.mu.Unlock()
	deadline := time.Now().Add(failoverWindow)
	for {
		var last error
		for i := range n {
			idx := (start + i) % n
			answer, err := c.once(ctx, c.bases[idx], method, path, data)
			if err == nil {
				c.mu.Lock()
				c.cur = idx
				c.mu.Unlock()
				if out == nil {
					return nil
				}
				if err := json.Unmarshal(answer, out); err != nil {
					return fmt.Errorf("api: answer: %w", err)
				}
				return nil
			}
			if ctx.Err() != nil || !failover(err) {
				return err
			}
			last = err
		}
		// One controller fails at once, as it always did (it waited for a leader
		// itself); a cluster's members are tried round after round while one elects.
		if n == 1 || time.Now().After(deadline) {
			return last
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(failoverPause):
		}
	}
}

// failover reports whether a call that failed with err may go to another controller.
func failover(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code == CodeNoLeader
	}
	return true
}

// once sends one request to the controller at base.
func (c *Client) once(ctx context.Context, base, method, path string, data []byte) ([]byte, error) {
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	var rd io.Reader
	if data != nil {
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(actx, method, base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	if data != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if h := resp.Header.Get(HeaderControllers); h != "" {
		learned := strings.Split(h, ",")
		c.mu.Lock()
		c.learned = learned
		c.mu.Unlock()
		members.Store(c.ca, learned)
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize))
	if err != nil {
		return nil, fmt.Errorf("api: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, errorOf(resp.StatusCode, resp.Status, answer)
	}
	return answer, nil
}

// errorOf is the error a non-2xx answer carries (a *StatusError), or its status when it
// carries none.
func errorOf(code int, status string, body []byte) error {
	var e Error
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return &StatusError{Status: code, Code: e.Code, Message: e.Error}
	}
	return &StatusError{Status: code, Message: "api: controller answered " + status}
}
