package policy

import (
	"testing"

	"github.com/umbranet/umbra/controller/store"
)

func TestMatches(t *testing.T) {
	cases := []struct {
		name  string
		roles []string
		rec   string
		attrs []string
		want  bool
	}{
		{"all-matches-anything", []string{"#all"}, "x", nil, true},
		{"attribute-matches-holder", []string{"#drone"}, "d1", []string{"px4", "drone"}, true},
		{"attribute-misses-others", []string{"#drone"}, "op", []string{"operator"}, false},
		{"name-matches-exactly", []string{"@d1"}, "d1", nil, true},
		{"name-is-not-a-prefix", []string{"@d1"}, "d10", nil, false},
		{"name-role-ignores-attributes", []string{"@drone"}, "d1", []string{"drone"}, false},
		{"any-of-several-roles", []string{"@x", "#y"}, "z", []string{"y"}, true},
		{"empty-roles-match-nothing", nil, "d1", []string{"drone"}, false},
		{"bare-hash-matches-nothing", []string{"#"}, "d1", []string{""}, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if got := Matches(tt.roles, tt.rec, tt.attrs); got != tt.want {
				t.Errorf("Matches(%v, %q, %v) = %v, want %v", tt.roles, tt.rec, tt.attrs, got, tt.want)
			}
		})
	}
}

func TestAllowedNeedsThePolicyOfTheOperation(t *testing.T) {
	p := &Policies{Service: []store.ServicePolicy{
		{Type: store.PolicyDial, Identities: []string{"#operator"}, Services: []string{"@mavlink"}},
		{Type: store.PolicyBind, Identities: []string{"#drone"}, Services: []string{"#telemetry"}},
	}}
	op := store.Identity{Meta: store.Meta{Name: "laptop"}, Attributes: []string{"operator"}}
	drone := store.Identity{Meta: store.Meta{Name: "d1"}, Attributes: []string{"drone"}}
	mav := store.Service{Meta: store.Meta{Name: "mavlink"}, Attributes: []string{"telemetry"}}
	video := store.Service{Meta: store.Meta{Name: "video"}}
	cases := []struct {
		name string
		op   string
		id   store.Identity
		svc  store.Service
		want bool
	}{
		{"operator-dials-mavlink", store.PolicyDial, op, mav, true},
		{"operator-may-not-bind-mavlink", store.PolicyBind, op, mav, false},
		{"drone-binds-mavlink", store.PolicyBind, drone, mav, true},
		{"drone-may-not-dial-mavlink", store.PolicyDial, drone, mav, false},
		{"nobody-dials-video", store.PolicyDial, op, video, false},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Allowed(tt.op, tt.id, tt.svc); got != tt.want {
				t.Errorf("Allowed = %v, want %v", got, tt.want)
			}
		})
	}
}
