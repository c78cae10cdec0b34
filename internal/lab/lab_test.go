package lab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/internal/lab"
)

// TestProcWaitsForItsLine: a started program's line is found, and a program that exits
// without printing it fails the wait at once rather than at the deadline.
func TestProcWaitsForItsLine(t *testing.T) {
	for _, c := range []struct {
		name, script, prefix string
		wantErr              error
	}{
		{"line-printed-late", "echo starting; sleep 0.2; echo ready port=1; sleep 30", "ready", nil},
		{"line-on-stderr", "echo ready >&2; sleep 30", "ready", nil},
		{"exits-before-line", "echo starting; exit 3", "ready", lab.ErrExited},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := lab.Start(t, "/bin/sh", "-c", c.script)
			ctx, cancel := context.WithTimeout(context.Background(), lab.ReadyTimeout)
			defer cancel()
			t0 := time.Now()
			line, err := p.WaitLine(ctx, c.prefix)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("WaitLine: got error %v, want %v", err, c.wantErr)
			}
			if c.wantErr == nil && !strings.HasPrefix(line, c.prefix) {
				t.Errorf("WaitLine: got line %q, want one starting with %q", line, c.prefix)
			}
			if took := time.Since(t0); took > lab.ReadyTimeout/2 {
				t.Errorf("WaitLine took %v, want well under the deadline", took)
			}
		})
	}
}

// TestProcStopsAndLogs: a program stopped by SIGTERM exits within the bound, and what it
// printed is in its log file as well as in memory.
func TestProcStopsAndLogs(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "p.log")
	p, err := lab.StartCmd(execSh("echo hello; exec sleep 30"), logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lab.ReadyTimeout)
	defer cancel()
	if _, err := p.WaitLine(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	err = p.Stop(syscall.SIGTERM, lab.StopTimeout)
	if !p.Exited() {
		t.Fatalf("still running after Stop (%v)", err)
	}
	if got := lab.CountInFile(logPath, "hello"); got != 1 {
		t.Errorf("log holds %d hellos, want 1", got)
	}
	if got := p.Output(); got != "hello\n" {
		t.Errorf("output %q, want %q", got, "hello\n")
	}
}

// TestEchoServersAnswerByteExact: the TCP echo returns what it was sent, greeting first,
// and the UDP echo answers each datagram with itself.
func TestEchoServersAnswerByteExact(t *testing.T) {
	addr := lab.EchoServer(t, "hi")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 256<<10)
	rand.Read(msg)
	go func() {
		c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("hi\n"), msg...); !bytes.Equal(got, want) {
		t.Errorf("TCP echo: got %d bytes, want %d, byte-exact", len(got), len(want))
	}

	u, err := net.Dial("udp", lab.UDPEchoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(lab.CommandTimeout))
	buf := make([]byte, 2048)
	for _, d := range [][]byte{[]byte("one"), bytes.Repeat([]byte{7}, 1200)} {
		u.Write(d)
		n, err := u.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], d) {
			t.Errorf("UDP echo of %d bytes: got %d (%v), want them back", len(d), n, err)
		}
	}
}

// TestFreePortServesBoth: the address FreePort returns can be listened on for TCP and
// UDP.
func TestFreePortServesBoth(t *testing.T) {
	addr := lab.MustFree(t, lab.FreePort)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("TCP on %s: %v", addr, err)
	}
	ln.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("UDP on %s: %v", addr, err)
	}
	pc.Close()
}

// TestPollSaysWhatItWaitedFor: a condition that never holds fails with its name and
// last error once the timeout passes.
func TestPollSaysWhatItWaitedFor(t *testing.T) {
	err := lab.Poll(context.Background(), 100*time.Millisecond, "the moon", func() (bool, error) { return false, os.ErrNotExist })
	if err == nil || !strings.Contains(err.Error(), "the moon") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error naming the moon and wrapping %v", err, os.ErrNotExist)
	}
}

// TestMeshCarriesACircuit: the in-process mesh brings up a controller, a router and two
// agents, and a dial reaches the program listening for the service, byte-exact both ways.
func TestMeshCarriesACircuit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a controller, a router and two agents")
	}
	m := lab.NewMesh(t, lab.MeshConfig{})
	r := m.AddRouter("r1", lab.RouterConfig{})
	m.Service("echo", "", "drone", "operator")
	drone := m.Agent(m.Enroll("drone", "drone"), agent.Config{Routers: []string{r.Addr}, NoAutoServices: true})
	op := m.Agent(m.Enroll("op", "operator"), agent.Config{Routers: []string{r.Addr}, NoAutoServices: true})
	m.HostEcho(drone, "echo")

	c := lab.Dial(t, op, "echo")
	if err := lab.EchoExact(c, 1<<20, lab.ReadyTimeout); err != nil {
		t.Error(err)
	}
}

// TestStartLoggedWritesOnlyTheFile: a program started with its output in a file is read
// back from the file, and its tail names the log.
func TestStartLoggedWritesOnlyTheFile(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "agent.log")
	p, err := lab.StartLogged(execSh("for i in 1 2 3 4 5; do echo line $i; done; echo ready; exec sleep 30"), logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), lab.ReadyTimeout)
	defer cancel()
	if _, err := p.WaitLine(ctx, "ready"); err != nil {
		t.Fatal(err)
	}
	if got, want := p.LogTail(2), "--- agent.log\nline 5\nready"; got != want {
		t.Errorf("LogTail(2) = %q, want %q", got, want)
	}
	if err := p.Stop(syscall.SIGTERM, lab.StopTimeout); err == nil {
		t.Errorf("Stop of a sleeping shell: got a clean exit, want the signal's")
	}
}

// TestSocketsOfFindsAListener: a TCP listener of this process is among its sockets, in
// LISTEN, at its address.
func TestSocketsOfFindsAListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	socks, err := lab.SocketsOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp 0A " + ln.Addr().String() + " 0.0.0.0:0"
	for _, s := range socks {
		if s.String() == want {
			return
		}
	}
	t.Errorf("sockets %v: want one %q", socks, want)
}

// TestRunnerLogsAndRuns: a started program's output lands in its log under Dir, a
// command that fails quotes what it printed, and Prepare sees every command.
func TestRunnerLogsAndRuns(t *testing.T) {
	prepared := 0
	r := lab.Runner{Ctx: context.Background(), Dir: t.TempDir(), Prepare: func(*exec.Cmd) { prepared++ }}
	cmd, err := r.Start("hello", "/bin/sh", "-c", "echo hello from the log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if got := r.Logs(0); !strings.Contains(got, "--- hello.log\nhello from the log") {
		t.Errorf("logs %q, want hello.log with its line", got)
	}
	err = r.Run("/bin/sh", "-c", "echo went wrong; exit 2")
	if err == nil || !strings.Contains(err.Error(), "went wrong") {
		t.Errorf("Run of a failing command: got %v, want an error quoting its output", err)
	}
	if prepared != 2 {
		t.Errorf("Prepare saw %d commands, want 2", prepared)
	}
}
