package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
	"github.com/umbranet/umbra/internal/transport"
)

// relayMesh is a controller with routers linked as the issue draws them:
// r1–r2–r4 and r1–r3–r4, the operator on r1 and the drone hosting "echo" on r4.
type relayMesh struct {
	t        *testing.T
	dir      string
	env      []string
	ctrl     *proc  // the controller, which a test may restart
	ctrlData string // the controller's data directory
	routers  map[string]*proc
	addrs    map[string]string
	drone    *agentProc
	op       *agentProc
	listen   string // the operator's listener for echo
	// routerArgs are added to every `umbra router run` started after they are set
	// (for example --link-profile radio).
	routerArgs []string
}

// startRouter enrolls router name and runs it on addr with links to linkTo.
func (m *relayMesh) startRouter(name, addr string, linkTo ...string) {
	m.t.Helper()
	m.startRouterWith([]string{bins.umbra}, name, addr, linkTo...)
}

// startRouterWith is startRouter with the router run by the command line runner (the
// umbra binary, or an emulator followed by another build of it).
func (m *relayMesh) startRouterWith(runner []string, name, addr string, linkTo ...string) {
	m.t.Helper()
	m.startRouterArgs(runner, nil, name, addr, linkTo...)
}

// startRouterArgs is startRouterWith with extra arguments to `umbra router run`. An
// addr with port 0 lets the router pick a free port, which m.addrs[name] then holds: a
// port chosen ahead with freePort can be taken by another program before the router
// binds it.
func (m *relayMesh) startRouterArgs(runner, extra []string, name, addr string, linkTo ...string) {
	m.t.Helper()
	data := enrollRouter(m.t, m.env, m.dir, name)
	args := append([]string{"router", "run", "--data", data, "--listen", addr}, extra...)
	if len(linkTo) > 0 {
		args = append(args, "--link-to", strings.Join(linkTo, ","))
	}
	args = append(args, m.routerArgs...)
	p := start(m.t, runner[0], append(runner[1:], args...)...)
	line := p.waitFor(m.t, "router "+name+" listening", readyTimeout)
	if strings.HasSuffix(addr, ":0") {
		addr = line[strings.LastIndex(line, " ")+1:] // "router NAME listening on HOST:PORT"
	}
	m.routers[name] = p
	m.addrs[name] = addr
}

// waitLinks waits until `umbra edge list links` shows every named link up from both ends.
func (m *relayMesh) waitLinks(pairs ...[2]string) {
	m.t.Helper()
	waitUntil(m.t, readyTimeout, "router links up", func() bool {
		recs := listJSON(m.t, m.env, "links")
		for _, p := range pairs {
			for _, name := range []string{p[0] + "->" + p[1], p[1] + "->" + p[0]} {
				if l := find(recs, name); l == nil || l["state"] != "up" {
					return false
				}
			}
		}
		return true
	})
}

// newRelayMesh starts a controller with the policies of the relay tests: every identity
// may use every router, drones bind "echo", operators dial it.
func newRelayMesh(t *testing.T) *relayMesh {
	dir := t.TempDir()
	ctrlData := filepath.Join(dir, "ctrl")
	must(t, nil, bins.umbra, "controller", "init", "--data", ctrlData, "--listen", freePort(t))
	ctrl := start(t, bins.umbra, "controller", "run", "--data", ctrlData)
	ctrl.waitFor(t, "controller listening", readyTimeout)
	m := &relayMesh{t: t, dir: dir, env: []string{"UMBRA_ADMIN=" + filepath.Join(ctrlData, "admin.json")},
		ctrl: ctrl, ctrlData: ctrlData, routers: map[string]*proc{}, addrs: map[string]string{}}
	m.edge("create", "edge-router-policy", "all", "--identities", "#all", "--routers", "#all")
	m.edge("create", "service", "echo", "--host", "tcp:127.0.0.1:1")
	m.edge("create", "service-policy", "echo-bind", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "echo-dial", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	return m
}

func (m *relayMesh) edge(args ...string) {
	must(m.t, m.env, bins.umbra, append([]string{"edge"}, args...)...)
}

// startAgents runs the drone (hosting echo) on droneRouter and the operator (dialing it)
// on opRouter, and waits until both are ready.
func (m *relayMesh) startAgents(opRouter, droneRouter string, opArgs ...string) {
	t := m.t
	enroll := func(name, attr string) string { return enrollIdentity(t, m.env, m.dir, name, attr) }
	agent := func(name, id, router string, args ...string) *agentProc {
		sock := filepath.Join(m.dir, name+".sock")
		all := append([]string{"run", "--identity", id, "--routers", router, "--status-socket", sock}, args...)
		return &agentProc{proc: start(t, bins.agent, all...), socket: sock}
	}
	m.listen = freeTCP(t)
	m.drone = agent("drone", enroll("drone", "drone"), droneRouter, "--host", "echo=tcp:"+echoServer(t, "drone"))
	m.op = agent("op", enroll("op", "operator"), opRouter, append([]string{"--dial", "echo=tcp:" + m.listen}, opArgs...)...)
	m.drone.waitHosting(t, "echo")
	m.op.waitLinkUp(t)
}

// startRelayMesh builds the diamond r1–r2–r4, r1–r3–r4.
func startRelayMesh(t *testing.T) *relayMesh {
	m := newRelayMesh(t)
	a1, a2, a3, a4 := freePort(t), freePort(t), freePort(t), freePort(t)
	m.startRouter("r4", a4)
	m.startRouter("r2", a2, a4)
	m.startRouter("r3", a3, a4)
	m.startRouter("r1", a1, a2, a3)
	m.waitLinks([2]string{"r1", "r2"}, [2]string{"r1", "r3"}, [2]string{"r2", "r4"}, [2]string{"r3", "r4"})
	m.startAgents(a1, a4)
	return m
}

// dialEcho connects to the operator's echo listener and reads the drone's greeting.
func (m *relayMesh) dialEcho(t *testing.T) net.Conn {
	t.Helper()
	return dialGreeted(t, m.listen, "drone")
}

// relayed counts the circuits each relay router has logged carrying.
func (m *relayMesh) relayed() map[string]int {
	out := map[string]int{}
	for _, name := range []string{"r2", "r3"} {
		out[name] = strings.Count(m.routers[name].output(), "circuit relayed")
	}
	return out
}

// relayOf returns the relay that carried a circuit since the counts in before.
func (m *relayMesh) relayOf(before map[string]int) string {
	for name, n := range m.relayed() {
		if n > before[name] {
			return name
		}
	}
	return ""
}

// echoTimeout bounds one echoBytes after its last byte was sent; the lossy-radio tests
// move megabytes at tens of kilobytes a second.
var echoTimeout = 2 * commandTimeout

// echoBytes sends n pseudo-random bytes through c and checks the echo is byte-exact.
func echoBytes(t *testing.T, c net.Conn, n int64, during func(sent int64)) {
	t.Helper()
	sent, got := sha256.New(), sha256.New()
	done := make(chan int64, 1)
	go func() {
		k, _ := io.Copy(got, c)
		done <- k
	}()
	src := io.LimitReader(rngReader(), n)
	buf := make([]byte, 32<<10)
	var total int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			c.SetWriteDeadline(time.Now().Add(commandTimeout))
			if _, err := c.Write(buf[:k]); err != nil {
				t.Fatalf("send after %d bytes: %v", total, err)
			}
			sent.Write(buf[:k])
			total += int64(k)
			if during != nil {
				during(total)
			}
		}
		if err != nil {
			break
		}
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case k := <-done:
		if k != n || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
			t.Fatalf("echo of %d bytes came back as %d bytes, equal digest %v", n, k, bytes.Equal(got.Sum(nil), sent.Sum(nil)))
		}
	case <-time.After(echoTimeout):
		t.Fatalf("echo of %d bytes did not finish within %v", n, echoTimeout)
	}
}

// TestRelayMesh carries circuits across two relay hops with the real binaries.
func TestRelayMesh(t *testing.T) {
	m := startRelayMesh(t)

	t.Run("circuit-crosses-two-hops-byte-exact", func(t *testing.T) {
		before := m.relayed()
		echoBytes(t, m.dialEcho(t), 8<<20, nil)
		if m.relayOf(before) == "" {
			t.Fatal("neither relay logged the circuit")
		}
	})

	t.Run("links-listed", func(t *testing.T) {
		recs := listJSON(t, m.env, "links")
		if len(recs) != 8 {
			t.Fatalf("edge list links = %d rows, want 8 (4 links seen from both ends): %v", len(recs), recs)
		}
	})

	t.Run("transfer-survives-kill-9-of-its-relay", func(t *testing.T) {
		before := m.relayed()
		c := m.dialEcho(t)
		relay := m.relayOf(before)
		if relay == "" {
			t.Fatal("neither relay logged the circuit")
		}
		var killedAt time.Time
		echoBytes(t, c, 48<<20, func(sent int64) {
			if sent >= 8<<20 && killedAt.IsZero() {
				m.routers[relay].cmd.Process.Kill() // kill -9, mid-transfer
				killedAt = time.Now()
			}
		})
		t.Logf("killed %s mid-transfer; the echo finished byte-exact %v later", relay, time.Since(killedAt).Round(time.Millisecond))
		if other := map[string]string{"r2": "r3", "r3": "r2"}[relay]; m.relayed()[other] == before[other] {
			t.Errorf("the circuit did not move to %s", other)
		}
	})

}

// TestRelayOverLossyLink runs a router link through the link emulator at 10 % loss each
// way: the link stays up and carries a circuit byte-exact.
func TestRelayOverLossyLink(t *testing.T) {
	m := newRelayMesh(t)
	a1, a2 := freePort(t), freePort(t)
	m.startRouter("r2", a2)
	lk, err := linksim.NewLink(linksim.Impairment{Loss: 0.1}, linksim.Impairment{Loss: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", a2, lk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	m.startRouter("r1", a1, proxy.Addr().String())
	m.waitLinks([2]string{"r1", "r2"})
	m.startAgents(a1, a2)

	echoBytes(t, m.dialEcho(t), 2<<20, nil)
	st := proxy.Stats()
	if st.Up.Dropped.Loss == 0 || st.Down.Dropped.Loss == 0 {
		t.Fatalf("the emulator dropped nothing (%+v): the link was not lossy", st)
	}
	if l := find(listJSON(t, m.env, "links"), "r1->r2"); l == nil || l["state"] != "up" {
		t.Fatalf("r1->r2 after the transfer = %v, want up", l)
	}
}

// TestRelayOverLossyRadio runs a router link over a radio (10 Mbit/s, 10 % loss each way,
// 200 ms round trip) with both routers on `--link-profile radio`: the link stays up the
// whole time (a second of heartbeat silence no longer kills a radio's link) and carries a
// circuit byte-exact, at well over what NewReno moves there (0.2 to 0.3 Mbit/s in the
// bench): umbra's congestion controller runs on router links too.
func TestRelayOverLossyRadio(t *testing.T) {
	if testing.Short() {
		t.Skip("echoes 4 MB over an emulated radio")
	}
	m := newRelayMesh(t)
	m.routerArgs = []string{"--link-profile", "radio"}
	m.startRouter("r2", "127.0.0.1:0") // the routers pick their ports (see startRouterArgs)
	a2 := m.addrs["r2"]
	radio := linksim.Impairment{Loss: 0.1, Delay: 100 * time.Millisecond, RateBitsPerSec: 10_000_000, QueuePackets: 200}
	lk, err := linksim.NewLink(radio, radio)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", a2, lk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	m.startRouter("r1", "127.0.0.1:0", proxy.Addr().String())
	m.waitLinks([2]string{"r1", "r2"})
	m.startAgents(m.addrs["r1"], a2)

	const n = 4 << 20
	began := time.Now()
	echoBytes(t, m.dialEcho(t), n, nil)
	took := time.Since(began)
	// 4 MB each way at 0.5 Mbit/s is 67 s: a bound that says which controller ran, not how
	// fast this machine is. NewReno moves 0.2 to 0.3 Mbit/s here on an idle machine, and a
	// busy one only slows it; umbra's moved 2.1 to 4.3 Mbit/s in five runs on an idle
	// one, and 1.05 to 4.15 in 20 runs on two cores at a load average of 15 to 28 (the
	// emulator runs in this race-instrumented process), where the old bound of 1 was
	// within 5 % of failing.
	const minRate = 0.5 // Mbit/s
	rate := float64(n) * 8 / took.Seconds() / 1e6
	t.Logf("echoed %d MB in %v: %.2f Mbit/s each way", n>>20, took.Round(time.Millisecond), rate)
	if rate < minRate {
		t.Errorf("echoed %d MB at %.2f Mbit/s over the radio router link, want >= %v (NewReno: 0.2 to 0.3)", n>>20, rate, minRate)
	}
	for _, name := range []string{"r1", "r2"} {
		if out := m.routers[name].output(); strings.Contains(out, "router link down") {
			t.Errorf("router %s logged its radio link down during the transfer, want it up throughout", name)
		}
	}
}

// TestRelayRadioBlackout blacks out a radio router link (both routers on `--link-profile
// radio`, as a relay drone's) for longer than its dead interval, as a relay flying behind
// a hill does. The link is listed down within that interval, so no new path uses it, but
// it is held, not closed: once the radio returns, the circuit that was open across it
// echoes again and a new circuit works within a few seconds (about one: the link probes
// the radio every second), and the open one never broke, so neither agent had to resume
// it. Before, the link was closed at the dead interval, its circuits reset, and they
// resumed only once the redialed link came up, seconds after the return (2.5 to 4 s in the
// bench, whose open circuit failed outright after 120 s).
func TestRelayRadioBlackout(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: a 14 s blackout of a router link; skipped with -short")
	}
	const (
		blackout = transport.RadioLinkDeadAfter + 4*time.Second
		// maxRecovery is generous: the link probes the radio every second.
		maxRecovery = 5 * time.Second
	)
	m := newRelayMesh(t)
	m.routerArgs = []string{"--link-profile", "radio"}
	m.startRouter("r2", "127.0.0.1:0") // the routers pick their ports (see startRouterArgs)
	radio, proxy := newRadio(t, m.addrs["r2"])
	m.startRouter("r1", "127.0.0.1:0", proxy.Addr().String())
	m.waitLinks([2]string{"r1", "r2"})
	m.startAgents(m.addrs["r1"], m.addrs["r2"])
	held := m.dialEcho(t)
	echoOne := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(readyTimeout))
		b := []byte{'x'}
		if _, err := c.Write(b); err != nil {
			return err
		}
		_, err := io.ReadFull(c, b)
		return err
	}
	if err := echoOne(held); err != nil {
		t.Fatalf("echo before the blackout: %v", err)
	}

	radio.SetBlackout(true)
	began := time.Now()
	waitUntil(t, blackout, "r1->r2 listed down during the blackout", func() bool {
		l := find(listJSON(t, m.env, "links"), "r1->r2")
		return l == nil || l["state"] != "up"
	})
	t.Logf("r1->r2 listed down %v into the blackout", time.Since(began).Round(time.Millisecond))
	time.Sleep(time.Until(began.Add(blackout))) // the blackout's length is the test's subject
	radio.SetBlackout(false)
	back := time.Now()
	heldBack := make(chan error, 1)
	var heldTook time.Duration
	go func() {
		err := echoOne(held)
		heldTook = time.Since(back)
		heldBack <- err
	}()
	waitUntil(t, readyTimeout, "a new circuit across r1->r2 after the radio returned", func() bool {
		g, err := dialGreetingWithin(m.listen, 2*time.Second)
		return err == nil && g == "drone"
	})
	fresh := time.Since(back)
	if err := <-heldBack; err != nil {
		t.Fatalf("the circuit open across the blackout: %v", err)
	}
	t.Logf("after a %v blackout of the router link: the open circuit echoed %v and a new circuit worked %v after the radio returned",
		blackout, heldTook.Round(time.Millisecond), fresh.Round(time.Millisecond))
	if heldTook > maxRecovery {
		t.Errorf("the open circuit echoed %v after the radio returned, want within %v", heldTook.Round(time.Millisecond), maxRecovery)
	}
	if fresh > maxRecovery {
		t.Errorf("a new circuit took %v after the radio returned, want within %v", fresh.Round(time.Millisecond), maxRecovery)
	}
	for _, name := range []string{"r1", "r2"} {
		if out := m.routers[name].output(); strings.Contains(out, "router link down") {
			t.Errorf("router %s closed its radio link in the blackout (logged \"router link down\"), want it held", name)
		}
	}
	for _, a := range []*agentProc{m.op, m.drone} {
		if strings.Contains(a.output(), "circuit path broken") {
			t.Errorf("%s: the open circuit broke and had to resume on a new path, want it carried on on the held link", a.socket)
		}
	}
	m.waitLinks([2]string{"r1", "r2"})
}

// TestDeadEdgeRouter kills (-9) the router the operator's agent is linked to during a
// transfer: the agent notices the silence, races a connection to its other router, and
// the circuit resumes there byte-exact.
func TestDeadEdgeRouter(t *testing.T) {
	m := newRelayMesh(t)
	a1, a2, a3 := freePort(t), freePort(t), freePort(t)
	m.startRouter("r2", a2)
	m.startRouter("r1", a1, a2)
	m.startRouter("r3", a3, a2)
	m.waitLinks([2]string{"r1", "r2"}, [2]string{"r3", "r2"})
	m.startAgents(a1+","+a3, a2)

	c := m.dialEcho(t)
	var killedAt time.Time
	echoBytes(t, c, 32<<20, func(sent int64) {
		if sent >= 4<<20 && killedAt.IsZero() {
			m.routers["r1"].cmd.Process.Kill()
			killedAt = time.Now()
		}
	})
	t.Logf("killed the operator's router mid-transfer; the echo finished byte-exact %v later", time.Since(killedAt).Round(time.Millisecond))
	st, err := m.op.status(t)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Links {
		if l.Router == a3 && l.State != "up" {
			t.Errorf("link to r3 = %q, want up: %+v", l.State, st.Links)
		}
	}
}

// TestArm64Relay runs the middle relay of a chain as the linux/arm64 build under
// qemu-user, as on a relay drone's board: a circuit crosses it byte-exact.
func TestArm64Relay(t *testing.T) {
	if _, err := exec.LookPath("qemu-aarch64-static"); err != nil {
		t.Fatal("qemu-aarch64-static is not installed; run scripts/setup-deps.sh (Debian package qemu-user-static)")
	}
	armBin := filepath.Join(t.TempDir(), "umbra-arm64")
	build := exec.Command("go", "build", "-o", armBin, "github.com/umbranet/umbra/cmd/umbra")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build linux/arm64 umbra: %v\n%s", err, out)
	}
	m := newRelayMesh(t)
	a1, a2, a3 := freePort(t), freePort(t), freePort(t)
	m.startRouter("r1", a1)
	m.startRouterWith([]string{"qemu-aarch64-static", "-cpu", "cortex-a53", armBin}, "relay", a2, a1)
	m.startRouter("r3", a3, a2)
	m.waitLinks([2]string{"r1", "relay"}, [2]string{"relay", "r3"})
	m.startAgents(a1, a3)
	echoBytes(t, m.dialEcho(t), 1<<20, nil)
	if !strings.Contains(m.routers["relay"].output(), "circuit relayed") {
		t.Fatal("the arm64 relay did not log the circuit")
	}
}

// TestDeadEdgeRouterUDPFlow kills (-9) the operator's router while a UDP flow runs: the
// agent moves to its second router and the same local flow's datagrams echo again.
func TestDeadEdgeRouterUDPFlow(t *testing.T) {
	m := newRelayMesh(t)
	echo, _ := udpEcho(t)
	m.edge("create", "service", "telemetry", "--host", "udp:"+echo)
	m.edge("create", "service-policy", "tb", "--type", "bind", "--identities", "#drone", "--services", "@telemetry")
	m.edge("create", "service-policy", "td", "--type", "dial", "--identities", "#operator", "--services", "@telemetry")
	a1, a2, a3 := freePort(t), freePort(t), freePort(t)
	m.startRouter("r2", a2)
	m.startRouter("r1", a1, a2)
	m.startRouter("r3", a3, a2)
	m.waitLinks([2]string{"r1", "r2"}, [2]string{"r3", "r2"})
	udpListen := freeUDP(t)
	m.startAgents(a1+","+a3, a2, "--dial", "telemetry=udp:"+udpListen)
	m.drone.waitHosting(t, "telemetry")

	c, err := net.Dial("udp", udpListen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce := func() bool {
		c.Write([]byte("telemetry"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		return err == nil && string(buf[:n]) == "telemetry"
	}
	waitUntil(t, readyTimeout, "telemetry echo through r1", echoOnce)
	m.routers["r1"].cmd.Process.Kill()
	killed := time.Now()
	waitUntil(t, readyTimeout, "telemetry echo through r3 after r1 died", echoOnce)
	t.Logf("the UDP flow echoed again %v after its router was killed", time.Since(killed).Round(time.Millisecond))
}
