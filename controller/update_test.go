package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/umbranet/umbra/internal/api"
)

// patch sends body to url as PATCH and returns the status and the answer's error message.
func patch(t *testing.T, c *http.Client, url string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPatch, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PATCH %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e api.Error
	json.Unmarshal(data, &e)
	return resp.StatusCode, e.Error
}

func ptr[T any](v T) *T { return &v }

// TestUpdateEditsInPlace: each kind's update changes what it names and keeps the
// record's id, creation time and certificate.
func TestUpdateEditsInPlace(t *testing.T) {
	tc := startController(t)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	tc.createIdentity(t, "drone1", false, "drone", "north")
	must(tc.api.Create(ctx, "routers", api.CreateRouter{Name: "mast"}))
	must(tc.api.Create(ctx, "services", api.CreateService{Name: "mavlink", Host: "udp:127.0.0.1:14550", Attributes: []string{"telemetry"}}))
	must(tc.api.Create(ctx, "service-policies", api.CreateServicePolicy{Name: "fly", Type: "dial", Identities: []string{"#operator"}, Services: []string{"@mavlink"}}))
	must(tc.api.Create(ctx, "edge-router-policies", api.CreateEdgeRouterPolicy{Name: "all", Identities: []string{"#all"}, Routers: []string{"#all"}}))
	created, err := tc.api.Get(ctx, "identities", "drone1")
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name       string
		kind, rec  string
		body       any
		field      string
		want       any
		unchanged  string
		unchangedV any
	}{
		{"add-attr-keeps-the-others", "identities", "drone1", api.UpdateIdentity{AddAttributes: []string{"south"}}, "attributes", []any{"drone", "north", "south"}, "admin", false},
		{"remove-attr", "identities", "drone1", api.UpdateIdentity{RemoveAttributes: []string{"north"}}, "attributes", []any{"drone", "south"}, "admin", false},
		{"attr-replaces-the-set", "identities", "drone1", api.UpdateIdentity{Attributes: &[]string{"spare"}}, "attributes", []any{"spare"}, "admin", false},
		{"admin-role-given", "identities", "drone1", api.UpdateIdentity{Admin: ptr(true)}, "admin", true, "attributes", []any{"spare"}},
		{"router-attributes", "routers", "mast", api.UpdateRouter{Attributes: &[]string{"relay"}}, "attributes", []any{"relay"}, "name", "mast"},
		{"service-host", "services", "mavlink", api.UpdateService{Host: ptr("udp:127.0.0.1:14551")}, "host", "udp:127.0.0.1:14551", "attributes", []any{"telemetry"}},
		{"service-intercept", "services", "mavlink", api.UpdateService{Intercept: ptr("udp:127.0.0.1:14560")}, "intercept", "udp:127.0.0.1:14560", "host", "udp:127.0.0.1:14551"},
		{"policy-identities", "service-policies", "fly", api.UpdateServicePolicy{Identities: &[]string{"#pilot", "@drone1"}}, "identities", []any{"#pilot", "@drone1"}, "type", "dial"},
		{"policy-type", "service-policies", "fly", api.UpdateServicePolicy{Type: ptr("bind")}, "type", "bind", "services", []any{"@mavlink"}},
		{"edge-router-policy-routers", "edge-router-policies", "all", api.UpdateEdgeRouterPolicy{Routers: &[]string{"@mast"}}, "routers", []any{"@mast"}, "identities", []any{"#all"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tc.api.Update(ctx, tt.kind, tt.rec, tt.body)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			stored, err := tc.api.Get(ctx, tt.kind, tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range []map[string]any{got, stored} {
				if g := jsonOf(rec[tt.field]); g != jsonOf(tt.want) {
					t.Errorf("%s = %s, want %s", tt.field, g, jsonOf(tt.want))
				}
				if g := jsonOf(rec[tt.unchanged]); g != jsonOf(tt.unchangedV) {
					t.Errorf("%s = %s, want it unchanged at %s", tt.unchanged, g, jsonOf(tt.unchangedV))
				}
			}
		})
	}
	after, err := tc.api.Get(ctx, "identities", "drone1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "created_at"} {
		if jsonOf(after[f]) != jsonOf(created[f]) {
			t.Errorf("%s = %s after updates, want %s as created", f, jsonOf(after[f]), jsonOf(created[f]))
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRefusedUpdateChangesNothing: an update that names nothing, breaks a rule a create
// enforces, or is malformed gets a clear error and leaves the store as it was.
func TestRefusedUpdateChangesNothing(t *testing.T) {
	tc := startController(t)
	ctx := context.Background()
	tc.createIdentity(t, "drone1", false, "drone")
	if _, err := tc.api.Create(ctx, "services", api.CreateService{Name: "mavlink", Host: "udp:127.0.0.1:14550"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.api.Create(ctx, "service-policies", api.CreateServicePolicy{Name: "fly", Type: "dial", Identities: []string{"#operator"}, Services: []string{"@mavlink"}}); err != nil {
		t.Fatal(err)
	}
	adminCert, adminKey, err := tc.admin.Certificate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer adminKey.Close()
	asAdmin := tc.httpClient(t, &adminCert)
	cases := []struct {
		name, path, body string
		status           int
		wantErr          string
	}{
		{"unknown-name", "/v1/services/nothing", `{"host": "udp:127.0.0.1:1"}`, http.StatusNotFound, "not found"},
		{"unknown-kind", "/v1/gadgets/mavlink", `{}`, http.StatusNotFound, "unknown kind"},
		{"bad-role-syntax", "/v1/service-policies/fly", `{"identities": ["operator"]}`, http.StatusBadRequest, "want #all, #attribute or @name"},
		{"no-roles-left", "/v1/service-policies/fly", `{"services": []}`, http.StatusBadRequest, "at least one role"},
		{"bad-policy-type", "/v1/service-policies/fly", `{"type": "steal"}`, http.StatusBadRequest, "want dial or bind"},
		{"bad-attribute", "/v1/identities/drone1", `{"add_attributes": ["#x"]}`, http.StatusBadRequest, "attribute"},
		{"bad-host", "/v1/services/mavlink", `{"host": "tcp:nowhere"}`, http.StatusBadRequest, "host"},
		{"field-of-another-kind", "/v1/services/mavlink", `{"admin": true}`, http.StatusBadRequest, "unknown field"},
		{"rename", "/v1/services/mavlink", `{"name": "other"}`, http.StatusBadRequest, "unknown field"},
		{"malformed-body", "/v1/services/mavlink", `{"host": `, http.StatusBadRequest, "malformed JSON"},
		{"no-client-certificate", "/v1/services/mavlink", `{"host": "udp:127.0.0.1:1"}`, http.StatusUnauthorized, "client certificate"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := asAdmin
			if tt.name == "no-client-certificate" {
				c = tc.httpClient(t, nil)
			}
			before := tc.dump(t)
			status, msg := patch(t, c, tc.URL()+tt.path, []byte(tt.body))
			if status != tt.status || !strings.Contains(msg, tt.wantErr) {
				t.Errorf("got %d %q, want %d with %q", status, msg, tt.status, tt.wantErr)
			}
			if after := tc.dump(t); after != before {
				t.Errorf("store changed by a refused update")
			}
		})
	}
}

// TestEditAttributes: replace first, then add (once), then remove.
func TestEditAttributes(t *testing.T) {
	cases := []struct {
		name             string
		attrs            []string
		replace          *[]string
		add, remove, out []string
	}{
		{"nothing-given-keeps-them", []string{"a"}, nil, nil, nil, []string{"a"}},
		{"add-twice-is-once", []string{"a"}, nil, []string{"b", "b", "a"}, nil, []string{"a", "b"}},
		{"remove-what-is-absent", []string{"a"}, nil, nil, []string{"z"}, []string{"a"}},
		{"replace-then-add-then-remove", []string{"a"}, &[]string{"x", "y"}, []string{"z"}, []string{"x"}, []string{"y", "z"}},
		{"empty-set", []string{"a"}, &[]string{}, nil, nil, []string{}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := editAttributes(tt.attrs, tt.replace, tt.add, tt.remove)
			if err != nil || !slices.Equal(got, tt.out) || got == nil {
				t.Errorf("got %q (%v), want %q", got, err, tt.out)
			}
		})
	}
}
