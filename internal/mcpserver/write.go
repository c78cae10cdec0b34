package mcpserver

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/umbranet/umbra/internal/api"
)

// createIdentityArgs are create_identity's arguments.
type createIdentityArgs struct {
	Name       string   `json:"name" jsonschema:"the new identity's name"`
	Attributes []string `json:"attributes,omitempty" jsonschema:"role attributes policies match (#attribute)"`
	Role       string   `json:"role,omitempty" jsonschema:"management role: reader, operator or admin; empty for a device (only an admin identity may create any identity)"`
	Expires    string   `json:"expires,omitempty" jsonschema:"the enrollment token's lifetime, a Go duration such as 48h (default 24h)"`
}

// updateIdentityArgs are update_identity's arguments.
type updateIdentityArgs struct {
	Name             string    `json:"name" jsonschema:"the identity to change"`
	Attributes       *[]string `json:"attributes,omitempty" jsonschema:"replaces the attribute set"`
	AddAttributes    []string  `json:"add_attributes,omitempty" jsonschema:"attributes to add"`
	RemoveAttributes []string  `json:"remove_attributes,omitempty" jsonschema:"attributes to remove"`
	Role             *string   `json:"role,omitempty" jsonschema:"new management role: reader, operator, admin or empty for none (only an admin identity may change roles)"`
}

// updateServiceArgs are update_service's arguments.
type updateServiceArgs struct {
	Name             string    `json:"name" jsonschema:"the service to change"`
	Attributes       *[]string `json:"attributes,omitempty" jsonschema:"replaces the attribute set"`
	AddAttributes    []string  `json:"add_attributes,omitempty" jsonschema:"attributes to add"`
	RemoveAttributes []string  `json:"remove_attributes,omitempty" jsonschema:"attributes to remove"`
	Host             *string   `json:"host,omitempty" jsonschema:"tcp|udp:HOST:PORT where a binding agent delivers traffic; empty clears it"`
	Intercept        *string   `json:"intercept,omitempty" jsonschema:"tcp|udp:HOST:PORT where a dialing agent listens; empty clears it"`
}

// updatePolicyArgs are update_policy's arguments (either kind of policy).
type updatePolicyArgs struct {
	Name       string    `json:"name" jsonschema:"the service policy or edge-router policy to change"`
	Type       *string   `json:"type,omitempty" jsonschema:"dial or bind (service policies only)"`
	Identities *[]string `json:"identities,omitempty" jsonschema:"roles of the identities it applies to: #attribute, @name or #all"`
	Services   *[]string `json:"services,omitempty" jsonschema:"roles of the services (service policies only)"`
	Routers    *[]string `json:"routers,omitempty" jsonschema:"roles of the routers (edge-router policies only)"`
}

// deleteArgs name the record to delete twice over: no wildcard, no stale guess.
type deleteArgs struct {
	Name string `json:"name" jsonschema:"the record's current name"`
	ID   string `json:"id" jsonschema:"the record's current id, as get_* shows it; the deletion is refused when it does not match"`
}

// enrollmentArgs are create_enrollment's arguments.
type enrollmentArgs struct {
	Name    string `json:"name" jsonschema:"the existing identity or router that needs a new token (a replaced or wiped device)"`
	Kind    string `json:"kind,omitempty" jsonschema:"identities or routers, when both have a record called name"`
	Expires string `json:"expires,omitempty" jsonschema:"the token's lifetime, a Go duration such as 24h (default 24h)"`
}

// tokenNote is how a token-issuing tool's description says what it hands over.
func (s *server) tokenNote(tool string) string {
	if s.revealTokens[tool] {
		return " Returns the one-time enrollment token (a secret: give it only to the device that enrolls), because the operator named this tool in --allow-write."
	}
	return " The one-time enrollment token is withheld (it is returned only when the operator names this tool explicitly in --allow-write); an admin fetches one with umbra edge create enrollment."
}

func (s *server) addWriteTools(srv *mcp.Server) {
	if s.allowed["create_identity"] {
		add(s, srv, &mcp.Tool{Name: "create_identity", Annotations: additive,
			Description: "Create an identity (a device, or an operator with a role)." + s.tokenNote("create_identity")},
			func(ctx context.Context, in createIdentityArgs) (any, error) {
				out, err := s.api.Create(ctx, kindIdentities, api.CreateIdentity{Name: in.Name, Attributes: in.Attributes, Role: in.Role, Expires: in.Expires})
				if err != nil {
					return nil, fmt.Errorf("create identity %q: %w", in.Name, err)
				}
				return s.created("create_identity", out), nil
			})
	}
	if s.allowed["update_identity"] {
		add(s, srv, &mcp.Tool{Name: "update_identity", Annotations: editing,
			Description: "Change an identity's attributes (an operator may) or role (only an admin may). Running devices follow within seconds."},
			func(ctx context.Context, in updateIdentityArgs) (any, error) {
				rec, err := s.api.Update(ctx, kindIdentities, in.Name, api.UpdateIdentity{Attributes: in.Attributes, AddAttributes: in.AddAttributes, RemoveAttributes: in.RemoveAttributes, Role: in.Role})
				if err != nil {
					return nil, fmt.Errorf("update identity %q: %w", in.Name, err)
				}
				return project(rec, identityFields), nil
			})
	}
	if s.allowed["update_service"] {
		add(s, srv, &mcp.Tool{Name: "update_service", Annotations: editing,
			Description: "Change a service's attributes, host or intercept address. Running agents follow within seconds; circuits the change no longer allows end."},
			func(ctx context.Context, in updateServiceArgs) (any, error) {
				rec, err := s.api.Update(ctx, kindServices, in.Name, api.UpdateService{Attributes: in.Attributes, AddAttributes: in.AddAttributes, RemoveAttributes: in.RemoveAttributes, Host: in.Host, Intercept: in.Intercept})
				if err != nil {
					return nil, fmt.Errorf("update service %q: %w", in.Name, err)
				}
				return project(rec, serviceFields), nil
			})
	}
	if s.allowed["update_policy"] {
		add(s, srv, &mcp.Tool{Name: "update_policy", Annotations: editing,
			Description: "Change a service policy (type, identities, services) or an edge-router policy (identities, routers). Circuits the change no longer allows end within seconds."},
			func(ctx context.Context, in updatePolicyArgs) (any, error) {
				_, kind, err := s.policy(ctx, in.Name)
				if err != nil {
					return nil, err
				}
				var body any
				if kind == kindSvcPolicy {
					if in.Routers != nil {
						return nil, fmt.Errorf("%q is a service policy: it has no routers", in.Name)
					}
					body = api.UpdateServicePolicy{Type: in.Type, Identities: in.Identities, Services: in.Services}
				} else {
					if in.Type != nil || in.Services != nil {
						return nil, fmt.Errorf("%q is an edge-router policy: it has no type or services", in.Name)
					}
					body = api.UpdateEdgeRouterPolicy{Identities: in.Identities, Routers: in.Routers}
				}
				rec, err := s.api.Update(ctx, kind, in.Name, body)
				if err != nil {
					return nil, fmt.Errorf("update policy %q: %w", in.Name, err)
				}
				rec["kind"] = policyKind[kind]
				return project(rec, policyFields), nil
			})
	}
	s.addDelete(srv, "delete_identity", kindIdentities, "Delete an identity: its certificate stops working and the circuits it had end within seconds.")
	s.addDelete(srv, "delete_service", kindServices, "Delete a service: its circuits end within seconds.")
	s.addDelete(srv, "delete_router", kindRouters, "Delete a router: it is cut off from the mesh.")
	if s.allowed["delete_policy"] {
		add(s, srv, &mcp.Tool{Name: "delete_policy", Annotations: destructive,
			Description: "Delete a service policy or edge-router policy, named by its current name and id both. Circuits it allowed end within seconds."},
			func(ctx context.Context, in deleteArgs) (any, error) {
				rec, kind, err := s.policy(ctx, in.Name)
				if err != nil {
					return nil, err
				}
				return s.deleteChecked(ctx, kind, in, rec)
			})
	}
	if s.allowed["create_enrollment"] {
		add(s, srv, &mcp.Tool{Name: "create_enrollment", Annotations: editing,
			Description: "Issue a new one-time enrollment token for an existing identity or router; once used, its previous certificate is revoked." + s.tokenNote("create_enrollment")},
			func(ctx context.Context, in enrollmentArgs) (any, error) {
				var out api.Created
				err := s.api.Do(ctx, "POST", api.PathEnrollments, api.CreateEnrollment{Name: in.Name, Kind: in.Kind, Expires: in.Expires}, &out)
				if err != nil {
					return nil, fmt.Errorf("create enrollment %q: %w", in.Name, err)
				}
				return s.created("create_enrollment", out), nil
			})
	}
}

// created is a create's answer for the assistant: the token only when the tool may
// reveal it.
func (s *server) created(tool string, out api.Created) map[string]any {
	m := map[string]any{"name": out.Name, "id": out.ID}
	if out.ExpiresAt != nil {
		m["token_expires_at"] = out.ExpiresAt
	}
	if len(out.Warnings) > 0 {
		m["warnings"] = out.Warnings
	}
	if out.JWT != "" {
		if s.revealTokens[tool] {
			m["enrollment_token"] = out.JWT
		} else {
			m["enrollment_token"] = "withheld: the operator did not name " + tool + " in --allow-write"
		}
	}
	return m
}

// addDelete registers a delete tool for kind, when allowed.
func (s *server) addDelete(srv *mcp.Server, tool, kind, desc string) {
	if !s.allowed[tool] {
		return
	}
	add(s, srv, &mcp.Tool{Name: tool, Annotations: destructive, Description: desc + " Names the record by its current name and id both; refused when they do not match."},
		func(ctx context.Context, in deleteArgs) (any, error) {
			rec, err := s.api.Get(ctx, kind, in.Name)
			if err != nil {
				return nil, fmt.Errorf("get %s %q: %w", kind, in.Name, err)
			}
			return s.deleteChecked(ctx, kind, in, rec)
		})
}

// deleteChecked deletes kind/in.Name when rec, its current record, has in.ID.
func (s *server) deleteChecked(ctx context.Context, kind string, in deleteArgs, rec map[string]any) (any, error) {
	if in.ID == "" || rec["id"] != in.ID {
		return nil, fmt.Errorf("%w: %q has id %v, not %q; nothing was deleted", errRefused, in.Name, rec["id"], in.ID)
	}
	if err := s.api.Delete(ctx, kind, in.Name); err != nil {
		return nil, fmt.Errorf("delete %s %q: %w", kind, in.Name, err)
	}
	return map[string]any{"deleted": in.Name, "id": in.ID, "kind": kind}, nil
}
