// Package paths computes the weighted shortest path through the router mesh, from the
// dialer's router to the nearest router where the service is bound. Links cost their
// latency with a loss penalty plus a small per-hop cost (see LinkCost); ties go to the
// lexicographically smallest router sequence, so every controller picks the same path.
// The package holds the graph and computes; it never measures links or moves circuits.
package paths

import (
	"sync"
	"time"
)

// Graph is the router mesh as the controller last heard of it. Set and Remove update it
// in place, cheaply enough to call on every link report. A Graph is safe for concurrent
// use; the zero value is an empty graph.
type Graph struct {
	mu    sync.RWMutex
	index map[string]int32 // router name → node
	names []string         // node → router name; "" for a freed node
	adj   [][]edge         // node → its links, usable or not
	free  []int32          // freed nodes, reused by new routers
	links int

	pool sync.Pool // *scratch, so concurrent searches allocate nothing
}

// edge is one direction of a link.
type edge struct {
	to   int32
	cost time.Duration // unusable when < 0
}

// unusable marks an edge a search must skip.
const unusable = -1

// New returns a graph of links. It fails on the first invalid link.
func New(links []Link) (*Graph, error) {
	g := &Graph{}
	for _, l := range links {
		if err := g.Set(l); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Set adds l, or replaces the link between the same two routers, adding routers it
// has not seen. It fails, changing nothing, for an empty or repeated router name, a
// negative RTT or a loss outside [0, 1].
func (g *Graph) Set(l Link) error {
	if err := l.validate(); err != nil {
		return err
	}
	cost := time.Duration(unusable)
	if c, ok := LinkCost(l); ok {
		cost = c
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	a, b := g.node(l.A), g.node(l.B)
	if i := find(g.adj[a], b); i >= 0 {
		g.adj[a][i].cost = cost
		g.adj[b][find(g.adj[b], a)].cost = cost
		return nil
	}
	g.adj[a] = append(g.adj[a], edge{to: b, cost: cost})
	g.adj[b] = append(g.adj[b], edge{to: a, cost: cost})
	g.links++
	return nil
}

// Remove deletes the link between a and b, reporting whether there was one. The
// routers stay known, if isolated.
func (g *Graph) Remove(a, b string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	na, oka := g.index[a]
	nb, okb := g.index[b]
	if !oka || !okb {
		return false
	}
	i := find(g.adj[na], nb)
	if i < 0 {
		return false
	}
	g.adj[na] = cut(g.adj[na], i)
	g.adj[nb] = cut(g.adj[nb], find(g.adj[nb], na))
	g.links--
	return true
}

// RemoveRouter forgets a router and all its links (a deleted or retired router),
// reporting whether it was known.
func (g *Graph) RemoveRouter(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, ok := g.index[name]
	if !ok {
		return false
	}
	for _, e := range g.adj[n] {
		g.adj[e.to] = cut(g.adj[e.to], find(g.adj[e.to], n))
		g.links--
	}
	g.adj[n] = nil
	g.names[n] = ""
	delete(g.index, name)
	g.free = append(g.free, n)
	return true
}

// Len returns how many routers and links the graph holds, down links included.
func (g *Graph) Len() (routers, links int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.index), g.links
}

// node returns name's node, adding it if new. The caller holds the write lock.
func (g *Graph) node(name string) int32 {
	if n, ok := g.index[name]; ok {
		return n
	}
	if g.index == nil {
		g.index = make(map[string]int32)
	}
	var n int32
	if k := len(g.free); k > 0 {
		n, g.free = g.free[k-1], g.free[:k-1]
		g.names[n] = name
	} else {
		n = int32(len(g.names))
		g.names = append(g.names, name)
		g.adj = append(g.adj, nil)
	}
	g.index[name] = n
	return n
}

// find returns the index of the edge to n in es, or -1.
func find(es []edge, n int32) int {
	for i, e := range es {
		if e.to == n {
			return i
		}
	}
	return -1
}

// cut removes es[i] without keeping order; the search never depends on edge order.
func cut(es []edge, i int) []edge {
	last := len(es) - 1
	es[i] = es[last]
	return es[:last]
}
