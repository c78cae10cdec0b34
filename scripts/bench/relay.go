package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"umbra/scripts/bench/peers"
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
}

func newRelayLab(ctx context.Context, c config) (*relayLab, error) {
	dir, err := os.MkdirTemp("", "umbra-bench-relay")
	if err != nil {
		return nil, err
	}
	l := &relayLab{ctx: ctx, umbra: filepath.Join(c.bin, "umbra"), agent: filepath.Join(c.bin, "umbra-agent"), dir: dir,
		routers: map[string]*exec.Cmd{}, routerAddr: map[string]string{}}
	ctrl := filepath.Join(dir, "ctrl")
	if err := l.sh(l.umbra, "controller", "init", "--data", ctrl, "--listen", freeUDPPort()); err != nil {
		return nil, err
	}
	cmd, _, err := startUntil(ctx, "controller listening", l.umbra, "controller", "run", "--data", ctrl)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, cmd)
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

// router enrolls and starts router name, linked to the routers named in linkTo.
func (l *relayLab) router(name string, linkTo ...string) error {
	jwt := filepath.Join(l.dir, name+".jwt")
	data := filepath.Join(l.dir, name)
	if err := l.sh(l.umbra, "edge", "create", "router", name, "--jwt-out", jwt); err != nil {
		return err
	}
	if err := l.sh(l.umbra, "router", "enroll", "--jwt", jwt, "--data", data); err != nil {
		return err
	}
	addr := freeUDPPort()
	args := []string{"router", "run", "--data", data, "--listen", addr}
	var to []string
	for _, n := range linkTo {
		to = append(to, l.routerAddr[n])
	}
	if len(to) > 0 {
		args = append(args, "--link-to", strings.Join(to, ","))
	}
	cmd, _, err := startUntil(l.ctx, "router "+name+" listening", l.umbra, args...)
	if err != nil {
		return err
	}
	l.procs = append(l.procs, cmd)
	l.routers[name] = cmd
	l.routerAddr[name] = addr
	return nil
}

// identity creates and enrolls an identity with attr and returns its ID.json.
func (l *relayLab) identity(name, attr string) (string, error) {
	jwt := filepath.Join(l.dir, name+".jwt")
	out := filepath.Join(l.dir, name+".json")
	if err := l.sh(l.umbra, "edge", "create", "identity", name, "--attr", attr, "--jwt-out", jwt); err != nil {
		return "", err
	}
	return out, l.sh(l.agent, "enroll", "--jwt", jwt, "--out", out)
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
func (l *relayLab) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(f), data)
	}
	return b.String()
}

// freeUDPPort returns a loopback address free for UDP and TCP at the time of asking.
func freeUDPPort() string {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr
		}
	}
}

func freeTCPPort() string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	return ln.Addr().String()
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
	for _, args := range [][]string{
		{"create", "service", "echo", "--host", "tcp:" + echo},
		{"create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo"},
		{"create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo"},
	} {
		if err := l.sh(append([]string{l.umbra, "edge"}, args...)...); err != nil {
			return err
		}
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
	_ = time.Second
	return nil
}
