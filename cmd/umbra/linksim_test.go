package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// Budgets of the linksim command tests.
const (
	// cmdTimeout bounds every wait on the running command.
	cmdTimeout = 10 * time.Second
	// echoTimeout bounds a wait for an echo that must come.
	echoTimeout = 3 * time.Second
	// silenceProbe is how long a test waits for an echo that must not come.
	silenceProbe = 300 * time.Millisecond
)

// syncBuffer is a bytes.Buffer the command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runningCmd is `umbra linksim …` running in this process.
type runningCmd struct {
	out    *syncBuffer
	stdin  *io.PipeWriter
	cancel context.CancelFunc
	done   chan error
}

// startLinksim runs `umbra ARGS…` in the background, as main would, and waits for its
// ready line. Ending the context stands in for SIGINT.
func startLinksim(t *testing.T, args ...string) *runningCmd {
	t.Helper()
	r := &runningCmd{out: &syncBuffer{}, done: make(chan error, 1)}
	var stdin *io.PipeReader
	stdin, r.stdin = io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(r.out)
	root.SetErr(r.out)
	go func() { r.done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		r.stdin.Close()
		select {
		case <-r.done:
		case <-time.After(cmdTimeout):
			t.Errorf("got the command still running %v after it was stopped, want it to exit", cmdTimeout)
		}
	})
	r.waitOutput(t, "ready", 1)
	return r
}

// waitOutput waits until the output holds at least n lines starting with prefix.
func (r *runningCmd) waitOutput(t *testing.T, prefix string, n int) {
	t.Helper()
	deadline := time.Now().Add(cmdTimeout)
	for countLines(r.out.String(), prefix) < n {
		select {
		case err := <-r.done:
			t.Fatalf("got the command ended (%v) with output %q, want %d lines starting %q", err, r.out, n, prefix)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("got output %q after %v, want %d lines starting %q", r.out, cmdTimeout, n, prefix)
		}
		time.Sleep(time.Millisecond)
	}
}

func countLines(out, prefix string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			n++
		}
	}
	return n
}

// send writes one command line to the command's stdin.
func (r *runningCmd) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(r.stdin, line+"\n"); err != nil {
		t.Fatalf("write %q to stdin: %v", line, err)
	}
}

// stop ends the command as SIGINT would and returns its error.
func (r *runningCmd) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(cmdTimeout):
		t.Fatalf("got the command still running %v after SIGINT, want it to exit", cmdTimeout)
		return nil
	}
}

// readyField returns the value of key=value in the ready line.
func (r *runningCmd) readyField(t *testing.T, key string) string {
	t.Helper()
	for _, line := range strings.Split(r.out.String(), "\n") {
		if !strings.HasPrefix(line, "ready") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
	}
	t.Fatalf("got no %s= in the ready line of %q", key, r.out)
	return ""
}

// udpEcho serves a UDP echo on conn until the test ends.
func udpEcho(t *testing.T, conn net.PacketConn) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
}

// echoes reports whether a datagram sent on c comes back within timeout.
func echoes(t *testing.T, c net.Conn, timeout time.Duration) bool {
	t.Helper()
	msg := fmt.Appendf(nil, "ping %d", rand.Uint64())
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], msg) {
			return true
		}
	}
}

func TestLinksimUDP(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpEcho(t, conn)
	profile := filepath.Join(t.TempDir(), "slow.json")
	if err := os.WriteFile(profile, []byte(`{"up": {"delay": "5ms"}, "down": {"delay": "5ms"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startLinksim(t, "linksim", "udp", "--target", conn.LocalAddr().String(), "--profile-file", profile, "--up", "jitter=1ms")
	c, err := net.Dial("udp", r.readyField(t, "listen"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	steps := []struct {
		name  string
		do    func(t *testing.T)
		echo  bool
		reply string
	}{
		{"started from the profile file and flags, the link carries datagrams", func(t *testing.T) { r.send(t, "show") }, true, "up: delay=5ms jitter=1ms"},
		{"blackout on stops them", func(t *testing.T) { r.send(t, "blackout on") }, false, "blackout on"},
		{"blackout off lets them through again", func(t *testing.T) { r.send(t, "blackout off") }, true, "blackout off"},
		{"SIGUSR1 blacks the link out", func(t *testing.T) { sigusr1(t) }, false, "blackout on"},
		{"a second SIGUSR1 ends the blackout", func(t *testing.T) { sigusr1(t) }, true, "blackout off"},
		{"loss 1 drops everything", func(t *testing.T) { r.send(t, "loss 1") }, false, "up: loss=1"},
		{"a profile replaces the settings", func(t *testing.T) { r.send(t, "profile clean") }, true, "up: clean"},
		{"a bad command is answered with an error and changes nothing", func(t *testing.T) { r.send(t, "loss 7") }, true, "error: linksim: loss 7"},
		{"stats prints the counters", func(t *testing.T) { r.send(t, "stats") }, true, "up: in="},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := countLines(r.out.String(), st.reply)
			st.do(t)
			r.waitOutput(t, st.reply, before+1)
			timeout := echoTimeout
			if !st.echo {
				timeout = silenceProbe
			}
			if got := echoes(t, c, timeout); got != st.echo {
				t.Errorf("got echo %v, want %v (output %q)", got, st.echo, r.out)
			}
		})
	}

	if err := r.stop(t); err != nil {
		t.Errorf("got %v on SIGINT, want a clean exit", err)
	}
	if out := r.out.String(); !strings.Contains(out, "stopped\nup: in=") {
		t.Errorf("got output %q, want it to end with stopped and the counters", out)
	}
}

// sigusr1 sends SIGUSR1 to this process, where the running command has asked for it.
func sigusr1(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatalf("kill: %v", err)
	}
}

func TestLinksimNetns(t *testing.T) {
	if err := linksim.CheckNetns(); err != nil {
		t.Skipf("skipping the network-namespace test: %v", err)
	}
	// Unique names, so runs in parallel and leftovers never collide.
	nsA := fmt.Sprintf("lsim-cli-%08x-a", rand.Uint32())
	nsB := strings.TrimSuffix(nsA, "-a") + "-b"
	r := startLinksim(t, "linksim", "netns", "--ns-a", nsA, "--ns-b", nsB,
		"--addr-a", "10.79.0.1/24", "--addr-b", "10.79.0.2/24", "--delay", "10ms")
	if got := r.readyField(t, "ns-a"); got != nsA {
		t.Errorf("got ns-a=%s in the ready line, want %s", got, nsA)
	}

	var server net.PacketConn
	err := linksim.InNamespace(nsB, func() (err error) {
		server, err = net.ListenPacket("udp", "10.79.0.2:0")
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", nsB, err)
	}
	udpEcho(t, server)
	var client net.Conn
	err = linksim.InNamespace(nsA, func() (err error) {
		client, err = net.Dial("udp", server.LocalAddr().String())
		return err
	})
	if err != nil {
		t.Fatalf("dial from %s: %v", nsA, err)
	}
	defer client.Close()

	start := time.Now()
	if !echoes(t, client, echoTimeout) {
		t.Fatalf("got no echo from side b through the link, want one")
	}
	if rtt := time.Since(start); rtt < 20*time.Millisecond {
		t.Errorf("got RTT %v, want >= 20ms from --delay 10ms each way", rtt)
	}
	r.send(t, "blackout on")
	r.waitOutput(t, "blackout on", 1)
	if echoes(t, client, silenceProbe) {
		t.Errorf("got an echo during the blackout, want none")
	}

	if err := r.stop(t); err != nil {
		t.Errorf("got %v on SIGINT, want a clean exit", err)
	}
	for _, ns := range []string{nsA, nsB} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("got namespace %s after exit (%v), want it deleted", ns, err)
		}
	}
}

func TestLinksimProfiles(t *testing.T) {
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		root := newRoot()
		root.SetArgs(args)
		root.SetOut(&out)
		if err := root.Execute(); err != nil {
			t.Fatalf("umbra %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
	required := []string{"telemetry-radio", "lte-bad", "mesh-radio", "blackout-30s"}
	t.Run("text lists every profile with its parameters", func(t *testing.T) {
		out := run(t, "linksim", "profiles")
		for _, name := range required {
			if !strings.Contains(out, name+"\n") {
				t.Errorf("got no %s in %q, want every profile", name, out)
			}
		}
		if want := "loss=0.05 delay=100ms jitter=20ms rate=64k queue=16"; !strings.Contains(out, want) {
			t.Errorf("got %q, want telemetry-radio's parameters %q", out, want)
		}
	})
	t.Run("json is the profile-file format", func(t *testing.T) {
		var all map[string]json.RawMessage
		if err := json.Unmarshal([]byte(run(t, "linksim", "profiles", "-o", "json")), &all); err != nil {
			t.Fatalf("got %v, want a JSON object", err)
		}
		for _, name := range required {
			got, err := linksim.ParseConditions(all[name])
			want, _ := linksim.Profile(name)
			if err != nil || got.Up != want.Up || len(got.Schedule) != len(want.Schedule) {
				t.Errorf("got %s as %+v, %v, want %+v", name, got, err, want)
			}
		}
	})
}

func TestLinksimRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown profile", []string{"udp", "--target", "127.0.0.1:9", "--profile", "moon"}, `unknown profile "moon"`},
		{"profile and profile file together", []string{"udp", "--target", "127.0.0.1:9", "--profile", "clean", "--profile-file", "x.json"}, "exclusive"},
		{"missing profile file", []string{"udp", "--target", "127.0.0.1:9", "--profile-file", "/nonexistent/x.json"}, "no such file"},
		{"loss above one", []string{"udp", "--target", "127.0.0.1:9", "--loss", "2"}, "want a probability"},
		{"direction setting without a value", []string{"udp", "--target", "127.0.0.1:9", "--down", "loss"}, "want NAME=VALUE"},
		{"direction setting of an unknown parameter", []string{"udp", "--target", "127.0.0.1:9", "--up", "latency=1s"}, "unknown parameter"},
		{"udp without a target", []string{"udp"}, `"target" not set`},
		{"unresolvable target", []string{"udp", "--target", "no-port"}, "target"},
		{"netns address without a prefix", []string{"netns", "--addr-a", "10.0.0.1"}, "--addr-a"},
		{"profiles in an unknown format", []string{"profiles", "-o", "yaml"}, "want text or json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := newRoot()
			root.SetArgs(append([]string{"linksim"}, tt.args...))
			root.SetIn(strings.NewReader(""))
			root.SetOut(io.Discard)
			root.SetErr(io.Discard)
			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
			defer cancel()
			err := root.ExecuteContext(ctx)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got error %v, want one line containing %q", err, tt.want)
			}
		})
	}
}
