package paths_test

import (
	"math"
	"testing"
	"time"

	"github.com/umbranet/umbra/controller/paths"
)

func TestLinkCost(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		link paths.Link
		want time.Duration
		ok   bool
	}{
		{"clean-link-costs-its-rtt-plus-a-hop", up("a", "b", 100, 0), 100*ms + paths.HopCost, true},
		{"half-loss-doubles-the-rtt", up("a", "b", 100, 0.5), 200*ms + paths.HopCost, true},
		{"thirty-percent-loss-weighs-like-1.43-rtt", up("a", "b", 70, 0.3), 100*ms + paths.HopCost, true},
		{"zero-rtt-costs-one-hop", up("a", "b", 0, 0), paths.HopCost, true},
		{"down-link-is-unusable", paths.Link{A: "a", B: "b", RTT: ms}, 0, false},
		{"total-loss-is-unusable", up("a", "b", 10, 1), 0, false},
		{"near-total-loss-is-capped", up("a", "b", 800, 0.99999999), paths.MaxLinkCost + paths.HopCost, true},
		{"huge-rtt-is-capped", paths.Link{A: "a", B: "b", RTT: time.Duration(math.MaxInt64), Up: true}, paths.MaxLinkCost + paths.HopCost, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := paths.LinkCost(tt.link)
			if got != tt.want || ok != tt.ok {
				t.Errorf("LinkCost = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestSetRejectsBadLinks(t *testing.T) {
	cases := []struct {
		name string
		link paths.Link
	}{
		{"empty-name", up("", "b", 10, 0)},
		{"self-link", up("a", "a", 10, 0)},
		{"negative-rtt", up("a", "b", -1, 0)},
		{"negative-loss", up("a", "b", 10, -0.1)},
		{"loss-above-one", up("a", "b", 10, 1.5)},
		{"nan-loss", up("a", "b", 10, math.NaN())},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			g := graph(t, up("x", "y", 10, 0))
			if err := g.Set(tt.link); err == nil {
				t.Fatalf("Set(%+v) = nil, want an error", tt.link)
			}
			if r, l := g.Len(); r != 2 || l != 1 {
				t.Errorf("after a rejected Set: %d routers, %d links; want 2, 1", r, l)
			}
			if _, err := paths.New([]paths.Link{tt.link}); err == nil {
				t.Errorf("New(%+v) = nil error, want an error", tt.link)
			}
		})
	}
}
