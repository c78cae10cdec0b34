// Package e2e starts the real umbra and umbra-agent binaries and checks what an operator
// would see: commands, files, listings, and bytes on the wire.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Deadlines of the harness: generous, since the machine is shared.
const (
	buildTimeout   = 5 * time.Minute
	readyTimeout   = 30 * time.Second
	commandTimeout = 30 * time.Second
	stopTimeout    = 15 * time.Second
)

// bins holds the paths of the binaries TestMain built.
var bins struct{ umbra, agent string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "umbra-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.umbra = filepath.Join(dir, "umbra")
	bins.agent = filepath.Join(dir, "umbra-agent")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	for out, pkg := range map[string]string{bins.umbra: "github.com/umbranet/umbra/cmd/umbra", bins.agent: "github.com/umbranet/umbra/cmd/umbra-agent"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	cancel()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a long-running binary whose output the test can wait on.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error
}

// start runs bin with args in the background; it is killed when the test ends.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(bin), args, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor polls the output until a line starts with prefix, and returns that line.
func (p *proc) waitFor(t *testing.T, prefix string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.output(), "\n") {
			if strings.HasPrefix(line, prefix) {
				return line
			}
		}
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before printing %q:\n%s", p.err, prefix, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no line starting with %q within %v:\n%s", prefix, timeout, p.output())
	return ""
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.output())
		}
	case <-time.After(stopTimeout):
		t.Fatalf("still running %v after SIGTERM", stopTimeout)
	}
}

// run runs a command to completion and returns stdout, stderr and its error.
func run(t *testing.T, env []string, bin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// must runs a command that has to succeed and returns its stdout.
func must(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, env, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, errOut)
	}
	return out
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
