package agent_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/internal/linksim"
)

// Bounds of the agent's in-process tests: generous, since the machine is shared, and
// far from what the behaviour under test would take without it.
const (
	// resumeTimeout is how soon a circuit must carry bytes again after its link was
	// stranded: the stall is noticed after 1.5 s of silence and a fresh connection races
	// it within about a second; without the stall logic the stranded link would wait for
	// QUIC's idle timeout (30 s on the LAN profile).
	resumeTimeout = 15 * time.Second
	// raceTimeout is how soon an agent on the radio profile whose first router is behind
	// a dead radio must be up on the second: a fresh attempt starts every second; without
	// the race it would wait out the 10 s it gives a handshake on the first.
	raceTimeout = 7 * time.Second
)

// echoFleet is a router, a drone hosting "echo" through Listen on it directly, and an
// operator allowed to dial echo whose routers the test picks.
type echoFleet struct {
	m     *lab.Mesh
	r     *lab.Router
	drone *agent.Agent
}

func startEchoFleet(t *testing.T) *echoFleet {
	t.Helper()
	m := lab.NewMesh(t, lab.MeshConfig{})
	r := m.AddRouter("r1", lab.RouterConfig{})
	m.Service("echo", "", "drone", "operator")
	drone := m.Agent(m.Enroll("drone", "drone"), agent.Config{Routers: []string{r.Addr}, NoAutoServices: true})
	m.HostEcho(drone, "echo")
	return &echoFleet{m: m, r: r, drone: drone}
}

func dialEcho(t *testing.T, op *agent.Agent) *agent.Conn {
	t.Helper()
	return lab.Dial(t, op, "echo")
}

// TestAgentReplacesAStalledLinkAndTheCircuitResumes: the operator's radio strands its
// connection (its packets vanish both ways, the router never hears it close) while a
// fresh connection would get through. The agent finds the link stalled, replaces it with
// a fresh connection, and the circuit open across it carries on byte-exact: no byte lost,
// none repeated.
func TestAgentReplacesAStalledLinkAndTheCircuitResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process mesh")
	}
	f := startEchoFleet(t)
	link, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
	if err != nil {
		t.Fatal(err)
	}
	radio := f.m.Radio(f.r.Addr, link)
	op := f.m.Agent(f.m.Enroll("op", "operator"), agent.Config{Routers: []string{radio.Addr().String()}, NoAutoServices: true})
	c := dialEcho(t, op)
	before := op.Status()

	var seq uint64
	if err := echoSeq(c, &seq, 100, lab.ReadyTimeout); err != nil {
		t.Fatalf("before the stall: %v", err)
	}
	radio.Strand()
	stranded := time.Now()
	if err := echoSeq(c, &seq, 100, resumeTimeout); err != nil {
		t.Fatalf("after the link was stranded: %v (status %+v)", err, op.Status().Links)
	}
	t.Logf("circuit carried on %v after the strand", time.Since(stranded).Round(time.Millisecond))
	after := op.Status()
	if after.Stalls <= before.Stalls {
		t.Errorf("stalls: got %d, want more than %d", after.Stalls, before.Stalls)
	}
	if after.LinksUp <= before.LinksUp {
		t.Errorf("links up: got %d, want more than %d (a fresh connection)", after.LinksUp, before.LinksUp)
	}
}

// echoSeq sends n numbered messages over c, one at a time, and checks each comes back
// as sent, all within timeout.
func echoSeq(c net.Conn, seq *uint64, n int, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	msg, got := make([]byte, 512), make([]byte, 512)
	for range n {
		*seq++
		for i := 0; i < len(msg); i += 8 {
			binary.BigEndian.PutUint64(msg[i:], *seq)
		}
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("message %d: %w", *seq, err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("message %d: %w", *seq, err)
		}
		if g := binary.BigEndian.Uint64(got); g != *seq {
			return fmt.Errorf("message %d: got message %d back, want %d", *seq, g, *seq)
		}
	}
	return nil
}

// TestAgentRacesItsRoutersAtStart: the operator's first router is behind a radio that is
// black; the agent (on the radio profile, whose handshakes wait long for a slow radio)
// does not wait out a handshake to it but races the second, comes up there promptly, and
// its circuits work.
func TestAgentRacesItsRoutersAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process mesh")
	}
	f := startEchoFleet(t)
	dead, err := linksim.NewLink(linksim.Impairment{Blackout: true}, linksim.Impairment{Blackout: true})
	if err != nil {
		t.Fatal(err)
	}
	black := f.m.Radio(f.r.Addr, dead).Addr().String()
	start := time.Now()
	op := f.m.Agent(f.m.Enroll("op", "operator"), agent.Config{Routers: []string{black, f.r.Addr}, LinkProfile: agent.ProfileRadio, NoAutoServices: true})
	if got := lab.WaitLink(t, op, raceTimeout); got != f.r.Addr {
		t.Fatalf("link up on %s, want %s (the live router)", got, f.r.Addr)
	}
	t.Logf("link up on the second router %v after start", time.Since(start).Round(time.Millisecond))
	if err := lab.EchoExact(dialEcho(t, op), 64<<10, lab.ReadyTimeout); err != nil {
		t.Error(err)
	}
}
