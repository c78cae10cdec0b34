//go:build race

package agent

// raceDetector is whether the race detector instruments this test binary: its shadow
// memory for a burst of allocation is anonymous memory too, and it is not given back
// when the heap is.
const raceDetector = true
