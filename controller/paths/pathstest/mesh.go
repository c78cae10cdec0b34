// Package pathstest generates router meshes for the tests and benchmarks of package
// paths: seeded, so a failure reproduces, and connected unless asked otherwise.
package pathstest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/umbranet/umbra/controller/paths"
)

// Shape of a generated mesh's links, chosen to look like the radio links umbra runs
// over: mostly clean, some lossy, a few down.
const (
	minRTT       = 5 * time.Millisecond
	maxRTT       = 800 * time.Millisecond
	lossyShare   = 0.3  // links with 5–30 % loss; the rest lose up to 2 %
	downShare    = 0.02 // links reported down
	maxCleanLoss = 0.02
	minLossy     = 0.05
	maxLossy     = 0.30
)

// Router names the i-th router of a generated mesh. The zero padding keeps the
// lexicographic order of names equal to their numeric order, which makes tie-breaks
// easy to read in failures.
func Router(i int) string { return fmt.Sprintf("r%04d", i) }

// Mesh returns links joining routers routers r0000… into one connected mesh: a random
// spanning tree, then random extra pairs up to links in all (capped at every pair).
// Link health is random per the constants above; some tree links may be down, so the
// usable mesh can still be partitioned.
func Mesh(seed uint64, routers, links int) []paths.Link {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	links = min(links, routers*(routers-1)/2)
	out := make([]paths.Link, 0, links)
	have := make(map[[2]int]bool, links)
	add := func(a, b int) bool {
		k := [2]int{min(a, b), max(a, b)}
		if a == b || have[k] {
			return false
		}
		have[k] = true
		out = append(out, RandomLink(rng, Router(a), Router(b)))
		return true
	}
	for i := 1; i < routers && len(out) < links; i++ {
		add(i, rng.IntN(i))
	}
	// Random pairs, then, for dense meshes where random picks keep colliding, the
	// missing pairs in order.
	for tries := 0; len(out) < links && tries < 20*links; tries++ {
		add(rng.IntN(routers), rng.IntN(routers))
	}
	for a := 0; a < routers && len(out) < links; a++ {
		for b := a + 1; b < routers && len(out) < links; b++ {
			add(a, b)
		}
	}
	return out
}

// RandomLink returns a link between a and b with random health drawn like Mesh's.
func RandomLink(rng *rand.Rand, a, b string) paths.Link {
	l := paths.Link{A: a, B: b, Up: rng.Float64() >= downShare}
	l.RTT = minRTT + time.Duration(rng.Int64N(int64(maxRTT-minRTT)))
	if rng.Float64() < lossyShare {
		l.Loss = minLossy + rng.Float64()*(maxLossy-minLossy)
	} else {
		l.Loss = rng.Float64() * maxCleanLoss
	}
	return l
}
