package controller

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/umbranet/umbra/controller/policy"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/api"
)

// serveAdvice answers GET /v1/policy-advisor/IDENTITY/SERVICE: whether IDENTITY could
// dial SERVICE right now, one check at a time, for the admin. On the wire a refused dial
// still reads exactly as a missing service; this is where an operator learns why.
func (c *Controller) serveAdvice(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.advise(r.PathValue("identity"), r.PathValue("service")))
}

// advise runs the checks a dial passes, in the order the controller makes them, and
// says for each what it found.
func (c *Controller) advise(identityName, serviceName string) api.Advice {
	var adv api.Advice
	say := func(ok bool, check, format string, args ...any) bool {
		adv.Checks = append(adv.Checks, api.Check{Check: check, OK: ok, Detail: fmt.Sprintf(format, args...)})
		return ok
	}
	done := func() api.Advice {
		adv.Allowed = !slices.ContainsFunc(adv.Checks, func(ch api.Check) bool { return !ch.OK })
		return adv
	}
	pol, err := policy.Load(c.store)
	if err != nil {
		say(false, "policies", "cannot load the policies: %v", err)
		return done()
	}
	var id store.Identity
	idOK := c.store.Get(store.Identities, identityName, &id) == nil
	if !say(idOK, "identity", "%s", describeIdentity(c, identityName, id, idOK)) {
		return done()
	}
	var svc store.Service
	if !say(c.store.Get(store.Services, serviceName, &svc) == nil, "service", "%s", existence("service", serviceName, svc.Host)) {
		return done()
	}

	dials := grantingPolicies(pol, store.PolicyDial, id, svc)
	say(len(dials) > 0, "dial policy", "%s", listOr(dials, "service-policies of type dial letting %s dial %s: %s",
		"no service-policy of type dial matches both identity %s and service %s", id.Name, svc.Name))

	binds, hosts := c.onlineHosts(pol, svc)
	say(len(binds) > 0, "bind policy", "%s", listOr(binds, "service-policies of type bind for %s: %s",
		"no service-policy of type bind matches service %s", svc.Name))
	say(len(hosts) > 0, "host online", "%s", listOr(hostNames(hosts), "hosting %s now: %s",
		"no identity allowed to bind %s is hosting it now", svc.Name))

	routers, err := pol.Routers(c.store, id)
	if err != nil {
		say(false, "edge routers", "cannot list routers: %v", err)
		return done()
	}
	var online []store.Router
	c.mu.Lock()
	for _, rt := range routers {
		if _, ok := c.online[rt.ID]; ok {
			online = append(online, rt)
		}
	}
	c.mu.Unlock()
	say(len(online) > 0, "edge routers", "%s may use %d router(s), online: %s", id.Name, len(routers), namesOr(routerNames(online), "none"))
	if len(online) == 0 || len(hosts) == 0 {
		return done()
	}
	for _, rt := range online {
		if _, path, err := c.pickHost(svc, "", rt.ID, pol); err == nil {
			say(true, "path", "from router %s to a host of %s over %d router(s)", rt.Name, svc.Name, len(path))
			return done()
		}
	}
	say(false, "path", "no path through the mesh from %s's routers (%s) to a router where %s is hosted",
		id.Name, strings.Join(routerNames(online), ", "), svc.Name)
	return done()
}

// describeIdentity says whether the identity exists and can prove itself.
func describeIdentity(c *Controller, name string, id store.Identity, found bool) string {
	switch {
	case !found:
		return fmt.Sprintf("no identity %q", name)
	case id.Cert == nil:
		return fmt.Sprintf("%s has not enrolled yet", name)
	}
	if revoked, _ := c.store.Revoked(id.Cert.Serial); revoked {
		return fmt.Sprintf("%s's certificate is revoked", name)
	}
	return fmt.Sprintf("%s is enrolled (certificate until %s), attributes %v", name, id.Cert.NotAfter.Format("2006-01-02 15:04 MST"), id.Attributes)
}

func existence(kind, name, host string) string {
	if host == "" {
		return fmt.Sprintf("%s %s exists", kind, name)
	}
	return fmt.Sprintf("%s %s exists, hosted at %s", kind, name, host)
}

// grantingPolicies names the service policies of type op that match both id and svc.
func grantingPolicies(pol *policy.Policies, op string, id store.Identity, svc store.Service) []string {
	var out []string
	for _, sp := range pol.Service {
		if sp.Type == op && policy.Matches(sp.Identities, id.Name, id.Attributes) && policy.Matches(sp.Services, svc.Name, svc.Attributes) {
			out = append(out, sp.Name)
		}
	}
	return out
}

// onlineHosts names the bind policies that match svc and the identities hosting it now
// that one of them still allows.
func (c *Controller) onlineHosts(pol *policy.Policies, svc store.Service) (binds []string, hosts []store.Identity) {
	for _, sp := range pol.Service {
		if sp.Type == store.PolicyBind && policy.Matches(sp.Services, svc.Name, svc.Attributes) {
			binds = append(binds, sp.Name)
		}
	}
	c.mu.Lock()
	var ids []string
	for b := range c.bindings {
		if b.service == svc.ID && !slices.Contains(ids, b.identity) {
			ids = append(ids, b.identity)
		}
	}
	c.mu.Unlock()
	for _, hid := range ids {
		if h, err := c.identityByID(hid); err == nil && pol.Allowed(store.PolicyBind, h, svc) {
			hosts = append(hosts, h)
		}
	}
	return binds, hosts
}

// listOr formats names into found (whose last verb takes them) or, with none, into none.
func listOr(names []string, found, none string, args ...any) string {
	if len(names) == 0 {
		return fmt.Sprintf(none, args...)
	}
	return fmt.Sprintf(found, append(args, strings.Join(names, ", "))...)
}

func namesOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	return strings.Join(names, ", ")
}

func hostNames(ids []store.Identity) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.Name
	}
	slices.Sort(out)
	return out
}

func routerNames(rs []store.Router) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

// roleSet is a policy's roles of one kind.
type roleSet struct {
	roles []string
	kind  store.Kind
}

// roleWarnings names the @name roles of a policy that match no record of their kind: the
// policy is stored (the record may come later), but a typo would otherwise pass unseen.
func (c *Controller) roleWarnings(rec any) []string {
	var sets []roleSet
	switch p := rec.(type) {
	case store.ServicePolicy:
		sets = []roleSet{{p.Identities, store.Identities}, {p.Services, store.Services}}
	case store.EdgeRouterPolicy:
		sets = []roleSet{{p.Identities, store.Identities}, {p.Routers, store.Routers}}
	}
	var out []string
	for _, set := range sets {
		for _, r := range set.roles {
			name, ok := strings.CutPrefix(r, "@")
			if !ok {
				continue
			}
			var m store.Meta
			if c.store.Get(set.kind, name, &m) != nil {
				out = append(out, fmt.Sprintf("role %s matches no %s (yet)", r, store.Singular(set.kind)))
			}
		}
	}
	return out
}
