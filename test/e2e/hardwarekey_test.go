package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/hal/keystore/atecc608/atecc608sim"
	"github.com/umbranet/umbra/hal/keystore/tpm/swtpmtest"
	"github.com/umbranet/umbra/internal/identity"
)

const (
	// hardwareKeyLifetime is the identity certificates' lifetime in the hardware-key
	// tests: short enough that the agent renews (at two thirds) while the test runs, so
	// the renewal's CSR is signed inside the hardware too.
	hardwareKeyLifetime = 9 * time.Second
	// handshakeStorm is how many handshakes race through one TPM-held key at once: what a
	// link race after a blackout asks of it, several times over.
	handshakeStorm = 20
	// hardwareEchoBytes is what each TCP circuit echoes byte-exact.
	hardwareEchoBytes = 256 << 10
	// hardwareDatagrams is how many UDP datagrams each check sends through a circuit.
	hardwareDatagrams = 20
)

// hardwareMesh is a quickstart with a TCP and a UDP service that "#drone" identities host
// and "#operator" identities dial, and an operator agent listening for both.
type hardwareMesh struct {
	*mesh
	tcpListen, udpListen string
}

func startHardwareMesh(t *testing.T) *hardwareMesh {
	t.Helper()
	dir := t.TempDir()
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, bins.umbra, "quickstart", "--dir", qsDir, "--identity-lifetime", hardwareKeyLifetime.String())
	qs.waitFor(t, "ready", readyTimeout)
	m := &mesh{t: t, dir: dir, qs: qs, q: readQuickstart(t, qsDir)}
	m.env = []string{"UMBRA_ADMIN=" + m.q.Admin}
	udp, _ := udpEcho(t)
	m.edge("create", "service", "echo", "--attr", "hosted", "--host", "tcp:"+echoServer(t, "drone"))
	m.edge("create", "service", "telemetry", "--attr", "hosted", "--host", "udp:"+udp)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "#hosted")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "#hosted")
	hm := &hardwareMesh{mesh: m, tcpListen: freeTCP(t), udpListen: freeUDP(t)}
	op := m.agent("op", m.enroll("op", "operator"), "--dial", "echo=tcp:"+hm.tcpListen, "--dial", "telemetry=udp:"+hm.udpListen)
	op.waitLinkUp(t)
	return hm
}

// createIdentity makes a drone identity and returns its one-time token's path.
func (hm *hardwareMesh) createIdentity(name string) string {
	jwt := filepath.Join(hm.dir, name+".jwt")
	hm.edge("create", "identity", name, "--attr", "drone", "--jwt-out", jwt)
	return jwt
}

// checkCircuits dials both services through the operator's agent: a TCP echo
// byte-exact, and UDP datagrams each coming back as sent.
func (hm *hardwareMesh) checkCircuits(t *testing.T, when string) {
	t.Helper()
	c := dialGreeted(t, hm.tcpListen, "drone")
	echoBytes(t, c, hardwareEchoBytes, nil)
	c.Close()

	u, err := net.Dial("udp", hm.udpListen)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	waitFirstUDPEcho(t, u)
	buf := make([]byte, 2048)
	for i := range hardwareDatagrams {
		want := fmt.Sprintf("%s datagram %d", when, i)
		var got string
		// A datagram may be lost: send each again until its echo comes back.
		waitUntil(t, readyTimeout, when+": echo of "+want, func() bool {
			u.Write([]byte(want))
			u.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := u.Read(buf)
			got = string(buf[:max(n, 0)])
			return err == nil && got == want
		})
	}
}

// tpmConnections lists the TCP connections process pid holds to swtpm's command port.
func tpmConnections(t *testing.T, pid int, sw *swtpmtest.TPM) []string {
	t.Helper()
	port := fmt.Sprintf(":%d", sw.Port())
	var out []string
	for _, s := range socketsOf(t, pid) {
		f := strings.Fields(s)
		if strings.HasPrefix(f[0], "tcp") && strings.HasSuffix(f[3], port) {
			out = append(out, s)
		}
	}
	return out
}

// TestAgentWithTPMKeyHostsServices runs `umbra-agent run` with an identity whose key
// lives in a TPM (swtpm): the agent holds one TPM session for everything that signs (its
// router handshakes, its question to the controller for routers, its renewals), hosts a
// TCP and a UDP service that another agent dials byte-exact, renews its certificate
// inside the TPM, comes back after a restart from the key blobs, and is refused once the
// TPM is wiped.
func TestAgentWithTPMKeyHostsServices(t *testing.T) {
	sw := swtpmtest.Start(t)
	hm := startHardwareMesh(t)
	idFile := filepath.Join(hm.dir, "kite.json")
	must(t, nil, bins.agent, "enroll", "--jwt", hm.createIdentity("kite"), "--out", idFile, "--key", "tpm", "--tpm", sw.Path())
	first, err := identity.Load(idFile)
	if err != nil {
		t.Fatal(err)
	}
	firstChain, _ := first.Chain()

	// No --routers: the agent asks the controller for its routers with the TPM key, then
	// links with the same key; a second session to a TPM that serves one waits forever.
	sock := filepath.Join(hm.dir, "kite.sock")
	runKite := func() *agentProc {
		return &agentProc{proc: start(t, bins.agent, "run", "--identity", idFile, "--status-socket", sock), socket: sock}
	}
	kite := runKite()
	kite.waitHosting(t, "echo")
	kite.waitHosting(t, "telemetry")
	if conns := tpmConnections(t, kite.cmd.Process.Pid, sw); len(conns) != 1 {
		t.Errorf("agent holds %d connections to the TPM (%v), want 1: the TPM serves one session at a time", len(conns), conns)
	}
	hm.checkCircuits(t, "first run")

	// Renewal signs its CSR inside the TPM; the agent keeps hosting on the new certificate.
	waitUntil(t, 3*hardwareKeyLifetime, "kite's identity file holds a renewed certificate", func() bool {
		f, err := identity.Load(idFile)
		if err != nil {
			return false
		}
		chain, err := f.Chain()
		return err == nil && chain[0].SerialNumber.Cmp(firstChain[0].SerialNumber) != 0
	})
	time.Sleep(time.Until(firstChain[0].NotAfter.Add(time.Second))) // wait out the first certificate
	hm.checkCircuits(t, "after renewal")

	// A restart loads the key again from the blobs in the identity file.
	kite.stop(t)
	kite = runKite()
	kite.waitHosting(t, "echo")
	kite.waitHosting(t, "telemetry")
	hm.checkCircuits(t, "after restart")
	kite.stop(t)

	// A wiped TPM has new seeds: the blobs no longer load, and the agent says so.
	sw.Wipe()
	_, errOut, err := run(t, nil, bins.agent, "run", "--identity", idFile, "--status-socket", sock)
	if err == nil || !strings.Contains(errOut, "not made by this TPM") {
		t.Errorf("run after the TPM was wiped: err %v, stderr %q; want a failure saying the key was not made by this TPM", err, errOut)
	}
}

// TestTPMKeyHandshakeStorm races many handshakes through one TPM-held key, as a link
// race after a blackout does: every one completes, none waits on another forever, and the
// TPM has room for the key afterwards.
func TestTPMKeyHandshakeStorm(t *testing.T) {
	sw := swtpmtest.Start(t)
	m := startMesh(t)
	jwt := filepath.Join(m.dir, "kite.jwt")
	m.edge("create", "identity", "kite", "--jwt-out", jwt)
	idFile := filepath.Join(m.dir, "kite.json")
	must(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile, "--key", "tpm", "--tpm", sw.Path())
	id, err := identity.Load(idFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := id.Certificate(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer key.Close()
	errs := make(chan error, handshakeStorm)
	var wg sync.WaitGroup
	for range handshakeStorm {
		wg.Go(func() { errs <- dialRouter(t, m.q.Router, id, &cert) })
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			t.Logf("handshake: %v", err)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d concurrent handshakes through one TPM key failed, want none", failed, handshakeStorm)
	}
}

// simulatedBus is an emulated ATECC608 registered as one of the host's I2C buses, the
// way periph's sysfs driver registers /dev/i2c-N, so the agent finds it by name.
type simulatedBus struct {
	*atecc608sim.Chip
	name string
}

func (b simulatedBus) String() string { return b.name }
func (b simulatedBus) Close() error   { return nil }

// TestAgentWithATECC608KeyHostsServices runs an agent in this process whose key lives
// on an emulated ATECC608 secure element: every TLS handshake and its question to the
// controller sign on the chip, and it hosts a TCP and a UDP service that another agent
// dials byte-exact.
func TestAgentWithATECC608KeyHostsServices(t *testing.T) {
	hm := startHardwareMesh(t)
	if _, err := host.Init(); err != nil {
		t.Fatalf("host.Init: %v", err)
	}
	chip := atecc608sim.New(atecc608sim.Config{})
	bus := simulatedBus{Chip: chip, name: "sim-" + t.Name()}
	if err := i2creg.Register(bus.name, nil, -1, func() (i2c.BusCloser, error) { return bus, nil }); err != nil {
		t.Fatalf("register the emulated chip's bus: %v", err)
	}
	t.Cleanup(func() { i2creg.Unregister(bus.name) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokenFile := hm.createIdentity("wren")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	idFile := filepath.Join(hm.dir, "wren.json")
	id, err := agent.Enroll(ctx, strings.TrimSpace(string(token)), agent.EnrollOptions{Path: idFile, KeyStore: agent.KeyStore{Store: keystore.StoreATECC608, I2CBus: bus.name}})
	if err != nil {
		t.Fatalf("enroll with the key on the emulated chip: %v", err)
	}
	if f, err := identity.Load(idFile); err != nil || f.Key.Store != keystore.StoreATECC608 || f.Key.PEM != "" {
		t.Fatalf("identity key reference = %+v (%v), want the atecc608 store and no key material", f, err)
	}
	sock := filepath.Join(hm.dir, "wren.sock")
	before := chip.Stats().Commands
	a, err := agent.New(ctx, agent.Config{Identity: id, StatusSocket: sock})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	wren := &agentProc{socket: sock}
	wren.waitHosting(t, "echo")
	wren.waitHosting(t, "telemetry")
	hm.checkCircuits(t, "key on the chip")
	if got := chip.Stats().Commands - before; got == 0 {
		t.Errorf("the chip received no command while the agent linked and hosted, want its handshakes signed there")
	}
}
