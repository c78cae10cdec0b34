package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Sizes and bounds of the cluster section (issue 16).
const (
	// clusterWrites is how many `edge create identity` calls are timed on each cluster
	// size (and as many reads beside them).
	clusterWrites = 20
	// leaderKills is how many leader kills are timed: the "median of 5".
	leaderKills = 5
	// clusterWait bounds every wait of the section: a member joining or catching up, a
	// write or a circuit after a kill.
	clusterWait = 60 * time.Second
	// writePoll is the pause between write attempts after a kill: the resolution of
	// the kill-to-write figure beside the CLI's own failover.
	writePoll = 10 * time.Millisecond
)

// clusterLab is the operate lab (controller1, router r1, a drone hosting echo and an
// operator dialing it) with two more controllers joined.
type clusterLab struct {
	*operateLab
	members map[string]*exec.Cmd // running controller processes by name
	data    map[string]string    // data directories by name
}

// benchCluster measures issue 16: the latency of an admin write (create identity) on a
// cluster of one and of three, and the time from the leader's kill -9 to the first
// successful write and to the first new circuit.
func benchCluster(ctx context.Context, c config, r *report) error {
	ol, err := newOperateLab(ctx, c)
	if err != nil {
		return err
	}
	defer ol.close()
	l := &clusterLab{operateLab: ol, members: map[string]*exec.Cmd{"controller1": ol.ctrl}, data: map[string]string{"controller1": ol.ctrlData}}
	one, oneRead, err := l.writes("one")
	if err != nil {
		return err
	}
	for _, name := range []string{"controller2", "controller3"} {
		if err := l.join(name); err != nil {
			return err
		}
	}
	if err := l.waitMembers(3); err != nil {
		return err
	}
	three, threeRead, err := l.writes("three")
	if err != nil {
		return err
	}
	var toWrite, toCircuit, steadyCircuit []time.Duration
	for i := range leaderKills {
		d, err := l.newCircuit()
		if err != nil {
			return err
		}
		steadyCircuit = append(steadyCircuit, d)
		w, ci, err := l.killLeader(i)
		if err != nil {
			return err
		}
		toWrite, toCircuit = append(toWrite, w), append(toCircuit, ci)
	}
	if err := l.checkDroneRan(); err != nil {
		return err
	}
	r.printf("## Controller cluster (issue 16)\n\n")
	r.printf("Controllers, router r1 and two agents, each its own process, on loopback, with the Raft\n")
	r.printf("timeouts the controller ships (hashicorp/raft's defaults: 1 s heartbeat and election timeout).\n\n")
	r.printf("%s", formatOperateTable(operateTable{
		title:   "Admin write latency",
		explain: fmt.Sprintf("`umbra edge create identity` (process start to exit, through the admin file), median of %d; the peer is `umbra edge get identity admin` (a local read) in the same cluster.", clusterWrites),
		rows: []operateRow{
			{figure: "create identity, cluster of one", runs: one, peer: "get identity", peers: oneRead},
			{figure: "create identity, cluster of three", runs: three, peer: "get identity", peers: threeRead},
		},
	}))
	r.printf("%s", formatOperateTable(operateTable{
		title:   "Leader killed",
		explain: fmt.Sprintf("`kill -9` of the leader of three; from the kill to the first `edge create service` that succeeds (retried every %v through the same admin file, which fails over by itself) and to the first new circuit through the operator's dial listener (retried every %v); median of %d, the killed member restarted and caught up between runs. The router keeps a control link to every member and asks the first in the cluster's order: when that member is not the leader, new circuits never stop (grants are signed by every member), so the circuit figure spreads between a few tens of milliseconds and the router's heartbeat failover to the next member (about 1 s). The peer is a new circuit on the steady mesh.", writePoll, operatePoll, leaderKills),
		rows: []operateRow{
			{figure: fmt.Sprintf("leader kill to first write (max %s)", ms(percentile(toWrite, 1))), runs: toWrite, peer: "a new circuit, steady", peers: steadyCircuit},
			{figure: fmt.Sprintf("leader kill to first new circuit (max %s)", ms(percentile(toCircuit, 1))), runs: toCircuit, peer: "a new circuit, steady", peers: steadyCircuit},
		},
	}))
	return nil
}

// writes times clusterWrites identity creations and as many reads.
func (l *clusterLab) writes(tag string) (writes, reads []time.Duration, err error) {
	for i := range clusterWrites {
		t0 := time.Now()
		if err := l.sh(l.umbra, "edge", "create", "identity", fmt.Sprintf("w-%s-%d", tag, i), "--jwt-out", filepath.Join(l.dir, "w.jwt")); err != nil {
			return nil, nil, err
		}
		writes = append(writes, time.Since(t0))
		t0 = time.Now()
		if err := l.sh(l.umbra, "edge", "get", "identity", "admin"); err != nil {
			return nil, nil, err
		}
		reads = append(reads, time.Since(t0))
	}
	return writes, reads, nil
}

// join makes name a new member and runs it.
func (l *clusterLab) join(name string) error {
	jwt := filepath.Join(l.dir, name+".jwt")
	data := filepath.Join(l.dir, name)
	if err := l.sh(l.umbra, "edge", "create", "controller", name, "--jwt-out", jwt); err != nil {
		return err
	}
	if err := l.sh(l.umbra, "controller", "join", "--jwt", jwt, "--data", data, "--listen", freeUDPPort()); err != nil {
		return err
	}
	l.data[name] = data
	return l.runMember(name)
}

// runMember starts member name's `controller run`.
func (l *clusterLab) runMember(name string) error {
	cmd, _, err := startUntil(l.ctx, "controller listening", l.umbra, "controller", "run", "--data", l.data[name])
	if err != nil {
		return err
	}
	l.procs = append(l.procs, cmd)
	l.members[name] = cmd
	return nil
}

// controllers is `edge list controllers -o json`.
func (l *clusterLab) controllers() ([]map[string]any, error) {
	cmd := exec.CommandContext(l.ctx, l.umbra, "edge", "list", "controllers", "-o", "json")
	cmd.Env = l.env
	out, err := cmd.Output()
	if err != nil {
		return nil, err
	}
	var recs []map[string]any
	return recs, json.Unmarshal(out, &recs)
}

// waitMembers waits until n members are reachable with one leader and one applied
// index; it returns the leader's name.
func (l *clusterLab) waitMembers(n int) error {
	_, err := l.waitLeader(n)
	return err
}

func (l *clusterLab) waitLeader(n int) (string, error) {
	deadline := time.Now().Add(clusterWait)
	for time.Now().Before(deadline) && l.ctx.Err() == nil {
		recs, err := l.controllers()
		if err == nil && len(recs) == n {
			leader, ok := "", true
			for _, r := range recs {
				ok = ok && r["reachable"] == true && r["applied_index"] == recs[0]["applied_index"]
				if r["role"] == "leader" {
					leader, _ = r["name"].(string)
				}
			}
			if ok && leader != "" {
				return leader, nil
			}
		}
		time.Sleep(operatePoll)
	}
	return "", fmt.Errorf("%d controllers not reachable with one leader within %v", n, clusterWait)
}

// killLeader kills the leader, times the first write and the first new circuit after,
// then restarts the member and waits until it caught up.
func (l *clusterLab) killLeader(run int) (toWrite, toCircuit time.Duration, err error) {
	leader, err := l.waitLeader(3)
	if err != nil {
		return 0, 0, err
	}
	cmd := l.members[leader]
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed := time.Now()
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		for i := 0; ; i++ {
			if time.Since(killed) > clusterWait {
				werr = fmt.Errorf("no write within %v of the leader's kill", clusterWait)
				return
			}
			w := exec.CommandContext(l.ctx, l.umbra, "edge", "create", "service", fmt.Sprintf("k-%d-%d", run, i))
			w.Env = l.env
			if w.Run() == nil {
				toWrite = time.Since(killed)
				return
			}
			time.Sleep(writePoll)
		}
	})
	toCircuit, cerr := l.waitCircuit(killed, "first")
	wg.Wait()
	if werr != nil || cerr != nil {
		return 0, 0, fmt.Errorf("after killing %s: %v %v\n%s", leader, werr, cerr, l.logs())
	}
	if err := l.runMember(leader); err != nil {
		return 0, 0, err
	}
	return toWrite, toCircuit, l.waitMembers(3)
}
