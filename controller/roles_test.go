package controller

import (
	"context"
	"net/http"
	"testing"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/role"
)

// enrolledClient creates identity name with the given role, enrolls it and returns an
// API client presenting its certificate.
func (tc *testController) enrolledClient(t *testing.T, name string, r role.Role) *api.Client {
	t.Helper()
	ctx := context.Background()
	out, err := tc.api.Create(ctx, "identities", api.CreateIdentity{Name: name, Role: string(r)})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := enroll.Enroll(ctx, out.JWT, pki.KindIdentity, key)
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	id.Key = ref
	c, err := api.NewClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRolesEnforcedByTheController: each role may do exactly what it is given, through
// the API itself; every refusal is 403 with api.CodeForbidden and leaves the store as
// it was.
func TestRolesEnforcedByTheController(t *testing.T) {
	tc := startController(t)
	ctx := context.Background()
	tc.createIdentity(t, "drone1", false, "drone")
	if _, err := tc.api.Create(ctx, "services", api.CreateService{Name: "mavlink", Host: "udp:127.0.0.1:14550"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.api.Create(ctx, "service-policies", api.CreateServicePolicy{Name: "fly", Type: "dial", Identities: []string{"#pilot"}, Services: []string{"@mavlink"}}); err != nil {
		t.Fatal(err)
	}
	clients := map[role.Role]*api.Client{
		role.Reader:   tc.enrolledClient(t, "assistant", role.Reader),
		role.Operator: tc.enrolledClient(t, "ops", role.Operator),
		role.None:     tc.enrolledClient(t, "device", role.None),
	}
	type call func(c *api.Client) error
	var (
		list   call = func(c *api.Client) error { _, err := c.List(ctx, "identities"); return err }
		get    call = func(c *api.Client) error { _, err := c.Get(ctx, "services", "mavlink"); return err }
		advise call = func(c *api.Client) error { _, err := c.Advise(ctx, "drone1", "mavlink"); return err }
		events call = func(c *api.Client) error {
			return c.Do(ctx, http.MethodGet, api.PathEvents, nil, nil)
		}
		audit call = func(c *api.Client) error {
			return c.Audit(ctx, api.AuditEvent{Client: "test", Tool: "list_identities", Outcome: api.OutcomeOK})
		}
		create call = func(c *api.Client) error {
			_, err := c.Create(ctx, "services", api.CreateService{Name: "video"})
			return err
		}
		updateService call = func(c *api.Client) error {
			_, err := c.Update(ctx, "services", "mavlink", api.UpdateService{Attributes: &[]string{"telemetry"}})
			return err
		}
		updatePolicy call = func(c *api.Client) error {
			_, err := c.Update(ctx, "service-policies", "fly", api.UpdateServicePolicy{Identities: &[]string{"#pilot", "#ops"}})
			return err
		}
		updateAttrs call = func(c *api.Client) error {
			_, err := c.Update(ctx, "identities", "drone1", api.UpdateIdentity{AddAttributes: []string{"north"}})
			return err
		}
		promote call = func(c *api.Client) error {
			_, err := c.Update(ctx, "identities", "drone1", api.UpdateIdentity{Role: ptr("admin")})
			return err
		}
		promoteByFlag call = func(c *api.Client) error {
			_, err := c.Update(ctx, "identities", "assistant", api.UpdateIdentity{Admin: ptr(true)})
			return err
		}
		del     call = func(c *api.Client) error { return c.Delete(ctx, "service-policies", "fly") }
		reissue call = func(c *api.Client) error {
			_, err := c.Create(ctx, "enrollments", api.CreateEnrollment{Name: "drone1"})
			return err
		}
	)
	cases := []struct {
		name    string
		role    role.Role
		call    call
		allowed bool
	}{
		{"a-reader-lists", role.Reader, list, true},
		{"a-reader-gets", role.Reader, get, true},
		{"a-reader-asks-the-policy-advisor", role.Reader, advise, true},
		{"a-reader-reads-events", role.Reader, events, true},
		{"a-reader-posts-an-audit-event", role.Reader, audit, true},
		{"a-reader-may-not-create", role.Reader, create, false},
		{"a-reader-may-not-update-a-service", role.Reader, updateService, false},
		{"a-reader-may-not-update-a-policy", role.Reader, updatePolicy, false},
		{"a-reader-may-not-update-attributes", role.Reader, updateAttrs, false},
		{"a-reader-may-not-promote-itself", role.Reader, promoteByFlag, false},
		{"a-reader-may-not-delete", role.Reader, del, false},
		{"a-reader-may-not-issue-a-token", role.Reader, reissue, false},
		{"an-operator-updates-a-service", role.Operator, updateService, true},
		{"an-operator-updates-a-policy", role.Operator, updatePolicy, true},
		{"an-operator-updates-attributes", role.Operator, updateAttrs, true},
		{"an-operator-may-not-change-a-role", role.Operator, promote, false},
		{"an-operator-may-not-set-the-admin-flag", role.Operator, promoteByFlag, false},
		{"an-operator-may-not-create", role.Operator, create, false},
		{"an-operator-may-not-delete", role.Operator, del, false},
		{"an-operator-may-not-issue-a-token", role.Operator, reissue, false},
		{"a-device-may-not-list", role.None, list, false},
		{"a-device-may-not-read-events", role.None, events, false},
		{"a-device-may-not-post-audit-events", role.None, audit, false},
		{"a-device-may-not-update", role.None, updateService, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := tc.dump(t)
			err := tt.call(clients[tt.role])
			switch {
			case tt.allowed && err != nil:
				t.Errorf("got %v, want success", err)
			case !tt.allowed && !api.HasCode(err, api.CodeForbidden):
				t.Errorf("got %v, want a refusal with code %q", err, api.CodeForbidden)
			case !tt.allowed:
				if after := tc.dump(t); after != before {
					t.Errorf("store changed by a refused call:\nbefore:\n%s\nafter:\n%s", before, after)
				}
			}
		})
	}
}

// TestRoleFieldsAgree: admin=true is role admin both ways, an old record with only the
// admin flag reads as role admin, and conflicting fields are refused.
func TestRoleFieldsAgree(t *testing.T) {
	tc := startController(t)
	ctx := context.Background()
	admin, err := tc.api.Get(ctx, "identities", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if admin["role"] != "admin" || admin["admin"] != true {
		t.Errorf("quickstart admin: role %v admin %v, want admin true", admin["role"], admin["admin"])
	}
	tc.createIdentity(t, "old-style", true)
	got, _ := tc.api.Get(ctx, "identities", "old-style")
	if got["role"] != "admin" {
		t.Errorf("--admin-role identity has role %v, want admin", got["role"])
	}
	if _, err := tc.api.Create(ctx, "identities", api.CreateIdentity{Name: "r", Role: "reader"}); err != nil {
		t.Fatal(err)
	}
	got, _ = tc.api.Update(ctx, "identities", "r", api.UpdateIdentity{Role: ptr("admin")})
	if got["role"] != "admin" || got["admin"] != true {
		t.Errorf("after role admin: role %v admin %v, want admin true", got["role"], got["admin"])
	}
	got, _ = tc.api.Update(ctx, "identities", "r", api.UpdateIdentity{Admin: ptr(false)})
	if got["role"] != "" || got["admin"] != false {
		t.Errorf("after admin=false: role %v admin %v, want none", got["role"], got["admin"])
	}
	before := tc.dump(t)
	for _, body := range []any{
		api.CreateIdentity{Name: "x", Role: "reader", Admin: true},
		api.CreateIdentity{Name: "y", Role: "root"},
	} {
		if _, err := tc.api.Create(ctx, "identities", body); !api.HasCode(err, api.CodeBadRequest) {
			t.Errorf("create %+v: got %v, want %s", body, err, api.CodeBadRequest)
		}
	}
	if _, err := tc.api.Update(ctx, "identities", "r", api.UpdateIdentity{Role: ptr("operator"), Admin: ptr(true)}); !api.HasCode(err, api.CodeBadRequest) {
		t.Errorf("conflicting update: got %v, want %s", err, api.CodeBadRequest)
	}
	if after := tc.dump(t); after != before {
		t.Error("store changed by refused role changes")
	}
}
