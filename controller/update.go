package controller

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/role"
)

// serveUpdate patches one record: PATCH /v1/KIND/NAME with the kind's api.Update body.
// The result is checked as a create is, and stored by one store command; a refused
// update changes nothing. Circuits and bindings the change no longer allows end as they
// do on a delete.
func (c *Controller) serveUpdate(w http.ResponseWriter, r *http.Request) {
	k, ok := parseKind(r.PathValue("kind"))
	if !ok {
		writeError(w, http.StatusNotFound, "unknown kind "+r.PathValue("kind"))
		return
	}
	name := r.PathValue("name")
	if k != store.Identities && !c.permit(w, callerOf(r), role.ForUpdate(string(k), false), "updating "+string(k)) {
		return
	}
	var (
		rec any
		err error
	)
	switch k {
	case store.Identities:
		var req api.UpdateIdentity
		var id store.Identity
		if !decode(w, r, &req) {
			return
		}
		changesRole := req.Admin != nil || req.Role != nil
		if !c.permit(w, callerOf(r), role.ForUpdate(string(k), changesRole), "changing an identity's role") || !c.load(w, k, name, &id) {
			return
		}
		id.Attributes, err = editAttributes(id.Attributes, req.Attributes, req.AddAttributes, req.RemoveAttributes)
		if changesRole {
			rl, roleErr := updateRole(role.Of(id.Role, id.Admin), req.Role, req.Admin)
			id.Role, id.Admin = role.Fields(rl)
			err = firstError(err, roleErr)
		}
		rec = id
	case store.Routers:
		var req api.UpdateRouter
		var rt store.Router
		if !decode(w, r, &req) || !c.load(w, k, name, &rt) {
			return
		}
		rt.Attributes, err = editAttributes(rt.Attributes, req.Attributes, req.AddAttributes, req.RemoveAttributes)
		rec = rt
	case store.Services:
		var req api.UpdateService
		var svc store.Service
		if !decode(w, r, &req) || !c.load(w, k, name, &svc) {
			return
		}
		svc.Attributes, err = editAttributes(svc.Attributes, req.Attributes, req.AddAttributes, req.RemoveAttributes)
		setIfGiven(&svc.Host, req.Host)
		setIfGiven(&svc.Intercept, req.Intercept)
		err = firstError(err, checkAddress("host", svc.Host), checkAddress("intercept", svc.Intercept))
		rec = svc
	case store.ServicePolicies:
		var req api.UpdateServicePolicy
		var sp store.ServicePolicy
		if !decode(w, r, &req) || !c.load(w, k, name, &sp) {
			return
		}
		setIfGiven(&sp.Type, req.Type)
		setIfGiven(&sp.Identities, req.Identities)
		setIfGiven(&sp.Services, req.Services)
		if sp.Type != store.PolicyDial && sp.Type != store.PolicyBind {
			err = fmt.Errorf("policy type %q: want dial or bind", sp.Type)
		} else {
			err = firstError(checkRoles("identities", sp.Identities), checkRoles("services", sp.Services))
		}
		rec = sp
	case store.EdgeRouterPolicies:
		var req api.UpdateEdgeRouterPolicy
		var erp store.EdgeRouterPolicy
		if !decode(w, r, &req) || !c.load(w, k, name, &erp) {
			return
		}
		setIfGiven(&erp.Identities, req.Identities)
		setIfGiven(&erp.Routers, req.Routers)
		err = firstError(checkRoles("identities", erp.Identities), checkRoles("routers", erp.Routers))
		rec = erp
	}
	if err != nil {
		writeCodedError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	cmd := store.Command{Op: store.OpUpdate, Kind: k, Name: name, Record: raw, At: c.cfg.Now().UTC()}
	if err := c.store.Apply(r.Context(), cmd); err != nil {
		writeStoreError(w, err)
		return
	}
	c.log.Info("updated", "kind", k, "name", name)
	c.event(events.Event{Type: events.Updated, Kind: store.Singular(k), Name: name})
	c.enforce(r.Context())
	c.announceChanged(r.Context())
	c.serveGet(w, r)
}

// updateRole is an identity's role after an update that gives a role, an admin flag or
// both: admin=true is role admin, admin=false takes admin away (leaving no role unless
// one is given).
func updateRole(cur role.Role, name *string, admin *bool) (role.Role, error) {
	next := cur
	if name != nil {
		r, err := role.Parse(*name)
		if err != nil {
			return cur, err
		}
		next = r
	}
	if admin != nil {
		switch {
		case *admin && name != nil && next != role.Admin:
			return cur, fmt.Errorf("admin=true and role %s disagree: admin=true is role admin", next)
		case *admin:
			next = role.Admin
		case next == role.Admin:
			if name != nil {
				return cur, fmt.Errorf("admin=false and role admin disagree")
			}
			next = role.None
		}
	}
	return next, nil
}

// load decodes kind/name into v, answering the request itself when it cannot.
func (c *Controller) load(w http.ResponseWriter, k store.Kind, name string, v any) bool {
	if err := c.store.Get(k, name, v); err != nil {
		writeStoreError(w, err)
		return false
	}
	return true
}

// editAttributes applies an update's attribute edits to attrs: replace (when set) first,
// then add, then remove. The result is checked as a create's attributes are.
func editAttributes(attrs []string, replace *[]string, add, remove []string) ([]string, error) {
	out := slices.Clone(attrs)
	if replace != nil {
		out = slices.Clone(*replace)
	}
	for _, a := range add {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	out = slices.DeleteFunc(out, func(a string) bool { return slices.Contains(remove, a) })
	if err := firstError(checkAttributes(out), checkAttributes(remove)); err != nil {
		return nil, err
	}
	return nonNil(out), nil
}

// setIfGiven sets *dst to *v when the update gave v.
func setIfGiven[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}
