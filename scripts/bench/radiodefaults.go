package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/internal/linksim"
)

// The defaults section (issue 20): what an agent run with default flags does over a lossy
// radio, beside one run with --link-profile radio. Both are operator agents on side A of
// the radio lab's link, the only hops that cross it; the router (a quickstart with
// default flags) and a drone agent hosting a TCP and a UDP echo sit on side B. Per loss
// rate, in this order: the goodput of a circuit opened once the loss is on; the goodput
// of one opened on the clean link before the loss; UDP delivery of issue 20's telemetry
// flow (200 datagrams a second of 300 bytes). Both agents carry TCP on QUIC streams and
// UDP in QUIC datagrams; they differ in their QUIC profile.
const (
	// defaultsTimeout bounds the section: a run takes about ten minutes.
	defaultsTimeout = 25 * time.Minute
	// defaultsRTT and defaultsJitter are issue 20's radio: 100 ms ± 20 ms each way, on
	// the goodput matrix's 10 Mbit/s link.
	defaultsRTT    = 200 * time.Millisecond
	defaultsJitter = 20 * time.Millisecond
	// defaultsUDPSize is the bytes of each of the flow's datagrams: 60 KB/s at
	// udpFlowRate, as in the issue.
	defaultsUDPSize = 300
	// Listeners of the operator agents, in side A.
	defaultsTCPListen      = "127.0.0.1:7020"
	defaultsUDPListen      = "127.0.0.1:7021"
	defaultsRadioTCPListen = "127.0.0.1:7022"
	defaultsRadioUDPListen = "127.0.0.1:7023"
)

// defaultsLosses are the loss rates of the section, each way.
var defaultsLosses = []float64{0, 0.05, 0.15}

// The agents of the section, in the order the table shows them.
const (
	defaultsAgentDefault = iota
	defaultsAgentRadio
)

// defaultsAgent is one operator agent on side A: its TCP path, its UDP flow and its
// status socket.
type defaultsAgent struct {
	flags  string
	tcp    radioPath
	udp    udpFlow
	socket string
}

// defaultsRow is what one agent did at one loss rate.
type defaultsRow struct {
	udp       udpCell
	fresh     float64 // TCP goodput of a circuit opened on the lossy link, bytes a second
	freshErr  error
	before    float64 // TCP goodput of a circuit opened before the loss
	beforeErr error
}

// benchDefaults measures the default agent beside --link-profile radio over the radio
// lab's link at defaultsLosses.
func benchDefaults(ctx context.Context, c config, r *report) error {
	if err := linksim.CheckNetns(); err != nil {
		return fmt.Errorf("defaults: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, defaultsTimeout)
	defer cancel()
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	began := time.Now()
	progress := func(format string, args ...any) {
		log.Printf("defaults: %3.0f s: %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	lab, err := newRadioLab(ctx, c)
	if err != nil {
		return err
	}
	defer lab.close()
	agents, link, err := lab.startDefaults()
	if err != nil {
		return fmt.Errorf("defaults: %w\n%s", err, lab.logs())
	}
	lab.learnQuiet(ctx)
	rows := map[float64][]defaultsRow{}
	var linkCells []udpCell
	run := uint32(0)
	for _, loss := range defaultsLosses {
		base, imp := defaultsConditions(0), defaultsConditions(loss)
		out := make([]defaultsRow, len(agents))
		// A circuit opened once the loss is on.
		if err := lab.setConditions(imp, imp); err != nil {
			return err
		}
		for i, a := range agents {
			out[i].fresh, out[i].freshErr = lab.freshGoodput(ctx, a.tcp)
			progress("%s loss, %s: TCP opened on the lossy link %s %v", fmtLoss(loss), a.flags, fmtRate(out[i].fresh), out[i].freshErr)
		}
		// A circuit opened on the clean link, before the loss.
		if err := lab.setConditions(base, base); err != nil {
			return err
		}
		lab.drain(ctx)
		for i, a := range agents {
			out[i].before, out[i].beforeErr = lab.goodput(ctx, a.tcp, base, imp, defaultsRTT)
			progress("%s loss, %s: TCP opened before the loss %s %v", fmtLoss(loss), a.flags, fmtRate(out[i].before), out[i].beforeErr)
		}
		// The UDP flows, straight over the link first.
		run++
		lc := lab.udpRun(ctx, link, base, imp, defaultsRTT, run)
		lc.loss, lc.rtt = loss, defaultsRTT
		linkCells = append(linkCells, lc)
		for i, a := range agents {
			run++
			out[i].udp = lab.udpRun(ctx, a.udp, base, imp, defaultsRTT, run)
			progress("%s loss, %s: UDP %d/%d delivered, %d echoed %v", fmtLoss(loss), a.flags,
				len(out[i].udp.oneWay), out[i].udp.sent, len(out[i].udp.echoed), out[i].udp.err)
		}
		rows[loss] = out
		if err := lab.setConditions(base, base); err != nil {
			return err
		}
		lab.drain(ctx)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("defaults: %w", ctx.Err())
	}
	writeDefaults(r, agents, rows, linkCells, time.Since(began))
	return nil
}

// defaultsConditions is one direction of the section's link at loss.
func defaultsConditions(loss float64) linksim.Impairment {
	imp := matrixConditions(loss, defaultsRTT)
	imp.Jitter = defaultsJitter
	return imp
}

// startDefaults starts the echo servers, a quickstart with default flags and the drone
// on side B, and the two operator agents on side A; it returns the agents once each has
// carried an echo, and the UDP flow straight over the link.
func (l *radioLab) startDefaults() ([]defaultsAgent, udpFlow, error) {
	var none udpFlow
	base := time.Now()
	echo, sink, linkSink, err := l.startSinks(base)
	if err != nil {
		return nil, none, err
	}
	router, err := l.startDefaultsUmbra(echo, sink.pc.LocalAddr().String())
	if err != nil {
		return nil, none, err
	}
	agents := []defaultsAgent{
		defaultsAgentDefault: {flags: "default flags", socket: filepath.Join(l.dir, "op.sock"),
			tcp: radioPath{name: "default", dial: l.dialer(defaultsTCPListen, nil)},
			udp: udpFlow{name: "default", addr: defaultsUDPListen, sink: sink, straggle: udpUmbraStraggle, size: defaultsUDPSize}},
		defaultsAgentRadio: {flags: "`--link-profile radio`", socket: filepath.Join(l.dir, "opradio.sock"),
			tcp: radioPath{name: "radio", dial: l.dialer(defaultsRadioTCPListen, nil)},
			udp: udpFlow{name: "radio", addr: defaultsRadioUDPListen, sink: sink, straggle: udpUmbraStraggle, size: defaultsUDPSize}},
	}
	if err := l.startDefaultsOperators(router); err != nil {
		return nil, none, err
	}
	for _, a := range agents {
		if err := l.waitPath(a.tcp); err != nil {
			return nil, none, err
		}
	}
	link := udpFlow{name: "UDP straight over the link", addr: linkSink.pc.LocalAddr().String(), sink: linkSink, straggle: udpPlainStraggle, size: defaultsUDPSize}
	return agents, link, nil
}

// startDefaultsUmbra runs the quickstart with default flags and the drone hosting echo
// (TCP) and uecho (UDP, delivered to udpEcho) on side B, enrolls the operators, and
// returns the router's address.
func (l *radioLab) startDefaultsUmbra(echo, udpEcho string) (string, error) {
	qs := filepath.Join(l.dir, "qs")
	if err := l.start(linksim.SideB, "quickstart", l.umbra, "quickstart", "--dir", qs, "--host", l.nl.Addr(linksim.SideB).String()); err != nil {
		return "", err
	}
	if err := lab.WaitFile(l.ctx, filepath.Join(l.dir, "quickstart.log"), "ready controller=", 1); err != nil {
		return "", err
	}
	state, err := lab.ReadQuickstart(qs)
	if err != nil {
		return "", err
	}
	l.env = append(l.env, "UMBRA_ADMIN="+filepath.Join(qs, "admin.json"))
	steps := [][]string{
		{l.umbra, "edge", "create", "service", "echo", "--host", "tcp:" + echo},
		{l.umbra, "edge", "create", "service", "uecho", "--host", "udp:" + udpEcho},
		{l.umbra, "edge", "create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@echo,@uecho"},
		{l.umbra, "edge", "create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@echo,@uecho"},
	}
	for _, name := range []string{"drone", "op", "opradio"} {
		attr := "operator"
		if name == "drone" {
			attr = "drone"
		}
		jwt, id := filepath.Join(l.dir, name+".jwt"), filepath.Join(l.dir, name+".json")
		steps = append(steps,
			[]string{l.umbra, "edge", "create", "identity", name, "--attr", attr, "--jwt-out", jwt},
			[]string{l.agent, "enroll", "--jwt", jwt, "--out", id})
	}
	for _, s := range steps {
		if err := l.run(linksim.SideB, s[0], s[1:]...); err != nil {
			return "", err
		}
	}
	args := []string{"run", "--routers", state.Router, "--identity", filepath.Join(l.dir, "drone.json"), "--status-socket", filepath.Join(l.dir, "drone.sock")}
	if err := l.start(linksim.SideB, "drone", l.agent, args...); err != nil {
		return "", err
	}
	return state.Router, nil
}

// startDefaultsOperators starts the operator agents on side A: op with default flags,
// opradio with --link-profile radio.
func (l *radioLab) startDefaultsOperators(router string) error {
	for _, op := range []struct {
		name, tcp, udp string
		extra          []string
	}{
		{"op", defaultsTCPListen, defaultsUDPListen, nil},
		{"opradio", defaultsRadioTCPListen, defaultsRadioUDPListen, []string{"--link-profile", "radio"}},
	} {
		args := append([]string{"run", "--routers", router, "--identity", filepath.Join(l.dir, op.name+".json"),
			"--status-socket", filepath.Join(l.dir, op.name+".sock"),
			"--dial", "echo=tcp:" + op.tcp, "--dial", "uecho@drone=udp:" + op.udp}, op.extra...)
		if err := l.start(linksim.SideA, op.name, l.agent, args...); err != nil {
			return err
		}
	}
	return nil
}

// freshGoodput opens a new circuit through p on the link as it is, echoes once and keeps
// it full as the goodput matrix does, and drains the link after.
func (l *radioLab) freshGoodput(ctx context.Context, p radioPath) (float64, error) {
	dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
	c, err := p.dial(dctx)
	cancel()
	if err != nil {
		return 0, err
	}
	defer func() {
		c.Close()
		l.drain(ctx)
	}()
	if _, err := echoRounds(c, 1, radioEchoTime); err != nil {
		return 0, fmt.Errorf("first echo: %w", err)
	}
	warmup, count, flight := matrixTiming(defaultsRTT)
	return timedBulk(c, warmup, count, flight)
}

// writeDefaults prints the section's table.
func writeDefaults(r *report, agents []defaultsAgent, rows map[float64][]defaultsRow, link []udpCell, took time.Duration) {
	warmup, count, _ := matrixTiming(defaultsRTT)
	r.printf("### Default flags beside `--link-profile radio`\n\n")
	r.printf("The radio lab's link at %v ± %v each way (%v RTT), %s each way behind a %d-packet\n",
		defaultsRTT/2, defaultsJitter, defaultsRTT, fmtRate(matrixRate/8), matrixQueue)
	r.printf("queue, the loss applied to each direction. Side A holds two operator agents, one run\n")
	r.printf("with default flags and one with `--link-profile radio`; side B a quickstart with default\n")
	r.printf("flags and a drone agent hosting a TCP and a UDP echo. UDP: %d datagrams a second of %d\n", udpFlowRate, defaultsUDPSize)
	r.printf("bytes, opened without loss, then %v uncounted and %v counted under it, as in the UDP\n", udpFlowWarmup, udpFlowCount)
	r.printf("table above; delivered ÷ link is over the same flow sent straight over the link. TCP: an\n")
	r.printf("echo kept full (%v warm-up, %v counted, payload one way), on a circuit opened once\n", warmup, count)
	r.printf("the loss is on and on one opened on the clean link before the loss. One run each;\n")
	r.printf("this section took %.1f min.\n\n", took.Minutes())
	r.printf("| loss | agent | UDP delivered one way | delivered ÷ link | UDP echoed | TCP, circuit opened under the loss | TCP, circuit opened before the loss |\n")
	r.printf("|---|---|---|---|---|---|---|\n")
	for k, loss := range defaultsLosses {
		lc := link[k]
		r.printf("| %s | UDP straight over the link (no umbra) | %.1f %% | — | %.1f %% | — | — |\n",
			fmtLoss(loss), 100*lc.delivered(), 100*float64(len(lc.echoed))/float64(max(1, lc.sent)))
		for i, a := range agents {
			row := rows[loss][i]
			ratio := "—"
			if lc.err == nil && lc.delivered() > 0 && row.udp.err == nil {
				ratio = fmtRatio(row.udp.delivered() / lc.delivered())
			}
			udp, echoed := fmt.Sprintf("%.1f %%", 100*row.udp.delivered()), fmt.Sprintf("%.1f %%", 100*float64(len(row.udp.echoed))/float64(max(1, row.udp.sent)))
			if row.udp.err != nil {
				udp, echoed = failedCell(row.udp.err), "—"
			}
			r.printf("| %s | %s | %s | %s | %s | %s | %s |\n", fmtLoss(loss), a.flags, udp, ratio, echoed,
				rateCell(row.fresh, row.freshErr), rateCell(row.before, row.beforeErr))
		}
	}
	r.printf("\n")
}

// rateCell formats a goodput, or why there is none.
func rateCell(rate float64, err error) string {
	if err != nil {
		return failedCell(err)
	}
	return fmtRate(rate)
}
