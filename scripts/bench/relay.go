package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/scripts/bench/peers"
)

// relayLab is a controller with routers and agents started for the relay benchmarks.
type relayLab struct {
	ctx        context.Context
	umbra      string
	agent      string
	dir        string
	env        []string
	procs      []*exec.Cmd
	routers    map[string]*exec.Cmd
	routerAddr map[string]string
	ctrlData   string    // the controller's data directory
	ctrl       *exec.Cmd // the running controller, replaced when it is restarted
}

func newRelayLab(ctx context.Context, c config) (*relayLab, error) {
	dir, err := os.MkdirTemp("", "umbra-bench-relay")
	if err != nil {
		return nil, err
	}
	l := &relayLab{ctx: ctx, umbra: filepath.Join(c.bin, "umbra"), agent: filepath.Join(c.bin, "umbra-agent"), dir: dir,
		routers: map[string]*exec.Cmd{}, routerAddr: map[string]string{}}
	ctrl := filepath.Join(dir, "ctrl")
	l.ctrlData = ctrl
	if err := l.sh(l.umbra, "controller", "init", "--data", ctrl, "--listen", freeUDPPort()); err != nil {
		return nil, err
	}
	cmd, _, err := startUntil(ctx, "controller listening", l.umbra, "controller", "run", "--data", ctrl)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, cmd)
	l.ctrl = cmd
	l.env = append(os.Environ(), "UMBRA_ADMIN="+filepath.Join(ctrl, "admin.json"))
	return l, l.sh(l.umbra, "edge", "create", "edge-router-policy", "all", "--identities", "#all", "--routers", "#all")
}

func (l *relayLab) close() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		if l.procs[i].ProcessState == nil {
			stop(l.procs[i])
		}
	}
	os.RemoveAll(l.dir)
}

func (l *relayLab) sh(args ...string) error {
	cmd := exec.CommandContext(l.ctx, args[0], args[1:]...)
	cmd.Env = l.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v\n%s", args, err, out)
	}
	return nil
}

// router enrolls router name and runs it on a free port, linked to the routers named in
// linkTo.
func (l *relayLab) router(name string, linkTo ...string) error {
	if _, err := l.cli().EnrollRouter(l.ctx, name); err != nil {
		return err
	}
	return l.runRouter(name, freeUDPPort(), linkTo...)
}

// runRouter starts the enrolled router name on addr, linked to the routers named in
// linkTo, appending to its log, and waits until it listens.
func (l *relayLab) runRouter(name, addr string, linkTo ...string) error {
	args := []string{"router", "run", "--data", filepath.Join(l.dir, name), "--listen", addr}
	var to []string
	for _, n := range linkTo {
		to = append(to, l.routerAddr[n])
	}
	if len(to) > 0 {
		args = append(args, "--link-to", strings.Join(to, ","))
	}
	logPath := filepath.Join(l.dir, name+".router.log")
	ready := "router " + name + " listening"
	before := lab.CountInFile(logPath, ready)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(l.ctx, l.umbra, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	l.procs = append(l.procs, cmd)
	l.routers[name] = cmd
	l.routerAddr[name] = addr
	return lab.WaitFile(l.ctx, logPath, ready, before+1)
}

// echoService creates service echo hosted at addr, which drones bind and operators dial.
func (l *relayLab) echoService(addr string) error {
	for _, args := range [][]string{
		{"create", "service", "echo", "--host", "tcp:" + addr},
		{"create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo"},
		{"create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo"},
	} {
		if err := l.sh(append([]string{l.umbra, "edge"}, args...)...); err != nil {
			return err
		}
	}
	return nil
}

// waitLinksUp waits until `umbra edge list links` shows n link ends up.
func (l *relayLab) waitLinksUp(n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for l.linksUp() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("router links not up within 30s (%d of %d ends)", l.linksUp(), n)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return nil
}

// relayed counts the circuits router name has logged relaying.
func (l *relayLab) relayed(name string) int {
	return lab.CountInFile(filepath.Join(l.dir, name+".router.log"), "circuit relayed")
}

// identity creates and enrolls an identity with attr and returns its ID.json.
func (l *relayLab) identity(name, attr string) (string, error) {
	return l.cli().EnrollIdentity(l.ctx, name, attr)
}

// cli enrolls into the lab's directory as the lab's admin.
func (l *relayLab) cli() lab.CLI {
	return lab.CLI{Bins: lab.Bins{Umbra: l.umbra, Agent: l.agent}, Env: l.env, Dir: l.dir}
}

// run starts an agent for id pinned to router, its log in id's directory.
func (l *relayLab) run(id, router string, args ...string) (*exec.Cmd, error) {
	base := strings.TrimSuffix(id, ".json")
	all := append([]string{"run", "--identity", id, "--routers", l.routerAddr[router], "--status-socket", base + ".sock"}, args...)
	cmd := exec.CommandContext(l.ctx, l.agent, all...)
	logf, err := os.Create(base + ".log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l.procs = append(l.procs, cmd)
	return cmd, nil
}

// logs returns the agents' logs, for a failure's message.
func (l *relayLab) logs() string { return lab.Logs(filepath.Join(l.dir, "*.log"), 0) }

// freeUDPPort returns a loopback address free for UDP and TCP at the time of asking.
func freeUDPPort() string { return mustAddr(lab.FreePort()) }

func freeTCPPort() string { return mustAddr(lab.FreeTCP()) }

// mustAddr is a free address, or the end of the run: with no free loopback port
// nothing can be measured.
func mustAddr(addr string, err error) string {
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	return addr
}

// benchRelay measures circuits across router links: throughput over 0 to 3 relay hops in
// a chain r1–r2–r3–r4, as ratios to a circuit through one router.
func benchRelay(ctx context.Context, c config, r *report) error {
	l, err := newRelayLab(ctx, c)
	if err != nil {
		return err
	}
	defer l.close()
	echo, stopEcho, err := peers.StartTCPEcho(ctx)
	if err != nil {
		return err
	}
	defer stopEcho()
	for i, name := range []string{"r4", "r3", "r2", "r1"} {
		var to []string
		if i > 0 {
			to = []string{[]string{"r4", "r3", "r2"}[i-1]}
		}
		if err := l.router(name, to...); err != nil {
			return err
		}
	}
	if err := l.echoService(echo); err != nil {
		return err
	}
	opID, err := l.identity("op", "operator")
	if err != nil {
		return err
	}
	var dials []string
	listens := map[int]string{}
	for hops := 0; hops <= 3; hops++ {
		name := fmt.Sprintf("d%d", hops)
		id, err := l.identity(name, "drone")
		if err != nil {
			return err
		}
		if _, err := l.run(id, fmt.Sprintf("r%d", hops+1)); err != nil {
			return err
		}
		listens[hops] = freeTCPPort()
		dials = append(dials, "--dial", "echo@"+name+"=tcp:"+listens[hops])
	}
	if _, err := l.run(opID, "r1", dials...); err != nil {
		return err
	}
	results := map[int]peers.Result{}
	for hops := 0; hops <= 3; hops++ {
		if err := waitDial(ctx, listens[hops]); err != nil {
			return fmt.Errorf("%d relay hops: %w\n%s", hops, err, l.logs())
		}
		res, err := peers.TunnelThroughput(ctx, listens[hops], c.bulk/2)
		if err != nil {
			return fmt.Errorf("%d relay hops: %w", hops, err)
		}
		results[hops] = res
	}
	r.printf("## Relay mesh: circuits across router links\n\n")
	r.printf("A chain r1–r2–r3–r4 of router processes linked over QUIC (umbra-link/1); the operator's\n")
	r.printf("agent on r1 dials a drone on r1, r2, r3 or r4. Echo of %d MB each on loopback, MB/s one way.\n", c.bulk/2>>20)
	r.printf("Every process shares this machine's 2 cores, so each extra relay also takes CPU from the others.\n\n")
	r.printf("| path | router links crossed | MB/s | ÷ one router |\n|---|---|---|---|\n")
	base := results[0].MBps
	for hops := 0; hops <= 3; hops++ {
		path := strings.Join([]string{"r1", "r2", "r3", "r4"}[:hops+1], " → ")
		r.printf("| agent → %s → agent | %d | %.0f | %.2f |\n", path, hops, results[hops].MBps, results[hops].MBps/base)
	}
	r.printf("\n")
	return nil
}

// linksUp counts the router links `umbra edge list links` shows up.
func (l *relayLab) linksUp() int {
	cmd := exec.CommandContext(l.ctx, l.umbra, "edge", "list", "links", "-o", "json")
	cmd.Env = l.env
	out, err := cmd.Output()
	if err != nil {
		return 0
	}
	return strings.Count(string(out), `"state": "up"`)
}

// echoGaps keeps a 64-byte echo going over c every interval and records when each
// answer came back, until stop is closed.
func echoGaps(c net.Conn, interval time.Duration, stop <-chan struct{}) ([]time.Time, error) {
	var times []time.Time
	msg := make([]byte, 64)
	buf := make([]byte, 64)
	for {
		select {
		case <-stop:
			return times, nil
		default:
		}
		c.SetDeadline(time.Now().Add(90 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return times, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return times, err
		}
		times = append(times, time.Now())
		time.Sleep(interval)
	}
}

// benchHeal kills the relay a circuit runs through and measures how long the circuit's
// traffic stops, beside the time a brand-new circuit takes to set up on the healed mesh.
func benchHeal(ctx context.Context, c config, r *report) error {
	l, err := newRelayLab(ctx, c)
	if err != nil {
		return err
	}
	defer l.close()
	echo, stopEcho, err := peers.StartTCPEcho(ctx)
	if err != nil {
		return err
	}
	defer stopEcho()
	for _, rt := range []struct {
		name string
		to   []string
	}{{"r4", nil}, {"r2", []string{"r4"}}, {"r3", []string{"r4"}}, {"r1", []string{"r2", "r3"}}} {
		if err := l.router(rt.name, rt.to...); err != nil {
			return err
		}
	}
	if err := l.waitLinksUp(8); err != nil {
		return fmt.Errorf("heal: %w", err)
	}
	if err := l.echoService(echo); err != nil {
		return err
	}
	droneID, err := l.identity("drone", "drone")
	if err != nil {
		return err
	}
	opID, err := l.identity("op", "operator")
	if err != nil {
		return err
	}
	if _, err := l.run(droneID, "r4"); err != nil {
		return err
	}
	listen := freeTCPPort()
	if _, err := l.run(opID, "r1", "--dial", "echo=tcp:"+listen); err != nil {
		return err
	}
	if err := waitDial(ctx, listen); err != nil {
		return fmt.Errorf("heal: %w\n%s", err, l.logs())
	}

	const rounds = 5
	var heals, fresh []time.Duration
	for round := 0; round < rounds; round++ {
		before := map[string]int{"r2": l.relayed("r2"), "r3": l.relayed("r3")}
		conn, err := net.Dial("tcp", listen)
		if err != nil {
			return err
		}
		stopPing := make(chan struct{})
		type result struct {
			times []time.Time
			err   error
		}
		done := make(chan result, 1)
		go func() {
			ts, err := echoGaps(conn, 5*time.Millisecond, stopPing)
			done <- result{ts, err}
		}()
		time.Sleep(500 * time.Millisecond) // steady traffic before the kill
		relay := ""
		for _, n := range []string{"r2", "r3"} {
			if l.relayed(n) > before[n] {
				relay = n
			}
		}
		if relay == "" {
			close(stopPing)
			conn.Close()
			return fmt.Errorf("heal: no relay logged the circuit")
		}
		killed := time.Now()
		l.routers[relay].Process.Kill()
		l.routers[relay].Wait()
		time.Sleep(4 * time.Second)
		close(stopPing)
		res := <-done
		conn.Close()
		if res.err != nil {
			return fmt.Errorf("heal: the circuit broke when %s died: %w\n%s", relay, res.err, l.logs())
		}
		gap := time.Duration(0)
		for i := 1; i < len(res.times); i++ {
			if res.times[i].After(killed) {
				from := res.times[i-1]
				if from.Before(killed) {
					from = killed
				}
				gap = max(gap, res.times[i].Sub(from))
			}
		}
		heals = append(heals, gap)
		// A new circuit on the healed mesh, from nothing to its first echo.
		t0 := time.Now()
		if _, err := peers.TCPEchoLatency(ctx, listen, 1, 64); err != nil {
			return err
		}
		fresh = append(fresh, time.Since(t0))
		// Bring the relay back for the next round.
		if err := l.runRouter(relay, l.routerAddr[relay], "r4"); err != nil {
			return err
		}
		if err := l.waitLinksUp(8); err != nil {
			return fmt.Errorf("heal: %s back: %w", relay, err)
		}
	}
	r.printf("## Relay mesh: healing after a relay dies\n\n")
	r.printf("Routers r1–r2–r4 and r1–r3–r4; the operator on r1 echoes 64 bytes every 5 ms through a\n")
	r.printf("circuit to a drone on r4 while the relay it runs through is killed (`kill -9`); %d rounds.\n", rounds)
	r.printf("The gap is the longest silence of the echo after the kill: the link heartbeat noticing the\n")
	r.printf("dead relay (1 s without an answer), the agents asking for a new path, and the replay of\n")
	r.printf("unacknowledged bytes. Beside it, a new circuit set up from nothing on the healed mesh.\n\n")
	r.printf("| figure | median | max |\n|---|---|---|\n")
	r.printf("| circuit silent after its relay died | %s | %s |\n", ms(median(heals)), ms(slices.Max(heals)))
	r.printf("| a new circuit's setup and first echo | %s | %s |\n\n", ms(median(fresh)), ms(slices.Max(fresh)))
	r.printf("OpenZiti, quoted in the issue and not measured here, declares a link unresponsive after 30 s\n")
	r.printf("and moves at most 4 circuits per 15 s cycle.\n\n")
	return nil
}
