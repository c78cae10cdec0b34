// Package sdk checks the agent package as a program outside this module uses it: a
// separate module that imports it and serves and fetches HTTP through it, and the SDK's
// Dial, Listen, DialPacket and ListenPacket under load, against a real controller and
// router (a quickstart of the real umbra binary).
package sdk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	umbralab "github.com/umbranet/umbra/internal/lab"
)

// Deadlines of the harness (internal/lab's): generous, since the machine is shared.
const (
	readyTimeout   = umbralab.ReadyTimeout
	commandTimeout = umbralab.CommandTimeout
)

// workDir is TestMain's temporary directory; umbraBin, the umbra binary it built.
var workDir, umbraBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "umbra-sdk")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = dir
	if umbraBin, err = umbralab.BuildUmbra(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running program whose output the test can wait on (internal/lab's Proc).
type proc struct {
	*umbralab.Proc
	done <-chan struct{}
}

// start runs bin with args in the background; it is killed when the test ends.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := umbralab.Start(t, bin, args...)
	return &proc{Proc: p, done: p.Done()}
}

func (p *proc) output() string { return p.Output() }

// waitFor polls the output until a line starts with prefix.
func (p *proc) waitFor(t *testing.T, prefix string, timeout time.Duration) {
	t.Helper()
	p.WaitFor(t, prefix, timeout)
}

// must runs a command to completion, which has to succeed, and returns its stdout.
func must(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	return umbralab.Must(t, env, bin, args...)
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
	_, q := umbralab.StartQuickstart(t, umbraBin, filepath.Join(dir, "qs"))
	return &lab{t: t, dir: dir, router: q.Router, env: []string{umbralab.AdminEnv(q.Admin)}}
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
