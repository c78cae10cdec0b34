package lab

// TB is the part of testing.TB the harness uses: a test or a benchmark. lab does not
// import package testing, so the bench (a command) links none of it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	TempDir() string
}
