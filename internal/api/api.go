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

	"umbra/hal/keystore"
	"umbra/internal/identity"
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
	Admin      bool     `json:"admin,omitempty"`
}

// CreateRouter is the body of POST /v1/routers.
type CreateRouter struct {
	Name       string   `json:"name"`
	Attributes []string `json:"attributes,omitempty"`
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

// Created is the answer to a create: the new record's name and id, and for identities
// and routers the one-time enrollment token.
type Created struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	JWT  string `json:"jwt,omitempty"`
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
)

// Client calls the management API as an admin identity.
type Client struct {
	base string
	http *http.Client
	key  keystore.Key
}

// NewClient opens the admin identity's key and returns a client for its controller.
func NewClient(ctx context.Context, id *identity.File) (*Client, error) {
	cert, key, err := id.Certificate(ctx)
	if err != nil {
		return nil, err
	}
	roots, err := id.Roots()
	if err != nil {
		key.Close()
		return nil, err
	}
	if _, err := url.Parse(id.Controller); err != nil {
		key.Close()
		return nil, fmt.Errorf("api: controller URL: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
	}}
	return &Client{base: id.Controller, http: &http.Client{Transport: tr, Timeout: requestTimeout}, key: key}, nil
}

// Close releases the client's key and connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
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
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("api: controller answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("api: answer: %w", err)
	}
	return nil
}
