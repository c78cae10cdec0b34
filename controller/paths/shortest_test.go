package paths_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/umbranet/umbra/controller/paths"
)

// diamond is the mesh: r1 reaches r4 through relay r2 or relay r3.
func diamond(r2, r3 int) []paths.Link {
	return []paths.Link{
		up("r1", "r2", r2, 0), up("r2", "r4", r2, 0),
		up("r1", "r3", r3, 0), up("r3", "r4", r3, 0),
	}
}

func wantRouters(t *testing.T, p paths.Path, want ...string) {
	t.Helper()
	if !slices.Equal(p.Routers, want) {
		t.Errorf("path = %v, want %v", p.Routers, want)
	}
}

func TestDiamondTakesTheFasterRelay(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	p := shortest(t, g, "r1", []string{"r4"})
	wantRouters(t, p, "r1", "r2", "r4")
	if want := 2 * cost(t, up("r1", "r2", 50, 0)); p.Cost != want {
		t.Errorf("cost = %v, want %v", p.Cost, want)
	}
	if p.Hops() != 2 {
		t.Errorf("hops = %d, want 2", p.Hops())
	}
}

func TestDiamondWithOneRelayRemovedUsesTheOther(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	if !g.RemoveRouter("r2") {
		t.Fatal("RemoveRouter(r2) = false, want true")
	}
	wantRouters(t, shortest(t, g, "r1", []string{"r4"}), "r1", "r3", "r4")
	if r, l := g.Len(); r != 3 || l != 2 {
		t.Errorf("after removing r2: %d routers, %d links; want 3, 2", r, l)
	}
}

func TestDiamondWithBothRelaysGoneIsPartitioned(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	g.RemoveRouter("r2")
	if !g.Remove("r3", "r4") {
		t.Fatal("Remove(r3, r4) = false, want true")
	}
	_, err := g.Shortest("r1", []string{"r4"})
	if !errors.Is(err, paths.ErrNoPath) {
		t.Fatalf("Shortest across a partition: err = %v, want ErrNoPath", err)
	}
	for _, name := range []string{`"r1"`, `"r4"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestHealingMovesOffAFailedLinkAndBack(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	p := shortest(t, g, "r1", []string{"r4"})
	failed := paths.Link{A: "r4", B: "r2", RTT: 50e6} // reported from the other end, down
	if err := g.Set(failed); err != nil {
		t.Fatal(err)
	}
	if !p.Crosses(failed.A, failed.B) {
		t.Fatalf("path %v does not cross the failed link %s–%s", p.Routers, failed.A, failed.B)
	}
	moved := shortest(t, g, "r1", []string{"r4"})
	wantRouters(t, moved, "r1", "r3", "r4")
	if moved.Crosses("r2", "r4") || moved.Visits("r2") {
		t.Errorf("new path %v still uses r2", moved.Routers)
	}
	failed.Up = true
	if err := g.Set(failed); err != nil {
		t.Fatal(err)
	}
	wantRouters(t, shortest(t, g, "r1", []string{"r4"}), "r1", "r2", "r4")
}

func TestEqualCostsPickTheSmallestNames(t *testing.T) {
	cases := []struct {
		name  string
		links []paths.Link
		from  string
		to    []string
		want  []string
	}{
		{"diamond-tie-takes-r2", diamond(50, 50), "r1", []string{"r4"}, []string{"r1", "r2", "r4"}},
		{"diamond-tie-backwards-takes-r2", diamond(50, 50), "r4", []string{"r1"}, []string{"r4", "r2", "r1"}},
		{
			"tie-decided-at-the-first-differing-router",
			[]paths.Link{
				up("s", "b", 10, 0), up("b", "z", 10, 0), up("z", "t", 10, 0),
				up("s", "c", 10, 0), up("c", "a", 10, 0), up("a", "t", 10, 0),
			},
			"s", []string{"t"}, []string{"s", "b", "z", "t"},
		},
		{
			"equally-near-targets-take-the-smaller-path",
			[]paths.Link{up("s", "m", 10, 0), up("m", "y", 10, 0), up("s", "n", 10, 0), up("n", "x", 10, 0)},
			"s", []string{"x", "y"}, []string{"s", "m", "y"},
		},
		{
			"a-cheaper-path-beats-smaller-names",
			[]paths.Link{up("s", "a", 10, 0), up("a", "t", 11, 0), up("s", "b", 10, 0), up("b", "t", 10, 0)},
			"s", []string{"t"}, []string{"s", "b", "t"},
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			for i := range len(tt.links) { // every rotation of the report order
				links := append(slices.Clone(tt.links[i:]), tt.links[:i]...)
				wantRouters(t, shortest(t, graph(t, links...), tt.from, tt.to), tt.want...)
			}
		})
	}
}

func TestLossPenalty(t *testing.T) {
	cases := []struct {
		name  string
		links []paths.Link
		want  []string
	}{
		{
			"lossy-direct-link-loses-to-a-longer-clean-path",
			[]paths.Link{up("r1", "r4", 100, 0.3), up("r1", "r2", 60, 0), up("r2", "r4", 60, 0)},
			[]string{"r1", "r2", "r4"},
		},
		{
			"lossy-link-loses-to-a-clean-one-of-similar-rtt",
			[]paths.Link{up("r1", "a", 50, 0.3), up("a", "r4", 10, 0), up("r1", "b", 60, 0), up("b", "r4", 10, 0)},
			[]string{"r1", "b", "r4"},
		},
		{
			"much-faster-lossy-link-still-wins",
			[]paths.Link{up("r1", "r4", 100, 0.3), up("r1", "r2", 400, 0), up("r2", "r4", 400, 0)},
			[]string{"r1", "r4"},
		},
		{
			"fewer-hops-win-at-equal-latency",
			[]paths.Link{up("r1", "r4", 100, 0), up("r1", "r2", 50, 0), up("r2", "r4", 50, 0)},
			[]string{"r1", "r4"},
		},
		{
			"down-link-is-never-used",
			[]paths.Link{{A: "r1", B: "r4", RTT: 1}, up("r1", "r2", 400, 0), up("r2", "r4", 400, 0)},
			[]string{"r1", "r2", "r4"},
		},
		{
			"dead-link-losing-everything-is-never-used",
			[]paths.Link{up("r1", "r4", 1, 1), up("r1", "r2", 400, 0), up("r2", "r4", 400, 0)},
			[]string{"r1", "r2", "r4"},
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			wantRouters(t, shortest(t, graph(t, tt.links...), "r1", []string{"r4"}), tt.want...)
		})
	}
}

func TestZeroHopWhenTheServiceIsOnTheDialersRouter(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	for _, from := range []string{"r2", "lonely"} { // a known router and one with no links
		p := shortest(t, g, from, []string{"r4", from})
		wantRouters(t, p, from)
		if p.Cost != 0 || p.Hops() != 0 {
			t.Errorf("zero-hop path from %s: cost %v, hops %d; want 0, 0", from, p.Cost, p.Hops())
		}
	}
}

func TestNearestOfSeveralEndRouters(t *testing.T) {
	g := graph(t, up("r1", "r2", 10, 0), up("r2", "r3", 10, 0), up("r3", "r4", 10, 0), up("r1", "r5", 300, 0))
	wantRouters(t, shortest(t, g, "r1", []string{"r5", "r4", "unknown"}), "r1", "r2", "r3", "r4")
}

func TestNoPathErrors(t *testing.T) {
	g := graph(t, up("a", "b", 10, 0), up("c", "d", 10, 0), paths.Link{A: "b", B: "c", RTT: 10})
	cases := []struct {
		name  string
		from  string
		to    []string
		avoid []paths.Avoid
	}{
		{"partition", "a", []string{"d"}, nil},
		{"unknown-dialer-router", "nowhere", []string{"d"}, nil},
		{"unknown-end-routers", "a", []string{"x", "y"}, nil},
		{"no-end-routers", "a", nil, nil},
		{"only-end-router-avoided", "a", []string{"b"}, []paths.Avoid{paths.AvoidRouter("b")}},
		{"dialer-router-avoided", "a", []string{"a"}, []paths.Avoid{paths.AvoidRouter("a")}},
		{"only-link-avoided", "a", []string{"b"}, []paths.Avoid{paths.AvoidLink("b", "a")}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			for _, search := range []func(string, []string, ...paths.Avoid) (paths.Path, error){g.Shortest, g.FewestHops} {
				p, err := search(tt.from, tt.to, tt.avoid...)
				if !errors.Is(err, paths.ErrNoPath) {
					t.Fatalf("got %v, %v; want ErrNoPath", p.Routers, err)
				}
				if !strings.Contains(err.Error(), tt.from) {
					t.Errorf("error %q does not name %q", err, tt.from)
				}
			}
		})
	}
}

func TestAvoid(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	if err := g.Set(up("r1", "r4", 500, 0)); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		avoid []paths.Avoid
		want  []string
	}{
		{"nothing-avoided", nil, []string{"r1", "r2", "r4"}},
		{"relay-avoided", []paths.Avoid{paths.AvoidRouter("r2")}, []string{"r1", "r3", "r4"}},
		{"link-avoided-either-way", []paths.Avoid{paths.AvoidLink("r4", "r2")}, []string{"r1", "r3", "r4"}},
		{"both-relays-avoided", []paths.Avoid{paths.AvoidRouter("r3"), paths.AvoidRouter("r2")}, []string{"r1", "r4"}},
		{"unknown-names-ignored", []paths.Avoid{paths.AvoidRouter("zz"), paths.AvoidLink("r1", "zz")}, []string{"r1", "r2", "r4"}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			wantRouters(t, shortest(t, g, "r1", []string{"r4"}, tt.avoid...), tt.want...)
		})
	}
	// Avoiding is per call: the graph is unchanged afterwards.
	wantRouters(t, shortest(t, g, "r1", []string{"r4"}), "r1", "r2", "r4")
}

func TestFewestHopsIgnoresLinkQuality(t *testing.T) {
	slow := up("r1", "r4", 800, 0.3)
	g := graph(t, slow, up("r1", "r2", 10, 0), up("r2", "r4", 10, 0))
	p, err := g.FewestHops("r1", []string{"r4"})
	if err != nil {
		t.Fatal(err)
	}
	wantRouters(t, p, "r1", "r4")
	if want := cost(t, slow); p.Cost != want {
		t.Errorf("cost = %v, want the slow link's %v", p.Cost, want)
	}
	wantRouters(t, shortest(t, g, "r1", []string{"r4"}), "r1", "r2", "r4")
}

func TestRemoveAndRemoveRouterReportWhatTheyDid(t *testing.T) {
	g := graph(t, diamond(50, 80)...)
	if g.Remove("r1", "r4") || g.Remove("r1", "nowhere") || g.RemoveRouter("nowhere") {
		t.Error("removing what does not exist reported true")
	}
	if !g.Remove("r2", "r1") || g.Remove("r1", "r2") {
		t.Error("Remove(r2, r1) then Remove(r1, r2): want true then false")
	}
	if r, l := g.Len(); r != 4 || l != 3 {
		t.Errorf("Len = %d routers, %d links; want 4, 3", r, l)
	}
	// A removed router's name can come back, with new links only.
	g.RemoveRouter("r3")
	if err := g.Set(up("r3", "r2", 5, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Shortest("r1", []string{"r3"}); !errors.Is(err, paths.ErrNoPath) {
		t.Errorf("r3 came back with its old link to r1: err = %v", err)
	}
	wantRouters(t, shortest(t, g, "r4", []string{"r3"}), "r4", "r2", "r3")
}
