// Package e2e starts the real umbra and umbra-agent binaries and checks what an operator
// would see: commands, files, listings, and bytes on the wire.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/lab"
)

// Deadlines of the harness (internal/lab's): generous, since the machine is shared.
const (
	readyTimeout   = lab.ReadyTimeout
	commandTimeout = lab.CommandTimeout
	stopTimeout    = lab.StopTimeout
)

// bins holds the paths of the binaries TestMain built.
var bins struct{ umbra, agent string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "umbra-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b, err := lab.Build(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.umbra, bins.agent = b.Umbra, b.Agent
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a long-running binary whose output the test can wait on (a lab.Proc).
type proc struct {
	*lab.Proc
	cmd  *exec.Cmd
	done <-chan struct{}
}

// start runs bin with args in the background; it is killed when the test ends.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := lab.Start(t, bin, args...)
	return &proc{Proc: p, cmd: p.Cmd, done: p.Done()}
}

func (p *proc) output() string { return p.Output() }

// waitFor polls the output until a line starts with prefix, and returns that line.
func (p *proc) waitFor(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	return p.WaitFor(t, prefix, timeout)
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.StopT(t)
}

// run runs a command to completion and returns stdout, stderr and its error.
func run(t *testing.T, env []string, bin string, args ...string) (string, string, error) {
	t.Helper()
	return lab.Run(context.Background(), env, bin, args...)
}

// must runs a command that has to succeed and returns its stdout.
func must(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	return lab.Must(t, env, bin, args...)
}

// enrollIdentity creates identity name with attrs and enrolls it into dir (the admin
// named in env asking); it returns dir/NAME.json.
func enrollIdentity(t *testing.T, env []string, dir, name string, attrs ...string) string {
	t.Helper()
	out, err := lab.CLI{Bins: lab.Bins{Umbra: bins.umbra, Agent: bins.agent}, Env: env, Dir: dir}.EnrollIdentity(context.Background(), name, attrs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// enrollRouter creates router name and enrolls it into dir; it returns its data
// directory, dir/NAME.
func enrollRouter(t *testing.T, env []string, dir, name string) string {
	t.Helper()
	data, err := lab.CLI{Bins: lab.Bins{Umbra: bins.umbra, Agent: bins.agent}, Env: env, Dir: dir}.EnrollRouter(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// listJSON runs `umbra edge list KIND -o json` and decodes it.
func listJSON(t *testing.T, env []string, kind string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	out := must(t, env, bins.umbra, "edge", "list", kind, "-o", "json")
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("list %s -o json: %v\n%s", kind, err, out)
	}
	return recs
}

func find(recs []map[string]any, name string) map[string]any {
	for _, r := range recs {
		if r["name"] == name {
			return r
		}
	}
	return nil
}
