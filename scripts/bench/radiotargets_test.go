package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// syntheticRadio is a small plan's worth of results, as a run would leave them.
func syntheticRadio() radioResults {
	plan := radioPlan{
		losses:       []float64{0, 0.10},
		rtts:         []time.Duration{200 * time.Millisecond},
		udpRTT:       200 * time.Millisecond,
		udpCheckLoss: 0.30,
		udpCheckRTT:  800 * time.Millisecond,
		blackouts:    []time.Duration{2 * time.Second, 120 * time.Second},
	}
	paths := []radioPath{radioPathUmbra: {name: "umbra"}, radioPathSSH: {name: "ssh"}, radioPathTLS: {name: "tls"}, radioPathQUIC: {name: "quic"}}
	res := radioResults{plan: plan, paths: paths, figures: map[string][]radioFigures{}, recoveries: map[time.Duration][]radioRecovery{}}
	res.flows = []udpFlow{udpFlowLink: {name: "link"}, udpFlowUmbra: {name: "umbra udp"}, udpFlowFEC: {name: "umbra udp fec"}}
	for _, loss := range plan.losses {
		res.matrix = append(res.matrix, matrixCell{loss: loss, rtt: 200 * time.Millisecond,
			rates: []float64{400e3, 100e3, 100e3, 0}, errs: []error{nil, nil, nil, nil}})
	}
	for _, pt := range []struct {
		loss float64
		rtt  time.Duration
	}{{0, 200 * time.Millisecond}, {0.10, 200 * time.Millisecond}, {0.30, 800 * time.Millisecond}} {
		for i, wire := range []uint64{600 * 130, 600 * 200, 600 * 240} {
			res.udp = append(res.udp, udpCell{loss: pt.loss, rtt: pt.rtt, flow: i, sent: 600,
				oneWay: make([]time.Duration, 595), echoed: make([]time.Duration, 590), sendFor: 3 * time.Second, wire: wire})
		}
	}
	for _, d := range plan.blackouts {
		res.recoveries[d] = []radioRecovery{{same: 50 * time.Millisecond, fresh: 80 * time.Millisecond},
			{same: 20 * time.Second, fresh: 20 * time.Second}, {sameErr: errTooLong, fresh: 5 * time.Millisecond}, {sameErr: errors.New("idle timeout")}}
	}
	return res
}

func TestWriteRadioShowsTargetsBesideFigures(t *testing.T) {
	var r report
	writeRadio(&r, syntheticRadio())
	out := r.String()
	for _, want := range []string{
		"### Goodput under loss × round-trip time",
		"| 10 % | tls | 800.0 kbit/s | 4.00 |",
		"∞ (path moved nothing)",
		"### UDP: a telemetry flow under loss",
		"| 10 % | umbra udp fec | 99.2 % |",
		"+20 %",
		"### Blackouts",
		"| 120 s | **umbra** |",
		"| umbra's goodput ≥ 3× TLS over TCP's at 10 % loss, 200ms RTT | umbra 3.20 Mbit/s, TLS over TCP 800.0 kbit/s: 4.00× | yes |",
		"slowest after blackouts of 2, 120 s: open connection 50 ms, new connection 80 ms | yes |",
		"99.2 % delivered one way (99.2 % without FEC), +20 % bytes on the wire | yes |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// A goodput target beyond the link's rate says so beside its "no".
func TestGoodputTargetAboveTheLink(t *testing.T) {
	res := syntheticRadio()
	// make bench at f4645cf: TLS over TCP with BBR at 3.10 Mbit/s, 3× is 9.3, and a link
	// losing 10 % of 10 Mbit/s delivers 9.
	res.matrix[1].rates = []float64{556e3, 400e3, 387.5e3, 0}
	var r report
	writeTargets(&r, res)
	out := r.String()
	want := "umbra 4.45 Mbit/s, TLS over TCP 3.10 Mbit/s: 1.43× (3× is 9.30 Mbit/s, above the 9.00 Mbit/s the link delivers at 10 % loss: out of any path's reach) | no |"
	if !strings.Contains(out, want) {
		t.Errorf("report lacks %q:\n%s", want, out)
	}
	res.matrix[1].rates = []float64{556e3, 300e3, 370e3, 0} // 3× is 8.88 Mbit/s
	r = report{}
	writeTargets(&r, res)
	if out := r.String(); strings.Contains(out, "out of any path's reach") {
		t.Errorf("a reachable target reads as out of reach:\n%s", out)
	}
}

// A target whose figures failed reads "no" or a dash, never "yes".
func TestWriteTargetsWithFailedFigures(t *testing.T) {
	res := syntheticRadio()
	res.matrix[1].errs[radioPathUmbra] = errors.New("circuit reset")
	res.recoveries[120*time.Second][radioPathUmbra].sameErr = errTooLong
	res.udp = nil
	var r report
	writeTargets(&r, res)
	out := r.String()
	if strings.Contains(out, "| yes |") {
		t.Errorf("targets with failed figures read yes:\n%s", out)
	}
	if !strings.Contains(out, "| not measured | — |") {
		t.Errorf("the UDP target without figures should read not measured:\n%s", out)
	}
}
