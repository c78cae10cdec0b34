// Package policy decides what an identity may do: dial or bind a service, use an edge
// router. Roles are #attribute, @name or #all; a policy grants its operation to every
// identity matching one of its identity roles on every target matching one of its target
// roles. The package reads records and decides; it never writes.
package policy

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/umbranet/umbra/controller/store"
)

// RoleAll matches everything.
const RoleAll = "#all"

// Matches reports whether a record with name and attrs matches any of roles.
func Matches(roles []string, name string, attrs []string) bool {
	for _, r := range roles {
		switch {
		case r == RoleAll:
			return true
		case len(r) > 1 && r[0] == '@' && r[1:] == name:
			return true
		case len(r) > 1 && r[0] == '#' && slices.Contains(attrs, r[1:]):
			return true
		}
	}
	return false
}

// Policies holds every service and edge-router policy, loaded once per decision.
type Policies struct {
	Service    []store.ServicePolicy
	EdgeRouter []store.EdgeRouterPolicy
}

// Load reads every policy from st.
func Load(st store.Store) (*Policies, error) {
	p := &Policies{}
	if err := listInto(st, store.ServicePolicies, &p.Service); err != nil {
		return nil, err
	}
	if err := listInto(st, store.EdgeRouterPolicies, &p.EdgeRouter); err != nil {
		return nil, err
	}
	return p, nil
}

// Allowed reports whether id may perform op (store.PolicyDial or store.PolicyBind) on svc.
func (p *Policies) Allowed(op string, id store.Identity, svc store.Service) bool {
	for _, sp := range p.Service {
		if sp.Type == op && Matches(sp.Identities, id.Name, id.Attributes) && Matches(sp.Services, svc.Name, svc.Attributes) {
			return true
		}
	}
	return false
}

// MayUseRouter reports whether id may connect through router r.
func (p *Policies) MayUseRouter(id store.Identity, r store.Router) bool {
	for _, ep := range p.EdgeRouter {
		if Matches(ep.Identities, id.Name, id.Attributes) && Matches(ep.Routers, r.Name, r.Attributes) {
			return true
		}
	}
	return false
}

// Access is what an identity may do with one service.
type Access struct {
	Service store.Service
	Dial    bool
	Bind    bool
}

// Services lists the services id may dial or bind, in name order.
func (p *Policies) Services(st store.Store, id store.Identity) ([]Access, error) {
	var svcs []store.Service
	if err := listInto(st, store.Services, &svcs); err != nil {
		return nil, err
	}
	var out []Access
	for _, s := range svcs {
		a := Access{Service: s, Dial: p.Allowed(store.PolicyDial, id, s), Bind: p.Allowed(store.PolicyBind, id, s)}
		if a.Dial || a.Bind {
			out = append(out, a)
		}
	}
	return out, nil
}

// Routers lists the routers id may use, in name order.
func (p *Policies) Routers(st store.Store, id store.Identity) ([]store.Router, error) {
	var all []store.Router
	if err := listInto(st, store.Routers, &all); err != nil {
		return nil, err
	}
	var out []store.Router
	for _, r := range all {
		if p.MayUseRouter(id, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func listInto[T any](st store.Store, kind store.Kind, out *[]T) error {
	raws, err := st.List(kind)
	if err != nil {
		return fmt.Errorf("policy: list %s: %w", kind, err)
	}
	for _, raw := range raws {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("policy: %s: %w", kind, err)
		}
		*out = append(*out, v)
	}
	return nil
}
