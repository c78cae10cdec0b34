package mcpserver

import (
	"encoding/json"
	"fmt"
	"strings"
)

// page is one bounded answer of a list tool.
type page struct {
	// Total is how many records of the kind there are; Matched, how many pass the filters.
	Total   int `json:"total"`
	Matched int `json:"matched"`
	Offset  int `json:"offset"`
	// Returned is len(Items).
	Returned int              `json:"returned"`
	Items    []map[string]any `json:"items"`
	// Truncated says more matched than Items holds; NextOffset continues.
	Truncated  bool   `json:"truncated"`
	NextOffset int    `json:"next_offset,omitempty"`
	Note       string `json:"note,omitempty"`
	// newestLast marks a page of events, oldest first: cutting it to size keeps the
	// newest.
	newestLast bool
}

// listArgs are the paging and filter arguments every list tool takes.
type listArgs struct {
	Name      string `json:"name,omitempty" jsonschema:"only records whose name contains this text (case-insensitive)"`
	Attribute string `json:"attribute,omitempty" jsonschema:"only records with this attribute (identities, routers, services) or this role in a policy (#attr or @name)"`
	Limit     int    `json:"limit,omitempty" jsonschema:"at most this many records (default 50, at most 200)"`
	Offset    int    `json:"offset,omitempty" jsonschema:"skip this many matching records (from a previous answer's next_offset)"`
}

// limits returns the offset and limit args ask for, within bounds.
func (a listArgs) limits() (offset, limit int) {
	offset, limit = max(a.Offset, 0), a.Limit
	if limit <= 0 {
		limit = defaultLimit
	}
	return offset, min(limit, maxLimit)
}

// matches reports whether rec passes the name and attribute filters.
func (a listArgs) matches(rec map[string]any) bool {
	if a.Name != "" {
		name, _ := rec["name"].(string)
		if !strings.Contains(strings.ToLower(name), strings.ToLower(a.Name)) {
			return false
		}
	}
	if a.Attribute == "" {
		return true
	}
	for _, field := range []string{"attributes", "identities", "services", "routers"} {
		vals, _ := rec[field].([]any)
		for _, v := range vals {
			if s, _ := v.(string); s == a.Attribute || strings.TrimPrefix(s, "#") == strings.TrimPrefix(a.Attribute, "#") {
				return true
			}
		}
	}
	return false
}

// paginate filters recs with args (and keep, when not nil), projects each to fields, and
// returns the page args ask for.
func paginate(recs []map[string]any, args listArgs, keep func(map[string]any) bool, fields []string) *page {
	offset, limit := args.limits()
	p := &page{Total: len(recs), Offset: offset, Items: []map[string]any{}}
	for _, rec := range recs {
		if !args.matches(rec) || (keep != nil && !keep(rec)) {
			continue
		}
		if p.Matched >= offset && len(p.Items) < limit {
			p.Items = append(p.Items, project(rec, fields))
		}
		p.Matched++
	}
	p.Returned = len(p.Items)
	if offset+len(p.Items) < p.Matched {
		p.Truncated, p.NextOffset = true, offset+len(p.Items)
	}
	return p
}

// fit encodes p within MaxResult, dropping items from its end (and saying so) when the
// page is too large.
func (p *page) fit(reveal bool) (string, error) {
	for {
		data, err := json.Marshal(p)
		if err != nil {
			return "", fmt.Errorf("encode result: %w", err)
		}
		text := scrub(string(data), reveal)
		if len(text) <= MaxResult || len(p.Items) == 0 {
			if len(text) > MaxResult {
				return "", fmt.Errorf("result of %d bytes is over the %d-byte cap", len(text), MaxResult)
			}
			return text, nil
		}
		// Drop a share of the items proportional to the excess, at least one.
		drop := max(1, len(p.Items)*(len(text)-MaxResult)/len(text))
		p.Truncated = true
		if p.newestLast {
			p.Items = p.Items[drop:]
			p.Returned = len(p.Items)
			p.Note = fmt.Sprintf("cut to the newest %d events to stay under %d bytes; narrow since, type or name for older ones", len(p.Items), MaxResult)
			continue
		}
		p.Items = p.Items[:len(p.Items)-drop]
		p.Returned = len(p.Items)
		p.NextOffset = p.Offset + len(p.Items)
		p.Note = fmt.Sprintf("cut to %d records to stay under %d bytes; continue with offset %d", len(p.Items), MaxResult, p.NextOffset)
	}
}

// project keeps only fields of rec: every tool answers from a list of fields it means to
// show, so a field the API grows later is not handed over unread.
func project(rec map[string]any, fields []string) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := rec[f]; ok {
			out[f] = v
		}
	}
	return out
}

// Fields each kind shows.
var (
	identityFields = []string{"name", "id", "attributes", "role", "enrolled", "online", "last_seen", "cert_expires", "enrollment_expires_at"}
	routerFields   = []string{"name", "id", "attributes", "online", "advertise", "version"}
	serviceFields  = []string{"name", "id", "attributes", "host", "intercept"}
	policyFields   = []string{"name", "id", "kind", "type", "identities", "services", "routers"}
	linkFields     = []string{"name", "from", "to", "state", "rtt_ms", "loss", "dialed"}
	eventFields    = []string{"seq", "time", "type", "name", "kind", "identity", "service", "circuit", "path", "reason", "client"}
)
