// Package profile writes a CPU profile of a whole command run, for the hidden
// --cpuprofile flag of umbra and umbra-agent: how performance work finds its hot spots.
package profile

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// Start profiles the CPU into path until the returned stop is called; an empty path
// profiles nothing.
func Start(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// AddFlag gives root the hidden --cpuprofile FILE flag, profiling whichever command runs.
func AddFlag(root *cobra.Command) {
	var path string
	var stop func()
	root.PersistentFlags().StringVar(&path, "cpuprofile", "", "write a CPU profile of this run to FILE")
	root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) (err error) {
		stop, err = Start(path)
		return err
	}
	root.PersistentPostRun = func(*cobra.Command, []string) { stop() }
}
