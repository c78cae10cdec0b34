// Package version is the build stamp every binary prints: the release, the commit and
// the platform it was built for. The Makefile sets Version and Commit with -ldflags -X.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time by the Makefile; the defaults mark an unstamped build.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the one-line stamp: version, commit, GOOS/GOARCH and GOARM where set.
func String(program string) string {
	arch := runtime.GOOS + "/" + runtime.GOARCH
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "GOARM" && s.Value != "" {
				arch += " GOARM=" + s.Value
			}
		}
	}
	return fmt.Sprintf("%s %s (commit %s, %s, %s)", program, Version, Commit, arch, runtime.Version())
}
