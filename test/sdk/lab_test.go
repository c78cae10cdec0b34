// Package sdk checks the agent package as a program outside this module uses it: a
// separate module that imports it and serves and fetches HTTP through it, and the SDK's
// Dial, Listen, DialPacket and ListenPacket under load, against a real controller and
// router (a quickstart of the real umbra binary).
package sdk

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
	"testing"
	"time"
)

// Deadlines of the harness: generous, since the machine is shared.
const (
	buildTimeout   = 5 * time.Minute
	readyTimeout   = 30 * time.Second
	commandTimeout = 30 * time.Second
)

// workDir is TestMain's temporary directory; umbraBin, the umbra binary it built.
var workDir, umbraBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "umbra-sdk")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir, umbraBin = dir, filepath.Join(dir, "umbra")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", umbraBin, "github.com/umbranet/umbra/cmd/umbra")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build umbra: %v\n%s", err, b)
		os.Exit(1)
	}
	cancel()
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running program whose output the test can wait on.
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

// waitFor polls the output until a line starts with prefix.
func (p *proc) waitFor(t *testing.T, prefix string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.output(), "\n") {
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("process exited (%v) before printing %q:\n%s", p.err, prefix, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no line starting with %q within %v:\n%s", prefix, timeout, p.output())
}

// must runs a command to completion, which has to succeed, and returns its stdout.
func must(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// lab is a running quickstart: a controller and an edge router, and an admin to ask.
type lab struct {
	t      *testing.T
	dir    string
	router string
	env    []string
}

func startLab(t *testing.T) *lab {
	t.Helper()
	dir := t.TempDir()
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, umbraBin, "quickstart", "--dir", qsDir)
	qs.waitFor(t, "ready", readyTimeout)
	var q struct {
		Router string `json:"router"`
		Admin  string `json:"admin"`
	}
	data, err := os.ReadFile(filepath.Join(qsDir, "quickstart.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &q); err != nil {
		t.Fatalf("quickstart.json: %v", err)
	}
	return &lab{t: t, dir: dir, router: q.Router, env: []string{"UMBRA_ADMIN=" + q.Admin}}
}

// edge runs `umbra edge ARGS...`, which must succeed.
func (l *lab) edge(args ...string) string {
	l.t.Helper()
	return must(l.t, l.env, umbraBin, append([]string{"edge"}, args...)...)
}

// service creates service name with no host address (programs host it through Listen),
// hosted by identities with attribute host and dialed by those with attribute dial.
func (l *lab) service(name, host, dial string) {
	l.t.Helper()
	l.edge("create", "service", name)
	l.edge("create", "service-policy", name+"-bind", "--type", "bind", "--identities", "#"+host, "--services", "@"+name)
	l.edge("create", "service-policy", name+"-dial", "--type", "dial", "--identities", "#"+dial, "--services", "@"+name)
}

// token creates identity name with attributes and returns the path of its one-time
// enrollment token.
func (l *lab) token(name string, attrs ...string) string {
	l.t.Helper()
	jwt := filepath.Join(l.dir, name+".jwt")
	args := []string{"create", "identity", name, "--jwt-out", jwt}
	for _, a := range attrs {
		args = append(args, "--attr", a)
	}
	l.edge(args...)
	return jwt
}
