package sdk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/umbranet/umbra/agent"
)

// Load of the in-process tests.
const (
	// circuits is how many TCP circuits run at once.
	circuits = 50
	// circuitBytes is what each circuit echoes.
	circuitBytes = 64 << 10
	// dialAttempts is how many times a circuit's Dial is tried.
	dialAttempts = 3
	// datagrams is how many datagrams the UDP echo sends, one every datagramEvery.
	datagrams     = 200
	datagramEvery = 2 * time.Millisecond
	// quietEnd is how long the echo reader waits for a datagram before it stops.
	quietEnd = 5 * time.Second
)

// enroll creates identity name with attributes and enrolls it through the SDK.
func (l *lab) enroll(name string, attrs ...string) *agent.Identity {
	l.t.Helper()
	tok, err := os.ReadFile(l.token(name, attrs...))
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	id, err := agent.Enroll(ctx, string(tok), agent.EnrollOptions{Path: filepath.Join(l.dir, name+".json")})
	if err != nil {
		l.t.Fatalf("enroll %s: %v", name, err)
	}
	if id.Name() != name {
		l.t.Fatalf("enrolled identity is %q, want %q", id.Name(), name)
	}
	return id
}

// agent starts an agent for id pinned to the lab's router; it is closed when the test
// ends.
func (l *lab) agent(id *agent.Identity) *agent.Agent {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	a, err := agent.New(ctx, agent.Config{Identity: id, Routers: []string{l.router}})
	if err != nil {
		l.t.Fatalf("agent.New(%s): %v", id.Name(), err)
	}
	l.t.Cleanup(func() {
		if err := a.Close(); err != nil {
			l.t.Errorf("Close %s: %v", id.Name(), err)
		}
	})
	return a
}

// TestDialAndListenFiftyCircuits: a program hosts a service with Listen and another
// opens 50 circuits to it at once with Dial; every circuit echoes its own bytes exactly,
// the host sees the dialer's identity on each, and the hosting agent's status counts
// the service as served in process.
func TestDialAndListenFiftyCircuits(t *testing.T) {
	l := startLab(t)
	l.service("echo", "server", "client")
	srv := l.agent(l.enroll("srv1", "server"))
	cliID := l.enroll("cli1", "client")
	cli := l.agent(cliID)
	events := cli.Events(t.Context())

	ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
	defer cancel()
	ln, err := srv.Listen(ctx, "echo")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	if _, err := srv.Listen(ctx, "echo"); err == nil {
		t.Errorf("a second Listen on echo succeeded, want an error")
	}
	if _, err := srv.Listen(ctx, "nosuch"); !errors.Is(err, agent.ErrNoService) {
		t.Errorf("Listen(nosuch) = %v, want ErrNoService", err)
	}
	var served sync.WaitGroup
	callers := make(chan string, circuits)
	served.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			callers <- c.(*agent.Conn).Identity()
			served.Go(func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*agent.Conn).CloseWrite()
			})
		}
	})

	errs := make(chan error, circuits)
	var dialers sync.WaitGroup
	for i := range circuits {
		dialers.Go(func() { errs <- echoOnce(ctx, cli, i) })
	}
	dialers.Wait()
	close(errs)
	echoed := 0
	for err := range errs {
		if err != nil {
			t.Error(err)
			continue
		}
		echoed++
	}
	// Every circuit that echoed was accepted; each accepted one names its dialer.
	for range echoed {
		if got := <-callers; got != "cli1" {
			t.Errorf("accepted a circuit from %q, want cli1", got)
		}
	}

	st := srv.Status()
	if len(st.Hosting) != 1 || st.Hosting[0].Service != "echo" || st.Hosting[0].State != "bound" || st.Hosting[0].Address != "tcp:in-process" {
		t.Errorf("host status hosting = %+v, want echo bound tcp:in-process", st.Hosting)
	}
	svcs := cli.Services()
	if len(svcs) != 1 || svcs[0].Name != "echo" || !svcs[0].CanDial || svcs[0].CanBind {
		t.Errorf("dialer's Services() = %+v, want echo, dial only", svcs)
	}
	select {
	case e := <-events:
		if e.State != agent.LinkConnecting && e.State != agent.LinkUp {
			t.Errorf("first link event %+v, want connecting or up", e)
		}
	case <-time.After(readyTimeout):
		t.Errorf("no link event within %v", readyTimeout)
	}

	ln.Close()
	served.Wait()
	if _, err := cli.Dial(ctx, "echo"); err == nil {
		t.Errorf("Dial after the listener closed succeeded, want an error")
	}
}

// echoOnce opens one circuit to echo, sends circuitBytes of its own and checks they
// come back exactly.
func echoOnce(ctx context.Context, a *agent.Agent, i int) error {
	var c *agent.Conn
	var err error
	// A dial whose setup meets the host's router link being replaced (on a machine so
	// busy that heartbeats stall for 1.5 s) is refused; a program dials again.
	for range dialAttempts {
		if c, err = a.Dial(ctx, "echo"); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("circuit %d: Dial, %d times: %w", i, dialAttempts, err)
	}
	defer c.Close()
	if c.Identity() != "srv1" {
		return fmt.Errorf("circuit %d: host is %q, want srv1", i, c.Identity())
	}
	want := make([]byte, circuitBytes)
	rand.NewChaCha8([32]byte{byte(i)}).Read(want)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("circuit %d: read: %w", i, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("circuit %d: write: %w", i, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("circuit %d: got %d bytes back, want the %d sent, byte for byte", i, len(got), len(want))
	}
	return nil
}

// TestDialPacketAndListenPacket: datagrams a program sends with DialPacket reach a
// program's ListenPacket one for one, tagged with the dialer's identity, and its answers
// come back on the same circuit.
func TestDialPacketAndListenPacket(t *testing.T) {
	l := startLab(t)
	l.service("telemetry", "gcs", "drone")
	gcs := l.agent(l.enroll("gcs1", "gcs"))
	drone := l.agent(l.enroll("drone1", "drone"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
	defer cancel()
	pl, err := gcs.ListenPacket(ctx, "telemetry")
	if err != nil {
		t.Fatalf("ListenPacket: %v", err)
	}
	defer pl.Close()
	from := make(chan string, 1)
	readerDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, addr, err := pl.ReadFrom(buf)
			if err != nil {
				readerDone <- err
				return
			}
			select {
			case from <- addr.(*agent.Addr).Identity:
			default:
			}
			pl.WriteTo(buf[:n], addr)
		}
	}()
	pc, err := drone.DialPacket(ctx, "telemetry")
	if err != nil {
		t.Fatalf("DialPacket: %v", err)
	}
	defer pc.Close()
	got := make(chan int, datagrams)
	go func() {
		buf := make([]byte, 2048)
		for {
			pc.SetReadDeadline(time.Now().Add(quietEnd))
			n, err := pc.Read(buf)
			if err != nil {
				close(got)
				return
			}
			if n == 64 {
				got <- int(binary.BigEndian.Uint32(buf))
			}
		}
	}()
	msg := make([]byte, 64)
	for i := range datagrams {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := pc.Write(msg); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
		time.Sleep(datagramEvery) // a telemetry rate, not a flood
	}
	seen := map[int]bool{}
	deadline := time.After(readyTimeout)
collect:
	for len(seen) < datagrams {
		select {
		case i, ok := <-got:
			if !ok { // the reader heard nothing for readyTimeout
				break collect
			}
			seen[i] = true
		case <-deadline:
			break collect
		}
	}
	// Datagrams may be lost, but not on loopback in numbers.
	if len(seen) < datagrams*9/10 {
		t.Fatalf("got %d of %d echoes back, want at least 90 %%", len(seen), datagrams)
	}
	if who := <-from; who != "drone1" {
		t.Errorf("datagrams came from %q, want drone1", who)
	}
	if _, err := pl.WriteTo([]byte("x"), &net.UDPAddr{}); err == nil {
		t.Errorf("WriteTo a UDP address succeeded, want an error")
	}
	// Closing the agent ends a ReadFrom that is waiting, as closing a socket would, and
	// Close itself returns.
	closed := make(chan struct{})
	go func() {
		gcs.Close()
		close(closed)
	}()
	select {
	case err := <-readerDone:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("ReadFrom after the agent closed: %v, want net.ErrClosed", err)
		}
	case <-time.After(readyTimeout):
		t.Fatalf("ReadFrom still waiting %v after the agent's Close", readyTimeout)
	}
	select {
	case <-closed:
	case <-time.After(readyTimeout):
		t.Fatalf("the agent's Close did not return within %v", readyTimeout)
	}
}

// TestListenTakesOverAHostAddress: an agent with the zero Config delivers a service that
// names a host address there, as umbra-agent does; a program's Listen takes the service
// over, and once the listener closes the address serves it again.
func TestListenTakesOverAHostAddress(t *testing.T) {
	l := startLab(t)
	addr := greeter(t, "from the address")
	l.edge("create", "service", "greet", "--host", "tcp:"+addr)
	l.edge("create", "service-policy", "greet-bind", "--type", "bind", "--identities", "#server", "--services", "@greet")
	l.edge("create", "service-policy", "greet-dial", "--type", "dial", "--identities", "#client", "--services", "@greet")
	srv := l.agent(l.enroll("srv2", "server"))
	cli := l.agent(l.enroll("cli2", "client"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
	defer cancel()

	waitGreeting(t, ctx, cli, "from the address")
	ln, err := srv.Listen(ctx, "greet")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "from the program\n")
			c.Close()
		}
	}()
	if got := greeting(ctx, cli); got != "from the program\n" {
		t.Errorf("after Listen, a circuit got %q, want the program's greeting", got)
	}
	ln.Close()
	waitGreeting(t, ctx, cli, "from the address")
}

// greeter serves a line on a loopback TCP address until the test ends.
func greeter(t *testing.T, line string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, line+"\n")
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// greeting dials greet and returns what it says, or the error.
func greeting(ctx context.Context, a *agent.Agent) string {
	c, err := a.Dial(ctx, "greet")
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// waitGreeting dials greet until it says want, polling until ctx ends.
func waitGreeting(t *testing.T, ctx context.Context, a *agent.Agent, want string) {
	t.Helper()
	var got string
	for ctx.Err() == nil {
		if got = greeting(ctx, a); got == want+"\n" {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("greet says %q, want %q", got, want)
}
