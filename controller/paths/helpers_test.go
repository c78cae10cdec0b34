package paths_test

import (
	"testing"
	"time"

	"github.com/umbranet/umbra/controller/paths"
)

// up returns a usable link with rttMS milliseconds of RTT and the given loss.
func up(a, b string, rttMS int, loss float64) paths.Link {
	return paths.Link{A: a, B: b, RTT: time.Duration(rttMS) * time.Millisecond, Loss: loss, Up: true}
}

// graph builds a graph of links or fails the test.
func graph(t testing.TB, links ...paths.Link) *paths.Graph {
	t.Helper()
	g, err := paths.New(links)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return g
}

// shortest runs g.Shortest and fails the test on an error.
func shortest(t testing.TB, g *paths.Graph, from string, to []string, avoid ...paths.Avoid) paths.Path {
	t.Helper()
	p, err := g.Shortest(from, to, avoid...)
	if err != nil {
		t.Fatalf("Shortest(%q, %q): %v", from, to, err)
	}
	return p
}

// cost is LinkCost of a link known to be usable.
func cost(t testing.TB, l paths.Link) time.Duration {
	t.Helper()
	c, ok := paths.LinkCost(l)
	if !ok {
		t.Fatalf("LinkCost(%+v): unusable", l)
	}
	return c
}
