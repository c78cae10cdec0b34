package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/third_party/quic-go"

	"golang.org/x/sys/unix"

	"github.com/umbranet/umbra/internal/linksim"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/scripts/bench/peers"
)

// The radio section puts umbra and TCP-based tunnels behind one emulated radio: two
// network namespaces joined by linksim's IP mode. Side A is the operator (umbra's
// dialing agent, the ssh client, the bench's own sockets); side B is the ground station
// (quickstart, the drone agent hosting the echo service, sshd, TLS and QUIC echo
// servers). Every path crosses the link exactly once. These are its sizes and bounds; every loop below is
// bounded by one of them in count and in time.
const (
	// radioTimeout bounds the whole section, set-up and clean-up included; a run takes
	// about 34 minutes, most of it in the goodput matrix, the UDP flows and the 120 s
	// blackout.
	radioTimeout = 50 * time.Minute
	// radioSetupTimeout bounds each command, start-up and first echo of the set-up.
	radioSetupTimeout = 60 * time.Second
	// radioBulkTime is how long each bulk run keeps a path full.
	radioBulkTime = 8 * time.Second
	// radioWindowTime sizes a bulk run's bytes in flight (sent, not yet echoed) as this
	// much of the profile's rate, and at least radioMinWindow: enough to fill the link
	// and to keep several 16 KiB TLS records or ssh packets (what the tunnels cut a
	// stream into) in flight, little enough that what is still queued when the run
	// stops drains in seconds, not the minutes a tunnel's own buffers hold at 64 kbit/s.
	radioWindowTime = time.Second
	radioMinWindow  = 32 << 10
	// radioChunk is the most a bulk run writes at once.
	radioChunk = 4 << 10
	// radioEchoSize is the size of every echo request.
	radioEchoSize = 64
	// radioEchoRounds and radioEchoTime bound each latency run, whichever ends first,
	// after radioEchoWarmup untimed rounds; radioEchoGrace lets the last one finish.
	radioEchoRounds = 60
	radioEchoTime   = 10 * time.Second
	radioEchoWarmup = 3
	radioEchoGrace  = 20 * time.Second
	// radioSettleEchoes and radioSettleTime bound the echoes that settle a path.
	radioSettleEchoes = 30
	radioSettleTime   = 5 * time.Second
	// radioEchoEvery paces the echo kept up on each connection across a blackout, and
	// radioSteady is how long it runs before the blackout starts.
	radioEchoEvery = 50 * time.Millisecond
	radioSteady    = 2 * time.Second
	// radioCap is how long after the link returns a path has to carry an echo again.
	// An open TCP connection's next retransmission after a 120 s outage comes 85–95 s
	// after the link's return (its timer doubles from 200 ms), hence more than that.
	radioCap = 120 * time.Second
	// radioRetryEvery paces the new-connection attempts after a blackout, at most
	// radioRetryInFlight of them at once: a user retrying, without piling up hundreds
	// of waiting connections on a stalled tunnel.
	radioRetryEvery    = 250 * time.Millisecond
	radioRetryInFlight = 8
	// A link is drained when one radioDrainStep carries fewer than the quiet bytes: at
	// least radioQuietBytes, and radioQuietIdle times what the idle link carried in a step
	// after set-up (the operator agents' heartbeats, some 1.6 KB/s both ways each);
	// radioDrainMax bounds the wait.
	radioDrainStep  = time.Second
	radioQuietBytes = 3000
	radioQuietIdle  = 2
	radioQuietSteps = 3
	radioDrainMax   = 20 * time.Second
	// radioPoll is how often waits look again.
	radioPoll = 100 * time.Millisecond
	// radioStopTimeout bounds a process's exit after SIGINT before it is killed.
	radioStopTimeout = 10 * time.Second
)

// Fixed addresses inside the namespaces, which are fresh and hold nothing else.
const (
	radioUmbraListen = "127.0.0.1:7000" // side A: the operator agent's --dial listener
	// side A: the listener of the operator agent on the relay router, whose circuits
	// cross the radio on a router link
	radioRelayListen = "127.0.0.1:7020"
	// radioRelayPort is the relay router's port on side A's link address.
	radioRelayPort  = 7444
	radioSSHListen  = "127.0.0.1:7001" // side A: ssh -L's local end
	radioSSHDPort   = 2222             // side B: sshd, on B's link address
	radioSSHD       = "/usr/sbin/sshd" // absolute: sshd re-executes itself
	radioPrivsepDir = "/run/sshd"      // sshd's privilege-separation directory
)

// The paths, in the order every table shows them.
const (
	radioPathUmbra = iota
	radioPathSSH
	radioPathTLS
	radioPathQUIC
	radioPathTLSCubic
	// radioPathRelay is umbra's circuit from an operator agent on a relay router on side
	// A (loopback hop) across a router link (`--link-profile radio`) on the radio to the
	// quickstart's router: the radio on the router ↔ router hop instead of the agent's.
	radioPathRelay
)

// radioPath is one way from side A to the echo service on side B.
type radioPath struct {
	name string
	// dial opens a new connection through the path, from side A, ready to echo.
	dial func(ctx context.Context) (net.Conn, error)
}

// radioLab is the link, its namespaces and the processes started in them.
type radioLab struct {
	ctx   context.Context
	nl    *linksim.NetnsLink
	link  *linksim.Link
	dir   string
	env   []string
	umbra string
	agent string
	procs []*exec.Cmd
	stops []func()
	// quiet is the most bytes a radioDrainStep of a drained link carries.
	quiet uint64
	// fecOperator is the command line of the operator agent with --udp-fec, started
	// only for the UDP flows.
	fecOperator []string
	// router is the quickstart router's address on side B.
	router string
}

// radioProfile is a linksim profile to measure under, and whether to run bulk on it.
type radioProfile struct {
	name string
	bulk bool
}

// radioFigures are one path's figures under one profile.
type radioFigures struct {
	rate    float64 // bytes per second echoed, one way
	rateErr error
	noBulk  bool // bulk was not run
	lat     []time.Duration
	latErr  error
}

// radioRecovery is one path's recovery from one blackout.
type radioRecovery struct {
	same     time.Duration // from the link's return to the next echo on the open connection
	sameErr  error         // the open connection failed instead, or never came back
	fresh    time.Duration // from the link's return to a new connection's first echo
	freshErr error
}

// radioPlan is what the radio section measures, in the order it runs: the profiles, the
// goodput matrix (every loss rate at every round-trip time), the UDP flows (every loss rate
// at one round-trip time, and one full-rate check), and the blackouts.
type radioPlan struct {
	profiles     []radioProfile
	losses       []float64
	rtts         []time.Duration
	udpRTT       time.Duration
	udpCheckLoss float64
	udpCheckRTT  time.Duration
	blackouts    []time.Duration
	skipUDP      bool // radioSkipEnv named udp
	// onlyPaths, when not nil, are the paths (by index) the goodput matrix and the
	// blackouts measure; radioPathsEnv names them. The others' cells read "not measured"
	// and their blackout rows are left out.
	onlyPaths map[int]bool
	// onlyProfiles: radioProfilesEnv ran the profiles alone.
	onlyProfiles bool
}

// defaultRadioPlan is the plan of issue #4: loss of 0–30 % × RTT of 50–800 ms, blackouts of
// 2 s to two minutes.
func defaultRadioPlan() radioPlan {
	return radioPlan{
		// No bulk over the telemetry radio: at 64 kbit/s behind a 16-packet modem queue it
		// measures the queue and TCP's backoff more than the tunnel, takes tens of seconds
		// to drain, and starves whatever runs next.
		profiles:     []radioProfile{{"telemetry-radio", false}, {"lte-bad", true}, {"mesh-radio", true}},
		losses:       []float64{0, 0.01, 0.05, 0.10, 0.20, 0.30},
		rtts:         []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond},
		udpRTT:       200 * time.Millisecond,
		udpCheckLoss: 0.30,
		udpCheckRTT:  800 * time.Millisecond,
		blackouts:    []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second, 120 * time.Second},
	}
}

// radioProfilesEnv, when set, runs only the "Under radio profiles" part of the section,
// for the comma-separated profiles it names (for example `telemetry-radio`): a run of a
// minute or two to reproduce or check one profile's rows, instead of the whole section.
// The report then holds only those rows, so point -out away from docs/BENCHMARKS.md:
//
//	UMBRA_BENCH_RADIO_PROFILES=telemetry-radio go run ./scripts/bench -only radio -out /tmp/radio.md
const radioProfilesEnv = "UMBRA_BENCH_RADIO_PROFILES"

// radioQuickEnv, when set, runs a short form of the section (quick): a run of ten
// minutes or so to check a change to the transport against the peers, not a full report:
//
//	UMBRA_BENCH_RADIO_QUICK=1 go run ./scripts/bench -only radio -out /tmp/radio.md
const radioQuickEnv = "UMBRA_BENCH_RADIO_QUICK"

// radioMatrixEnv, when set, replaces the goodput matrix's loss rates and round-trip
// times: "LOSSES;RTTS", each comma-separated, for example `0,0.1;50ms,200ms,800ms`; ";"
// is no cell at all (as UMBRA_BENCH_RADIO_SKIP=matrix).
const radioMatrixEnv = "UMBRA_BENCH_RADIO_MATRIX"

// radioSkipEnv, when set, skips the comma-separated parts of the section it names, of
// profiles, matrix, udp and blackouts: a run of the goodput matrix alone is
//
//	UMBRA_BENCH_RADIO_SKIP=udp,blackouts go run ./scripts/bench -only radio -out /tmp/radio.md
const radioSkipEnv = "UMBRA_BENCH_RADIO_SKIP"

// radioPathsEnv, when set, narrows the goodput matrix and the blackouts to the
// comma-separated paths it names, of umbra, ssh, tls, quic, cubic and relay: one cell of
// one path in under a minute, to check a change to umbra's controller,
//
//	UMBRA_BENCH_RADIO_MATRIX='0.1;200ms' UMBRA_BENCH_RADIO_SKIP=udp,blackouts,profiles \
//	UMBRA_BENCH_RADIO_PATHS=umbra go run ./scripts/bench -bin bin -only radio -out /tmp/cell.md
//
// or the blackout rows of the relay and the agent's hop alone (about 8 minutes):
//
//	UMBRA_BENCH_RADIO_SKIP=profiles,matrix,udp UMBRA_BENCH_RADIO_PATHS=relay,umbra \
//	go run ./scripts/bench -bin bin -only radio -out /tmp/blackouts.md
const radioPathsEnv = "UMBRA_BENCH_RADIO_PATHS"

// radioPathNames are radioPathsEnv's names of the paths.
var radioPathNames = map[string]int{"umbra": radioPathUmbra, "ssh": radioPathSSH, "tls": radioPathTLS, "quic": radioPathQUIC,
	"cubic": radioPathTLSCubic, "relay": radioPathRelay}

// errNotMeasured is the error of a matrix cell whose path radioPathsEnv left out.
var errNotMeasured = errors.New("not measured")

// narrowPaths applies radioPathsEnv's paths to p.
func (p *radioPlan) narrowPaths(names string) error {
	if names == "" {
		return nil
	}
	p.onlyPaths = map[int]bool{}
	for _, n := range strings.Split(names, ",") {
		i, ok := radioPathNames[strings.TrimSpace(n)]
		if !ok {
			return fmt.Errorf("radio: %s: %q: want umbra, ssh, tls, quic, cubic or relay", radioPathsEnv, n)
		}
		p.onlyPaths[i] = true
	}
	return nil
}

// narrow applies radioMatrixEnv's matrix and radioSkipEnv's skips to p.
func (p *radioPlan) narrow(matrix, skip string) error {
	if strings.TrimSpace(matrix) == ";" {
		p.losses, p.rtts = nil, nil // no cell
	} else if matrix != "" {
		ls, rs, ok := strings.Cut(matrix, ";")
		if !ok {
			return fmt.Errorf("radio: %s=%q: want LOSSES;RTTS", radioMatrixEnv, matrix)
		}
		p.losses, p.rtts = nil, nil
		for _, f := range strings.Split(ls, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || v < 0 || v >= 1 {
				return fmt.Errorf("radio: %s: loss %q: want 0 to 1", radioMatrixEnv, f)
			}
			p.losses = append(p.losses, v)
		}
		for _, f := range strings.Split(rs, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d <= 0 {
				return fmt.Errorf("radio: %s: round trip %q: want a duration", radioMatrixEnv, f)
			}
			p.rtts = append(p.rtts, d)
		}
	}
	for _, part := range strings.Split(skip, ",") {
		switch strings.TrimSpace(part) {
		case "":
		case "profiles":
			p.profiles = nil
		case "matrix":
			p.losses, p.rtts = nil, nil
		case "udp":
			p.skipUDP = true
		case "blackouts":
			p.blackouts = nil
		default:
			return fmt.Errorf("radio: %s: %q: want profiles, matrix, udp or blackouts", radioSkipEnv, part)
		}
	}
	return nil
}

// quick narrows p to the bulk profiles, the goodput matrix at 0 and 10 % loss and 50 and
// 200 ms, the UDP flows at those losses with the full-rate check, and no blackouts.
func (p radioPlan) quick() radioPlan {
	var bulk []radioProfile
	for _, pr := range p.profiles {
		if pr.bulk {
			bulk = append(bulk, pr)
		}
	}
	return radioPlan{profiles: bulk, losses: []float64{0, 0.10}, rtts: p.rtts[:2], udpRTT: p.udpRTT, udpCheckLoss: p.udpCheckLoss, udpCheckRTT: p.udpCheckRTT}
}

// profilesOnly narrows p to the profiles named in names (comma-separated) and drops the
// goodput matrix, the UDP flows and the blackouts.
func (p radioPlan) profilesOnly(names string) (radioPlan, error) {
	var keep []radioProfile
	for _, n := range strings.Split(names, ",") {
		n = strings.TrimSpace(n)
		if _, ok := linksim.Profile(n); !ok {
			return p, fmt.Errorf("radio: %s: no linksim profile %q", radioProfilesEnv, n)
		}
		bulk := false
		for _, pr := range p.profiles {
			if pr.name == n {
				bulk = pr.bulk
			}
		}
		keep = append(keep, radioProfile{n, bulk})
	}
	return radioPlan{profiles: keep, onlyProfiles: true}, nil
}

// radioResults is everything the section measured, for the report.
type radioResults struct {
	plan       radioPlan
	paths      []radioPath
	flows      []udpFlow
	figures    map[string][]radioFigures
	matrix     []matrixCell
	udp        []udpCell
	recoveries map[time.Duration][]radioRecovery
	phases     []radioPhase
	tcpCC      string // TCP congestion control in the namespaces
}

// radioPhase is how long one part of the section took.
type radioPhase struct {
	name string
	took time.Duration
}

// benchRadio measures umbra, ssh -L, TLS over TCP and raw quic-go behind the same
// emulated radio: echo latency and bulk throughput under radio profiles, goodput under
// loss × round-trip time, umbra's UDP flows with and without FEC beside the bare link, and
// how soon traffic flows again after blackouts, on the connection that was open and on a
// new one.
func benchRadio(ctx context.Context, c config, r *report) error {
	if err := linksim.CheckNetns(); err != nil {
		return fmt.Errorf("radio: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, radioTimeout)
	defer cancel()
	// An interrupt ends the section through its deferred clean-up, so that no namespace
	// or process outlives the bench.
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	res := radioResults{plan: defaultRadioPlan(), figures: map[string][]radioFigures{}, recoveries: map[time.Duration][]radioRecovery{}}
	if os.Getenv(radioQuickEnv) != "" {
		res.plan = res.plan.quick()
	}
	if err := res.plan.narrow(os.Getenv(radioMatrixEnv), os.Getenv(radioSkipEnv)); err != nil {
		return err
	}
	if err := res.plan.narrowPaths(os.Getenv(radioPathsEnv)); err != nil {
		return err
	}
	onlyProfiles := os.Getenv(radioProfilesEnv)
	if onlyProfiles != "" {
		var err error
		if res.plan, err = res.plan.profilesOnly(onlyProfiles); err != nil {
			return err
		}
	}
	began := time.Now()
	phaseStart := began
	phase := func(name string) {
		res.phases = append(res.phases, radioPhase{name, time.Since(phaseStart)})
		phaseStart = time.Now()
	}
	progress := func(format string, args ...any) {
		log.Printf("radio: %3.0f s: %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	lab, err := newRadioLab(ctx, c)
	if err != nil {
		return err
	}
	defer lab.close()
	res.paths, res.flows, err = lab.startPaths()
	if err != nil {
		return fmt.Errorf("radio: %w\n%s", err, lab.logs())
	}
	paths := res.paths
	phase("set-up")
	lab.learnQuiet(ctx)
	res.tcpCC = lab.tcpCongestionControl()

	for _, pr := range res.plan.profiles {
		if err := lab.settle(ctx, paths); err != nil {
			return err
		}
		prof, _ := linksim.Profile(pr.name)
		if err := lab.setConditions(prof.Up, prof.Down); err != nil {
			return err
		}
		window := max(int64(radioMinWindow), int64(float64(prof.Up.RateBitsPerSec)/8*radioWindowTime.Seconds()))
		for _, p := range paths {
			if ctx.Err() != nil {
				return fmt.Errorf("radio: %w", ctx.Err())
			}
			progress("%s, %s", pr.name, p.name)
			before := lab.nl.Stats()
			f := lab.measure(ctx, p, pr.bulk, window)
			res.figures[pr.name] = append(res.figures[pr.name], f)
			progress("%s, %s: %d echoes %v (%v); link %s", pr.name, p.name, len(f.lat), f.lat, f.latErr, linkDelta(before, lab.nl.Stats()))
		}
	}
	phase("profiles")
	if onlyProfiles != "" {
		writeRadio(r, res)
		return nil
	}

	if res.matrix, err = lab.goodputMatrix(ctx, paths, res.plan, progress); err != nil {
		return err
	}
	phase("goodput matrix")

	if !res.plan.skipUDP {
		if err := lab.udpFlows(ctx, &res, progress); err != nil {
			return err
		}
		phase("UDP flows")
	}

	for _, d := range res.plan.blackouts {
		if err := lab.settle(ctx, paths); err != nil {
			return err
		}
		progress("blackout of %v", d)
		rec, err := lab.blackoutRound(ctx, paths, res.plan.onlyPaths, d)
		if err != nil {
			return err
		}
		res.recoveries[d] = rec
		for i, x := range rec {
			progress("%v blackout, %s: same connection %v %v; new connection %v %v", d, paths[i].name, x.same, x.sameErr, x.fresh, x.freshErr)
		}
	}
	phase("blackouts")
	progress("done")
	if ctx.Err() != nil {
		return fmt.Errorf("radio: %w", ctx.Err())
	}
	writeRadio(r, res)
	return nil
}

// newRadioLab makes the link (clean to start with), its namespaces and a temp dir.
func newRadioLab(ctx context.Context, c config) (*radioLab, error) {
	umbra, err := filepath.Abs(filepath.Join(c.bin, "umbra"))
	if err != nil {
		return nil, fmt.Errorf("radio: %w", err)
	}
	agent, err := filepath.Abs(filepath.Join(c.bin, "umbra-agent"))
	if err != nil {
		return nil, fmt.Errorf("radio: %w", err)
	}
	link, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
	if err != nil {
		return nil, fmt.Errorf("radio: %w", err)
	}
	dir, err := os.MkdirTemp("", "umbra-bench-radio")
	if err != nil {
		return nil, fmt.Errorf("radio: %w", err)
	}
	nl, err := linksim.NewNetnsLink(ctx, linksim.NetnsConfig{}, link)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("radio: %w", err)
	}
	return &radioLab{ctx: ctx, nl: nl, link: link, dir: dir, umbra: umbra, agent: agent, env: os.Environ()}, nil
}

// close stops every process (and whatever is still left in the namespaces, which are
// this lab's own), the echo servers and the link, and removes the temp dir.
func (l *radioLab) close() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		lab.StopCmd(l.procs[i], os.Interrupt, radioStopTimeout)
	}
	// sshd's per-connection children start sessions of their own and outlive it.
	for _, side := range []linksim.Side{linksim.SideA, linksim.SideB} {
		out, _ := exec.Command("ip", "netns", "pids", l.nl.Namespace(side)).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for i := len(l.stops) - 1; i >= 0; i-- {
		l.stops[i]()
	}
	if err := l.nl.Close(); err != nil {
		log.Printf("radio: %v", err)
	}
	os.RemoveAll(l.dir)
}

// setConditions sets both directions of the link.
func (l *radioLab) setConditions(up, down linksim.Impairment) error {
	if err := l.link.SetUp(up); err != nil {
		return fmt.Errorf("radio: %w", err)
	}
	if err := l.link.SetDown(down); err != nil {
		return fmt.Errorf("radio: %w", err)
	}
	return nil
}

// addr is side's address on the link, with port.
func (l *radioLab) addr(side linksim.Side, port int) string {
	return netip.AddrPortFrom(l.nl.Addr(side), uint16(port)).String()
}

// runner starts programs inside side's namespace and runs its setup commands within
// radioSetupTimeout.
func (l *radioLab) runner(side linksim.Side) lab.Runner {
	return lab.Runner{Ctx: l.ctx, Dir: l.dir, Env: l.env, Timeout: radioSetupTimeout,
		Command: func(ctx context.Context, bin string, args ...string) *exec.Cmd {
			return l.nl.CommandContext(ctx, side, bin, args...)
		}}
}

// start starts bin inside side's namespace, its output in name.log.
func (l *radioLab) start(side linksim.Side, name, bin string, args ...string) error {
	cmd, err := l.runner(side).Start(name, bin, args...)
	if err != nil {
		return fmt.Errorf("radio: %w", err)
	}
	l.procs = append(l.procs, cmd)
	return nil
}

// run runs bin inside side's namespace to completion.
func (l *radioLab) run(side linksim.Side, bin string, args ...string) error {
	return l.runner(side).Run(bin, args...)
}

// logs returns the processes' logs, for a failure's message.
func (l *radioLab) logs() string { return lab.Logs(filepath.Join(l.dir, "*.log"), 4<<10) }

// startPaths starts the echo servers, umbra, sshd and ssh -L, and returns the paths
// (umbra's first) once each has carried an echo, and the UDP flows (in the order of
// udpFlowLink, udpFlowUmbra, udpFlowFEC; the last needs startUDPOperators).
func (l *radioLab) startPaths() ([]radioPath, []udpFlow, error) {
	base := time.Now()
	echo, sink, linkSink, err := l.startSinks(base)
	if err != nil {
		return nil, nil, err
	}
	um, err := l.startUmbra(echo, sink.pc.LocalAddr().String())
	if err != nil {
		return nil, nil, err
	}
	ssh, err := l.startSSH(echo)
	if err != nil {
		return nil, nil, err
	}
	tl, err := l.startTLS("TLS 1.3 over TCP", "")
	if err != nil {
		return nil, nil, err
	}
	tc, err := l.startTLS("TLS 1.3 over TCP, CUBIC", "cubic")
	if err != nil {
		return nil, nil, err
	}
	rq, err := l.startQUIC()
	if err != nil {
		return nil, nil, err
	}
	paths := []radioPath{radioPathUmbra: um, radioPathSSH: ssh, radioPathTLS: tl, radioPathQUIC: rq, radioPathTLSCubic: tc}
	relay, err := l.startRelay()
	if err != nil {
		return nil, nil, err
	}
	paths = append(paths, relay)
	for _, p := range paths {
		if err := l.waitPath(p); err != nil {
			return nil, nil, err
		}
	}
	flows := []udpFlow{
		udpFlowLink:  {name: "UDP straight over the link (no umbra)", addr: linkSink.pc.LocalAddr().String(), sink: linkSink, straggle: udpPlainStraggle},
		udpFlowUmbra: {name: "umbra UDP circuit", addr: radioUDPListen, sink: sink, straggle: udpUmbraStraggle},
		udpFlowFEC:   {name: "umbra UDP circuit, FEC " + udpFEC, addr: radioUDPFECListen, sink: sink, straggle: udpUmbraStraggle},
	}
	return paths, flows, nil
}

// startUmbra runs the quickstart and the drone agents on side B, hosting echo (TCP) and
// uecho (UDP, delivered to udpEcho), and the operator's agent dialing them on side A:
// drone and op without forward error correction, dronefec with --udp-fec; opfec, the
// operator with --udp-fec, is left for startUDPOperators.
func (l *radioLab) startUmbra(echo, udpEcho string) (radioPath, error) {
	var none radioPath
	qs := filepath.Join(l.dir, "qs")
	if err := l.start(linksim.SideB, "quickstart", l.umbra, "quickstart", "--dir", qs, "--host", l.nl.Addr(linksim.SideB).String(),
		"--link-profile", "radio"); err != nil {
		return none, err
	}
	if err := lab.WaitFile(l.ctx, filepath.Join(l.dir, "quickstart.log"), "ready controller=", 1); err != nil {
		return none, err
	}
	state, err := lab.ReadQuickstart(qs)
	if err != nil {
		return none, err
	}
	l.env = append(l.env, "UMBRA_ADMIN="+filepath.Join(qs, "admin.json"))
	// Admin commands and enrollment talk to the controller, which is on side B.
	ids := func(name string) (string, string) {
		return filepath.Join(l.dir, name+".jwt"), filepath.Join(l.dir, name+".json")
	}
	dJWT, dID := ids("drone")
	oJWT, oID := ids("op")
	dfJWT, dfID := ids("dronefec")
	ofJWT, ofID := ids("opfec")
	for _, s := range [][]string{
		{l.umbra, "edge", "create", "service", "echo", "--host", "tcp:" + echo},
		{l.umbra, "edge", "create", "service", "uecho", "--host", "udp:" + udpEcho},
		{l.umbra, "edge", "create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo"},
		{l.umbra, "edge", "create", "service-policy", "ub", "--type", "bind", "--identities", "#drone,#dronefec", "--services", "@uecho"},
		{l.umbra, "edge", "create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo,@uecho"},
		{l.umbra, "edge", "create", "identity", "drone", "--attr", "drone", "--jwt-out", dJWT},
		{l.umbra, "edge", "create", "identity", "op", "--attr", "operator", "--jwt-out", oJWT},
		{l.umbra, "edge", "create", "identity", "dronefec", "--attr", "dronefec", "--jwt-out", dfJWT},
		{l.umbra, "edge", "create", "identity", "opfec", "--attr", "operator", "--jwt-out", ofJWT},
		{l.agent, "enroll", "--jwt", dJWT, "--out", dID},
		{l.agent, "enroll", "--jwt", oJWT, "--out", oID},
		{l.agent, "enroll", "--jwt", dfJWT, "--out", dfID},
		{l.agent, "enroll", "--jwt", ofJWT, "--out", ofID},
	} {
		if err := l.run(linksim.SideB, s[0], s[1:]...); err != nil {
			return none, err
		}
	}
	for _, a := range []struct {
		side linksim.Side
		name string
		args []string
	}{
		{linksim.SideB, "drone", []string{"--identity", dID}},
		{linksim.SideB, "dronefec", []string{"--identity", dfID, "--udp-fec", udpFEC}},
		{linksim.SideA, "op", []string{"--identity", oID, "--link-profile", "radio",
			"--dial", "echo=tcp:" + radioUmbraListen, "--dial", "uecho@drone=udp:" + radioUDPListen}},
	} {
		args := append([]string{"run", "--routers", state.Router, "--status-socket", filepath.Join(l.dir, a.name+".sock")}, a.args...)
		if err := l.start(a.side, a.name, l.agent, args...); err != nil {
			return none, err
		}
	}
	l.router = state.Router
	l.fecOperator = []string{"run", "--routers", state.Router, "--status-socket", filepath.Join(l.dir, "opfec.sock"),
		"--identity", ofID, "--link-profile", "radio", "--udp-fec", udpFEC, "--dial", "uecho@dronefec=udp:" + radioUDPFECListen}
	return radioPath{name: "umbra circuit (QUIC streams, umbra's controller)", dial: l.dialer(radioUmbraListen, nil)}, nil
}

// startRelay enrolls a router on side A, runs it with --link-to the quickstart's router
// and --link-profile radio, and an operator agent on it (its hop is side A's loopback)
// dialing the echo service: the circuit crosses the radio on the router link.
func (l *radioLab) startRelay() (radioPath, error) {
	var none radioPath
	jwt, data := filepath.Join(l.dir, "relaya.jwt"), filepath.Join(l.dir, "relaya")
	oJWT, oID := filepath.Join(l.dir, "oprelay.jwt"), filepath.Join(l.dir, "oprelay.json")
	for _, s := range [][]string{
		{l.umbra, "edge", "create", "router", "relaya", "--jwt-out", jwt},
		{l.umbra, "router", "enroll", "--jwt", jwt, "--data", data},
		{l.umbra, "edge", "create", "identity", "oprelay", "--attr", "operator", "--jwt-out", oJWT},
		{l.agent, "enroll", "--jwt", oJWT, "--out", oID},
	} {
		if err := l.run(linksim.SideB, s[0], s[1:]...); err != nil {
			return none, err
		}
	}
	listen := l.addr(linksim.SideA, radioRelayPort)
	if err := l.start(linksim.SideA, "relaya", l.umbra, "router", "run", "--data", data, "--listen", listen,
		"--link-to", l.router, "--link-profile", "radio"); err != nil {
		return none, err
	}
	if err := lab.WaitFile(l.ctx, filepath.Join(l.dir, "relaya.log"), "router relaya listening", 1); err != nil {
		return none, err
	}
	if err := l.start(linksim.SideA, "oprelay", l.agent, "run", "--routers", listen, "--status-socket", filepath.Join(l.dir, "oprelay.sock"),
		"--identity", oID, "--dial", "echo=tcp:"+radioRelayListen); err != nil {
		return none, err
	}
	return radioPath{name: "umbra circuit across a radio router link (relay on side A)", dial: l.dialer(radioRelayListen, nil)}, nil
}

// startUDPOperators starts the operator agent with --udp-fec on side A and returns the
// function that stops it. They run only while the UDP flows
// are measured: their router links' heartbeats would otherwise take a share of the slower
// profiles' links.
func (l *radioLab) startUDPOperators() (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			lab.StopCmd(c, os.Interrupt, radioStopTimeout)
		}
	}
	for _, op := range []struct {
		name string
		args []string
	}{{"opfec", l.fecOperator}} {
		if err := l.start(linksim.SideA, op.name, l.agent, op.args...); err != nil {
			stop()
			return nil, err
		}
		cmds = append(cmds, l.procs[len(l.procs)-1])
	}
	return stop, nil
}

// startSSH runs sshd on side B's link address and `ssh -N -L` on side A forwarding
// radioSSHListen to target, both with OpenSSH's defaults for keep-alives (none in ssh;
// TCP keep-alive after two hours), as an operator would run them.
func (l *radioLab) startSSH(target string) (radioPath, error) {
	var none radioPath
	sshPath, err := exec.LookPath("ssh")
	if err != nil {
		return none, fmt.Errorf("%w: %v", peers.ErrNoOpenSSH, err)
	}
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return none, fmt.Errorf("%w: %v", peers.ErrNoOpenSSH, err)
	}
	if _, err := os.Stat(radioSSHD); err != nil {
		return none, fmt.Errorf("%w: %v", peers.ErrNoOpenSSH, err)
	}
	hostKey, clientKey := filepath.Join(l.dir, "host_ed25519"), filepath.Join(l.dir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if out, err := exec.CommandContext(l.ctx, keygen, "-q", "-t", "ed25519", "-N", "", "-C", "umbra-bench", "-f", k).CombinedOutput(); err != nil {
			return none, fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		return none, err
	}
	authorized := filepath.Join(l.dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		return none, err
	}
	if err := os.MkdirAll(radioPrivsepDir, 0o755); err != nil {
		return none, fmt.Errorf("sshd privilege separation dir: %w", err)
	}
	me, err := user.Current()
	if err != nil {
		return none, err
	}
	conf := filepath.Join(l.dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(peers.SSHDConfig(l.nl.Addr(linksim.SideB).String(), radioSSHDPort, hostKey, authorized)), 0o600); err != nil {
		return none, err
	}
	if err := l.start(linksim.SideB, "sshd", radioSSHD, "-D", "-e", "-f", conf); err != nil {
		return none, err
	}
	if err := l.waitListen(linksim.SideA, l.addr(linksim.SideB, radioSSHDPort)); err != nil {
		return none, fmt.Errorf("sshd: %w", err)
	}
	if err := l.start(linksim.SideA, "ssh", sshPath, "-N", "-F", "/dev/null",
		"-L", radioSSHListen+":"+target,
		"-i", clientKey,
		"-o", "IdentitiesOnly=yes",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null",
		"-o", "ExitOnForwardFailure=yes",
		"-o", "Ciphers="+peers.SSHCipher,
		"-o", "LogLevel=ERROR",
		"-p", strconv.Itoa(radioSSHDPort),
		me.Username+"@"+l.nl.Addr(linksim.SideB).String()); err != nil {
		return none, err
	}
	return radioPath{name: "`ssh -L` tunnel", dial: l.dialer(radioSSHListen, nil)}, nil
}

// startTLS runs a TLS 1.3 echo server on side B's link address.
// With cc set, both ends' sockets use that TCP congestion control instead of the
// namespaces' default: this machine defaults to BBR, which shrugs off random loss, while
// most Linux machines run CUBIC, which does not.
func (l *radioLab) startTLS(name, cc string) (radioPath, error) {
	var none radioPath
	server, client, err := peers.TLSPair("")
	if err != nil {
		return none, err
	}
	ln, err := l.nl.Listen(linksim.SideB, "tcp", l.addr(linksim.SideB, 0))
	if err != nil {
		return none, err
	}
	if cc != "" {
		ln = congestionListener{Listener: ln, cc: cc}
	}
	l.stops = append(l.stops, lab.ServeEcho(tls.NewListener(ln, server)).Close)
	return radioPath{name: name, dial: l.dialerCC(ln.Addr().String(), client, cc)}, nil
}

// congestionListener sets its accepted connections' TCP congestion control.
type congestionListener struct {
	net.Listener
	cc string
}

func (l congestionListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := setCongestion(c, l.cc); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// setCongestion sets c's TCP congestion control (TCP_CONGESTION).
func setCongestion(c net.Conn, cc string) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return fmt.Errorf("congestion control %s: not a TCP connection", cc)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("congestion control %s: %w", cc, serr)
	}
	return nil
}

// dialerCC is dialer with cc, when set, as the connection's TCP congestion control,
// set before the TLS handshake.
func (l *radioLab) dialerCC(addr string, conf *tls.Config, cc string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		c, err := l.nl.DialContext(ctx, linksim.SideA, "tcp", addr)
		if err != nil || conf == nil {
			return c, err
		}
		if cc != "" {
			if err := setCongestion(c, cc); err != nil {
				c.Close()
				return nil, err
			}
		}
		tc := tls.Client(c, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		return tc, nil
	}
}

// rawRadioQUIC is transport.Radio with quic-go's own congestion controller (NewReno):
// the raw quic-go peer, not umbra's controller.
func rawRadioQUIC() *quic.Config {
	p := transport.Radio
	p.Congestion = transport.CongestionReno
	return p.QUIC()
}

// startQUIC runs a raw quic-go echo server on side B's link address with the router's
// QUIC configuration (transport.Radio, as the quickstart's --link-profile radio gives),
// dialed with the operator agent's (transport.Radio too): one QUIC hop, one stream per
// connection and nothing of umbra's on top, to tell what in umbra's figures is QUIC's own.
func (l *radioLab) startQUIC() (radioPath, error) {
	var none radioPath
	server, client, err := peers.TLSPair("")
	if err != nil {
		return none, err
	}
	server.NextProtos, client.NextProtos = []string{radioQUICALPN}, []string{radioQUICALPN}
	pc, err := l.nl.ListenPacket(linksim.SideB, "udp", l.addr(linksim.SideB, 0))
	if err != nil {
		return none, err
	}
	ln, err := quic.Listen(pc, server, rawRadioQUIC())
	if err != nil {
		pc.Close()
		return none, fmt.Errorf("quic listen: %w", err)
	}
	l.stops = append(l.stops, serveQUICEcho(ln, pc))
	raddr := pc.LocalAddr()
	dial := func(ctx context.Context) (net.Conn, error) {
		upc, err := l.nl.ListenPacket(linksim.SideA, "udp", l.addr(linksim.SideA, 0))
		if err != nil {
			return nil, err
		}
		conn, err := quic.Dial(ctx, upc, raddr, client, rawRadioQUIC())
		if err != nil {
			upc.Close()
			return nil, fmt.Errorf("quic dial: %w", err)
		}
		st, err := conn.OpenStreamSync(ctx)
		if err != nil {
			conn.CloseWithError(0, "")
			upc.Close()
			return nil, fmt.Errorf("quic stream: %w", err)
		}
		return &quicStreamConn{Stream: st, conn: conn, pc: upc}, nil
	}
	return radioPath{name: "raw quic-go, one hop (no umbra)", dial: dial}, nil
}

// radioQUICALPN names the raw QUIC echo protocol.
const radioQUICALPN = "umbra-bench-echo"

// quicStreamConn is one QUIC stream as a net.Conn that owns its connection and socket.
type quicStreamConn struct {
	*quic.Stream
	conn *quic.Conn
	pc   net.PacketConn
}

func (c *quicStreamConn) Close() error {
	c.conn.CloseWithError(0, "")
	return c.pc.Close()
}

func (c *quicStreamConn) LocalAddr() net.Addr  { return c.conn.LocalAddr() }
func (c *quicStreamConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// serveQUICEcho echoes every stream of every connection ln accepts until the returned
// stop is called, which also closes pc.
func serveQUICEcho(ln *quic.Listener, pc net.PacketConn) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu    sync.Mutex
		conns []*quic.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				for {
					st, err := conn.AcceptStream(ctx)
					if err != nil {
						return
					}
					wg.Go(func() {
						io.Copy(st, st)
						st.Close()
					})
				}
			})
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.CloseWithError(0, "")
			}
			mu.Unlock()
			pc.Close()
			wg.Wait()
		})
	}
}

// dialer returns a dial function connecting from side A to addr, over TLS if conf is set.
func (l *radioLab) dialer(addr string, conf *tls.Config) func(context.Context) (net.Conn, error) {
	return l.dialerCC(addr, conf, "")
}

// waitListen polls until addr accepts a connection from side.
func (l *radioLab) waitListen(side linksim.Side, addr string) error {
	ctx, cancel := context.WithTimeout(l.ctx, radioSetupTimeout)
	defer cancel()
	for {
		c, err := l.nl.DialContext(ctx, side, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not listening within %v: %w", addr, radioSetupTimeout, err)
		case <-time.After(radioPoll):
		}
	}
}

// waitPath polls until a new connection through p carries an echo.
func (l *radioLab) waitPath(p radioPath) error {
	ctx, cancel := context.WithTimeout(l.ctx, radioSetupTimeout)
	defer cancel()
	for {
		err := echoNew(ctx, p)
		if err == nil {
			return nil
		}
		if l.ctx.Err() != nil {
			return fmt.Errorf("%s: %w", p.name, l.ctx.Err())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no echo within %v: %w", p.name, radioSetupTimeout, err)
		case <-time.After(radioPoll):
		}
	}
}

// settle makes the link clean and runs a few echoes through every path on a new
// connection, so that each phase starts with the long-lived tunnels' round-trip and
// retransmission estimates back at the clean link's, whatever the phase before did to
// them (a TCP connection that crossed the telemetry radio remembers seconds of RTT). A
// path that does not answer is left for the phase to report.
func (l *radioLab) settle(ctx context.Context, paths []radioPath) error {
	if err := l.setConditions(linksim.Impairment{}, linksim.Impairment{}); err != nil {
		return err
	}
	l.drain(ctx)
	for _, p := range paths {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := l.waitPath(p); err != nil {
			log.Printf("radio: settle: %v", err)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
		c, err := p.dial(dctx)
		cancel()
		if err != nil {
			log.Printf("radio: settle: %s: %v", p.name, err)
			continue
		}
		if _, err := echoRounds(c, radioSettleEchoes, radioSettleTime); err != nil {
			log.Printf("radio: settle: %s: %v", p.name, err)
		}
		c.Close()
	}
	return ctx.Err()
}

// measure takes p's echo latency and bulk throughput under the link's current
// conditions, each on a new connection, and lets the link drain afterwards.
func (l *radioLab) measure(ctx context.Context, p radioPath, bulk bool, window int64) radioFigures {
	f := radioFigures{noBulk: !bulk}
	dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
	c, err := p.dial(dctx)
	cancel()
	if err != nil {
		f.latErr, f.rateErr = err, err
		return f
	}
	f.lat, f.latErr = echoRounds(c, radioEchoRounds, radioEchoTime)
	c.Close()
	l.drain(ctx)
	if !bulk {
		return f
	}

	dctx, cancel = context.WithTimeout(ctx, radioSetupTimeout)
	c, err = p.dial(dctx)
	cancel()
	if err != nil {
		f.rateErr = err
		return f
	}
	// A few echoes first, so that set-up still under way (umbra's grant and end-to-end
	// handshake, ssh's channel) is not counted against the bulk run.
	if _, err := echoRounds(c, 1, radioEchoTime); err != nil {
		f.rateErr = err
	} else {
		f.rate, f.rateErr = timedBulk(c, 0, radioBulkTime, window)
	}
	c.Close()
	l.drain(ctx)
	return f
}

// drain waits until the link is nearly quiet, so that one run's leftovers do not slow
// the next.
func (l *radioLab) drain(ctx context.Context) {
	total := func() uint64 { s := l.nl.Stats(); return s.Up.BytesIn + s.Down.BytesIn }
	last := total()
	for deadline := time.Now().Add(radioDrainMax); time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return
		case <-time.After(radioDrainStep):
		}
		now := total()
		if now-last < max(l.quiet, radioQuietBytes) {
			return
		}
		last = now
	}
}

// tcpCongestionControl names the TCP congestion control of each namespace.
func (l *radioLab) tcpCongestionControl() string {
	var names []string
	for _, side := range []linksim.Side{linksim.SideA, linksim.SideB} {
		out, err := l.nl.CommandContext(l.ctx, side, "sysctl", "-n", "net.ipv4.tcp_congestion_control").Output()
		name := strings.TrimSpace(string(out))
		if err != nil || name == "" {
			name = "unknown"
		}
		names = append(names, fmt.Sprintf("`%s` on side %s", name, strings.ToUpper(side.String())))
	}
	return strings.Join(names, ", ")
}

// learnQuiet sets what a drained link carries: radioQuietIdle times the most of
// radioQuietSteps steps of the idle link, and at least radioQuietBytes.
func (l *radioLab) learnQuiet(ctx context.Context) {
	total := func() uint64 { s := l.nl.Stats(); return s.Up.BytesIn + s.Down.BytesIn }
	var most uint64
	for range radioQuietSteps {
		before := total()
		if !sleepCtx(ctx, radioDrainStep) {
			return
		}
		most = max(most, total()-before)
	}
	l.quiet = max(radioQuietBytes, radioQuietIdle*most)
	log.Printf("radio: the idle link carries up to %d bytes a %v; drained below %d", most, radioDrainStep, l.quiet)
}

// linkDelta says what the link carried between two snapshots, each way: packets and
// bytes offered, and the drops (loss, queue) among them.
func linkDelta(a, b linksim.Stats) string {
	d := func(x, y linksim.DirStats) string {
		return fmt.Sprintf("%d pkts %d B (lost %d, queue-dropped %d)", y.PacketsIn-x.PacketsIn, y.BytesIn-x.BytesIn,
			y.Dropped.Loss-x.Dropped.Loss, y.Dropped.Queue-x.Dropped.Queue)
	}
	return "up " + d(a.Up, b.Up) + ", down " + d(a.Down, b.Down)
}

// echoOnce writes msg on c and reads its echo into buf.
func echoOnce(c net.Conn, msg, buf []byte) error {
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf) != string(msg) {
		return errors.New("echo differs from request")
	}
	return nil
}

// echoNew opens a new connection through p and echoes once, within ctx.
func echoNew(ctx context.Context, p radioPath) error {
	c, err := p.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	msg := make([]byte, radioEchoSize)
	rand.Read(msg)
	return echoOnce(c, msg, make([]byte, radioEchoSize))
}

// echoRounds times up to n echoes on c, stopping early once limit has passed.
func echoRounds(c net.Conn, n int, limit time.Duration) ([]time.Duration, error) {
	end := time.Now().Add(limit)
	c.SetDeadline(end.Add(radioEchoGrace))
	msg, buf := make([]byte, radioEchoSize), make([]byte, radioEchoSize)
	var times []time.Duration
	for i := 0; i < radioEchoWarmup+n && time.Now().Before(end); i++ {
		rand.Read(msg)
		t0 := time.Now()
		if err := echoOnce(c, msg, buf); err != nil {
			return times, fmt.Errorf("echo %d: %w", i, err)
		}
		if i >= radioEchoWarmup {
			times = append(times, time.Since(t0))
		}
	}
	if len(times) == 0 {
		return nil, fmt.Errorf("no echo within %v", limit)
	}
	return times, nil
}

// timedBulk keeps up to window bytes in flight on c for warmup and then d, and returns the
// bytes per second echoed back within d (those echoed during warmup are not counted),
// having checked each one.
func timedBulk(c net.Conn, warmup, d time.Duration, window int64) (float64, error) {
	end := time.Now().Add(warmup + d)
	c.SetDeadline(end)
	var (
		mu       sync.Mutex
		cond     = sync.NewCond(&mu)
		got      int64
		atWarm   int64 // got when the warm-up ended
		readDone bool
	)
	if warmup > 0 {
		warm := time.AfterFunc(warmup, func() {
			mu.Lock()
			atWarm = got
			mu.Unlock()
		})
		defer warm.Stop()
	}
	werr := make(chan error, 1)
	go func() {
		chunk := make([]byte, radioChunk)
		var sent int64
		for {
			mu.Lock()
			for sent-got >= window && !readDone {
				cond.Wait()
			}
			room, stop := window-(sent-got), readDone
			mu.Unlock()
			if stop {
				werr <- nil
				return
			}
			n := int(min(room, int64(len(chunk))))
			fillPattern(chunk[:n], sent)
			w, err := c.Write(chunk[:n])
			sent += int64(w)
			if err != nil {
				werr <- err
				return
			}
		}
	}()
	buf := make([]byte, radioChunk)
	var rerr error
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if !checkPattern(buf[:n], got) {
				rerr = fmt.Errorf("echoed bytes at %d differ from what was sent", got)
			}
			mu.Lock()
			got += int64(n)
			cond.Signal()
			mu.Unlock()
		}
		if err != nil || rerr != nil {
			if rerr == nil {
				rerr = err
			}
			break
		}
	}
	mu.Lock()
	readDone = true
	cond.Signal()
	mu.Unlock()
	c.SetDeadline(time.Unix(1, 0)) // unblock the writer
	werr2 := <-werr
	if !errors.Is(rerr, os.ErrDeadlineExceeded) {
		return 0, fmt.Errorf("bulk: %w", rerr)
	}
	if werr2 != nil && !errors.Is(werr2, os.ErrDeadlineExceeded) {
		return 0, fmt.Errorf("bulk: write: %w", werr2)
	}
	mu.Lock()
	defer mu.Unlock()
	return float64(got-atWarm) / d.Seconds(), nil
}

// patternMod makes the bulk pattern's period prime, so a lost or repeated block shows.
const patternMod = 251

func fillPattern(b []byte, off int64) {
	for i := range b {
		b[i] = byte((off + int64(i)) % patternMod)
	}
}

func checkPattern(b []byte, off int64) bool {
	for i := range b {
		if b[i] != byte((off+int64(i))%patternMod) {
			return false
		}
	}
	return true
}

// echoLog is what keepEcho saw on one connection.
type echoLog struct {
	mu    sync.Mutex
	times []time.Time // when each echo came back
	err   error
	errAt time.Time
}

// firstAfter returns the first echo back after t, if any.
func (e *echoLog) firstAfter(t time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, x := range e.times {
		if x.After(t) {
			return x, true
		}
	}
	return time.Time{}, false
}

// failed returns how and when c failed, if it did.
func (e *echoLog) failed() (time.Time, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errAt, e.err
}

// keepEcho echoes radioEchoSize bytes on c every radioEchoEvery until stop is closed,
// c fails, or until (no echo may take longer).
func keepEcho(c net.Conn, stop <-chan struct{}, until time.Time, e *echoLog) {
	msg, buf := make([]byte, radioEchoSize), make([]byte, radioEchoSize)
	c.SetDeadline(until)
	next := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		next = time.Now().Add(radioEchoEvery)
		rand.Read(msg)
		err := echoOnce(c, msg, buf)
		now := time.Now()
		e.mu.Lock()
		if err != nil {
			e.err, e.errAt = err, now
		} else {
			e.times = append(e.times, now)
		}
		e.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// blackoutRound opens a connection through each path (of only, when not nil), keeps an
// echo going on each, blacks the link out for d, and measures from the link's return how
// long each open connection and each new one take to carry an echo again.
func (l *radioLab) blackoutRound(ctx context.Context, paths []radioPath, only map[int]bool, d time.Duration) ([]radioRecovery, error) {
	rec := make([]radioRecovery, len(paths))
	conns := make([]net.Conn, len(paths))
	for i, p := range paths {
		if only != nil && !only[i] {
			rec[i].sameErr, rec[i].freshErr = errNotMeasured, errNotMeasured
			continue
		}
		if err := l.waitPath(p); err != nil {
			rec[i].sameErr, rec[i].freshErr = err, err
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
		c, err := p.dial(dctx)
		cancel()
		if err != nil {
			rec[i].sameErr, rec[i].freshErr = err, err
			continue
		}
		conns[i] = c
	}
	logs := make([]*echoLog, len(paths))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	until := time.Now().Add(radioSteady + d + radioCap + radioSetupTimeout)
	for i, c := range conns {
		logs[i] = &echoLog{}
		if c != nil {
			wg.Go(func() { keepEcho(c, stop, until, logs[i]) })
		}
	}
	defer func() {
		close(stop)
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		wg.Wait()
	}()
	if !sleepCtx(ctx, radioSteady) {
		return nil, ctx.Err()
	}
	for i, c := range conns {
		if c == nil {
			continue
		}
		if _, ok := logs[i].firstAfter(time.Time{}); !ok {
			_, err := logs[i].failed()
			rec[i].sameErr = fmt.Errorf("no echo before the blackout: %v", err)
		}
	}
	began := time.Now()
	l.link.SetBlackout(true)
	ok := sleepCtx(ctx, d)
	l.link.SetBlackout(false)
	back := time.Now()
	if !ok {
		return nil, ctx.Err()
	}
	for i, c := range conns {
		if at, err := logs[i].failed(); c != nil && err != nil && at.Before(back) && rec[i].sameErr == nil {
			rec[i].sameErr = fmt.Errorf("broke %.1f s into the blackout: %v", at.Sub(began).Seconds(), err)
		}
	}

	type fresh struct {
		i   int
		d   time.Duration
		err error
	}
	freshc := make(chan fresh, len(paths))
	pending := 0
	for i, p := range paths {
		if rec[i].freshErr != nil {
			continue
		}
		pending++
		go func() {
			d, err := firstNewEcho(ctx, p, back)
			freshc <- fresh{i, d, err}
		}()
	}
	settled := func(i int) bool {
		if conns[i] == nil || rec[i].sameErr != nil {
			return true
		}
		if t, ok := logs[i].firstAfter(back); ok {
			rec[i].same = t.Sub(back)
			return true
		}
		if at, err := logs[i].failed(); err != nil {
			rec[i].sameErr = fmt.Errorf("broke %.1f s after the link returned: %v", at.Sub(back).Seconds(), err)
			return true
		}
		return false
	}
	tick := time.NewTicker(radioPoll)
	defer tick.Stop()
	for deadline := back.Add(radioCap); ; {
		all := pending == 0
		for i := range paths {
			all = settled(i) && all
		}
		if all {
			break
		}
		select {
		case f := <-freshc:
			pending--
			rec[f.i].fresh, rec[f.i].freshErr = f.d, f.err
			continue
		case <-tick.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			for i := range paths {
				if !settled(i) {
					rec[i].sameErr = errTooLong
				}
			}
			break
		}
	}
	// firstNewEcho gives up at the same deadline, so these come at once.
	for ; pending > 0; pending-- {
		f := <-freshc
		rec[f.i].fresh, rec[f.i].freshErr = f.d, f.err
	}
	return rec, nil
}

// errTooLong marks a path that carried no echo within radioCap of the link's return.
var errTooLong = fmt.Errorf("no echo within %v", radioCap)

// firstNewEcho starts a new connection through p every radioRetryEvery (at most
// radioRetryInFlight at once) from back until one echoes, and returns how long after
// back that was; it gives up radioCap after back, with the last attempt's error.
func firstNewEcho(ctx context.Context, p radioPath, back time.Time) (time.Duration, error) {
	ctx, cancel := context.WithDeadline(ctx, back.Add(radioCap))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		lastErr error
	)
	defer wg.Wait()
	defer cancel()
	won := make(chan time.Time, 1)
	slots := make(chan struct{}, radioRetryInFlight)
	tick := time.NewTicker(radioRetryEvery)
	defer tick.Stop()
	gaveUp := func() (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		return 0, fmt.Errorf("%w; last attempt: %v", errTooLong, lastErr)
	}
	maxAttempts := int(radioCap/radioRetryEvery) + 1
	for range maxAttempts {
		select {
		case slots <- struct{}{}:
		case t := <-won:
			return t.Sub(back), nil
		case <-ctx.Done():
			return gaveUp()
		}
		wg.Go(func() {
			defer func() { <-slots }()
			err := echoNew(ctx, p)
			if err == nil {
				select {
				case won <- time.Now():
				default:
				}
				return
			}
			mu.Lock()
			lastErr = err
			mu.Unlock()
		})
		select {
		case t := <-won:
			return t.Sub(back), nil
		case <-ctx.Done():
			return gaveUp()
		case <-tick.C:
		}
	}
	select {
	case t := <-won:
		return t.Sub(back), nil
	case <-ctx.Done():
		return gaveUp()
	}
}

// sleepCtx sleeps for d and reports whether ctx was still alive.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// writeRadio prints the section.
func writeRadio(r *report, res radioResults) {
	paths, figures, blackouts, recoveries := res.paths, res.figures, res.plan.blackouts, res.recoveries
	profiles := res.plan.profiles
	r.printf("## Radio: umbra beside TCP tunnels over an emulated radio\n\n")
	r.printf("Two network namespaces joined by the link emulator's IP mode (`internal/linksim`: TUN\n")
	r.printf("devices, impairment in user space). Side A is the operator: umbra's dialing agents, the\n")
	r.printf("`ssh -L` client and the bench's own sockets. Side B is the ground station: `umbra\n")
	r.printf("quickstart --link-profile radio` (controller and router), the drone agents hosting a TCP\n")
	r.printf("and a UDP echo service, sshd and TLS and QUIC echo servers. Every path crosses the link\n")
	r.printf("once, the same way: umbra as QUIC from the operator's agent to the router (the drone agent\n")
	r.printf("sits beside the router), `ssh -L` and TLS as TCP. ssh and sshd keep OpenSSH's defaults (no\n")
	r.printf("ServerAlive; TCP keep-alive after 2 h). The operator's agents run with `--link-profile\n")
	r.printf("radio`. The raw quic-go row is one QUIC connection with the same settings as umbra's link\n")
	r.printf("(`transport.Radio` at both ends) and nothing of umbra's on top: what QUIC alone does.\n\n")
	var total time.Duration
	var parts []string
	for _, ph := range res.phases {
		total += ph.took
		parts = append(parts, fmt.Sprintf("%s %s", ph.name, fmtMinutes(ph.took)))
	}
	r.printf("This section took %s in this run (%s).\n\n", fmtMinutes(total), strings.Join(parts, ", "))

	r.printf("### Under radio profiles\n\n")
	r.printf("Latency: up to %d echoes of %d bytes one at a time, for at most %v; n is how many, so\n", radioEchoRounds, radioEchoSize, radioEchoTime)
	r.printf("p99 is in effect the slowest. Bulk: an echo kept full for %v, written %d KiB at a time\n", radioBulkTime, radioChunk>>10)
	r.printf("with at most one second of the profile's rate (and at least %d KiB) in flight; payload rate\n", radioMinWindow>>10)
	r.printf("one way. Not on the telemetry radio: at 64 kbit/s behind a 16-packet modem queue a bulk\n")
	r.printf("run measures the queue and TCP's backoff more than the tunnel, and takes tens of seconds\n")
	r.printf("to drain. Each on a new connection, timed after a few untimed echoes; every path is first\n")
	r.printf("settled with echoes on a clean link, so none carries over what the previous profile did to\n")
	r.printf("its round-trip estimates. umbra ÷ path is umbra's figure over the path's (throughput:\n")
	r.printf("higher is better for umbra; latency: lower is). One run each: expect wide spread between\n")
	r.printf("runs on links this lossy.\n\n")
	r.printf("| profile | path | echo p50 | echo p99 | n | umbra p50 ÷ path | bulk | umbra ÷ path |\n|---|---|---|---|---|---|---|---|\n")
	for _, pr := range profiles {
		name := pr.name
		fs := figures[pr.name]
		um := fs[0]
		for i, p := range paths {
			f := fs[i]
			label := p.name
			if i == 0 {
				label = "**" + p.name + "**"
			}
			rate, rateRatio := failedCell(f.rateErr), "—"
			if f.noBulk {
				rate = "—"
			} else if f.rateErr == nil {
				rate = fmtRate(f.rate)
				if i > 0 && um.rateErr == nil && f.rate > 0 {
					rateRatio = fmtRatio(um.rate / f.rate)
				}
			}
			p50, p99, n, latRatio := failedCell(f.latErr), "—", "—", "—"
			if len(f.lat) > 0 {
				p50, p99, n = ms(percentile(f.lat, 0.50)), ms(percentile(f.lat, 0.99)), strconv.Itoa(len(f.lat))
				if f.latErr != nil {
					n += " (then " + failedCell(f.latErr) + ")"
				}
				if i > 0 && len(um.lat) > 0 {
					latRatio = fmtRatio(float64(percentile(um.lat, 0.5)) / float64(percentile(f.lat, 0.5)))
				}
			}
			r.printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, label, p50, p99, n, latRatio, rate, rateRatio)
		}
	}
	r.printf("\n")
	for _, pr := range profiles {
		prof, _ := linksim.Profile(pr.name)
		r.printf("- `%s`: %s.\n", pr.name, prof.Models)
	}
	r.printf("\n")
	if res.plan.onlyProfiles {
		return // only the profiles were run (radioProfilesEnv)
	}

	if len(res.plan.rtts) > 0 && len(res.plan.losses) > 0 {
		writeMatrix(r, paths, res.plan, res.matrix, res.tcpCC)
		writeOneTransport(r, res)
	}
	if !res.plan.skipUDP {
		writeUDP(r, res.flows, res.plan, res.udp)
	}

	r.printf("### Blackouts\n\n")
	r.printf("On a clean link (no delay, loss or rate cap), a %d-byte echo every %v on one open\n", radioEchoSize, radioEchoEvery)
	r.printf("connection through each path, all behind the same blackout of both directions. Times run\n")
	r.printf("from the link's return: until the next echo completes on that same connection, and until\n")
	r.printf("a new connection completes one (one started every %v from the return, at most %d\n", radioRetryEvery, radioRetryInFlight)
	r.printf("waiting at once). \"> %.0f s\" means not within that; \"failed\" says how the connection\n", radioCap.Seconds())
	r.printf("ended instead. umbra ÷ path: lower is better.\n\n")
	r.printf("| blackout | path | same connection: echo again after | umbra ÷ path | new connection: first echo after | umbra ÷ path |\n|---|---|---|---|---|---|\n")
	for _, d := range blackouts {
		rs := recoveries[d]
		um := rs[0]
		for i, p := range paths {
			x := rs[i]
			if errors.Is(x.sameErr, errNotMeasured) {
				continue // radioPathsEnv left it out
			}
			label := p.name
			if i == 0 {
				label = "**" + p.name + "**"
			}
			same, sameRatio := recoveryCell(x.same, x.sameErr), "—"
			fresh, freshRatio := recoveryCell(x.fresh, x.freshErr), "—"
			if i > 0 {
				sameRatio = recoveryRatio(um.same, um.sameErr, x.same, x.sameErr)
				freshRatio = recoveryRatio(um.fresh, um.freshErr, x.fresh, x.freshErr)
			}
			r.printf("| %.0f s | %s | %s | %s | %s | %s |\n", d.Seconds(), label, same, sameRatio, fresh, freshRatio)
		}
	}
	r.printf("\nAn open TCP connection waits out its retransmission backoff (from 200 ms, doubling: after a\n")
	r.printf("30 s outage the next retry can be some 20 s away, after 120 s some 85 s), and `ssh -L`\n")
	r.printf("carries every forwarded connection, new ones too, on its one TCP connection. A new TLS\n")
	r.printf("connection sends a fresh SYN, with no backoff to wait out. umbra's agent races a fresh QUIC\n")
	r.printf("connection every second against a stalled router link; its circuits then have to move to\n")
	r.printf("the new connection.\n\n")
	writeTargets(r, res)
}

// recoveryCell formats a recovery time or why there is none.
func recoveryCell(d time.Duration, err error) string {
	switch {
	case errors.Is(err, errTooLong):
		return fmt.Sprintf("> %.0f s", radioCap.Seconds())
	case err != nil:
		return failedCell(err)
	}
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// recoveryRatio is umbra's recovery time over the path's, where both have one.
func recoveryRatio(um time.Duration, umErr error, x time.Duration, xErr error) string {
	switch {
	case umErr == nil && errors.Is(xErr, errTooLong):
		return "< " + fmtRatio(um.Seconds()/radioCap.Seconds())
	case umErr != nil || xErr != nil || x <= 0:
		return "—"
	}
	return fmtRatio(um.Seconds() / x.Seconds())
}

// fmtRatio formats a ratio with two significant digits, without exponents.
func fmtRatio(x float64) string {
	switch {
	case x >= 10:
		return fmt.Sprintf("%.0f", x)
	case x >= 0.1:
		return fmt.Sprintf("%.2f", x)
	}
	return fmt.Sprintf("%.2g", x)
}

// fmtRate formats bytes per second as bits per second.
func fmtRate(bps float64) string {
	if bits := bps * 8; bits < 1e6 {
		return fmt.Sprintf("%.1f kbit/s", bits/1e3)
	}
	return fmt.Sprintf("%.2f Mbit/s", bps*8/1e6)
}

// failedCell says why a figure is missing.
func failedCell(err error) string {
	if err == nil {
		return "—"
	}
	return "failed: " + oneLine(err)
}

// oneLine shortens an error for a table cell.
func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// startSinks starts, on side B, the TCP echo every path reaches and the UDP sink umbra's
// flows end at, and a UDP sink on the link's own address for the flow sent straight over
// it; each stops with the lab.
func (l *radioLab) startSinks(base time.Time) (echo string, sink, linkSink *udpSink, err error) {
	err = l.nl.Do(linksim.SideB, func() error {
		addr, stop, err := peers.StartTCPEcho(l.ctx)
		if err != nil {
			return err
		}
		echo = addr
		l.stops = append(l.stops, stop)
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("udp echo: %w", err)
		}
		sink = startUDPSink(pc, base)
		l.stops = append(l.stops, sink.stop)
		return nil
	})
	if err != nil {
		return "", nil, nil, err
	}
	pc, err := l.nl.ListenPacket(linksim.SideB, "udp", l.addr(linksim.SideB, 0))
	if err != nil {
		return "", nil, nil, fmt.Errorf("udp echo on the link: %w", err)
	}
	linkSink = startUDPSink(pc, base)
	l.stops = append(l.stops, linkSink.stop)
	return echo, sink, linkSink, nil
}

// udpFlows measures the UDP flows of the plan, with the UDP operators running.
func (l *radioLab) udpFlows(ctx context.Context, res *radioResults, progress func(string, ...any)) error {
	stopOperators, err := l.startUDPOperators()
	if err != nil {
		return fmt.Errorf("radio: %w", err)
	}
	defer stopOperators()
	if err := l.waitFlows(ctx, res.flows); err != nil {
		return fmt.Errorf("radio: %w\n%s", err, l.logs())
	}
	res.udp, err = l.udpMatrix(ctx, res.flows, res.plan, progress)
	return err
}
