package paths_test

import (
	"math/rand/v2"
	"testing"

	"github.com/umbranet/umbra/controller/paths"
	"github.com/umbranet/umbra/controller/paths/pathstest"
)

// The benchmark size.
const (
	benchRouters = 1000
	benchLinks   = 10000
)

type query struct {
	from string
	to   []string
}

// benchQueries returns random queries on the benchmark mesh, some with several end
// routers, as a service bound on more than one router has.
func benchQueries(n int) []query {
	rng := rand.New(rand.NewPCG(42, 42))
	qs := make([]query, n)
	for i := range qs {
		qs[i].from = pathstest.Router(rng.IntN(benchRouters))
		for range 1 + rng.IntN(3) {
			qs[i].to = append(qs[i].to, pathstest.Router(rng.IntN(benchRouters)))
		}
	}
	return qs
}

func benchSearch(b *testing.B, search func(*paths.Graph) func(string, []string, ...paths.Avoid) (paths.Path, error)) {
	g := graph(b, pathstest.Mesh(1, benchRouters, benchLinks)...)
	qs := benchQueries(256)
	f := search(g)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := qs[i%len(qs)]
		f(q.from, q.to)
		i++
	}
}

func BenchmarkShortest1000Routers10000Links(b *testing.B) {
	benchSearch(b, func(g *paths.Graph) func(string, []string, ...paths.Avoid) (paths.Path, error) { return g.Shortest })
}

// BenchmarkFewestHops1000Routers10000Links is the peer: a hop-count BFS on the same graph.
func BenchmarkFewestHops1000Routers10000Links(b *testing.B) {
	benchSearch(b, func(g *paths.Graph) func(string, []string, ...paths.Avoid) (paths.Path, error) { return g.FewestHops })
}

func BenchmarkNew1000Routers10000Links(b *testing.B) {
	links := pathstest.Mesh(1, benchRouters, benchLinks)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := paths.New(links); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetThenShortest is one link report followed by moving a circuit.
func BenchmarkSetThenShortest1000Routers10000Links(b *testing.B) {
	links := pathstest.Mesh(1, benchRouters, benchLinks)
	g := graph(b, links...)
	qs := benchQueries(256)
	rng := rand.New(rand.NewPCG(1, 1))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l := links[i%len(links)]
		l.Up = !l.Up
		if err := g.Set(l); err != nil {
			b.Fatal(err)
		}
		q := qs[rng.IntN(len(qs))]
		g.Shortest(q.from, q.to)
		i++
	}
}
