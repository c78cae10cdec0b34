package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/scripts/bench/peers"
)

// Sizes and bounds of the boards section. Every wait stops at its deadline and every loop
// at its count or its time, so a slow emulator or a stuck circuit cannot stall make bench.
const (
	// boardsRate is the paced stream's target in bytes per second: the issue's 10 MB/s.
	boardsRate = 10e6
	// boardsChunk is what the client writes at once; at boardsRate one leaves every 6.6 ms.
	boardsChunk = 64 << 10
	// boardsStreamTime is how long the stream lasts at boardsRate; it sends
	// boardsRate × boardsStreamTime bytes.
	boardsStreamTime = 5 * time.Second
	// boardsStreamMax ends the stream early on a path slower than boardsRate (an emulated
	// agent), with whatever it has sent by then.
	boardsStreamMax = 15 * time.Second
	// boardsDrain bounds waiting, after the last write, for the sink to receive it all.
	boardsDrain = 20 * time.Second
	// boardsWriteTimeout bounds one write into the circuit.
	boardsWriteTimeout = 10 * time.Second
	// boardsSample is how often resident memory is read while the stream runs.
	boardsSample = 50 * time.Millisecond
	// boardsReady bounds an agent's start until its service is bound and a circuit to it
	// carries bytes; an emulated agent starts several times slower than a native one.
	boardsReady = 60 * time.Second
	// boardsProbeWait bounds one probe's wait for its bytes at the sink before it retries.
	boardsProbeWait = 5 * time.Second
	// boardsPoll is how often readiness and the sink's count are polled.
	boardsPoll = 20 * time.Millisecond
	// boardsProbe is the size of the write that shows a circuit works.
	boardsProbe = 1 << 10
	// boardsFloorSettle is how long a process blocked in `umbra-agent status` runs before
	// its memory is read.
	boardsFloorSettle = 500 * time.Millisecond
	// boardsStopTimeout is how long a started process has to exit on SIGINT before SIGKILL.
	boardsStopTimeout = 10 * time.Second
	// boardsLogTail is how many lines of a process's log an error message quotes.
	boardsLogTail = 40
	// boardsEnrollRuns is how many enrollments per key store the median is taken of.
	boardsEnrollRuns = 7
	// boardsEnrollTimeout bounds one enrollment command (or its curl peer).
	boardsEnrollTimeout = 60 * time.Second
	// boardsPOSTSize is the curl peer's request body, about an enrollment's CSR and token.
	boardsPOSTSize = 600
	// boardsQEMU is the user-mode emulator that runs the arm64 agent on this machine.
	boardsQEMU = "qemu-aarch64-static"
	// boardsQEMUCPU is the core it emulates: the Raspberry Pi 3's and Zero 2 W's.
	boardsQEMUCPU = "cortex-a53"
	// boardsService is the service each drone hosts: a sink that counts what it receives.
	boardsService = "sink"
	// boardsZitiMB is OpenZiti's tunneler footprint as the issue quotes it (not measured).
	boardsZitiMB = 100
)

// agentMemory is one hosting agent's resident memory, idle and under a paced stream.
type agentMemory struct {
	floorKB int     // the same binary (and emulator) blocked in `umbra-agent status`
	idleKB  int     // hosting, link up, no circuit, after idleSettle
	busyKB  int     // the largest reading while one circuit carried the stream
	stream  flowRun // what the stream achieved
}

// flowRun is one paced stream: what was sent and the rate the sink saw it arrive at.
type flowRun struct {
	sent, received int64
	cut            bool          // the stream stopped at boardsStreamMax before sending it all
	elapsed        time.Duration // from the first write to the sink's last arrival
	mbps           float64       // received bytes per second over elapsed, 10^6
}

// benchBoards measures the issue's board figures that the data-plane and key-store
// sections do not: a hosting agent's resident memory idle and while one circuit carries
// 10 MB/s, natively and as the arm64 binary under qemu-user, beside the processes an
// `ssh -L` tunnel keeps for the same stream; and `umbra-agent enroll` with a file key and
// with a TPM key (swtpm), beside a curl HTTPS POST on a new connection.
func benchBoards(ctx context.Context, c config, r *report) error {
	umbra, agentBin := filepath.Join(c.bin, "umbra"), filepath.Join(c.bin, "umbra-agent")
	armBin := filepath.Join(c.bin, "linux_arm64", "umbra-agent")
	tmp, err := os.MkdirTemp("", "umbra-bench-boards")
	if err != nil {
		return fmt.Errorf("boards: %w", err)
	}
	defer os.RemoveAll(tmp)
	sink, err := startSink(ctx)
	if err != nil {
		return err
	}
	defer sink.stop()

	qsDir := filepath.Join(tmp, "qs")
	qs, _, err := startUntil(ctx, "ready", umbra, "quickstart", "--dir", qsDir)
	if err != nil {
		return fmt.Errorf("boards: quickstart: %w", err)
	}
	defer stop(qs)
	routerAddr, err := quickstartRouter(qsDir)
	if err != nil {
		return err
	}
	env := append(os.Environ(), "UMBRA_ADMIN="+filepath.Join(qsDir, "admin.json"))
	sh := func(args ...string) error {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("boards: %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, args := range [][]string{
		{"create", "service", boardsService, "--host", "tcp:" + sink.addr()},
		{"create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@" + boardsService},
		{"create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@" + boardsService},
	} {
		if err := sh(append([]string{umbra, "edge"}, args...)...); err != nil {
			return err
		}
	}

	// The drones to measure: the native agent always, the arm64 one when it can run here.
	type drone struct {
		name, label string
		argv        []string // the agent's command line up to its subcommand
		listen      string   // the operator's --dial listener that reaches this drone
	}
	drones := []drone{{name: "drone-native", label: fmt.Sprintf("`umbra-agent`, %s, native", hostArch()), argv: []string{agentBin}}}
	var notes []string
	qemu, qemuErr := exec.LookPath(boardsQEMU)
	_, armErr := os.Stat(armBin)
	switch {
	case qemuErr != nil:
		notes = append(notes, fmt.Sprintf("The arm64 agent was not measured: %s is not installed (Debian package qemu-user-static; scripts/setup-deps.sh installs it).", boardsQEMU))
	case armErr != nil:
		notes = append(notes, fmt.Sprintf("The arm64 agent was not measured: %s is missing (`make cross` builds it).", armBin))
	default:
		drones = append(drones, drone{name: "drone-arm64", label: fmt.Sprintf("`umbra-agent`, linux/arm64 under `%s -cpu %s`", boardsQEMU, boardsQEMUCPU),
			argv: []string{qemu, "-cpu", boardsQEMUCPU, armBin}})
	}
	opArgs := []string{"run", "--routers", routerAddr, "--status-socket", filepath.Join(tmp, "op.sock")}
	for i := range drones {
		d := &drones[i]
		jwt, id := filepath.Join(tmp, d.name+".jwt"), filepath.Join(tmp, d.name+".json")
		if err := sh(umbra, "edge", "create", "identity", d.name, "--attr", "drone", "--jwt-out", jwt); err != nil {
			return err
		}
		if err := sh(agentBin, "enroll", "--jwt", jwt, "--out", id); err != nil {
			return err
		}
		d.listen = freeTCPPort()
		opArgs = append(opArgs, "--dial", boardsService+"@"+d.name+"=tcp:"+d.listen)
	}
	if err := sh(umbra, "edge", "create", "identity", "op", "--attr", "operator", "--jwt-out", filepath.Join(tmp, "op.jwt")); err != nil {
		return err
	}
	if err := sh(agentBin, "enroll", "--jwt", filepath.Join(tmp, "op.jwt"), "--out", filepath.Join(tmp, "op.json")); err != nil {
		return err
	}
	op, err := startProc(ctx, filepath.Join(tmp, "op.log"), agentBin, append(opArgs, "--identity", filepath.Join(tmp, "op.json"))...)
	if err != nil {
		return err
	}
	defer stopProc(op)

	mems := make([]agentMemory, len(drones))
	for i, d := range drones {
		if mems[i].floorKB, err = processFloor(ctx, tmp, d.argv); err != nil {
			return fmt.Errorf("boards: %s: %w", d.name, err)
		}
		args := append(append([]string(nil), d.argv[1:]...), "run", "--identity", filepath.Join(tmp, d.name+".json"),
			"--routers", routerAddr, "--status-socket", filepath.Join(tmp, d.name+".sock"))
		m, err := measureHosting(ctx, sink, filepath.Join(tmp, d.name), d.listen, d.argv[0], args...)
		if err != nil {
			return fmt.Errorf("boards: %s: %w", d.name, err)
		}
		m.floorKB = mems[i].floorKB
		mems[i] = m
	}

	var sshd, sshc *agentMemory
	var sshdProcs int
	switch tun, err := peers.SSHTunnel(ctx, sink.addr()); {
	case errors.Is(err, peers.ErrNoOpenSSH):
		notes = append(notes, "The `ssh -L` peer was not measured: OpenSSH is not installed (scripts/setup-deps.sh installs openssh-server).")
	case err != nil:
		return fmt.Errorf("boards: ssh -L peer: %w", err)
	default:
		sshd, sshc, sshdProcs, err = measureSSH(ctx, sink, tun)
		tun.Close()
		if err != nil {
			return err
		}
	}

	enr, enrNotes, err := benchEnroll(ctx, tmp, umbra, agentBin, sh)
	if err != nil {
		return err
	}
	notes = append(notes, enrNotes...)

	r.printf("## Boards: agent memory, enrollment per key store\n\n")
	r.printf("A quickstart (controller and router1), a drone agent hosting a TCP sink and an operator agent\n")
	r.printf("dialing it. Resident memory (VmRSS) of the drone's agent: idle (link up, service bound, no\n")
	r.printf("circuit, %v after binding), and the largest of readings every %v while one circuit\n", idleSettle, boardsSample)
	r.printf("carries a stream the operator's side paces at %.0f MB/s (%d KB writes) for %v. The floor is the\n", boardsRate/1e6, boardsChunk>>10, boardsStreamTime)
	r.printf("same command line blocked in `umbra-agent status` against a socket that never answers: the Go\n")
	r.printf("runtime (and the emulator) before the agent does anything. The peer is the same stream through\n")
	r.printf("an `ssh -L` tunnel to the same sink, whose sshd side stands where the drone's agent stands.\n\n")
	r.printf("| process on the service's side | floor | idle | max, one circuit at %.0f MB/s | rate reached | idle ÷ sshd session |\n|---|---|---|---|---|---|\n", boardsRate/1e6)
	for i, d := range drones {
		m := mems[i]
		cmp := "—"
		if sshd != nil && i == 0 { // the emulated row's memory is mostly qemu's
			cmp = fmt.Sprintf("%.1f×", float64(m.idleKB)/float64(sshd.idleKB))
		}
		r.printf("| **%s** | %s | %s | %s | %.1f MB/s | %s |\n", d.label, mb(m.floorKB), mb(m.idleKB), mb(m.busyKB), m.stream.mbps, cmp)
	}
	if sshd != nil {
		r.printf("| `ssh -L` peer: the processes sshd forked for the connection (%d), summed (drone side) | — | %s | %s | %.1f MB/s | 1.0× |\n",
			sshdProcs, mb(sshd.idleKB), mb(sshd.busyKB), sshd.stream.mbps)
		r.printf("| `ssh -L` peer: the `ssh` client (operator side) | — | %s | %s | same stream | — |\n", mb(sshc.idleKB), mb(sshc.busyKB))
	}
	r.printf("| OpenZiti tunneler, quoted in the issue, not measured | — | ~%d MB | — | — | — |\n\n", boardsZitiMB)
	r.printf("Budget: a hosting agent idle under 12 MB (native). The sshd sum counts shared-library pages once\n")
	r.printf("per process.")
	if len(mems) > 1 {
		r.printf(" Under qemu-user the resident memory is the emulator's process: qemu itself, its\n")
		r.printf("translated-code cache and the guest's pages together, so the arm64 row overstates what the agent\n")
		r.printf("takes on a board; the gap between the two floors, %s, is about what the emulator adds.", mb(mems[1].floorKB-mems[0].floorKB))
	}
	r.printf("\n\n")
	for i, d := range drones {
		st := mems[i].stream
		switch {
		case st.cut:
			r.printf("%s could not take %.0f MB/s: the stream was cut at %v with %.1f MB sent; the sink received %.1f MB by %.1f s, %.1f MB/s.\n\n",
				d.label, boardsRate/1e6, boardsStreamMax, float64(st.sent)/1e6, float64(st.received)/1e6, st.elapsed.Seconds(), st.mbps)
		case st.mbps < 0.95*boardsRate/1e6:
			r.printf("%s fell behind the pace: the %.0f MB meant to take %v reached the sink in %.1f s, %.1f MB/s.\n\n",
				d.label, float64(st.sent)/1e6, boardsStreamTime, st.elapsed.Seconds(), st.mbps)
		}
	}

	r.printf("| enrollment, whole `umbra-agent enroll` command (median of %d) | umbra | peer (same run) | ratio |\n|---|---|---|---|\n", boardsEnrollRuns)
	if enr.file > 0 {
		if enr.curl > 0 {
			r.printf("| `--key file` | %s | `curl` POST of %d bytes on a new TLS 1.3 connection to a Go HTTPS server, whole command: %s | %.1f× |\n",
				ms(enr.file), boardsPOSTSize, ms(enr.curl), ratio(enr.file, enr.curl))
		} else {
			r.printf("| `--key file` | %s | — | — |\n", ms(enr.file))
		}
	}
	if enr.tpm > 0 {
		r.printf("| `--key tpm --tpm tcp:…` (swtpm on loopback) | %s | `--key file`: %s | %.1f× |\n", ms(enr.tpm), ms(enr.file), ratio(enr.tpm, enr.file))
	}
	r.printf("| for scale: `umbra-agent version`, process start | %s | — | — |\n\n", ms(enr.version))
	r.printf("An enrollment makes the key, runs a first TLS handshake only to read the controller's chain and\n")
	r.printf("pin the root the token names, then on one new TLS connection fetches the signing certificates\n")
	r.printf("and posts the CSR.")
	if enr.tpm > 0 {
		r.printf(" With the TPM store the key is made under a storage key the TPM derives afresh each\n")
		r.printf("time, and the CSR is signed inside the TPM. swtpm answers as fast as this machine's CPU; a\n")
		r.printf("discrete TPM 2.0 on a board's SPI bus is slower.")
	}
	r.printf("\n\n")
	for _, n := range notes {
		r.printf("%s\n\n", n)
	}
	return nil
}

// mb formats kilobytes as megabytes.
func mb(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// quickstartRouter reads router1's address from DIR/quickstart.json.
func quickstartRouter(dir string) (string, error) {
	qs, err := lab.ReadQuickstart(dir)
	if err != nil {
		return "", fmt.Errorf("boards: %w", err)
	}
	return qs.Router, nil
}

// measureHosting starts a drone agent (bin args…, logging to base.log, its status socket
// base.sock), waits until it hosts the sink, reads its memory idle, proves the circuit
// from listen works and then streams through it while sampling the agent's memory. The
// agent is stopped before it returns.
func measureHosting(ctx context.Context, s *sinkServer, base, listen, bin string, args ...string) (agentMemory, error) {
	var m agentMemory
	p, err := startProc(ctx, base+".log", bin, args...)
	if err != nil {
		return m, err
	}
	defer stopProc(p)
	if err := waitBound(ctx, p, base+".sock"); err != nil {
		return m, fmt.Errorf("%w\n%s", err, p.LogTail(boardsLogTail))
	}
	time.Sleep(idleSettle) // idle, not readiness: the agent is bound already
	m.idleKB = rssKB(p.Pid())
	if err := probe(ctx, s, listen); err != nil {
		return m, fmt.Errorf("%w\n%s", err, p.LogTail(boardsLogTail))
	}
	stopSampling := sampleMax(func() int { return rssKB(p.Pid()) })
	m.stream, err = pacedStream(ctx, s, listen)
	m.busyKB = stopSampling()
	if err != nil {
		return m, fmt.Errorf("%w\n%s", err, p.LogTail(boardsLogTail))
	}
	return m, nil
}

// measureSSH reads the memory of tun's ssh client and of the processes sshd forked for
// it, idle and under the same stream, to the sink the tunnel forwards to.
func measureSSH(ctx context.Context, s *sinkServer, tun *peers.Tunnel) (server, client *agentMemory, procs int, err error) {
	pids := tun.PIDs() // the ssh client, then sshd
	session := func() int {
		sum := 0
		for _, pid := range descendantPIDs(pids[1]) {
			sum += rssKB(pid)
		}
		return sum
	}
	server, client = &agentMemory{}, &agentMemory{}
	time.Sleep(idleSettle) // idle, as the agents were
	server.idleKB, client.idleKB = session(), rssKB(pids[0])
	procs = len(descendantPIDs(pids[1]))
	if err := probe(ctx, s, tun.Addr()); err != nil {
		return nil, nil, 0, fmt.Errorf("boards: ssh -L peer: %w", err)
	}
	stopServer := sampleMax(session)
	stopClient := sampleMax(func() int { return rssKB(pids[0]) })
	server.stream, err = pacedStream(ctx, s, tun.Addr())
	server.busyKB, client.busyKB = stopServer(), stopClient()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("boards: ssh -L peer: %w", err)
	}
	client.stream = server.stream
	return server, client, procs, nil
}

// waitBound polls an agent's status socket until it shows a link up and the sink bound.
func waitBound(ctx context.Context, p *lab.Proc, sock string) error {
	deadline := time.Now().Add(boardsReady)
	last := "no answer on the status socket"
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if p.Exited() {
			return fmt.Errorf("agent exited before binding %s", boardsService)
		}
		st, err := readAgentStatus(sock)
		if err == nil {
			last = fmt.Sprintf("status %+v", st)
			up := false
			for _, l := range st.Links {
				up = up || l.State == "up"
			}
			for _, h := range st.Hosting {
				if up && h.Service == boardsService && h.State == "bound" {
					return nil
				}
			}
		}
		time.Sleep(boardsPoll)
	}
	return fmt.Errorf("%s not bound within %v: %s", boardsService, boardsReady, last)
}

// agentStatus is the part of `umbra-agent status`'s JSON that the section reads.
type agentStatus struct {
	Links []struct {
		State string `json:"state"`
	} `json:"links"`
	Hosting []struct {
		Service string `json:"service"`
		State   string `json:"state"`
	} `json:"hosting"`
}

// readAgentStatus asks the agent on the status socket sock for its status.
func readAgentStatus(sock string) (agentStatus, error) {
	var st agentStatus
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return st, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	err = json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&st)
	return st, err
}

// probe writes a few bytes into addr until the sink has them, retrying on a new
// connection while the circuit is not up yet.
func probe(ctx context.Context, s *sinkServer, addr string) error {
	deadline := time.Now().Add(boardsReady)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if last = probeOnce(s, addr); last == nil {
			return nil
		}
		time.Sleep(boardsPoll)
	}
	return fmt.Errorf("no circuit through %s within %v: %v", addr, boardsReady, last)
}

func probeOnce(s *sinkServer, addr string) error {
	base := s.received()
	c, err := net.DialTimeout("tcp", addr, boardsProbeWait)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(boardsProbeWait))
	if _, err := c.Write(make([]byte, boardsProbe)); err != nil {
		return err
	}
	deadline := time.Now().Add(boardsProbeWait)
	for time.Now().Before(deadline) {
		if s.received()-base >= boardsProbe {
			return nil
		}
		time.Sleep(boardsPoll)
	}
	return fmt.Errorf("the sink got %d of %d probe bytes within %v", s.received()-base, boardsProbe, boardsProbeWait)
}

// pacedStream writes boardsRate × boardsStreamTime bytes into addr at boardsRate (cut at
// boardsStreamMax on a slower path) and waits up to boardsDrain for the sink to receive
// them. The rate is what the sink received over the time from the first write to its
// last arrival.
func pacedStream(ctx context.Context, s *sinkServer, addr string) (flowRun, error) {
	var run flowRun
	c, err := net.DialTimeout("tcp", addr, boardsWriteTimeout)
	if err != nil {
		return run, fmt.Errorf("stream: %w", err)
	}
	defer c.Close()
	buf := make([]byte, boardsChunk)
	rand.Read(buf) // nothing on the path compresses, but no path should get an easy ride
	total := int64(boardsRate * boardsStreamTime.Seconds())
	base := s.received()
	start := time.Now()
	for run.sent < total && time.Since(start) < boardsStreamMax && ctx.Err() == nil {
		due := start.Add(time.Duration(float64(run.sent) / boardsRate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		c.SetWriteDeadline(time.Now().Add(boardsWriteTimeout))
		n, err := c.Write(buf[:min(boardsChunk, total-run.sent)])
		run.sent += int64(n)
		if err != nil {
			return run, fmt.Errorf("stream through %s: write at byte %d: %w", addr, run.sent, err)
		}
	}
	deadline := time.Now().Add(boardsDrain)
	for s.received()-base < run.sent && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(boardsPoll)
	}
	run.received = s.received() - base
	if run.received == 0 {
		return run, fmt.Errorf("stream through %s: the sink received nothing", addr)
	}
	run.cut = run.sent < total
	run.elapsed = s.lastArrival().Sub(start)
	run.mbps = float64(run.received) / 1e6 / run.elapsed.Seconds()
	return run, nil
}

// sampleMax reads f every boardsSample until the returned function is called, which
// returns the largest reading (taking one more first).
func sampleMax(f func() int) func() int {
	done := make(chan struct{})
	result := make(chan int, 1)
	go func() {
		best := f()
		t := time.NewTicker(boardsSample)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				best = max(best, f())
			case <-done:
				result <- max(best, f())
				return
			}
		}
	}()
	return func() int { close(done); return <-result }
}

// descendantPIDs lists the processes descended from pid, by each process's parent in
// /proc/PID/stat.
func descendantPIDs(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(data[i+1:]), " %s %d", &state, &ppid); err == nil {
			parent[child] = ppid
		}
	}
	var out []int
	for child := range parent {
		for p, hops := parent[child], 0; p > 1 && hops < len(parent); p, hops = parent[p], hops+1 {
			if p == pid {
				out = append(out, child)
				break
			}
		}
	}
	return out
}

// processFloor runs argv's `status` against a socket that accepts and never answers and
// returns the process's resident memory once it is blocked there.
func processFloor(ctx context.Context, dir string, argv []string) (int, error) {
	sock := filepath.Join(dir, "floor.sock")
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return 0, fmt.Errorf("floor: %w", err)
	}
	defer ln.Close()
	args := append(append([]string(nil), argv[1:]...), "status", "--status-socket", sock)
	p, err := startProc(ctx, filepath.Join(dir, "floor.log"), argv[0], args...)
	if err != nil {
		return 0, err
	}
	defer stopProc(p)
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-p.Done():
		return 0, fmt.Errorf("floor: `status` exited before connecting\n%s", p.LogTail(boardsLogTail))
	case <-time.After(boardsReady):
		return 0, fmt.Errorf("floor: `status` did not connect within %v", boardsReady)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	time.Sleep(boardsFloorSettle) // blocked in its read, which outlasts this by seconds
	return rssKB(p.Pid()), nil
}

// enrollFigures are the medians of the enrollment runs; a zero figure was not measured.
type enrollFigures struct {
	file, tpm, curl, version time.Duration
}

// benchEnroll times `umbra-agent enroll` with a file key and with a key in swtpm, the
// curl peer and `umbra-agent version`, against the running quickstart sh talks to.
func benchEnroll(ctx context.Context, dir, umbra, agentBin string, sh func(...string) error) (enrollFigures, []string, error) {
	var f enrollFigures
	var notes []string
	timed := func(args ...string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, boardsEnrollTimeout)
		defer cancel()
		t0 := time.Now()
		out, err := exec.CommandContext(cctx, args[0], args[1:]...).CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("boards: %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return d, nil
	}
	enrollRuns := func(store string, extra ...string) (time.Duration, error) {
		var ds []time.Duration
		for i := range boardsEnrollRuns {
			name := fmt.Sprintf("enroll-%s-%d", store, i)
			jwt := filepath.Join(dir, name+".jwt")
			if err := sh(umbra, "edge", "create", "identity", name, "--jwt-out", jwt); err != nil {
				return 0, err
			}
			d, err := timed(append([]string{agentBin, "enroll", "--jwt", jwt, "--out", filepath.Join(dir, name+".json"), "--key", store}, extra...)...)
			if err != nil {
				return 0, err
			}
			ds = append(ds, d)
		}
		return median(ds), nil
	}
	var ds []time.Duration
	for range boardsEnrollRuns {
		d, err := timed(agentBin, "version")
		if err != nil {
			return f, nil, err
		}
		ds = append(ds, d)
	}
	f.version = median(ds)
	var err error
	if f.file, err = enrollRuns("file"); err != nil {
		return f, nil, err
	}
	switch path, stopTPM, err := startSWTPM(ctx); {
	case errors.Is(err, errNoSWTPM):
		notes = append(notes, "The TPM enrollment was not measured: swtpm is not installed (Debian package swtpm; scripts/setup-deps.sh installs it).")
	case err != nil:
		return f, nil, fmt.Errorf("boards: %w", err)
	default:
		f.tpm, err = enrollRuns("tpm", "--tpm", path)
		stopTPM()
		if err != nil {
			return f, nil, err
		}
	}
	switch curl, err := exec.LookPath("curl"); {
	case err != nil:
		notes = append(notes, "The curl peer was not measured: curl is not installed (Debian package curl).")
	default:
		if f.curl, err = curlPeer(ctx, dir, curl, timed); err != nil {
			return f, nil, err
		}
	}
	return f, notes, nil
}

// curlPeer serves HTTPS (TLS 1.3, P-256, as the controller) on loopback and times curl
// processes that each POST boardsPOSTSize bytes on a new connection, checking the
// server's certificate.
func curlPeer(ctx context.Context, dir, curl string, timed func(...string) (time.Duration, error)) (time.Duration, error) {
	key, err := pki.NewKey()
	if err != nil {
		return 0, err
	}
	serial, err := pki.NewSerial()
	if err != nil {
		return 0, err
	}
	// OpenSSL wants an issuer name to look the trust anchor up by.
	cert, err := pki.Issue(&x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "umbra bench curl peer"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, nil, &key.PublicKey, key)
	if err != nil {
		return 0, err
	}
	caFile := filepath.Join(dir, "curl-ca.pem")
	bodyFile := filepath.Join(dir, "curl-body")
	if err := os.WriteFile(caFile, pki.EncodeCerts(cert), 0o600); err != nil {
		return 0, fmt.Errorf("boards: curl peer: %w", err)
	}
	if err := os.WriteFile(bodyFile, make([]byte, boardsPOSTSize), 0o600); err != nil {
		return 0, fmt.Errorf("boards: curl peer: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("boards: curl peer: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Write([]byte(`{"ok":true}`))
		}),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}},
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	var ds []time.Duration
	for range boardsEnrollRuns {
		d, err := timed(curl, "-sS", "--fail", "--tlsv1.3", "--cacert", caFile, "-o", os.DevNull,
			"--data-binary", "@"+bodyFile, "https://"+ln.Addr().String()+"/enroll")
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	return median(ds), nil
}

// sinkServer accepts TCP connections on loopback and counts every byte they bring.
type sinkServer struct {
	srv  *lab.Server
	n    atomic.Int64
	last atomic.Int64 // UnixNano of the latest arrival
}

// startSink starts a sink on 127.0.0.1; it stops on stop or when ctx ends.
func startSink(ctx context.Context) (*sinkServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("boards: sink: %w", err)
	}
	s := &sinkServer{}
	s.srv = lab.Serve(ln, s.drain)
	context.AfterFunc(ctx, s.stop)
	return s, nil
}

// drain counts what c brings until it ends (lab.Serve closes it).
func (s *sinkServer) drain(c net.Conn) {
	buf := make([]byte, boardsChunk)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			s.n.Add(int64(n))
			s.last.Store(time.Now().UnixNano())
		}
		if err != nil {
			return
		}
	}
}

func (s *sinkServer) addr() string           { return s.srv.Addr() }
func (s *sinkServer) received() int64        { return s.n.Load() }
func (s *sinkServer) lastArrival() time.Time { return time.Unix(0, s.last.Load()) }

// stop closes the listener and every connection and waits for the sink's goroutines.
func (s *sinkServer) stop() { s.srv.Close() }

// startProc starts bin with its output in logPath; ctx's end kills it.
func startProc(ctx context.Context, logPath, bin string, args ...string) (*lab.Proc, error) {
	return lab.StartLogged(exec.CommandContext(ctx, bin, args...), logPath)
}

// stopProc interrupts p, then kills it after boardsStopTimeout, and waits for the exit.
func stopProc(p *lab.Proc) { p.Stop(os.Interrupt, boardsStopTimeout) }
