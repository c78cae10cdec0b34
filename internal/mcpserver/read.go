package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/umbranet/umbra/internal/api"
)

// Kinds as the management API names them.
const (
	kindIdentities = "identities"
	kindRouters    = "routers"
	kindServices   = "services"
	kindSvcPolicy  = "service-policies"
	kindERPolicy   = "edge-router-policies"
	kindLinks      = "links"
)

// Thresholds of a link "in trouble".
const (
	// troubleLoss is the loss fraction above which an up link is in trouble: the radio
	// bench's bad LTE profile loses 5 %, which umbra carries; more is worth a look.
	troubleLoss = 0.05
	// troubleRTTMs is the round trip above which an up link is in trouble (a radio's
	// normal is 50–800 ms).
	troubleRTTMs = 1000
)

// identityArgs are list_identities' arguments.
type identityArgs struct {
	listArgs
	State string `json:"state,omitempty" jsonschema:"only identities in this state: online, offline (enrolled, not linked) or unenrolled"`
}

// nameArg names one record.
type nameArg struct {
	Name string `json:"name" jsonschema:"the record's name"`
}

// adviceArgs name a dial to explain.
type adviceArgs struct {
	Identity string `json:"identity" jsonschema:"the dialing identity's name"`
	Service  string `json:"service" jsonschema:"the service's name"`
}

// explainArgs are explain_circuit_failure's arguments.
type explainArgs struct {
	adviceArgs
	Since string `json:"since,omitempty" jsonschema:"how far back to look for refused circuits, a Go duration such as 30m (default 1h)"`
}

// eventArgs are recent_events' arguments.
type eventArgs struct {
	Since string `json:"since,omitempty" jsonschema:"how far back, a Go duration such as 10m or 2h (default 1h)"`
	Limit int    `json:"limit,omitempty" jsonschema:"at most this many of the newest matching events (default 50, at most 200)"`
	Type  string `json:"type,omitempty" jsonschema:"only events of this type (created, updated, deleted, enrolled, router-online, router-offline, link-up, link-down, circuit-refused, mcp-call, ...)"`
	Name  string `json:"name,omitempty" jsonschema:"only events whose name, identity or service contains this text"`
}

// linkArgs are list_links' and link_health's arguments.
type linkArgs struct {
	listArgs
	Trouble bool `json:"trouble,omitempty" jsonschema:"only links that are down, lossy (over 5 %) or slow (over 1 s round trip)"`
}

func (s *server) addReadTools(srv *mcp.Server) {
	add(s, srv, &mcp.Tool{Name: "fleet_summary", Annotations: readOnly,
		Description: "A few-kilobyte overview of the whole fleet: counts by kind; identities online, offline and unenrolled (with a sample of names); routers offline; links in trouble; changes and refused circuits of the last hour. Start here."},
		func(ctx context.Context, _ struct{}) (any, error) { return s.summary(ctx) })
	add(s, srv, &mcp.Tool{Name: "list_identities", Annotations: readOnly,
		Description: "Identities (devices and operators) with attributes, role, enrolled, online, last seen and certificate expiry. Filters by name substring, attribute and state; pages with limit/offset."},
		func(ctx context.Context, in identityArgs) (any, error) {
			recs, err := s.api.List(ctx, kindIdentities)
			if err != nil {
				return nil, fmt.Errorf("list identities: %w", err)
			}
			var keep func(map[string]any) bool
			if in.State != "" {
				if !slices.Contains([]string{"online", "offline", "unenrolled"}, in.State) {
					return nil, fmt.Errorf("state %q: want online, offline or unenrolled", in.State)
				}
				keep = func(r map[string]any) bool { return identityState(r) == in.State }
			}
			return paginate(recs, in.listArgs, keep, identityFields), nil
		})
	s.addList(srv, "list_services", kindServices, serviceFields, "Services with attributes, host address (where a binding agent delivers) and intercept address (where a dialing agent listens).")
	s.addList(srv, "list_routers", kindRouters, routerFields, "Routers with attributes, online, advertised address and version.")
	add(s, srv, &mcp.Tool{Name: "list_policies", Annotations: readOnly,
		Description: "Service policies (dial or bind: which identities may reach or host which services) and edge-router policies (which identities may use which routers). Roles read #attribute, @name or #all. Filters by name substring and role; pages with limit/offset."},
		func(ctx context.Context, in listArgs) (any, error) {
			recs, err := s.policies(ctx)
			if err != nil {
				return nil, err
			}
			return paginate(recs, in, nil, policyFields), nil
		})
	add(s, srv, &mcp.Tool{Name: "list_links", Annotations: readOnly,
		Description: "Router-to-router links as the routers report them: state, round trip (ms) and loss (0..1). Filters by name substring (FROM->TO) and trouble; pages with limit/offset."},
		func(ctx context.Context, in linkArgs) (any, error) { return s.links(ctx, in) })
	add(s, srv, &mcp.Tool{Name: "link_health", Annotations: readOnly,
		Description: "The links in trouble (down, lossy over 5 % or slower than 1 s), worst first, and how many links are up in all."},
		func(ctx context.Context, in listArgs) (any, error) {
			p, err := s.links(ctx, linkArgs{listArgs: in, Trouble: true})
			if err != nil {
				return nil, err
			}
			slices.SortStableFunc(p.Items, func(a, b map[string]any) int { return worse(b) - worse(a) })
			return p, nil
		})
	s.addGet(srv, "get_identity", kindIdentities, identityFields, "One identity by name: attributes, role, enrolled, online, last seen, certificate expiry, and an outstanding enrollment's expiry.")
	s.addGet(srv, "get_service", kindServices, serviceFields, "One service by name: attributes, host and intercept addresses.")
	s.addGet(srv, "get_router", kindRouters, routerFields, "One router by name: attributes, online, advertised address and version.")
	add(s, srv, &mcp.Tool{Name: "get_policy", Annotations: readOnly,
		Description: "One service policy or edge-router policy by name."},
		func(ctx context.Context, in nameArg) (any, error) {
			rec, _, err := s.policy(ctx, in.Name)
			if err != nil {
				return nil, err
			}
			return project(rec, policyFields), nil
		})
	add(s, srv, &mcp.Tool{Name: "policy_advisor", Annotations: readOnly,
		Description: "Whether an identity could dial a service now, check by check: the identity, the service, dial and bind policies, online hosts, usable edge routers, a path through the mesh."},
		func(ctx context.Context, in adviceArgs) (any, error) {
			adv, err := s.api.Advise(ctx, in.Identity, in.Service)
			if err != nil {
				return nil, fmt.Errorf("policy advisor %s %s: %w", in.Identity, in.Service, err)
			}
			return adv, nil
		})
	add(s, srv, &mcp.Tool{Name: "recent_events", Annotations: readOnly,
		Description: "The controller's audit trail, newest last: changes, enrollments, routers and links coming and going, circuits opened, closed or refused, and calls made through this server (mcp-call). Filters by type and name; bounded by since and limit."},
		func(ctx context.Context, in eventArgs) (any, error) {
			since, err := parseSince(in.Since)
			if err != nil {
				return nil, err
			}
			evs, err := s.events(ctx, since)
			if err != nil {
				return nil, err
			}
			keep := func(e map[string]any) bool {
				if in.Type != "" && e["type"] != in.Type {
					return false
				}
				if in.Name == "" {
					return true
				}
				for _, f := range []string{"name", "identity", "service"} {
					if v, _ := e[f].(string); strings.Contains(strings.ToLower(v), strings.ToLower(in.Name)) {
						return true
					}
				}
				return false
			}
			return newest(evs, keep, in.Limit), nil
		})
	add(s, srv, &mcp.Tool{Name: "explain_circuit_failure", Annotations: readOnly,
		Description: "Why an identity cannot reach a service: the policy advisor's checks and the circuits the controller refused between them recently, with their reasons."},
		func(ctx context.Context, in explainArgs) (any, error) {
			since, err := parseSince(in.Since)
			if err != nil {
				return nil, err
			}
			adv, err := s.api.Advise(ctx, in.Identity, in.Service)
			if err != nil {
				return nil, fmt.Errorf("policy advisor %s %s: %w", in.Identity, in.Service, err)
			}
			evs, err := s.events(ctx, since)
			if err != nil {
				return nil, err
			}
			refused := newest(evs, func(e map[string]any) bool {
				return e["type"] == "circuit-refused" && e["identity"] == in.Identity && e["service"] == in.Service
			}, sampleNames)
			var failing []string
			for _, c := range adv.Checks {
				if !c.OK {
					failing = append(failing, c.Check+": "+c.Detail)
				}
			}
			return map[string]any{
				"allowed_now":      adv.Allowed,
				"failing_checks":   failing,
				"checks":           adv.Checks,
				"refused_circuits": refused,
				"since":            since.String(),
			}, nil
		})
}

// addList registers a plain list tool for kind.
func (s *server) addList(srv *mcp.Server, tool, kind string, fields []string, desc string) {
	add(s, srv, &mcp.Tool{Name: tool, Annotations: readOnly, Description: desc + " Filters by name substring and attribute; pages with limit/offset."},
		func(ctx context.Context, in listArgs) (any, error) {
			recs, err := s.api.List(ctx, kind)
			if err != nil {
				return nil, fmt.Errorf("list %s: %w", kind, err)
			}
			return paginate(recs, in, nil, fields), nil
		})
}

// addGet registers a get tool for kind.
func (s *server) addGet(srv *mcp.Server, tool, kind string, fields []string, desc string) {
	add(s, srv, &mcp.Tool{Name: tool, Annotations: readOnly, Description: desc},
		func(ctx context.Context, in nameArg) (any, error) {
			rec, err := s.api.Get(ctx, kind, in.Name)
			if err != nil {
				return nil, fmt.Errorf("get %s %q: %w", kind, in.Name, err)
			}
			return project(rec, fields), nil
		})
}

// identityState is "online", "offline" (enrolled, not linked) or "unenrolled".
func identityState(rec map[string]any) string {
	switch {
	case rec["enrolled"] != true:
		return "unenrolled"
	case rec["online"] == true:
		return "online"
	}
	return "offline"
}

// policies lists both kinds of policy, each record with its "kind".
func (s *server) policies(ctx context.Context) ([]map[string]any, error) {
	var out []map[string]any
	for _, k := range []string{kindSvcPolicy, kindERPolicy} {
		recs, err := s.api.List(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", k, err)
		}
		for _, r := range recs {
			r["kind"] = policyKind[k]
			out = append(out, r)
		}
	}
	return out, nil
}

// policyKind is each policy kind's singular name, as a record's "kind" shows it.
var policyKind = map[string]string{kindSvcPolicy: "service-policy", kindERPolicy: "edge-router-policy"}

// policy finds the policy name among both kinds and returns it with its kind.
func (s *server) policy(ctx context.Context, name string) (map[string]any, string, error) {
	for _, k := range []string{kindSvcPolicy, kindERPolicy} {
		rec, err := s.api.Get(ctx, k, name)
		if err == nil {
			rec["kind"] = policyKind[k]
			return rec, k, nil
		}
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != http.StatusNotFound {
			return nil, "", fmt.Errorf("get policy %q: %w", name, err)
		}
	}
	return nil, "", fmt.Errorf("no service policy or edge-router policy named %q", name)
}

// links lists the links args ask for.
func (s *server) links(ctx context.Context, args linkArgs) (*page, error) {
	recs, err := s.api.List(ctx, kindLinks)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var keep func(map[string]any) bool
	if args.Trouble {
		keep = inTrouble
	}
	p := paginate(recs, args.listArgs, keep, linkFields)
	up := 0
	for _, r := range recs {
		if r["state"] == "up" {
			up++
		}
	}
	p.Note = fmt.Sprintf("%d of %d links up", up, len(recs))
	return p, nil
}

// inTrouble reports whether a link record is down, lossy or slow.
func inTrouble(r map[string]any) bool {
	loss, _ := r["loss"].(float64)
	rtt, _ := r["rtt_ms"].(float64)
	return r["state"] != "up" || loss > troubleLoss || rtt > troubleRTTMs
}

// worse ranks a link record for sorting: down first, then by loss.
func worse(r map[string]any) int {
	loss, _ := r["loss"].(float64)
	score := int(loss * 1000)
	if r["state"] != "up" {
		score += 1_000_000
	}
	return score
}

// parseSince reads a since argument, defaultSince when empty.
func parseSince(v string) (time.Duration, error) {
	if v == "" {
		return defaultSince, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("since %q: want a positive Go duration such as 10m or 2h", v)
	}
	return d, nil
}

// events reads the trail of the last since.
func (s *server) events(ctx context.Context, since time.Duration) ([]map[string]any, error) {
	var buf bytes.Buffer
	if err := s.api.Events(ctx, &buf, since, false); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// newest is a page of the newest limit events that keep accepts, oldest first.
func newest(evs []map[string]any, keep func(map[string]any) bool, limit int) *page {
	if limit <= 0 {
		limit = defaultLimit
	}
	limit = min(limit, maxLimit)
	var matched []map[string]any
	for _, e := range evs {
		if keep == nil || keep(e) {
			matched = append(matched, e)
		}
	}
	p := &page{Total: len(evs), Matched: len(matched), Items: []map[string]any{}, newestLast: true}
	from := max(0, len(matched)-limit)
	for _, e := range matched[from:] {
		p.Items = append(p.Items, project(e, eventFields))
	}
	p.Returned = len(p.Items)
	if from > 0 {
		p.Truncated = true
		p.Note = fmt.Sprintf("the newest %d of %d matching events; narrow since, type or name for older ones", len(p.Items), len(matched))
	}
	return p
}
