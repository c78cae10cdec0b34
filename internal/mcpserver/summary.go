package mcpserver

import (
	"context"
	"fmt"
	"sort"
)

// topAttributes is how many of the most common identity attributes the summary names.
const topAttributes = 10

// changeTypes are the event types the summary counts as changes.
var changeTypes = map[string]bool{"created": true, "updated": true, "deleted": true, "enrollment-issued": true, "enrolled": true}

// identitySummary counts identities by state and role.
type identitySummary struct {
	Total      int            `json:"total"`
	Online     int            `json:"online"`
	Offline    int            `json:"offline"`
	Unenrolled int            `json:"unenrolled"`
	ByRole     map[string]int `json:"by_role"`
	// TopAttributes are the most common attributes and how many identities carry each.
	TopAttributes []attrCount `json:"top_attributes"`
	// OfflineSample and UnenrolledSample name a few of each, by name.
	OfflineSample    []string `json:"offline_sample"`
	UnenrolledSample []string `json:"unenrolled_sample"`
}

type attrCount struct {
	Attribute string `json:"attribute"`
	Count     int    `json:"count"`
}

// routerSummary counts routers and names the offline ones (a few).
type routerSummary struct {
	Total   int      `json:"total"`
	Online  int      `json:"online"`
	Offline []string `json:"offline"`
	// OfflineMore is how many offline routers Offline does not name.
	OfflineMore int `json:"offline_more,omitempty"`
}

// linkSummary counts links and names those in trouble (a few, worst first).
type linkSummary struct {
	Total     int              `json:"total"`
	Up        int              `json:"up"`
	InTrouble []map[string]any `json:"in_trouble"`
	// TroubleMore is how many links in trouble InTrouble does not show.
	TroubleMore int `json:"trouble_more,omitempty"`
}

// fleetSummary is fleet_summary's answer: a few kilobytes whatever the fleet's size.
type fleetSummary struct {
	Identities         identitySummary `json:"identities"`
	Routers            routerSummary   `json:"routers"`
	Services           int             `json:"services"`
	ServicePolicies    int             `json:"service_policies"`
	EdgeRouterPolicies int             `json:"edge_router_policies"`
	Links              linkSummary     `json:"links"`
	// EventsLastHour counts the last hour's events by type.
	EventsLastHour map[string]int `json:"events_last_hour"`
	// RecentChanges are the newest changes of the last hour (creates, updates, deletes,
	// enrollments), newest last.
	RecentChanges []map[string]any `json:"recent_changes"`
	Note          string           `json:"note"`
}

// summary gathers the fleet's state from the controller and boils it down.
func (s *server) summary(ctx context.Context) (*fleetSummary, error) {
	out := &fleetSummary{Note: fmt.Sprintf("samples name at most %d each; use list_* with filters for the rest", sampleNames)}
	ids, err := s.api.List(ctx, kindIdentities)
	if err != nil {
		return nil, fmt.Errorf("list identities: %w", err)
	}
	out.Identities = summarizeIdentities(ids)
	routers, err := s.api.List(ctx, kindRouters)
	if err != nil {
		return nil, fmt.Errorf("list routers: %w", err)
	}
	out.Routers = routerSummary{Total: len(routers), Offline: []string{}}
	for _, r := range routers {
		if r["online"] == true {
			out.Routers.Online++
		} else if len(out.Routers.Offline) < sampleNames {
			out.Routers.Offline = append(out.Routers.Offline, fmt.Sprint(r["name"]))
		} else {
			out.Routers.OfflineMore++
		}
	}
	for k, n := range map[string]*int{kindServices: &out.Services, kindSvcPolicy: &out.ServicePolicies, kindERPolicy: &out.EdgeRouterPolicies} {
		recs, err := s.api.List(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", k, err)
		}
		*n = len(recs)
	}
	links, err := s.api.List(ctx, kindLinks)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	lp := paginate(links, listArgs{Limit: maxLimit}, inTrouble, linkFields)
	out.Links = linkSummary{Total: len(links), InTrouble: []map[string]any{}}
	for _, l := range links {
		if l["state"] == "up" {
			out.Links.Up++
		}
	}
	sort.SliceStable(lp.Items, func(i, j int) bool { return worse(lp.Items[i]) > worse(lp.Items[j]) })
	out.Links.InTrouble = lp.Items[:min(len(lp.Items), sampleNames)]
	out.Links.TroubleMore = lp.Matched - len(out.Links.InTrouble)
	evs, err := s.events(ctx, defaultSince)
	if err != nil {
		return nil, err
	}
	out.EventsLastHour = map[string]int{}
	for _, e := range evs {
		out.EventsLastHour[fmt.Sprint(e["type"])]++
	}
	out.RecentChanges = newest(evs, func(e map[string]any) bool { return changeTypes[fmt.Sprint(e["type"])] }, sampleNames).Items
	return out, nil
}

// summarizeIdentities counts identity records by state, role and attribute.
func summarizeIdentities(ids []map[string]any) identitySummary {
	sum := identitySummary{Total: len(ids), ByRole: map[string]int{}, OfflineSample: []string{}, UnenrolledSample: []string{}, TopAttributes: []attrCount{}}
	attrs := map[string]int{}
	for _, r := range ids {
		name := fmt.Sprint(r["name"])
		switch identityState(r) {
		case "online":
			sum.Online++
		case "offline":
			sum.Offline++
			if len(sum.OfflineSample) < sampleNames {
				sum.OfflineSample = append(sum.OfflineSample, name)
			}
		default:
			sum.Unenrolled++
			if len(sum.UnenrolledSample) < sampleNames {
				sum.UnenrolledSample = append(sum.UnenrolledSample, name)
			}
		}
		rl, _ := r["role"].(string)
		if rl == "" {
			rl = "device"
		}
		sum.ByRole[rl]++
		as, _ := r["attributes"].([]any)
		for _, a := range as {
			attrs[fmt.Sprint(a)]++
		}
	}
	for a, n := range attrs {
		sum.TopAttributes = append(sum.TopAttributes, attrCount{a, n})
	}
	sort.Slice(sum.TopAttributes, func(i, j int) bool {
		x, y := sum.TopAttributes[i], sum.TopAttributes[j]
		return x.Count > y.Count || (x.Count == y.Count && x.Attribute < y.Attribute)
	})
	sum.TopAttributes = sum.TopAttributes[:min(len(sum.TopAttributes), topAttributes)]
	return sum
}
