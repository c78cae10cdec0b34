package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// Sizes and bounds of the data-plane tests.
const (
	bulkBytes     = 100 << 20 // the TCP echo of the issue: 100 MB
	revokeTimeout = 5 * time.Second
	markerRounds  = 200
)

// tcpMesh is a quickstart with two drones hosting "echo" (each at its own echo server,
// which greets with the drone's name) and an operator allowed to dial it.
type tcpMesh struct {
	*mesh
	drone1, drone2, op *agentProc
	echoListen         string // op's listener for echo (any host)
	d1Listen, d2Listen string // op's listeners for echo@drone1 and echo@drone2
}

func startTCPMesh(t *testing.T, agentArgs ...string) *tcpMesh {
	m := startMesh(t)
	m.edge("create", "service", "echo", "--host", "tcp:127.0.0.1:1")
	m.edge("create", "service-policy", "echo-bind", "--type", "bind", "--identities", "#drone", "--services", "@echo")
	m.edge("create", "service-policy", "echo-dial", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	d1 := m.enroll("drone1", "drone")
	d2 := m.enroll("drone2", "drone")
	op := m.enroll("op", "operator")
	tm := &tcpMesh{mesh: m, echoListen: freeTCP(t), d1Listen: freeTCP(t), d2Listen: freeTCP(t)}
	tm.drone1 = m.agent("drone1", d1, append([]string{"--host", "echo=tcp:" + echoServer(t, "drone1")}, agentArgs...)...)
	tm.drone2 = m.agent("drone2", d2, append([]string{"--host", "echo=tcp:" + echoServer(t, "drone2")}, agentArgs...)...)
	tm.op = m.agent("op", op, append([]string{
		"--dial", "echo=tcp:" + tm.echoListen,
		"--dial", "echo@drone1=tcp:" + tm.d1Listen,
		"--dial", "echo@drone2=tcp:" + tm.d2Listen}, agentArgs...)...)
	tm.drone1.waitHosting(t, "echo")
	tm.drone2.waitHosting(t, "echo")
	tm.op.waitLinkUp(t)
	return tm
}

// TestTCPCircuits is the heart of the data plane, end to end with the real binaries.
func TestTCPCircuits(t *testing.T) {
	tcpCircuits(t, startTCPMesh(t), bulkBytes)
}

// TestTCPCircuitsRadioProfile runs the same checks with every agent on the radio
// profile, whose circuits ride the same QUIC streams with the profile's windows and loss
// tolerance: what the router sees must still be end-to-end ciphertext, and revocation
// must still reach the circuit in time.
func TestTCPCircuitsRadioProfile(t *testing.T) {
	m := startTCPMesh(t, "--link-profile", "radio")
	tcpCircuits(t, m, radioBulkBytes)
	// The echo's bytes rode the operator's QUIC connection.
	st, err := m.op.status(t)
	if err != nil || len(st.Links) == 0 {
		t.Fatalf("operator's status shows no link: %+v, %v", st, err)
	}
	if sent := st.Links[0].BytesSent; sent < radioBulkBytes {
		t.Fatalf("the operator's link sent %d bytes; the %d MB echo did not ride it", sent, radioBulkBytes>>20)
	}
}

// radioBulkBytes is the echo of TestTCPCircuitsRadioProfile: the radio profile's windows
// are sized for radios, not for loopback.
const radioBulkBytes = 16 << 20

func tcpCircuits(t *testing.T, m *tcpMesh, bulk int64) {
	t.Run(fmt.Sprintf("echo-of-%dMB-is-byte-exact", bulk>>20), func(t *testing.T) {
		c, err := net.DialTimeout("tcp", m.d1Listen, commandTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r := bufioLine(t, c)
		if r != "drone1" {
			t.Fatalf("greeting = %q, want drone1", r)
		}
		sent, got := sha256.New(), sha256.New()
		src := io.LimitReader(rngReader(), bulk)
		done := make(chan int64)
		go func() {
			n, _ := io.Copy(got, c)
			done <- n
		}()
		if _, err := io.Copy(io.MultiWriter(c, sent), src); err != nil {
			t.Fatalf("send: %v", err)
		}
		c.(*net.TCPConn).CloseWrite()
		select {
		case n := <-done:
			if n != bulk || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
				t.Fatalf("echoed %d bytes (sha256 match %v), want %d byte-exact", n, bytes.Equal(got.Sum(nil), sent.Sum(nil)), bulk)
			}
		case <-time.After(5 * time.Minute):
			t.Fatal("echo did not finish within 5 minutes")
		}
	})

	t.Run("name-picks-the-drone", func(t *testing.T) {
		for listen, want := range map[string]string{m.d1Listen: "drone1", m.d2Listen: "drone2"} {
			got, err := dialGreeting(listen)
			if err != nil || got != want {
				t.Errorf("dial via %s: got %q (%v), want %q", listen, got, err, want)
			}
		}
		got, err := dialGreeting(m.echoListen)
		if err != nil || (got != "drone1" && got != "drone2") {
			t.Errorf("dial of any host: got %q (%v), want drone1 or drone2", got, err)
		}
	})

	t.Run("unauthorized-dial-reads-like-a-missing-service", func(t *testing.T) {
		rogueID := m.enroll("rogue")
		secret, nosuch := freeTCP(t), freeTCP(t)
		rogue := m.agent("rogue", rogueID, "--dial", "echo=tcp:"+secret, "--dial", "nosuch=tcp:"+nosuch)
		rogue.waitLinkUp(t)
		for _, addr := range []string{secret, nosuch} {
			if _, err := dialGreeting(addr); err == nil {
				t.Fatalf("dial via %s succeeded, want refused", addr)
			}
		}
		var unauthorized, missing string
		waitUntil(t, readyTimeout, "dial errors reported", func() bool {
			unauthorized, missing = rogue.lastError(t, "tcp:"+secret), rogue.lastError(t, "tcp:"+nosuch)
			return unauthorized != "" && missing != ""
		})
		if unauthorized != missing {
			t.Errorf("unauthorized dial error %q differs from missing service error %q", unauthorized, missing)
		}
	})

	t.Run("hosting-agent-listens-on-no-network-address", func(t *testing.T) {
		for _, a := range []*agentProc{m.drone1, m.op} {
			for _, s := range socketsOf(t, a.cmd.Process.Pid) {
				f := strings.Fields(s) // proto state local remote
				host, _, _ := net.SplitHostPort(f[2])
				listening := (strings.HasPrefix(f[0], "tcp") && f[1] == "0A") ||
					(strings.HasPrefix(f[0], "udp") && strings.HasSuffix(f[3], ":0"))
				if listening && !net.ParseIP(host).IsLoopback() {
					t.Errorf("agent %s has a listening socket off loopback: %s", a.socket, s)
				}
			}
		}
	})

	t.Run("router-sees-no-plaintext", func(t *testing.T) {
		marker := make([]byte, 16)
		rand.Read(marker)
		needle := []byte("UMBRA-MARKER-" + strings.ToUpper(hexString(marker)))
		c, err := net.DialTimeout("tcp", m.d1Listen, commandTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		bufioLine(t, c)
		buf := make([]byte, len(needle))
		for range markerRounds {
			c.Write(needle)
			if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, needle) {
				t.Fatalf("marker echo: %v", err)
			}
		}
		pid := m.qs.cmd.Process.Pid
		if !processMemoryContains(t, pid, []byte("router1")) {
			t.Fatal("memory scan finds not even the router's own name: the scan is broken")
		}
		if processMemoryContains(t, pid, needle) {
			t.Errorf("the marker sent through the circuit is in the router's memory: routers must carry only ciphertext")
		}
	})

	t.Run("deleting-the-dial-policy-ends-the-circuit", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", m.d2Listen, commandTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		bufioLine(t, c)
		stop := make(chan struct{})
		go func() { // keep the circuit busy
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write(make([]byte, 4096)); err != nil {
					return
				}
			}
		}()
		defer close(stop)
		ended := make(chan time.Time, 1)
		go func() {
			io.Copy(io.Discard, c)
			ended <- time.Now()
		}()
		deleted := time.Now()
		m.edge("delete", "service-policy", "echo-dial")
		select {
		case at := <-ended:
			if d := at.Sub(deleted); d > revokeTimeout {
				t.Errorf("circuit ended %v after the policy was deleted, want within %v", d, revokeTimeout)
			}
		case <-time.After(revokeTimeout + 5*time.Second):
			t.Fatalf("circuit still carrying data %v after its policy was deleted", revokeTimeout+5*time.Second)
		}
		if _, err := dialGreeting(m.d2Listen); err == nil {
			t.Errorf("new dial after the policy was deleted succeeded, want refused")
		}
	})
}

// dialGreeted opens a circuit through the agent listener at addr and checks the
// service's greeting is want; the connection closes with the test.
func dialGreeted(t *testing.T, addr, want string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, commandTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if g := bufioLine(t, c); g != want {
		t.Fatalf("greeting = %q, want %s", g, want)
	}
	return c
}

func bufioLine(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(commandTimeout))
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("read greeting: %v", err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	c.SetReadDeadline(time.Time{})
	return string(line)
}

// rngReader is a fast deterministic byte source.
func rngReader() io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		r := mrand.New(mrand.NewPCG(uint64(len(p)), math.MaxUint32))
		for i := 0; i+8 <= len(p); i += 8 {
			v := r.Uint64()
			for j := range 8 {
				p[i+j] = byte(v >> (8 * j))
			}
		}
		return len(p), nil
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, digits[x>>4], digits[x&15])
	}
	return string(out)
}
