package e2e

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// killedHostWant is how soon after a hosting agent is killed with SIGKILL the dialer's
// application connection must end (issue 21): well inside the 60 s a circuit waits to
// resume across a radio blackout of its host.
const killedHostWant = 5 * time.Second

// connEnds reads c until it ends and returns when it did, or the zero time if it was
// still open after readyTimeout.
func connEnds(c net.Conn) time.Time {
	c.SetReadDeadline(time.Now().Add(readyTimeout))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return time.Time{}
	}
	return time.Now()
}

// echoOnce sends a line through c, open both ways, and reads its echo.
func echoOnce(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(commandTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo %q, %v; want \"ping\\n\"", buf, err)
	}
}

// TestKilledHostEndsDialersConnection kills (-9) the agent hosting a TCP echo while the
// operator's connection through it is open. Restarted at once, as the firmware's systemd
// unit restarts it, the new process's Hello names a new instance and the router ends
// the old one's circuits; not restarted, its host's kernel answers the router's next
// packet with ICMP port unreachable. Either way the operator's connection ends within
// 5 s, rather than after the old connection's idle timeout and the 60 s resume window;
// and so it does when the agent is stopped (SIGTERM), which closes its link as gone.
// The drone restarted at once links through a radio (a UDP proxy) that, like a real one,
// carries no ICMP, so only the new instance's Hello can tell the router; on loopback the
// killed process's ICMP can come first, and the one restarted once the router has read
// it is ended as gone all the same, never taken for the old process linking again.
func TestKilledHostEndsDialersConnection(t *testing.T) {
	// Router log lines.
	const (
		restarted   = "agent restarted: closing its old instance's connection"
		gone        = "agent's port unreachable: closing its connection"
		unreachable = "agent's old address answered port unreachable"
		relinked    = "agent's old connection unreachable; it linked again"
	)
	for _, tc := range []struct {
		name      string
		restart   bool     // started again once killed
		radio     bool     // linked through a radio that carries no ICMP
		afterICMP bool     // restarted once the router has read the killed one's ICMP
		logged    []string // what the router may log when it ends the dead agent's connection
	}{
		{"restarted-at-once", true, true, false, []string{restarted}},
		{"restarted-after-its-icmp", true, false, true, []string{restarted, gone}},
		{"not-restarted", false, false, false, []string{gone}},
		{"stopped", false, false, false, nil}, // SIGTERM: the agent closes its link as gone itself
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMesh(t)
			var listen string
			var drone *agentProc
			routers := m.q.Router
			if tc.radio {
				_, proxy := newRadio(t, m.q.Router)
				routers = proxy.Addr().String()
				listen, drone = radioEchoFleet(t, m, routers)
			} else {
				listen, drone, _ = m.echoFleet(t)
			}
			c := dialGreeted(t, listen, "drone1")
			echoOnce(t, c)

			killed := time.Now()
			if tc.name == "stopped" {
				drone.stop(t)
			} else {
				drone.cmd.Process.Kill()
				<-drone.done
			}
			if tc.afterICMP {
				waitUntil(t, commandTimeout, "the router reading the killed drone's port unreachable", func() bool {
					return strings.Contains(m.qs.output(), unreachable)
				})
			}
			if tc.restart {
				m.agentVia("drone1", drone.cmd.Args[3], routers) // run --identity FILE: the same identity
			}
			ended := connEnds(c)
			if ended.IsZero() {
				t.Fatalf("the operator's connection was still open %v after its host was killed", readyTimeout)
			}
			after := ended.Sub(killed)
			t.Logf("%s: the operator's connection ended %v after its host was killed", tc.name, after.Round(time.Millisecond))
			if after > killedHostWant {
				t.Errorf("the operator's connection ended %v after its host was killed, want ≤ %v", after.Round(time.Millisecond), killedHostWant)
			}
			if len(tc.logged) > 0 {
				waitUntil(t, commandTimeout, fmt.Sprintf("one of the router's log lines %q", tc.logged), func() bool {
					out := m.qs.output()
					return slices.ContainsFunc(tc.logged, func(l string) bool { return strings.Contains(out, l) })
				})
			}
			if out := m.qs.output(); strings.Contains(out, relinked) {
				t.Errorf("the router took the killed drone for its old process linking again (%q), want it ended as gone", relinked)
			}
			if tc.restart {
				waitUntil(t, readyTimeout, "a new circuit to the restarted host", func() bool {
					g, err := dialGreeting(listen)
					return err == nil && g == "drone1"
				})
			}
		})
	}
}

// radioEchoFleet is echoFleet with the drone linked through routers (a radio's proxy).
func radioEchoFleet(t *testing.T, m *mesh, routers string) (listen string, drone *agentProc) {
	t.Helper()
	m.edge("create", "service", "echo", "--host", "tcp:"+echoServer(t, "drone1"))
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	listen = freeTCP(t)
	drone = m.agentVia("drone1", m.enroll("drone1", "drone"), routers)
	op := m.agent("op", m.enroll("op", "operator"), "--dial", "echo=tcp:"+listen)
	drone.waitHosting(t, "echo")
	op.waitLinkUp(t)
	return listen, drone
}

// Bounds of the host-blackout test.
const (
	hostBlackout      = 6 * time.Second // past the 1.5 s stall detection: the link is raced
	hostTransfer      = 16 << 20
	hostTransferLimit = 2 * time.Minute
)

// TestHostBlackoutStillResumes: what ends a dead host's circuits at once must leave a
// silent one's alone. A transfer to a drone whose radio blacks out for 6 s mid-transfer
// (the router probes it and hears nothing), or whose old path is stranded so that a
// fresh connection replaces its link, finishes byte-exact. (An agent whose address
// changes is TestAddressChange's.)
func TestHostBlackoutStillResumes(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64 // bytes sent; a quarter of the way in the path is cut
		cut  func(radio *linksim.Link, proxy *linksim.UDPProxy)
	}{
		{"blackout", hostTransfer, func(radio *linksim.Link, _ *linksim.UDPProxy) { radio.Blackout(hostBlackout) }},
		{"path-replaced", hostTransfer, func(_ *linksim.Link, proxy *linksim.UDPProxy) { proxy.Strand() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := startMesh(t)
			m.edge("create", "service", "sink", "--host", "tcp:"+digestServer(t))
			m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@sink")
			m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@sink")
			listen := freeTCP(t)
			op := m.agent("op", m.enroll("op", "operator"), "--dial", "sink=tcp:"+listen)
			radio, proxy := newRadio(t, m.q.Router)
			drone := m.agentVia("drone", m.enroll("drone", "drone"), proxy.Addr().String())
			drone.waitHosting(t, "sink")
			op.waitLinkUp(t)
			// A quarter of the way in the drone's path is cut.
			var once sync.Once
			sendDigestDuring(t, listen, tc.size, hostTransferLimit, func(sent int64) {
				if sent >= tc.size/4 {
					once.Do(func() { tc.cut(radio, proxy) })
				}
			})
			if out := m.qs.output(); strings.Contains(out, "agent's port unreachable") || strings.Contains(out, "agent restarted") {
				t.Errorf("the router took the silent drone for a dead one:\n%s", out)
			}
		})
	}
}
