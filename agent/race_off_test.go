//go:build !race

package agent

// raceDetector is whether the race detector instruments this test binary.
const raceDetector = false
