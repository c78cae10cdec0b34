package paths

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrNoPath is returned, wrapped with the routers asked for, when no usable links join
// the dialer's router to any of the end routers (the mesh is partitioned).
var ErrNoPath = errors.New("paths: no path")

// Path is a route through the mesh.
type Path struct {
	// Routers runs from the dialer's router to the end router; a zero-hop path (the
	// service is bound on the dialer's own router) holds that one router.
	Routers []string
	// Cost is the sum of LinkCost over the path's links; 0 for a zero-hop path.
	Cost time.Duration
}

// Hops returns how many links the path crosses.
func (p Path) Hops() int { return max(len(p.Routers)-1, 0) }

// Crosses reports whether the path uses the link between a and b, in either direction:
// whether a circuit on it must move when that link fails.
func (p Path) Crosses(a, b string) bool {
	for i := 1; i < len(p.Routers); i++ {
		x, y := p.Routers[i-1], p.Routers[i]
		if x == a && y == b || x == b && y == a {
			return true
		}
	}
	return false
}

// Visits reports whether the path passes through or ends at router.
func (p Path) Visits(router string) bool { return slices.Contains(p.Routers, router) }

// Avoid keeps a search off a router or a link, for instance one the caller suspects
// before its health report arrives. Build it with AvoidRouter or AvoidLink.
type Avoid struct {
	router string
	a, b   string
}

// AvoidRouter keeps paths from crossing, starting or ending at router.
func AvoidRouter(router string) Avoid { return Avoid{router: router} }

// AvoidLink keeps paths off the link between a and b, in both directions.
func AvoidLink(a, b string) Avoid { return Avoid{a: a, b: b} }

// Shortest returns the cheapest path (see LinkCost) from the router from to whichever
// of the routers in to is nearest. Among paths of equal cost it returns the one whose
// router sequence is lexicographically smallest, so the answer depends only on the
// links, never on the order they were reported in. If from is among to, the path is
// zero-hop. Routers in to that the graph does not know are ignored. The error wraps
// ErrNoPath when no usable path exists.
func (g *Graph) Shortest(from string, to []string, avoid ...Avoid) (Path, error) {
	return g.search(from, to, avoid, true)
}

// FewestHops is Shortest with every usable link costing the same: the path with the
// fewest hops, whatever the links' latency and loss, with the same tie-breaking. It is
// the baseline the benchmarks measure Shortest against, and a cheap reachability test.
// Its Path.Cost is still the LinkCost sum of the path it picked.
func (g *Graph) FewestHops(from string, to []string, avoid ...Avoid) (Path, error) {
	return g.search(from, to, avoid, false)
}

// search runs the shared part of Shortest (weighted) and FewestHops. It searches from
// the targets toward from, then walks from from back down the distances, at each step
// taking the smallest-named neighbour that lies on a cheapest path. Every link costs
// at least HopCost, so distances fall strictly along the walk and it ends at a target.
func (g *Graph) search(from string, to []string, avoid []Avoid, weighted bool) (Path, error) {
	if len(to) == 0 {
		return Path{}, fmt.Errorf("%w from %q: no end routers given", ErrNoPath, from)
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	s, _ := g.pool.Get().(*scratch)
	if s == nil {
		s = &scratch{}
	}
	defer g.pool.Put(s)
	s.begin(len(g.names))

	for _, a := range avoid {
		if a.router != "" {
			if a.router == from {
				return Path{}, fmt.Errorf("%w from %q to %q: the dialer's router is avoided", ErrNoPath, from, to)
			}
			if n, ok := g.index[a.router]; ok {
				s.banned[n] = s.gen
			}
			continue
		}
		na, oka := g.index[a.a]
		nb, okb := g.index[a.b]
		if oka && okb {
			s.bannedLinks = append(s.bannedLinks, [2]int32{min(na, nb), max(na, nb)})
		}
	}
	if slices.Contains(to, from) {
		return Path{Routers: []string{from}}, nil
	}
	src, ok := g.index[from]
	if !ok {
		return Path{}, fmt.Errorf("%w from %q (a router with no links) to %q", ErrNoPath, from, to)
	}
	for _, t := range to {
		if n, ok := g.index[t]; ok && s.banned[n] != s.gen && s.seen[n] != s.gen {
			s.reach(n, 0)
			if weighted {
				s.push(item{n: n})
			} else {
				s.queue = append(s.queue, n)
			}
		}
	}
	if weighted {
		g.dijkstra(s, src)
	} else {
		g.bfs(s, src)
	}
	if s.seen[src] != s.gen {
		return Path{}, fmt.Errorf("%w from %q to %q", ErrNoPath, from, to)
	}

	// Walk down from src, always to the smallest-named neighbour on a cheapest path.
	s.walk = append(s.walk, src)
	var cost time.Duration
	for u := src; s.dist[u] != 0; {
		next, step := int32(-1), time.Duration(0)
		for _, e := range g.adj[u] {
			v := e.to
			if !s.usable(u, e) || s.seen[v] != s.gen {
				continue
			}
			w := e.cost
			if !weighted {
				w = 1
			}
			if s.dist[v]+w == s.dist[u] && (next < 0 || g.names[v] < g.names[next]) {
				next, step = v, e.cost
			}
		}
		if next < 0 { // cannot happen: a reached node always has a cheapest neighbour
			return Path{}, fmt.Errorf("paths: internal error: walk from %q stuck at %q", from, g.names[u])
		}
		cost += step
		s.walk = append(s.walk, next)
		u = next
	}
	p := Path{Routers: make([]string, len(s.walk)), Cost: cost}
	for i, n := range s.walk {
		p.Routers[i] = g.names[n]
	}
	return p, nil
}

// dijkstra settles nodes in order of their cost to the nearest target until it settles
// src. Nodes settled before src hold their exact cost, and so does every node the walk
// can step to (its cost is below src's).
func (g *Graph) dijkstra(s *scratch, src int32) {
	for len(s.heap) > 0 {
		it := s.pop()
		if it.d > s.dist[it.n] {
			continue // a stale entry; the node was reached more cheaply since
		}
		if it.n == src {
			return
		}
		for _, e := range g.adj[it.n] {
			if !s.usable(it.n, e) {
				continue
			}
			if d := it.d + e.cost; s.seen[e.to] != s.gen || d < s.dist[e.to] {
				s.reach(e.to, d)
				s.push(item{d: d, n: e.to})
			}
		}
	}
}

// bfs counts hops from the targets breadth first until it reaches src; every node it
// has reached by then holds its exact hop count, and every node one hop nearer to the
// targets than src has been reached.
func (g *Graph) bfs(s *scratch, src int32) {
	for i := 0; i < len(s.queue) && s.seen[src] != s.gen; i++ {
		u := s.queue[i]
		for _, e := range g.adj[u] {
			if s.usable(u, e) && s.seen[e.to] != s.gen {
				s.reach(e.to, s.dist[u]+1)
				s.queue = append(s.queue, e.to)
			}
		}
	}
}

// scratch is one search's working memory, kept in the graph's pool between searches.
// A node's dist is valid only when its seen stamp equals gen, so starting a search
// clears nothing.
type scratch struct {
	gen         uint32
	seen        []uint32        // node → gen of the search that reached it
	dist        []time.Duration // node → cost (or hops) to the nearest target
	banned      []uint32        // node → gen of the search that avoids it
	bannedLinks [][2]int32      // avoided links, smaller node first
	heap        []item
	queue       []int32
	walk        []int32
}

// item is a heap entry: a node and the cost it was reached at.
type item struct {
	d time.Duration
	n int32
}

// begin readies s for a search of a graph of n nodes.
func (s *scratch) begin(n int) {
	if len(s.seen) < n {
		s.seen = make([]uint32, n)
		s.banned = make([]uint32, n)
		s.dist = make([]time.Duration, n)
	}
	s.gen++
	if s.gen == 0 { // wrapped: old stamps could match again
		clear(s.seen)
		clear(s.banned)
		s.gen = 1
	}
	s.heap, s.queue, s.walk, s.bannedLinks = s.heap[:0], s.queue[:0], s.walk[:0], s.bannedLinks[:0]
}

func (s *scratch) reach(n int32, d time.Duration) {
	s.seen[n] = s.gen
	s.dist[n] = d
}

// usable reports whether the search may cross e from node u.
func (s *scratch) usable(u int32, e edge) bool {
	if e.cost < 0 || s.banned[e.to] == s.gen {
		return false
	}
	if len(s.bannedLinks) > 0 {
		k := [2]int32{min(u, e.to), max(u, e.to)}
		if slices.Contains(s.bannedLinks, k) {
			return false
		}
	}
	return true
}

// push and pop keep s.heap a binary min-heap on d, written out rather than through
// container/heap, whose interface boxing would allocate on every push.
func (s *scratch) push(it item) {
	h := append(s.heap, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].d <= it.d {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = it
	s.heap = h
}

func (s *scratch) pop() item {
	h := s.heap
	top, last := h[0], h[len(h)-1]
	h = h[:len(h)-1]
	if len(h) > 0 {
		i := 0
		for {
			c := 2*i + 1
			if c >= len(h) {
				break
			}
			if c+1 < len(h) && h[c+1].d < h[c].d {
				c++
			}
			if last.d <= h[c].d {
				break
			}
			h[i] = h[c]
			i = c
		}
		h[i] = last
	}
	s.heap = h
	return top
}
