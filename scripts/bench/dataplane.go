package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/umbranet/umbra/scripts/bench/peers"
)

// Sizes of the data-plane runs.
const (
	latencyRounds = 2000
	latencySize   = 64
)

// benchDataPlane measures one TCP circuit agent → router → agent against raw quic-go,
// plain TCP, TLS over TCP and an ssh -L tunnel, all in this run, plus the agent's memory.
func benchDataPlane(ctx context.Context, c config, r *report) error {
	umbra, agentBin := filepath.Join(c.bin, "umbra"), filepath.Join(c.bin, "umbra-agent")
	tmp, err := os.MkdirTemp("", "umbra-bench-dp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	echo, stopEcho, err := peers.StartTCPEcho(ctx)
	if err != nil {
		return err
	}
	defer stopEcho()

	udpEcho, err := udpEchoServer(ctx)
	if err != nil {
		return err
	}
	qs, _, err := startUntil(ctx, "ready", umbra, "quickstart", "--dir", filepath.Join(tmp, "qs"))
	if err != nil {
		return err
	}
	defer stop(qs)
	env := append(os.Environ(), "UMBRA_ADMIN="+filepath.Join(tmp, "qs", "admin.json"))
	sh := func(args ...string) error {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v\n%s", args, err, out)
		}
		return nil
	}
	steps := [][]string{
		{umbra, "edge", "create", "service", "echo", "--host", "tcp:" + echo},
		{umbra, "edge", "create", "service", "uecho", "--host", "udp:" + udpEcho},
		{umbra, "edge", "create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo,@uecho"},
		{umbra, "edge", "create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo,@uecho"},
		{umbra, "edge", "create", "identity", "drone", "--attr", "drone", "--jwt-out", filepath.Join(tmp, "d.jwt")},
		{umbra, "edge", "create", "identity", "op", "--attr", "operator", "--jwt-out", filepath.Join(tmp, "o.jwt")},
		// A second drone hosting a service of its own that nothing dials: idle for the whole
		// section, it gives the steady-state figure.
		{umbra, "edge", "create", "service", "quiet", "--host", "tcp:" + echo},
		{umbra, "edge", "create", "service-policy", "qb", "--type", "bind", "--identities", "#quiet", "--services", "@quiet"},
		{umbra, "edge", "create", "identity", "idler", "--attr", "quiet", "--jwt-out", filepath.Join(tmp, "i.jwt")},
		{agentBin, "enroll", "--jwt", filepath.Join(tmp, "i.jwt"), "--out", filepath.Join(tmp, "i.json")},
		{agentBin, "enroll", "--jwt", filepath.Join(tmp, "d.jwt"), "--out", filepath.Join(tmp, "d.json")},
		{agentBin, "enroll", "--jwt", filepath.Join(tmp, "o.jwt"), "--out", filepath.Join(tmp, "o.json")},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	ln.Close()
	upc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	udpListen := upc.LocalAddr().String()
	upc.Close()
	drone, err := startBackground(ctx, agentBin, "run", "--identity", filepath.Join(tmp, "d.json"), "--status-socket", filepath.Join(tmp, "d.sock"))
	if err != nil {
		return err
	}
	defer stop(drone)
	idler, err := startBackground(ctx, agentBin, "run", "--identity", filepath.Join(tmp, "i.json"), "--status-socket", filepath.Join(tmp, "i.sock"))
	if err != nil {
		return err
	}
	defer stop(idler)
	idlerStarted := time.Now()
	op, err := startBackground(ctx, agentBin, "run", "--identity", filepath.Join(tmp, "o.json"), "--status-socket", filepath.Join(tmp, "o.sock"), "--dial", "echo=tcp:"+listen, "--dial", "uecho=udp:"+udpListen)
	if err != nil {
		return err
	}
	defer stop(op)
	if err := waitDial(ctx, listen); err != nil {
		return err
	}
	time.Sleep(idleSettle)
	droneIdle := rssKB(drone.Process.Pid)

	// umbra, with the CPU of the router and both agents.
	meter, err := peers.StartCPUMeter(qs.Process.Pid, drone.Process.Pid, op.Process.Pid)
	if err != nil {
		return err
	}
	um, err := peers.TunnelThroughput(ctx, listen, c.bulk)
	if err != nil {
		return fmt.Errorf("umbra circuit: %w", err)
	}
	umCPU, _ := meter.Seconds()
	um.CPUSeconds += umCPU
	droneBusy := rssKB(drone.Process.Pid)
	umLat, err := peers.TCPEchoLatency(ctx, listen, latencyRounds, latencySize)
	if err != nil {
		return err
	}

	quic, err := peers.QUICThroughput(ctx, c.bulk)
	if err != nil {
		return err
	}
	tcp, err := peers.TCPThroughput(ctx, c.bulk)
	if err != nil {
		return err
	}
	tlsr, err := peers.TLSThroughput(ctx, c.bulk)
	if err != nil {
		return err
	}
	quicLat, err := peers.QUICEchoLatency(ctx, latencyRounds, latencySize)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	remote, err := peers.StartRemoteQUIC(exec.CommandContext(ctx, self, "-serve-quic-echo"))
	if err != nil {
		return err
	}
	defer remote.Close()
	rqMeter, err := peers.StartCPUMeter(remote.PID())
	if err != nil {
		return err
	}
	rquic, err := remote.Throughput(ctx, c.bulk)
	if err != nil {
		return err
	}
	rqCPU, _ := rqMeter.Seconds()
	rquic.CPUSeconds += rqCPU
	rquicLat, err := remote.Latency(ctx, latencyRounds, latencySize)
	if err != nil {
		return err
	}
	relay, err := peers.StartRemoteQUIC(exec.CommandContext(ctx, self, "-serve-quic-relay", remote.Line()))
	if err != nil {
		return err
	}
	defer relay.Close()
	relayMeter, err := peers.StartCPUMeter(relay.PID(), remote.PID())
	if err != nil {
		return err
	}
	relayed, err := relay.Throughput(ctx, c.bulk)
	if err != nil {
		return fmt.Errorf("quic-go relay: %w", err)
	}
	relayCPU, _ := relayMeter.Seconds()
	relayed.CPUSeconds += relayCPU
	relayLat, err := relay.Latency(ctx, latencyRounds, latencySize)
	if err != nil {
		return err
	}
	tun, err := peers.SSHTunnel(ctx, echo)
	if err != nil {
		return err
	}
	defer tun.Close()
	sshMeter, err := peers.StartCPUMeter(tun.PIDs()...)
	if err != nil {
		return err
	}
	ssh, err := peers.TunnelThroughput(ctx, tun.Addr(), c.bulk)
	if err != nil {
		return fmt.Errorf("ssh -L: %w", err)
	}
	sshCPU, _ := sshMeter.Seconds()
	ssh.CPUSeconds += sshCPU
	sshLat, err := peers.TCPEchoLatency(ctx, tun.Addr(), latencyRounds, latencySize)
	if err != nil {
		return err
	}

	r.printf("## Data plane: one TCP circuit agent → router → agent\n\n")
	r.printf("Echo of %d MB through each path on loopback (MB/s of payload one way); the circuit's\n", c.bulk>>20)
	r.printf("bytes cross QUIC twice (agent→router, router→agent) and end-to-end TLS once.\n\n")
	r.printf("| path | MB/s | umbra ÷ path | CPU s/GB (all processes on the path) |\n|---|---|---|---|\n")
	row := func(name string, x peers.Result) {
		r.printf("| %s | %.0f | %.2f | %.1f |\n", name, x.MBps, um.MBps/x.MBps, x.CPUSecondsPerGB())
	}
	row("**umbra circuit** (agent → router → agent)", um)
	row("raw quic-go through a bare quic-go relay process to a server process (umbra's hops, none of its work)", relayed)
	row("raw quic-go, one stream, server in another process", rquic)
	row("raw quic-go, one stream, both ends in one process", quic)
	row("plain TCP", tcp)
	row("TLS 1.3 over TCP", tlsr)
	row("`ssh -L` tunnel ("+peers.SSHCipher+")", ssh)
	r.printf("\nTargets: ≥ 0.40 of raw quic-go (a relay does twice its QUIC work) and above `ssh -L`.\n\n")
	r.printf("| 64-byte echo, %d round trips | p50 | p99 | p50 − raw quic-go p50 |\n|---|---|---|---|\n", latencyRounds)
	r.printf("| **umbra circuit** | %s | %s | %+.0f µs |\n", us(umLat.P50), us(umLat.P99), float64((umLat.P50 - quicLat.P50).Microseconds()))
	r.printf("| raw quic-go, both ends in one process | %s | %s | — |\n", us(quicLat.P50), us(quicLat.P99))
	r.printf("| raw quic-go, server in another process | %s | %s | %+.0f µs |\n", us(rquicLat.P50), us(rquicLat.P99), float64((rquicLat.P50 - quicLat.P50).Microseconds()))
	r.printf("| raw quic-go through a bare quic-go relay process (two hops, three processes) | %s | %s | %+.0f µs |\n", us(relayLat.P50), us(relayLat.P99), float64((relayLat.P50 - quicLat.P50).Microseconds()))
	r.printf("| `ssh -L` tunnel | %s | %s | %+.0f µs |\n\n", us(sshLat.P50), us(sshLat.P99), float64((sshLat.P50 - quicLat.P50).Microseconds()))
	r.printf("Target: umbra's p50 within 300 µs of raw quic-go's. Each of umbra's hops is a process of its\n")
	r.printf("own (laptop agent, router, drone agent), so the cross-process quic-go rows show what one\n")
	r.printf("QUIC hop between processes costs on this machine before umbra does anything; the relay row\n")
	r.printf("is umbra's whole topology with nothing of umbra's (umbra p50 − relay p50: %+.0f µs).\n\n", float64((umLat.P50 - relayLat.P50).Microseconds()))
	writeDataPlaneTargets(r, dataPlaneFigures{
		umbra: um, quicRemote: rquic, quicLocal: quic, ssh: ssh,
		umbraLat: umLat, relayLat: relayLat, quicRemoteLat: rquicLat, quicLocalLat: quicLat,
	})

	umUDP, err := measureUDP(udpListen)
	if err != nil {
		return fmt.Errorf("umbra UDP: %w", err)
	}
	directUDP, err := measureUDP(udpEcho)
	if err != nil {
		return err
	}
	r.printf("## Data plane: UDP datagrams through one circuit\n\n")
	r.printf("%d datagrams of %d bytes, at most %d in flight, echoed by the far end; then %d ping-pongs.\n\n", udpRateDatagrams, udpPayload, udpRateWindow, udpPingRounds)
	r.printf("| path | datagrams/s echoed | delivered | p50 | p99 |\n|---|---|---|---|---|\n")
	r.printf("| **umbra circuit** (QUIC datagrams, sealed end to end) | %.0f | %.2f%% | %s | %s |\n", umUDP.rate, 100*umUDP.delivered, us(umUDP.p50), us(umUDP.p99))
	r.printf("| plain UDP on loopback | %.0f | %.2f%% | %s | %s |\n\n", directUDP.rate, 100*directUDP.delivered, us(directUDP.p50), us(directUDP.p99))

	// The idle drone has sat through the section; past the runtime's forced collection
	// (every 2 min) its figure is the one a board keeps.
	if wait := idleSteady - time.Since(idlerStarted); wait > 0 {
		time.Sleep(wait) // a span of idleness being measured, not a wait for readiness
	}
	steady := time.Since(idlerStarted)
	pid := idler.Process.Pid
	idleRSS, idleAnon, idleFile := rssKB(pid), statusKB(pid, "RssAnon:"), statusKB(pid, "RssFile:")
	r.printf("## Agent footprint\n\n| figure | value | budget |\n|---|---|---|\n")
	r.printf("| hosting agent resident memory, idle (%v after its link came up) | %.1f MB | < 12 MB |\n", idleSettle, float64(droneIdle)/1024)
	r.printf("| hosting agent resident memory, idle for %.0f s (past the runtime's 2-minute forced GC): anonymous + file-backed | %.1f MB (%.1f + %.1f) | < 12 MB |\n",
		steady.Seconds(), float64(idleRSS)/1024, float64(idleAnon)/1024, float64(idleFile)/1024)
	r.printf("| hosting agent resident memory, right after the %d MB transfer | %.1f MB | — |\n", c.bulk>>20, float64(droneBusy)/1024)
	if fi, err := os.Stat(agentBin); err == nil {
		r.printf("| `umbra-agent` binary, this machine (%s) | %.1f MB | — |\n", hostArch(), float64(fi.Size())/(1<<20))
	}
	for _, arch := range []string{"arm64", "armv7", "armv6"} {
		if fi, err := os.Stat(filepath.Join(c.bin, "linux_"+arch, "umbra-agent")); err == nil {
			r.printf("| `umbra-agent` binary, linux/%s | %.1f MB | arm64 < 15 MB |\n", arch, float64(fi.Size())/(1<<20))
		}
	}
	r.printf("\nFile-backed memory is the agent's own binary as mapped from the page cache. Once the agent\n")
	r.printf("is linked and quiet for a second it unmaps the pages of its binary that starting up mapped\n")
	r.printf("(agent.TrimMemory, releaseStartupCode); what it runs again maps back in, and the idle figure\n")
	r.printf("taken past the forced GC includes that.\n\n")
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

// waitDial polls addr until a connection through it gets an answer.
func waitDial(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := peers.TunnelThroughput(ctx, addr, 1024); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no circuit through %s within 30s", addr)
}

// startBackground starts bin with its output discarded.
func startBackground(ctx context.Context, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}
