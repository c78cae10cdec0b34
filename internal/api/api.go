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
// its routers).
type Client struct {
	base string
	http *http.Client
	key  keystore.Key // closed by Close; nil when the caller owns the key
}

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

// NewClientWithCert returns a client for id's controller that presents cert, whose key
// the caller opened and keeps: Close leaves it open.
func NewClientWithCert(id *identity.File, cert tls.Certificate) (*Client, error) {
	roots, err := id.Roots()
	if err != nil {
		return nil, err
	}
	if _, err := url.Parse(id.Controller); err != nil {
		return nil, fmt.Errorf("api: controller URL: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
	}}
	return &Client{base: id.Controller, http: &http.Client{Transport: tr, Timeout: requestTimeout}}, nil
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+PathEvents+"?"+q.Encode(), nil)
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
// (if not nil). A non-2xx answer becomes an error carrying the controller's message.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerSize))
	if err != nil {
		return fmt.Errorf("api: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return errorOf(resp.StatusCode, resp.Status, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("api: answer: %w", err)
	}
	return nil
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
