package controller

import (
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/umbranet/umbra/controller/events"
	"github.com/umbranet/umbra/controller/paths"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/wire"
)

// meshOf is a controller that holds only the link reports given, from online routers,
// with an empty store and event trail.
func meshOf(t *testing.T, reports map[string][]wire.LinkState) *Controller {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, storeFile))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := events.Open(filepath.Join(dir, eventsFile), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{cfg: Config{Now: time.Now}, store: st, events: ev, log: slog.New(slog.DiscardHandler),
		online: map[string]routerState{}, links: map[string][]wire.LinkState{}}
	c.metrics = newControllerMetrics(c)
	t.Cleanup(func() { c.Close() })
	for id, ls := range reports {
		c.online[id] = routerState{}
		c.setLinks(id, wire.LinkReport{Links: ls})
	}
	return c
}

func up(peer string, rttMicros uint64, lossPermille uint16) wire.LinkState {
	return wire.LinkState{Peer: peer, Up: true, RTTMicros: rttMicros, LossPermille: lossPermille}
}

// TestGraphNeedsBothEnds: a link carries circuits only while both of its routers report
// it up, so a router that died (its neighbours stop reporting it) is routed around at
// once, even though its own last report still claims its links.
func TestGraphNeedsBothEnds(t *testing.T) {
	c := meshOf(t, map[string][]wire.LinkState{
		"r1": {up("r2", 1000, 0), up("r3", 1000, 0)},
		"r2": {up("r4", 1000, 0), up("r1", 1000, 0)},
		"r3": {up("r1", 1000, 0), up("r4", 1000, 0)},
		"r4": {up("r3", 1000, 0)}, // r4 no longer hears r2: the r2–r4 link is gone
	})
	g, err := c.graph()
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Shortest("r1", []string{"r4"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"r1", "r3", "r4"}; !slices.Equal(p.Routers, want) {
		t.Fatalf("path %v, want %v: r2–r4 is reported by one end only", p.Routers, want)
	}

	delete(c.links, "r3") // r3 went offline too: no path is left
	g, err = c.graph()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Shortest("r1", []string{"r4"}); !errors.Is(err, paths.ErrNoPath) {
		t.Fatalf("with both relays gone: %v, want ErrNoPath", err)
	}
}

// TestGraphTakesTheWorseEnd: each end measures its link; the path cost uses the worse
// figures, and two connections between the same routers make one link.
func TestGraphTakesTheWorseEnd(t *testing.T) {
	c := meshOf(t, map[string][]wire.LinkState{
		"a": {up("b", 2000, 10), up("b", 2000, 10)}, // two connections, as when both ends dial
		"b": {up("a", 5000, 300), up("a", 5000, 300)},
	})
	g, err := c.graph()
	if err != nil {
		t.Fatal(err)
	}
	if routers, links := g.Len(); routers != 2 || links != 1 {
		t.Fatalf("graph has %d routers and %d links, want 2 and 1", routers, links)
	}
	p, err := g.Shortest("a", []string{"b"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := paths.LinkCost(paths.Link{A: "a", B: "b", RTT: 5 * time.Millisecond, Loss: 0.3, Up: true})
	if p.Cost != want {
		t.Fatalf("cost %v, want %v (5 ms at 30 %% loss, the worse end)", p.Cost, want)
	}
}

// TestLinksOfOfflineRoutersIgnored: a report from a router without a control link is
// dropped, and going offline forgets a router's report.
func TestLinksOfOfflineRoutersIgnored(t *testing.T) {
	c := meshOf(t, nil)
	c.setLinks("ghost", wire.LinkReport{Links: []wire.LinkState{up("r1", 1, 0)}})
	if len(c.links) != 0 {
		t.Fatalf("a report from an offline router was kept: %v", c.links)
	}
}
