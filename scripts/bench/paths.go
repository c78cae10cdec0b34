package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/umbranet/umbra/controller/paths"
	"github.com/umbranet/umbra/controller/paths/pathstest"
)

// Sizes of the path-computation run: the mesh, and how many paths to time.
const (
	pathRouters = 1000
	pathLinks   = 10000
	pathSeed    = 1
	pathQueries = 2000
	pathWarmup  = 200
	pathBuilds  = 20
)

// benchPaths measures the controller's path computation (issue 6) on a generated mesh
// of 1,000 routers and 10,000 links, beside a hop-count BFS on the same graph, timed
// query by query in the same loop.
func benchPaths(ctx context.Context, r *report) error {
	links := pathstest.Mesh(pathSeed, pathRouters, pathLinks)

	var builds []time.Duration
	var g *paths.Graph
	for range pathBuilds {
		t0 := time.Now()
		built, err := paths.New(links)
		if err != nil {
			return fmt.Errorf("paths bench: build: %w", err)
		}
		builds = append(builds, time.Since(t0))
		g = built
	}

	rng := rand.New(rand.NewPCG(pathSeed, 2))
	type query struct {
		from string
		to   []string
	}
	qs := make([]query, pathQueries)
	for i := range qs {
		qs[i].from = pathstest.Router(rng.IntN(pathRouters))
		for range 1 + rng.IntN(3) { // a service bound on one to three routers
			qs[i].to = append(qs[i].to, pathstest.Router(rng.IntN(pathRouters)))
		}
	}
	for _, q := range qs[:pathWarmup] {
		g.Shortest(q.from, q.to)
		g.FewestHops(q.from, q.to)
	}

	var weighted, hops []time.Duration
	var costW, costH time.Duration
	var hopsW, hopsH, found, partitioned int
	for i, q := range qs {
		if i%100 == 0 && ctx.Err() != nil {
			return fmt.Errorf("paths bench: %w", ctx.Err())
		}
		t0 := time.Now()
		pw, errW := g.Shortest(q.from, q.to)
		t1 := time.Now()
		ph, errH := g.FewestHops(q.from, q.to)
		t2 := time.Now()
		weighted, hops = append(weighted, t1.Sub(t0)), append(hops, t2.Sub(t1))
		switch {
		case errW == nil && errH == nil:
			found++
			costW, costH = costW+pw.Cost, costH+ph.Cost
			hopsW, hopsH = hopsW+pw.Hops(), hopsH+ph.Hops()
		case errors.Is(errW, paths.ErrNoPath) && errors.Is(errH, paths.ErrNoPath):
			partitioned++
		default:
			return fmt.Errorf("paths bench: %s → %v: Shortest %v, FewestHops %v", q.from, q.to, errW, errH)
		}
	}
	allocs := func(search func(string, []string, ...paths.Avoid) (paths.Path, error)) float64 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		for _, q := range qs {
			search(q.from, q.to)
		}
		runtime.ReadMemStats(&m1)
		return float64(m1.Mallocs-m0.Mallocs) / float64(len(qs))
	}
	allocsW, allocsH := allocs(g.Shortest), allocs(g.FewestHops)
	if found == 0 {
		return fmt.Errorf("paths bench: no query found a path")
	}

	// A link report followed by recomputing a circuit's path, as when a link on it fails.
	var updates []time.Duration
	for i, q := range qs {
		l := links[rng.IntN(len(links))]
		l.Up = i%2 == 0
		t0 := time.Now()
		if err := g.Set(l); err != nil {
			return fmt.Errorf("paths bench: %w", err)
		}
		g.Shortest(q.from, q.to)
		updates = append(updates, time.Since(t0))
	}

	mw, mh := median(weighted), median(hops)
	r.printf("## Controller: path computation\n\n")
	r.printf("A generated mesh of %s routers and %s links (seed %d; RTT 5–800 ms, 30 %% of links losing\n", thousands(pathRouters), thousands(pathLinks), pathSeed)
	r.printf("5–30 %%, 2 %% down). %s paths from a random router to the nearest of one to three random end\n", thousands(pathQueries))
	r.printf("routers, each timed alone; the peer is a hop-count BFS on the same graph (`FewestHops`), timed\n")
	r.printf("right after it for the same query.")
	if partitioned > 0 {
		r.printf(" %d queries met a partition (down links cut a router off) and got ErrNoPath from both.", partitioned)
	}
	r.printf("\n\n")
	r.printf("| figure | weighted shortest path (`paths.Shortest`) | peer: hop-count BFS, same graph | ratio |\n|---|---|---|---|\n")
	r.printf("| time per path, median | %s | %s | %.1f× |\n", msFine(mw), msFine(mh), ratio(mw, mh))
	r.printf("| time per path, p99 | %s | %s | %.1f× |\n", msFine(percentile(weighted, 0.99)), msFine(percentile(hops, 0.99)), ratio(percentile(weighted, 0.99), percentile(hops, 0.99)))
	r.printf("| allocations per path (partitioned queries allocate their error) | %.1f | %.1f | — |\n", allocsW, allocsH)
	r.printf("| mean path cost (expected RTT + 1 ms a hop), %d paths found | %s | %s | BFS paths cost %.2f× |\n",
		found, msFine(costW/time.Duration(found)), msFine(costH/time.Duration(found)), ratio(costH, costW))
	r.printf("| mean hops | %.2f | %.2f | — |\n", float64(hopsW)/float64(found), float64(hopsH)/float64(found))
	r.printf("| link report (`Set`) then recompute one path, median | %s | — | — |\n", msFine(median(updates)))
	r.printf("| build the graph from %s links, median of %d | %s | — | — |\n\n", thousands(pathLinks), pathBuilds, msFine(median(builds)))
	r.printf("The weighted search does more work than BFS for a better answer: the cost row shows what\n")
	r.printf("a hop-count route would cost the circuits in latency and loss.\n\n")
	return nil
}

// msFine formats d in milliseconds to the microsecond.
func msFine(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// thousands formats n with comma separators, as the issue writes its sizes.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
