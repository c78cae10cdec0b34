package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/lab"
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
	p, st := lab.StartQuickstart(t, bins.umbra, qsDir)
	qs := &proc{Proc: p, cmd: p.Cmd, done: p.Done()}
	q := quickstartJSON{Controller: st.Controller, Router: st.Router, Admin: st.Admin}
	return &mesh{t: t, dir: dir, qs: qs, q: q, env: []string{lab.AdminEnv(q.Admin)}}
}

// edge runs `umbra edge ARGS...`, which must succeed.
func (m *mesh) edge(args ...string) string {
	m.t.Helper()
	return must(m.t, m.env, bins.umbra, append([]string{"edge"}, args...)...)
}

// enroll creates an identity with attributes and enrolls it; it returns the ID.json path.
func (m *mesh) enroll(name string, attrs ...string) string {
	m.t.Helper()
	return enrollIdentity(m.t, m.env, m.dir, name, attrs...)
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
	lab.WaitUntil(t, timeout, what, cond)
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
	return lab.MustFree(t, lab.FreeTCP)
}

// serveTCP listens on loopback and runs handle on each connection, closing it after;
// the listener closes, and its handlers are waited for, with the test.
func serveTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	return lab.ServeTCP(t, handle)
}

// echoServer echoes every TCP connection, after writing greeting if set.
func echoServer(t *testing.T, greeting string) string {
	t.Helper()
	return lab.EchoServer(t, greeting)
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
	socks, _ := lab.SocketsOf(pid)
	var out []string
	for _, s := range socks {
		out = append(out, s.String())
	}
	return out
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
