package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Timing of processes the lab runs: generous, since the machine is shared.
const (
	// ReadyTimeout is how long a started program may take to say it is ready.
	ReadyTimeout = 30 * time.Second
	// StopTimeout is how long a signalled program may take to exit before it is killed.
	StopTimeout = 15 * time.Second
	// pollEvery is how often output, files and sockets are polled for readiness.
	pollEvery = 20 * time.Millisecond
	// waitDelay bounds how long Wait copies output after the program exits, when a child
	// it left behind holds its stdout open.
	waitDelay = 2 * time.Second
	// maxOutput is how much of a program's output a Proc keeps in memory (the front is
	// dropped beyond it); a log file keeps all of it.
	maxOutput = 8 << 20
)

// ErrExited is the error, matched with errors.Is, of waiting on a program that exited.
var ErrExited = errors.New("process exited")

// Proc is a running program whose output (stdout and stderr together) can be waited on.
type Proc struct {
	// Cmd is the started command; its Process may be signalled directly.
	Cmd     *exec.Cmd
	out     outBuffer
	log     *os.File
	logPath string
	// fileOnly: the output goes straight to logPath (StartLogged), none is kept in memory.
	fileOnly bool
	done     chan struct{}
	err      error
}

// StartCmd starts cmd, keeping its output in memory and, when logPath is set, appending
// it to that file as well. cmd's Stdout and Stderr must be unset.
func StartCmd(cmd *exec.Cmd, logPath string) (*Proc, error) {
	p := &Proc{Cmd: cmd, logPath: logPath, done: make(chan struct{})}
	var w io.Writer = &p.out
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lab: log: %w", err)
		}
		p.log, w = f, io.MultiWriter(&p.out, f)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = waitDelay
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// StartLogged starts cmd with its output (stdout and stderr) going straight to the file
// logPath, created anew: the program writes to the file itself, so a long benchmark run
// costs this process no copying. Output and the waits read the file.
func StartLogged(cmd *exec.Cmd, logPath string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("lab: log: %w", err)
	}
	p := &Proc{Cmd: cmd, log: f, logPath: logPath, fileOnly: true, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = f, f
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Proc) start() error {
	if err := p.Cmd.Start(); err != nil {
		p.closeLog()
		return fmt.Errorf("lab: start %s: %w", filepath.Base(p.Cmd.Path), err)
	}
	cmd := p.Cmd
	go func() {
		p.err = cmd.Wait()
		p.closeLog()
		close(p.done)
	}()
	return nil
}

func (p *Proc) closeLog() {
	if p.log != nil {
		p.log.Close()
	}
}

// Start runs bin with args in the background for the test t: it is killed when the test
// ends, and its output is logged if the test failed.
func Start(t TB, bin string, args ...string) *Proc {
	t.Helper()
	p, err := StartCmd(exec.Command(bin, args...), "")
	if err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s %v:\n%s", filepath.Base(bin), args, p.Output())
		}
	})
	return p
}

// Output is everything the program printed so far (of a StartLogged program, what its
// log file holds).
func (p *Proc) Output() string {
	if p.fileOnly {
		data, _ := os.ReadFile(p.logPath)
		return string(data)
	}
	return p.out.String()
}

// LogTail is the last n lines of the program's output under a line naming its log, for
// an error message.
func (p *Proc) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- " + filepath.Base(p.logPath) + "\n" + strings.Join(lines, "\n")
}

// Tail is the last n bytes of the program's output, for an error message.
func (p *Proc) Tail(n int) string {
	s := p.Output()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// Done is closed once the program has exited; Err then says how.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the program's exit error (nil for a clean exit), once Done is closed.
func (p *Proc) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Exited reports whether the program has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the program's process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// WaitLine polls the output until a line starts with prefix and returns that line; it
// fails once the program exits or ctx ends first.
func (p *Proc) WaitLine(ctx context.Context, prefix string) (string, error) {
	return p.waitOutput(ctx, prefix, func(out string) (string, bool) {
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, prefix) {
				return line, true
			}
		}
		return "", false
	})
}

// WaitContains polls the output until it contains s; it fails once the program exits
// or ctx ends first.
func (p *Proc) WaitContains(ctx context.Context, s string) error {
	_, err := p.waitOutput(ctx, s, func(out string) (string, bool) { return "", strings.Contains(out, s) })
	return err
}

func (p *Proc) waitOutput(ctx context.Context, what string, found func(string) (string, bool)) (string, error) {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		if line, ok := found(p.Output()); ok {
			return line, nil
		}
		select {
		case <-p.done:
			if line, ok := found(p.Output()); ok {
				return line, nil
			}
			return "", fmt.Errorf("%w (%v) before printing %q", ErrExited, p.err, what)
		case <-ctx.Done():
			return "", fmt.Errorf("no %q: %w", what, ctx.Err())
		case <-tick.C:
		}
	}
}

// WaitFor is WaitLine for a test: it fails t, with the output, unless a line starting
// with prefix comes within timeout.
func (p *Proc) WaitFor(t TB, prefix string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	line, err := p.WaitLine(ctx, prefix)
	switch {
	case errors.Is(err, ErrExited):
		t.Fatalf("process exited (%v) before printing %q:\n%s", p.err, prefix, p.Output())
	case err != nil:
		t.Fatalf("no line starting with %q within %v:\n%s", prefix, timeout, p.Output())
	}
	return line
}

// Stop sends sig and waits up to timeout for the program to exit, then kills it. It
// returns the exit error of a program that exited by itself, or an error saying it had
// to be killed.
func (p *Proc) Stop(sig os.Signal, timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("lab: %s still running %v after %v: killed", filepath.Base(p.Cmd.Path), timeout, sig)
	}
}

// StopCmd sends sig to a command started elsewhere (not through lab), waits up to
// timeout for it to exit, then kills it. A command never started, or already waited
// for, is left alone. Not for a Proc's Cmd: use its Stop.
func StopCmd(cmd *exec.Cmd, sig os.Signal, timeout time.Duration) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
	}
}

// StopT sends SIGTERM and fails t unless the program exits cleanly within StopTimeout.
func (p *Proc) StopT(t TB) {
	t.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", p.err, p.Output())
		}
	case <-time.After(StopTimeout):
		t.Fatalf("still running %v after SIGTERM", StopTimeout)
	}
}

// Kill kills the program (SIGKILL) and waits for it to exit.
func (p *Proc) Kill() {
	p.Cmd.Process.Kill()
	<-p.done
}

// outBuffer is a program's output, written by exec's copier and read by waiters.
type outBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *outBuffer) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Write(p)
	if over := o.b.Len() - maxOutput; over > 0 {
		o.b.Next(over)
	}
	return len(p), nil
}

func (o *outBuffer) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
