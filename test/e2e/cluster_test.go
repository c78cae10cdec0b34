package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bounds of the cluster tests: what the issue promises, generous for a loaded machine.
const (
	// failoverBound is how soon after the leader dies an admin write and a new dial
	// must work again.
	failoverBound = 10 * time.Second
	// convergeTimeout bounds a cluster forming, or a member catching up.
	convergeTimeout = 60 * time.Second
	// refusalBound bounds an admin write refused for want of a leader: the CLI goes
	// round every member for 15 s, each waiting 3 s for a leader.
	refusalBound = 50 * time.Second
	// raftRefusalWait is how long a refused peer waits to see its Raft connection
	// closed.
	raftRefusalWait = 10 * time.Second
)

// ctrlMember is one controller process of a test cluster.
type ctrlMember struct {
	name, data, addr string
	proc             *proc
}

// ctrlCluster is a controller cluster of real processes on loopback.
type ctrlCluster struct {
	t       *testing.T
	dir     string
	members []*ctrlMember
	admin   string // the admin identity file init wrote
	env     []string
}

// startCluster runs n controllers: the first from `controller init`, each other joined
// with a token from `edge create controller`; it returns once every member is listed
// reachable.
func startCluster(t *testing.T, n int) *ctrlCluster {
	t.Helper()
	dir := t.TempDir()
	c := &ctrlCluster{t: t, dir: dir}
	first := &ctrlMember{name: "controller1", data: filepath.Join(dir, "controller1"), addr: freePort(t)}
	must(t, nil, bins.umbra, "controller", "init", "--data", first.data, "--listen", first.addr)
	c.admin = filepath.Join(first.data, "admin.json")
	c.env = []string{"UMBRA_ADMIN=" + c.admin}
	c.members = append(c.members, first)
	c.run(first)
	for range n - 1 {
		c.add()
	}
	c.waitMembers(n)
	return c
}

// add joins one more member and runs it.
func (c *ctrlCluster) add() *ctrlMember {
	c.t.Helper()
	i := len(c.members) + 1
	m := &ctrlMember{name: fmt.Sprintf("controller%d", i), data: filepath.Join(c.dir, fmt.Sprintf("controller%d", i)), addr: freePort(c.t)}
	jwt := filepath.Join(c.dir, m.name+".jwt")
	must(c.t, c.env, bins.umbra, "edge", "create", "controller", m.name, "--jwt-out", jwt)
	must(c.t, nil, bins.umbra, "controller", "join", "--jwt", jwt, "--data", m.data, "--listen", m.addr)
	c.members = append(c.members, m)
	c.run(m)
	return m
}

// run starts m's `controller run`.
func (c *ctrlCluster) run(m *ctrlMember) {
	c.t.Helper()
	m.proc = start(c.t, bins.umbra, "controller", "run", "--data", m.data)
	m.proc.waitFor(c.t, "controller listening", readyTimeout)
}

// controllers lists the cluster's members as env's admin file reaches them.
func (c *ctrlCluster) controllers(env []string) ([]map[string]any, error) {
	out, _, err := run(c.t, env, bins.umbra, "edge", "list", "controllers", "-o", "json")
	if err != nil {
		return nil, err
	}
	var recs []map[string]any
	return recs, json.Unmarshal([]byte(out), &recs)
}

// waitMembers waits until n members are listed, all reachable, with one leader and
// the same applied index.
func (c *ctrlCluster) waitMembers(n int) {
	c.t.Helper()
	waitUntil(c.t, convergeTimeout, fmt.Sprintf("%d controllers reachable with one leader", n), func() bool {
		recs, err := c.controllers(c.env)
		if err != nil || len(recs) != n {
			return false
		}
		leaders, index := 0, recs[0]["applied_index"]
		for _, r := range recs {
			if r["reachable"] != true || r["applied_index"] != index {
				return false
			}
			if r["role"] == "leader" {
				leaders++
			}
		}
		return leaders == 1
	})
}

// leader is the member listed as leader.
func (c *ctrlCluster) leader() *ctrlMember {
	c.t.Helper()
	var name string
	waitUntil(c.t, convergeTimeout, "a leader", func() bool {
		recs, err := c.controllers(c.env)
		if err != nil {
			return false
		}
		for _, r := range recs {
			if r["role"] == "leader" && r["reachable"] == true {
				name, _ = r["name"].(string)
				return true
			}
		}
		return false
	})
	return c.member(name)
}

func (c *ctrlCluster) member(name string) *ctrlMember {
	for _, m := range c.members {
		if m.name == name {
			return m
		}
	}
	c.t.Fatalf("no member %q", name)
	return nil
}

// kill sends SIGKILL to m and waits for it to end.
func (c *ctrlCluster) kill(m *ctrlMember) {
	c.t.Helper()
	m.proc.cmd.Process.Kill()
	<-m.proc.done
}

// signal sends sig (SIGSTOP, SIGCONT) to m.
func (c *ctrlCluster) signal(m *ctrlMember, sig syscall.Signal) {
	c.t.Helper()
	if err := m.proc.cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
}

// adminAt writes a copy of the admin identity file that knows only m, and returns the
// environment that uses it: what an operator whose laptop reaches only m sees.
func (c *ctrlCluster) adminAt(m *ctrlMember) []string {
	c.t.Helper()
	data, err := os.ReadFile(c.admin)
	if err != nil {
		c.t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatal(err)
	}
	f["controller"], f["controllers"] = "https://"+m.addr, []string{}
	out, _ := json.Marshal(f)
	path := filepath.Join(c.dir, "admin-"+m.name+".json")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return []string{"UMBRA_ADMIN=" + path}
}

// mesh adds a router (enrolled through the cluster, listening on loopback) and an
// edge-router policy for everyone; agents started on the returned mesh use the router.
func (c *ctrlCluster) mesh() *mesh {
	c.t.Helper()
	t := c.t
	must(t, c.env, bins.umbra, "edge", "create", "edge-router-policy", "all", "--identities", "#all", "--routers", "#all")
	data := enrollRouter(t, c.env, c.dir, "router1")
	addr := freePort(t)
	r := start(t, bins.umbra, "router", "run", "--data", data, "--listen", addr)
	r.waitFor(t, "router router1 listening", readyTimeout)
	waitUntil(t, onlineTimeout, "router1 online", func() bool {
		recs, _, err := run(t, c.env, bins.umbra, "edge", "list", "routers", "-o", "json")
		var list []map[string]any
		json.Unmarshal([]byte(recs), &list)
		r := find(list, "router1")
		return err == nil && r != nil && r["online"] == true
	})
	return &mesh{t: t, dir: c.dir, q: quickstartJSON{Router: addr, Admin: c.admin}, env: c.env}
}

// echoThrough streams size bytes through conn (an echo circuit) in paced chunks while
// during runs once the first quarter came back; it returns an error unless every byte
// came back in order.
func echoThrough(conn net.Conn, size int, during func()) error {
	const chunk = 16 << 10
	const pace = 20 * time.Millisecond // spreads the transfer over the failover
	data := make([]byte, size)
	io.ReadFull(rngReader(), data)
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < size; off += chunk {
			if _, err := conn.Write(data[off:min(off+chunk, size)]); err != nil {
				errc <- err
				return
			}
			time.Sleep(pace)
		}
		errc <- nil
	}()
	got := make([]byte, 0, size)
	buf := make([]byte, chunk)
	conn.SetReadDeadline(time.Now().Add(2 * convergeTimeout))
	fired := false
	for len(got) < size {
		n, err := conn.Read(buf)
		got = append(got, buf[:n]...)
		if !fired && len(got) >= size/4 {
			fired = true
			during()
		}
		if err != nil {
			return fmt.Errorf("read after %d of %d bytes: %w", len(got), size, err)
		}
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("the %d bytes came back changed", size)
	}
	return nil
}

// TestClusterSurvivesLeaderKill: three controllers, a router and two agents; the leader
// is killed (kill -9) while a circuit carries traffic. The circuit completes byte-exact;
// an identity is created through the same admin file, and a new circuit dialed, within
// 10 s; the old leader restarts and catches up.
func TestClusterSurvivesLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	m := c.mesh()
	listen, _, _ := m.echoFleet(t)
	conn := dialGreeted(t, listen, "drone1")
	// A token made by the leader, to redeem once the leader is gone.
	early := filepath.Join(c.dir, "early.jwt")
	must(t, c.env, bins.umbra, "edge", "create", "identity", "early", "--jwt-out", early)

	old := c.leader()
	var killedAt time.Time
	err := echoThrough(conn, 2<<20, func() {
		c.kill(old)
		killedAt = time.Now()
	})
	if err != nil {
		t.Fatalf("circuit across the leader's death: %v", err)
	}

	// An admin write through the same admin file, within failoverBound of the kill.
	jwt := filepath.Join(c.dir, "after.jwt")
	_, errOut, err := run(t, c.env, bins.umbra, "edge", "create", "identity", "after", "--jwt-out", jwt)
	if err != nil {
		t.Fatalf("create identity after the leader died: %v: %s", err, errOut)
	}
	if took := time.Since(killedAt); took > failoverBound {
		t.Errorf("create identity took %v after the kill, want within %v", took, failoverBound)
	} else {
		t.Logf("create identity done %v after the kill", took.Round(time.Millisecond))
	}

	// A new circuit within failoverBound of the kill.
	waitUntil(t, failoverBound-time.Since(killedAt), "a new circuit after the leader died", func() bool {
		g, err := dialGreeting(listen)
		return err == nil && g == "drone1"
	})
	t.Logf("new circuit %v after the kill", time.Since(killedAt).Round(time.Millisecond))

	// The token the dead leader issued enrolls at another member.
	must(t, nil, bins.agent, "enroll", "--jwt", early, "--out", filepath.Join(c.dir, "early.json"))

	// The old leader restarts and catches up: it lists the new identity itself.
	c.run(old)
	c.waitMembers(3)
	only := c.adminAt(old)
	waitUntil(t, convergeTimeout, old.name+" lists the identity created while it was down", func() bool {
		_, _, err := run(t, only, bins.umbra, "edge", "get", "identity", "after", "-o", "json")
		return err == nil
	})
}

// TestRouterFollowsTheClusterAsItGrows: a router enrolled with a cluster of one learns
// the members that join later over its control link, keeps them in its data directory,
// and moves its control link to another member when the first one dies.
func TestRouterFollowsTheClusterAsItGrows(t *testing.T) {
	c := startCluster(t, 1)
	c.mesh()
	c.add()
	c.add()
	c.waitMembers(3)
	file := filepath.Join(c.dir, "router1", "controllers.json")
	waitUntil(t, convergeTimeout, "router1 keeps the three members", func() bool {
		data, err := os.ReadFile(file)
		var urls []string
		return err == nil && json.Unmarshal(data, &urls) == nil && len(urls) == 3
	})
	c.kill(c.members[0])
	envs := [][]string{c.adminAt(c.members[1]), c.adminAt(c.members[2])}
	waitUntil(t, convergeTimeout, "router1 online at another member", func() bool {
		for _, env := range envs {
			out, _, err := run(t, env, bins.umbra, "edge", "list", "routers", "-o", "json")
			var list []map[string]any
			json.Unmarshal([]byte(out), &list)
			if r := find(list, "router1"); err == nil && r != nil && r["online"] == true {
				return true
			}
		}
		return false
	})
}

// TestClusterMinorityRefusesWrites: with one of three members stopped (SIGSTOP), the
// majority writes; a member cut off from the majority refuses writes with a clear `no
// leader` error and still serves reads; once back, it has every write.
func TestClusterMinorityRefusesWrites(t *testing.T) {
	c := startCluster(t, 3)
	isolated := c.members[2]
	only := c.adminAt(isolated)

	// One member stopped: the majority writes.
	c.signal(isolated, syscall.SIGSTOP)
	for i := range 3 {
		must(t, c.env, bins.umbra, "edge", "create", "service", fmt.Sprintf("while-stopped-%d", i))
	}
	c.signal(isolated, syscall.SIGCONT)
	c.waitMembers(3)

	// The others stopped: the lone member refuses writes and serves reads.
	for _, m := range c.members[:2] {
		c.signal(m, syscall.SIGSTOP)
	}
	t.Cleanup(func() {
		for _, m := range c.members[:2] {
			m.proc.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	start := time.Now()
	_, errOut, err := run(t, only, bins.umbra, "edge", "create", "service", "refused")
	if err == nil || !strings.Contains(errOut, "no leader") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("write on the isolated member: err %v, stderr %q; want one line saying no leader", err, errOut)
	}
	if took := time.Since(start); took > refusalBound {
		t.Errorf("refusal took %v, want within %v", took, refusalBound)
	}
	out, errOut, err := run(t, only, bins.umbra, "edge", "list", "services", "-o", "json")
	if err != nil || !strings.Contains(out, "while-stopped-2") {
		t.Errorf("read on the isolated member: err %v %s; want the services, got %s", err, errOut, out)
	}
	for _, m := range c.members[:2] {
		c.signal(m, syscall.SIGCONT)
	}
	c.waitMembers(3)
	must(t, c.env, bins.umbra, "edge", "create", "service", "after-partition")
	var services string
	waitUntil(t, convergeTimeout, "the isolated member has every write", func() bool {
		out, _, err := run(t, only, bins.umbra, "edge", "list", "services", "-o", "json")
		services = out
		return err == nil && strings.Contains(out, "after-partition")
	})
	// The refused write was not applied late (it reached the stopped leader's socket
	// before the leader stopped answering).
	if strings.Contains(services, `"refused"`) {
		t.Errorf("a write refused with no leader was applied after all: %s", services)
	}
}

// TestClusterOfFiveLosesTwoThenThree: five members keep writing with two killed; with
// three killed writes are refused while reads and an existing circuit continue.
func TestClusterOfFiveLosesTwoThenThree(t *testing.T) {
	if testing.Short() {
		t.Skip("five controllers")
	}
	c := startCluster(t, 5)
	m := c.mesh()
	listen, _, _ := m.echoFleet(t)
	conn := dialGreeted(t, listen, "drone1")
	echo := func(what string) {
		t.Helper()
		if err := echoThrough(conn, 64<<10, func() {}); err != nil {
			t.Fatalf("existing circuit %s: %v", what, err)
		}
	}
	// Kill two, the leader among them.
	leader := c.leader()
	c.kill(leader)
	var rest []*ctrlMember
	for _, mem := range c.members {
		if mem != leader {
			rest = append(rest, mem)
		}
	}
	c.kill(rest[0])
	must(t, c.env, bins.umbra, "edge", "create", "service", "with-three")
	echo("with three of five")
	// A committed write reaches a follower's store with the leader's next message; wait
	// until each live member has applied it, or a member left without a leader next could
	// hold it in its log unapplied (Raft's reads are local, not linearizable).
	for _, mem := range rest[1:] {
		env := c.adminAt(mem)
		waitUntil(t, convergeTimeout, mem.name+" lists with-three", func() bool {
			out, _, err := run(t, env, bins.umbra, "edge", "list", "services", "-o", "json")
			return err == nil && strings.Contains(out, "with-three")
		})
	}

	c.kill(rest[1])
	_, errOut, err := run(t, c.env, bins.umbra, "edge", "create", "service", "with-two")
	if err == nil || !strings.Contains(errOut, "no leader") {
		t.Errorf("write with two of five: err %v, stderr %q; want a no leader refusal", err, errOut)
	}
	out, errOut, err := run(t, c.env, bins.umbra, "edge", "list", "services", "-o", "json")
	if err != nil || !strings.Contains(out, "with-three") {
		t.Errorf("read with two of five: err %v %s; got %s", err, errOut, out)
	}
	echo("with two of five")
}

// TestClusterRefusesBadJoins: a join token used twice, expired, or from another
// cluster, and a controller certificate from another CA on the Raft port, are refused
// with one clear line, and nothing changes: no data directory, no new member.
func TestClusterRefusesBadJoins(t *testing.T) {
	a := startCluster(t, 2)
	b := startCluster(t, 1)
	before, _ := a.controllers(a.env)
	names := func(recs []map[string]any) string {
		var out []string
		for _, r := range recs {
			out = append(out, fmt.Sprint(r["name"], "@", r["address"]))
		}
		return strings.Join(out, ",")
	}

	expired := filepath.Join(a.dir, "expired.jwt")
	must(t, a.env, bins.umbra, "edge", "create", "controller", "late", "--jwt-out", expired, "--expires", "1s")
	otherJWT := filepath.Join(b.dir, "other.jwt")
	must(t, b.env, bins.umbra, "edge", "create", "controller", "stranger", "--jwt-out", otherJWT)
	// The other cluster's token, its issuer rewritten to point at this cluster (the
	// signature no longer matches, and the root it pins is not this cluster's).
	other, _ := os.ReadFile(otherJWT)
	parts := strings.Split(strings.TrimSpace(string(other)), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.ReplaceAll(payload, []byte(b.members[0].addr), []byte(a.members[0].addr))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	redirected := filepath.Join(a.dir, "redirected.jwt")
	os.WriteFile(redirected, []byte(strings.Join(parts, ".")+"\n"), 0o600)
	time.Sleep(1100 * time.Millisecond) // let the 1 s token expire (a clock, not readiness)

	for _, tt := range []struct {
		name, jwt, want string
	}{
		{"used-twice", filepath.Join(a.dir, "controller2.jwt"), "already used"},
		{"expired", expired, "expired"},
		{"another-cluster", redirected, "root CA the token pins"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(a.dir, "joiner-"+tt.name)
			_, errOut, err := run(t, nil, bins.umbra, "controller", "join", "--jwt", tt.jwt, "--data", data, "--listen", freePort(t))
			if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("join: err %v, stderr %q; want one line with %q", err, errOut, tt.want)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("refused join left %s behind (%v)", data, err)
			}
		})
	}

	// The other cluster's token sent straight to this cluster's join endpoint.
	roots := rootsOf(t, a.admin)
	hc := &http.Client{Timeout: commandTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}}}
	body, _ := json.Marshal(map[string]string{"token": strings.TrimSpace(string(other)), "csr": "", "address": "127.0.0.1:1"})
	resp, err := hc.Post("https://"+a.members[0].addr+"/v1/controllers/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another cluster's token at the join endpoint: status %d, want 401", resp.StatusCode)
	}

	// The Raft port: another cluster's controller certificate fails the handshake; no
	// certificate at all is dropped.
	foreign, err := tls.LoadX509KeyPair(filepath.Join(b.members[0].data, "pki", "server.pem"), filepath.Join(b.members[0].data, "pki", "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, certs := range map[string][]tls.Certificate{"foreign-ca": {foreign}, "no-certificate": nil} {
		conf := &tls.Config{RootCAs: roots, Certificates: certs, NextProtos: []string{"umbra-raft/1"}, MinVersion: tls.VersionTLS13}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: commandTimeout}, "tcp", a.members[0].addr, conf)
		if err == nil {
			conn.SetDeadline(time.Now().Add(raftRefusalWait))
			conn.Write([]byte{0}) // a Raft RPC type byte, then nothing
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		// A member would wait for the rest of the RPC (a timeout here); a refused
		// peer's connection is closed at once.
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("raft port kept a connection with %d certificates of another CA open: %v", len(certs), err)
		}
	}

	after, _ := a.controllers(a.env)
	if names(after) != names(before) {
		t.Errorf("members changed by refused joins: before %s, after %s", names(before), names(after))
	}
}

// rootsOf is the root CA pool of the identity file at path.
func rootsOf(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		CA string `json:"ca"`
	}
	json.Unmarshal(data, &f)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(f.CA)) {
		t.Fatal("no CA in " + path)
	}
	return pool
}

// TestClusterBackupUnderLoadRestores: a backup taken from the running leader while
// writes go on restores into a fresh cluster holding every record written before the
// backup began, and nothing that was never written.
func TestClusterBackupUnderLoadRestores(t *testing.T) {
	c := startCluster(t, 3)
	const maxWrites = 200 // bounds the load whatever happens
	type ack struct {
		name string
		at   time.Time
	}
	acks := make(chan ack, maxWrites)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(acks)
		for i := range maxWrites {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("load-%03d", i)
			if _, _, err := run(t, c.env, bins.umbra, "edge", "create", "service", name); err == nil {
				acks <- ack{name, time.Now()}
			}
		}
	}()
	var acked []ack
	for len(acked) < 10 {
		a, ok := <-acks
		if !ok {
			t.Fatal("the write load ended early")
		}
		acked = append(acked, a)
	}
	leader := c.leader()
	backup := filepath.Join(c.dir, "cluster.backup")
	began := time.Now()
	must(t, nil, bins.umbra, "controller", "backup", "--data", leader.data, "--out", backup)
	for len(acked) < 20 {
		a, ok := <-acks
		if !ok {
			break
		}
		acked = append(acked, a)
	}
	close(stop)
	<-done
	for a := range acks {
		acked = append(acked, a)
	}
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	fresh := &ctrlMember{name: "restored", data: filepath.Join(c.dir, "restored"), addr: freePort(t)}
	must(t, nil, bins.umbra, "controller", "restore", "--from", backup, "--data", fresh.data, "--listen", fresh.addr)
	c.run(fresh)
	only := c.adminAt(fresh)
	out, errOut, err := run(t, only, bins.umbra, "edge", "list", "services", "-o", "json")
	if err != nil {
		t.Fatalf("list on the restored controller: %v: %s", err, errOut)
	}
	var restored []map[string]any
	json.Unmarshal([]byte(out), &restored)
	for _, a := range acked {
		if a.at.Before(began) && find(restored, a.name) == nil {
			t.Errorf("service %s, written before the backup began, is not restored", a.name)
		}
	}
	for _, r := range restored {
		if name, _ := r["name"].(string); !strings.HasPrefix(name, "load-") {
			t.Errorf("restored a service %q nobody wrote", name)
		}
	}
	t.Logf("%d services written, %d before the backup began, %d restored", len(acked), countBefore(acked, began, func(a ack) time.Time { return a.at }), len(restored))
	// The restored controller takes writes as a cluster of one, and a member that
	// joins it receives every record.
	must(t, only, bins.umbra, "edge", "create", "service", "after-restore")
	joiner := &ctrlMember{name: "restored2", data: filepath.Join(c.dir, "restored2"), addr: freePort(t)}
	jwt := filepath.Join(c.dir, "restored2.jwt")
	must(t, only, bins.umbra, "edge", "create", "controller", joiner.name, "--jwt-out", jwt)
	must(t, nil, bins.umbra, "controller", "join", "--jwt", jwt, "--data", joiner.data, "--listen", joiner.addr)
	c.run(joiner)
	atJoiner := c.adminAt(joiner)
	waitUntil(t, convergeTimeout, "the member joined to the restored controller has every record", func() bool {
		out, _, err := run(t, atJoiner, bins.umbra, "edge", "list", "services", "-o", "json")
		var got []map[string]any
		json.Unmarshal([]byte(out), &got)
		return err == nil && len(got) == len(restored)+1 && find(got, "after-restore") != nil
	})
}

func countBefore[T any](xs []T, t0 time.Time, at func(T) time.Time) int {
	n := 0
	for _, x := range xs {
		if at(x).Before(t0) {
			n++
		}
	}
	return n
}
