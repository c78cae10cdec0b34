package paths_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/umbranet/umbra/controller/paths"
	"github.com/umbranet/umbra/controller/paths/pathstest"
)

// refGraph is a plain reference model of a mesh: every link by its pair of routers.
type refGraph map[[2]string]paths.Link

func pair(a, b string) [2]string { return [2]string{min(a, b), max(a, b)} }

func newRef(links []paths.Link) refGraph {
	r := refGraph{}
	for _, l := range links {
		r[pair(l.A, l.B)] = l
	}
	return r
}

func (r refGraph) links() []paths.Link {
	out := make([]paths.Link, 0, len(r))
	for _, l := range r {
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y paths.Link) int { return slices.Compare(pairSlice(x), pairSlice(y)) })
	return out
}

func pairSlice(l paths.Link) []string { p := pair(l.A, l.B); return p[:] }

// weight is a link's cost in the reference searches: LinkCost, or 1 when counting
// hops; false if the link is unusable or avoided.
func (r refGraph) weight(a, b string, hops bool, avoid refAvoid) (time.Duration, bool) {
	l, ok := r[pair(a, b)]
	if !ok || avoid.routers[a] || avoid.routers[b] || avoid.links[pair(a, b)] {
		return 0, false
	}
	c, ok := paths.LinkCost(l)
	if hops {
		c = 1
	}
	return c, ok
}

type refAvoid struct {
	routers map[string]bool
	links   map[[2]string]bool
	list    []paths.Avoid
}

func (r refGraph) routers() []string {
	seen := map[string]bool{}
	for p := range r {
		seen[p[0]], seen[p[1]] = true, true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// bruteForce enumerates every simple path from from to a router of to and returns the
// cheapest, ties going to the lexicographically smallest; ok is false if none exists.
func (r refGraph) bruteForce(from string, to []string, hops bool, avoid refAvoid) (best []string, bestCost time.Duration, ok bool) {
	if avoid.routers[from] {
		return nil, 0, false
	}
	names := r.routers()
	var walk func(path []string, c time.Duration)
	walk = func(path []string, c time.Duration) {
		u := path[len(path)-1]
		if slices.Contains(to, u) {
			if !ok || c < bestCost || c == bestCost && slices.Compare(path, best) < 0 {
				best, bestCost, ok = slices.Clone(path), c, true
			}
			return // going on through a target only adds cost
		}
		for _, v := range names {
			if w, usable := r.weight(u, v, hops, avoid); usable && !slices.Contains(path, v) {
				walk(append(path, v), c+w)
			}
		}
	}
	walk([]string{from}, 0)
	return best, bestCost, ok
}

// bellmanFord returns every router's cost to the nearest router of to.
func (r refGraph) bellmanFord(to []string) map[string]time.Duration {
	dist := map[string]time.Duration{}
	for _, t := range to {
		dist[t] = 0
	}
	links := r.links()
	for range len(r.routers()) {
		changed := false
		for _, l := range links {
			c, ok := paths.LinkCost(l)
			if !ok {
				continue
			}
			for _, e := range [][2]string{{l.A, l.B}, {l.B, l.A}} {
				if du, ok := dist[e[0]]; ok {
					if dv, ok := dist[e[1]]; !ok || du+c < dv {
						dist[e[1]] = du + c
						changed = true
					}
				}
			}
		}
		if !changed {
			break
		}
	}
	return dist
}

// checkPath fails the test unless p is a real path of r from from to one of to whose
// cost is the sum of its links' costs.
func checkPath(t *testing.T, r refGraph, p paths.Path, from string, to []string) {
	t.Helper()
	if len(p.Routers) == 0 || p.Routers[0] != from || !slices.Contains(to, p.Routers[len(p.Routers)-1]) {
		t.Fatalf("path %v does not run from %s to one of %v", p.Routers, from, to)
	}
	var sum time.Duration
	for i := 1; i < len(p.Routers); i++ {
		c, ok := r.weight(p.Routers[i-1], p.Routers[i], false, refAvoid{})
		if !ok {
			t.Fatalf("path %v crosses %s–%s, which is not a usable link", p.Routers, p.Routers[i-1], p.Routers[i])
		}
		sum += c
	}
	if sum != p.Cost {
		t.Fatalf("path %v: cost %v, but its links add up to %v", p.Routers, p.Cost, sum)
	}
}

// smallMesh returns a random mesh of at most 7 routers whose links take few distinct
// costs, so equal-cost ties are common, and a few avoided routers or links.
func smallMesh(rng *rand.Rand) (refGraph, refAvoid) {
	n := 2 + rng.IntN(6)
	rtts := []int{10, 20, 30}
	losses := []float64{0, 0, 0, 0.5, 1}
	r := refGraph{}
	for range rng.IntN(n * n) {
		a, b := rng.IntN(n), rng.IntN(n)
		if a == b {
			continue
		}
		l := up(fmt.Sprint("r", a), fmt.Sprint("r", b), rtts[rng.IntN(len(rtts))], losses[rng.IntN(len(losses))])
		l.Up = rng.IntN(8) != 0
		r[pair(l.A, l.B)] = l
	}
	av := refAvoid{routers: map[string]bool{}, links: map[[2]string]bool{}}
	for range rng.IntN(3) {
		a, b := fmt.Sprint("r", rng.IntN(n)), fmt.Sprint("r", rng.IntN(n))
		if rng.IntN(2) == 0 {
			av.routers[a] = true
			av.list = append(av.list, paths.AvoidRouter(a))
		} else if a != b {
			av.links[pair(a, b)] = true
			av.list = append(av.list, paths.AvoidLink(a, b))
		}
	}
	return r, av
}

func TestMatchesBruteForceOnSmallRandomMeshes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		r, av := smallMesh(rng)
		names := r.routers()
		if len(names) == 0 {
			continue
		}
		g := graph(t, r.links()...)
		for range 4 {
			from := names[rng.IntN(len(names))]
			to := []string{names[rng.IntN(len(names))], names[rng.IntN(len(names))]}
			for _, hops := range []bool{false, true} {
				search, label := g.Shortest, "Shortest"
				if hops {
					search, label = g.FewestHops, "FewestHops"
				}
				want, wantCost, ok := r.bruteForce(from, to, hops, av)
				p, err := search(from, to, av.list...)
				if !ok {
					if !errors.Is(err, paths.ErrNoPath) {
						t.Fatalf("mesh %d %v: %s(%s, %v) = %v, %v; want ErrNoPath", i, r.links(), label, from, to, p.Routers, err)
					}
					continue
				}
				if err != nil || !slices.Equal(p.Routers, want) || !hops && p.Cost != wantCost {
					t.Fatalf("mesh %d %v avoiding %v: %s(%s, %v) = %v (cost %v), %v; want %v (cost %v)",
						i, r.links(), av.list, label, from, to, p.Routers, p.Cost, err, want, wantCost)
				}
			}
		}
	}
}

func TestMatchesBellmanFordOnGeneratedMeshes(t *testing.T) {
	for seed := range uint64(5) {
		links := pathstest.Mesh(seed, 200, 800)
		r := newRef(links)
		g := graph(t, links...)
		rng := rand.New(rand.NewPCG(seed, 99))
		for range 20 {
			to := []string{pathstest.Router(rng.IntN(200))}
			if rng.IntN(2) == 0 {
				to = append(to, pathstest.Router(rng.IntN(200)), pathstest.Router(rng.IntN(200)))
			}
			dist := r.bellmanFord(to)
			for range 10 {
				from := pathstest.Router(rng.IntN(200))
				want, reachable := dist[from]
				p, err := g.Shortest(from, to)
				if !reachable {
					if !errors.Is(err, paths.ErrNoPath) {
						t.Fatalf("seed %d: Shortest(%s, %v) = %v, %v; want ErrNoPath", seed, from, to, p.Routers, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("seed %d: Shortest(%s, %v): %v; want cost %v", seed, from, to, err, want)
				}
				if p.Cost != want {
					t.Fatalf("seed %d: Shortest(%s, %v) cost %v, want %v (Bellman–Ford)", seed, from, to, p.Cost, want)
				}
				checkPath(t, r, p, from, to)
				h, err := g.FewestHops(from, to)
				if err != nil || h.Hops() > p.Hops() {
					t.Fatalf("seed %d: FewestHops(%s, %v) = %v, %v; want at most Shortest's %d hops", seed, from, to, h.Routers, err, p.Hops())
				}
				checkPath(t, r, h, from, to)
			}
		}
	}
}

// sameAnswers fails the test unless a and b answer every query alike.
func sameAnswers(t *testing.T, label string, a, b *paths.Graph, names []string, rng *rand.Rand) {
	t.Helper()
	for range 40 {
		from := names[rng.IntN(len(names))]
		to := []string{names[rng.IntN(len(names))], names[rng.IntN(len(names))]}
		pa, ea := a.Shortest(from, to)
		pb, eb := b.Shortest(from, to)
		if !slices.Equal(pa.Routers, pb.Routers) || pa.Cost != pb.Cost || (ea == nil) != (eb == nil) {
			t.Fatalf("%s: Shortest(%s, %v) = %v %v, %v; rebuilt graph gives %v %v, %v",
				label, from, to, pa.Routers, pa.Cost, ea, pb.Routers, pb.Cost, eb)
		}
	}
}

func TestAnswersDoNotDependOnReportOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	// Few distinct costs, so the tie-breaking is what is being compared.
	var links []paths.Link
	for _, l := range pathstest.Mesh(3, 40, 120) {
		links = append(links, up(l.A, l.B, 10*(1+rng.IntN(3)), 0))
	}
	g := graph(t, links...)
	names := newRef(links).routers()
	for i := range 5 {
		shuffled := slices.Clone(links)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for k := range shuffled {
			if rng.IntN(2) == 0 {
				shuffled[k].A, shuffled[k].B = shuffled[k].B, shuffled[k].A
			}
		}
		sameAnswers(t, fmt.Sprintf("shuffle %d", i), graph(t, shuffled...), g, names, rng)
	}
}

func TestIncrementalUpdatesMatchARebuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	const n = 60
	links := pathstest.Mesh(11, n, 200)
	r := newRef(links)
	g := graph(t, links...)
	for step := range 600 {
		a, b := pathstest.Router(rng.IntN(n)), pathstest.Router(rng.IntN(n))
		switch k := rng.IntN(20); {
		case a == b:
		case k < 12: // a health report, on a known pair or a new one
			l := pathstest.RandomLink(rng, a, b)
			r[pair(a, b)] = l
			if err := g.Set(l); err != nil {
				t.Fatal(err)
			}
		case k < 19:
			_, had := r[pair(a, b)]
			delete(r, pair(a, b))
			if got := g.Remove(a, b); got != had {
				t.Fatalf("step %d: Remove(%s, %s) = %v, want %v", step, a, b, got, had)
			}
		default:
			for p := range r {
				if p[0] == a || p[1] == a {
					delete(r, p)
				}
			}
			g.RemoveRouter(a)
		}
		if step%100 == 99 {
			rebuilt := graph(t, r.links()...)
			if _, l := g.Len(); l != len(r) {
				t.Fatalf("step %d: %d links, want %d", step, l, len(r))
			}
			sameAnswers(t, fmt.Sprintf("step %d", step), g, rebuilt, r.routers(), rng)
		}
	}
}

func TestConcurrentSearchesAndUpdates(t *testing.T) {
	links := pathstest.Mesh(5, 100, 400)
	g := graph(t, links...)
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for w := range 3 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				from, to := pathstest.Router(rng.IntN(100)), pathstest.Router(rng.IntN(100))
				if _, err := g.Shortest(from, []string{to}); err != nil && !errors.Is(err, paths.ErrNoPath) {
					errc <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		rng := rand.New(rand.NewPCG(9, 9))
		for i := range 300 {
			l := links[i%len(links)]
			if err := g.Set(pathstest.RandomLink(rng, l.A, l.B)); err != nil {
				errc <- err
				return
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestShortestAllocatesOnlyItsAnswer(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop entries at random")
	}
	g := graph(t, pathstest.Mesh(1, 1000, 10000)...)
	from, to := pathstest.Router(0), []string{pathstest.Router(999)}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := g.Shortest(from, to); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("Shortest on 1,000 routers: %.1f allocations per call, want at most 1 (the path)", allocs)
	}
}

// FuzzShortestMatchesBruteForce reads a small mesh from bytes (three per link) and
// checks both searches against the brute-force reference.
func FuzzShortestMatchesBruteForce(f *testing.F) {
	f.Add([]byte{0, 1, 0x01, 1, 5, 0x01, 0, 2, 0x01, 2, 5, 0x01})          // diamond, tie
	f.Add([]byte{0, 5, 0x1b, 0, 3, 0x02, 3, 5, 0x02})                      // lossy direct link
	f.Add([]byte{0, 1, 0x81, 2, 5, 0x01})                                  // partition, down link
	f.Add([]byte{0, 1, 1, 1, 2, 1, 2, 3, 1, 3, 4, 1, 4, 5, 1, 0, 5, 0x05}) // long chain vs one hop
	f.Fuzz(func(t *testing.T, data []byte) {
		const n = 6
		r := refGraph{}
		for i := 0; i+2 < len(data) && i < 3*20; i += 3 {
			a, b, h := fmt.Sprint("r", data[i]%n), fmt.Sprint("r", data[i+1]%n), data[i+2]
			if a == b {
				continue
			}
			l := up(a, b, 10*int(h&0x07), float64((h>>3)&0x03)*0.3)
			l.Up = h&0x80 == 0
			r[pair(a, b)] = l
		}
		g := graph(t, r.links()...)
		to := []string{"r5"}
		if len(data) > 0 && data[0]&0x80 != 0 {
			to = append(to, "r4")
		}
		for _, hops := range []bool{false, true} {
			search := g.Shortest
			if hops {
				search = g.FewestHops
			}
			want, wantCost, ok := r.bruteForce("r0", to, hops, refAvoid{})
			p, err := search("r0", to)
			if ok != (err == nil) || !slices.Equal(p.Routers, want) || ok && !hops && p.Cost != wantCost {
				t.Fatalf("%v (hops %v): got %v %v, %v; want %v %v", r.links(), hops, p.Routers, p.Cost, err, want, wantCost)
			}
		}
	})
}
