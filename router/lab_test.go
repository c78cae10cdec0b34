package router_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/internal/lab"
)

// Bounds of the router's in-process tests: generous, since the machine is shared.
const (
	// circuitBytes is what each circuit echoes, byte-exact.
	circuitBytes = 1 << 20
	// revokeTimeout is how soon a deleted record must end the circuits it allowed
	// (CONTRACT: within 5 seconds).
	revokeTimeout = 5 * time.Second
)

// fleet is a drone hosting "echo" through Listen and an operator allowed to dial it.
type fleet struct {
	m         *lab.Mesh
	drone, op *agent.Agent
}

// startFleet runs the drone pinned to droneRouter and the operator to opRouter, and waits
// until the drone's binding is up.
func startFleet(t *testing.T, m *lab.Mesh, droneRouter, opRouter string) *fleet {
	t.Helper()
	m.Service("echo", "", "drone", "operator")
	f := &fleet{m: m,
		drone: m.Agent(m.Enroll("drone", "drone"), agent.Config{Routers: []string{droneRouter}, NoAutoServices: true}),
		op:    m.Agent(m.Enroll("op", "operator"), agent.Config{Routers: []string{opRouter}, NoAutoServices: true}),
	}
	m.HostEcho(f.drone, "echo")
	return f
}

// dial opens a circuit from the operator to the drone's echo.
func (f *fleet) dial(t *testing.T) net.Conn {
	t.Helper()
	return lab.Dial(t, f.op, "echo")
}

// TestRouterCarriesABoundServiceByteExact: a service bound at a router by one agent and
// dialed there by another carries a megabyte each way, byte-exact, on several circuits at
// once.
func TestRouterCarriesABoundServiceByteExact(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process mesh")
	}
	m := lab.NewMesh(t, lab.MeshConfig{})
	r := m.AddRouter("r1", lab.RouterConfig{})
	f := startFleet(t, m, r.Addr, r.Addr)
	const circuits = 4
	errc := make(chan error, circuits)
	for range circuits {
		c := f.dial(t)
		go func() { errc <- lab.EchoExact(c, circuitBytes, lab.ReadyTimeout) }()
	}
	for range circuits {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// TestRouterExtendsACircuitToASecondRouter: with the operator on r1 and the drone on r2,
// only the router link r1–r2 joins them; the circuit is extended across it and carries a
// megabyte each way byte-exact.
func TestRouterExtendsACircuitToASecondRouter(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process mesh")
	}
	m := lab.NewMesh(t, lab.MeshConfig{})
	r2 := m.AddRouter("r2", lab.RouterConfig{})
	r1 := m.AddRouter("r1", lab.RouterConfig{LinkTo: []string{r2.Addr}})
	m.WaitLinks("r1->r2", "r2->r1")
	f := startFleet(t, m, r2.Addr, r1.Addr)
	if err := lab.EchoExact(f.dial(t), circuitBytes, lab.ReadyTimeout); err != nil {
		t.Errorf("through r1 and r2: %v", err)
	}
}

// TestRouterEndsCircuitsOfDeletedRecords: deleting the service, or the dialing identity,
// ends a circuit that is carrying bytes within revokeTimeout, on one router and across a
// router link.
func TestRouterEndsCircuitsOfDeletedRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("in-process mesh")
	}
	for _, c := range []struct {
		name       string
		relayed    bool
		kind, what string
	}{
		{"service-deleted", false, "services", "echo"},
		{"dialer-deleted", false, "identities", "op"},
		{"service-deleted-relayed", true, "services", "echo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := lab.NewMesh(t, lab.MeshConfig{})
			droneAt := m.AddRouter("r2", lab.RouterConfig{})
			opAt := droneAt
			if c.relayed {
				opAt = m.AddRouter("r1", lab.RouterConfig{LinkTo: []string{droneAt.Addr}})
				m.WaitLinks("r1->r2", "r2->r1")
			}
			f := startFleet(t, m, droneAt.Addr, opAt.Addr)
			conn := f.dial(t)
			if err := lab.EchoExact(conn, 64<<10, lab.ReadyTimeout); err != nil {
				t.Fatalf("before the delete: %v", err)
			}
			ended := keepEchoing(conn)
			deleted := time.Now()
			m.Delete(c.kind, c.what)
			select {
			case err := <-ended:
				if took := time.Since(deleted); took > revokeTimeout {
					t.Errorf("circuit ended %v after the delete, want within %v", took.Round(time.Millisecond), revokeTimeout)
				}
				t.Logf("circuit ended %v after the delete: %v", time.Since(deleted).Round(time.Millisecond), err)
			case <-time.After(3 * revokeTimeout):
				t.Fatalf("circuit still carrying bytes %v after the delete, want it ended within %v", 3*revokeTimeout, revokeTimeout)
			}
		})
	}
}

// keepEchoing keeps a small echo going over c and reports the error that ends it (an end
// of stream counts as one).
func keepEchoing(c net.Conn) <-chan error {
	ended := make(chan error, 1)
	go func() {
		msg, buf := []byte("ping"), make([]byte, 4)
		for {
			c.SetDeadline(time.Now().Add(3 * revokeTimeout))
			if _, err := c.Write(msg); err != nil {
				ended <- err
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = io.EOF
				}
				ended <- err
				return
			}
			time.Sleep(10 * time.Millisecond) // a slow echo, not a flood
		}
	}()
	return ended
}
