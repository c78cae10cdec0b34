package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mesh is a running quickstart with helpers to add identities, services and agents.
type mesh struct {
	t   *testing.T
	dir string
	qs  *proc
	q   quickstartJSON
	env []string
}

func startMesh(t *testing.T) *mesh {
	t.Helper()
	dir := t.TempDir()
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, bins.umbra, "quickstart", "--dir", qsDir)
	qs.waitFor(t, "ready", readyTimeout)
	q := readQuickstart(t, qsDir)
	return &mesh{t: t, dir: dir, qs: qs, q: q, env: []string{"UMBRA_ADMIN=" + q.Admin}}
}

// edge runs `umbra edge ARGS...`, which must succeed.
func (m *mesh) edge(args ...string) string {
	m.t.Helper()
	return must(m.t, m.env, bins.umbra, append([]string{"edge"}, args...)...)
}

// enroll creates an identity with attributes and enrolls it; it returns the ID.json path.
func (m *mesh) enroll(name string, attrs ...string) string {
	m.t.Helper()
	jwt := filepath.Join(m.dir, name+".jwt")
	args := []string{"create", "identity", name, "--jwt-out", jwt}
	for _, a := range attrs {
		args = append(args, "--attr", a)
	}
	m.edge(args...)
	out := filepath.Join(m.dir, name+".json")
	must(m.t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", out)
	return out
}

// agentProc is a running umbra-agent.
type agentProc struct {
	*proc
	socket string
}

// agent starts `umbra-agent run` for the identity at idFile with extra args, pinned to
// the quickstart's router.
func (m *mesh) agent(name, idFile string, args ...string) *agentProc {
	m.t.Helper()
	return m.agentVia(name, idFile, m.q.Router, args...)
}

// agentVia is agent pinned to routers (HOST:PORT[,HOST:PORT...]) instead: a radio's
// proxy in front of the quickstart's router, say.
func (m *mesh) agentVia(name, idFile, routers string, args ...string) *agentProc {
	m.t.Helper()
	sock := filepath.Join(m.dir, name+".sock")
	all := append([]string{"run", "--identity", idFile, "--routers", routers, "--status-socket", sock}, args...)
	return &agentProc{proc: start(m.t, bins.agent, all...), socket: sock}
}

// agentStatus is the JSON of `umbra-agent status`.
type agentStatus struct {
	Identity      string `json:"identity"`
	IdentityState string `json:"identity_state"`
	Version       string `json:"version"`
	CertExpires   string `json:"cert_expires"`
	Links         []struct {
		Router           string  `json:"router"`
		State            string  `json:"state"`
		RTTms            float64 `json:"rtt_ms"`
		BytesSent        uint64  `json:"bytes_sent"`
		HeartbeatLossPct float64 `json:"heartbeat_loss_pct"`
		Lossy            bool    `json:"lossy"`
	} `json:"links"`
	Hosting []struct {
		Service  string `json:"service"`
		State    string `json:"state"`
		Target   string `json:"target"`
		Circuits int    `json:"circuits"`
	} `json:"hosting"`
	Dialing []struct {
		Service   string `json:"service"`
		Listen    string `json:"listen"`
		State     string `json:"state"`
		LastError string `json:"last_error"`
	} `json:"dialing"`
	Datagrams struct {
		Sent         uint64            `json:"sent"`
		Delivered    uint64            `json:"delivered"`
		RecoveredFEC uint64            `json:"recovered_fec"`
		Dropped      map[string]uint64 `json:"dropped"`
	} `json:"datagrams"`
}

func (a *agentProc) status(t *testing.T) (agentStatus, error) {
	var st agentStatus
	out, _, err := run(t, nil, bins.agent, "status", "--status-socket", a.socket, "-o", "json")
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(out), &st)
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// waitHosting waits until the agent reports service bound at its router.
func (a *agentProc) waitHosting(t *testing.T, service string) {
	t.Helper()
	waitUntil(t, readyTimeout, a.socket+" hosting "+service, func() bool {
		st, err := a.status(t)
		if err != nil {
			return false
		}
		for _, h := range st.Hosting {
			if h.Service == service && h.State == "bound" {
				return true
			}
		}
		return false
	})
}

// waitLinkUp waits until the agent reports its router link up.
func (a *agentProc) waitLinkUp(t *testing.T) {
	t.Helper()
	waitUntil(t, readyTimeout, a.socket+" link up", func() bool {
		st, err := a.status(t)
		if err != nil {
			return false
		}
		for _, l := range st.Links {
			if l.State == "up" {
				return true
			}
		}
		return false
	})
}

// lastError returns the last dial error the agent reports for the listener on listen.
func (a *agentProc) lastError(t *testing.T, listen string) string {
	st, err := a.status(t)
	if err != nil {
		return ""
	}
	for _, d := range st.Dialing {
		if d.Listen == listen {
			return d.LastError
		}
	}
	return ""
}

// freeTCP returns a free loopback TCP address.
func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveTCP listens on loopback and runs handle on each connection, closing it after;
// the listener closes, and its handlers are waited for, with the test.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().String()
}

// echoServer echoes every TCP connection, after writing greeting if set.
func echoServer(t *testing.T, greeting string) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		if greeting != "" {
			fmt.Fprintln(c, greeting)
		}
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// dialGreeting connects to addr and reads the first line.
func dialGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, commandTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(commandTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// socketsOf lists the inet sockets a process holds: "proto state local remote".
func socketsOf(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			out = append(out, fmt.Sprintf("%s %s %s %s", proto, f[3], hexAddr(f[1]), hexAddr(f[2])))
		}
	}
	return out
}

// hexAddr decodes /proc/net's HEXIP:HEXPORT (IPv4 or IPv6, little-endian words).
func hexAddr(s string) string {
	ipHex, portHex, _ := strings.Cut(s, ":")
	port, _ := strconv.ParseUint(portHex, 16, 16)
	var ip net.IP
	for i := 0; i+8 <= len(ipHex); i += 8 {
		w, _ := strconv.ParseUint(ipHex[i:i+8], 16, 32)
		ip = append(ip, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

// processMemoryContains reports whether needle appears in any readable writable mapping
// of process pid: its heap, stacks and buffers.
func processMemoryContains(t *testing.T, pid int, needle []byte) bool {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], "rw") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, _ := strconv.ParseUint(lo, 16, 64)
		end, _ := strconv.ParseUint(hi, 16, 64)
		buf := make([]byte, end-start)
		n, _ := mem.ReadAt(buf, int64(start))
		if strings.Contains(string(buf[:n]), string(needle)) {
			return true
		}
	}
	return false
}
