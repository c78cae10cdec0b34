package qemu

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/lab"
)

// pollInterval is how often the test looks again for what it waits for.
const pollInterval = 50 * time.Millisecond

// proc is a long-running process whose output lines the test follows.
type proc struct {
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
	err   error
	// keepAs, when set, is a file the output is written to once the process is gone.
	keepAs string
}

// start runs bin in the background; it is killed when the test ends, and if the test
// process dies first (Pdeathsig), so that no QEMU outlives a crashed test.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, strings.TrimRight(sc.Text(), "\r"))
			p.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = p.cmd.Wait()
		pw.Close()
		<-read
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if p.keepAs != "" {
			os.WriteFile(p.keepAs, []byte(p.output()+"\n"), 0o644)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// lineCount returns how many lines the process has written so far.
func (p *proc) lineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLine polls the output until match accepts a line, which it returns; it fails the
// test when the process exits first, when fatal matches a line, or at the deadline.
func (p *proc) waitLine(t *testing.T, what string, timeout time.Duration, match, fatal func(string) bool) string {
	t.Helper()
	return p.waitLineFrom(t, 0, what, timeout, match, fatal)
}

// waitLineFrom is waitLine looking only at lines after the first from.
func (p *proc) waitLineFrom(t *testing.T, from int, what string, timeout time.Duration, match, fatal func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	seen := from
	for {
		exited := p.exited() // before the snapshot: after exit, no line comes later
		p.mu.Lock()
		lines := p.lines[seen:]
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if fatal != nil && fatal(l) {
				t.Fatalf("%s: waiting for %s, got %q", p.name, what, l)
			}
			if match(l) {
				return l
			}
		}
		if exited {
			t.Fatalf("%s exited (%v) before %s", p.name, p.err, what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v", p.name, what, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// keep has the output written to file in dir, when dir is set, once the process is
// gone.
func (p *proc) keep(dir, file string) {
	if dir != "" {
		p.keepAs = filepath.Join(dir, file)
	}
}

// must runs a command to completion and returns its output; it fails the test unless
// the command succeeds.
func must(t *testing.T, env []string, bin string, args ...string) string {
	t.Helper()
	return lab.Must(t, env, bin, args...)
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	lab.WaitUntil(t, timeout, what, cond)
}
