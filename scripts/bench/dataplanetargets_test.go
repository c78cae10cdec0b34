package main

import (
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/scripts/bench/peers"
)

// The figures of make bench at 0e42ffe: umbra short of two targets, and the peers' own
// figures showing why no circuit over quic-go reaches them on this machine.
func benchedDataPlane() dataPlaneFigures {
	mbps := func(x float64) peers.Result { return peers.Result{MBps: x} }
	p50 := func(us int) peers.Latency { return peers.Latency{P50: time.Duration(us) * time.Microsecond} }
	return dataPlaneFigures{
		umbra: mbps(47), quicRemote: mbps(106), quicLocal: mbps(191), ssh: mbps(210),
		umbraLat: p50(659), relayLat: p50(480), quicRemoteLat: p50(200), quicLocalLat: p50(49),
	}
}

func TestDataPlaneTargetsNameTheFloorsOfThePeers(t *testing.T) {
	var r report
	writeDataPlaneTargets(&r, benchedDataPlane())
	out := r.String()
	for _, want := range []string{
		"0.25 of raw quic-go with both ends in one process (191 MB/s), 0.44 of raw quic-go to a server in another process (106 MB/s), as umbra's ends are | yes (in one process: no) |",
		"umbra 47 MB/s, `ssh -L` 210 MB/s: 0.22× (the issue's ceiling for a relay, half of raw quic-go in one process, is 96 MB/s: `ssh -L` moves more than any circuit over quic-go can here) | no |",
		"umbra p50 659 µs, raw quic-go in one process 49 µs: 610 µs over (one QUIC hop between processes alone is 151 µs over; the bare quic-go relay, umbra's topology with none of its work, is 431 µs over: beyond the target before umbra does anything) | no |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// Where the peers leave the targets in reach, the report names no floor and reads yes
// for what umbra meets.
func TestDataPlaneTargetsInReach(t *testing.T) {
	f := benchedDataPlane()
	f.ssh.MBps, f.umbra.MBps = 60, 80
	f.relayLat.P50, f.umbraLat.P50 = 250*time.Microsecond, 300*time.Microsecond
	var r report
	writeDataPlaneTargets(&r, f)
	out := r.String()
	if strings.Contains(out, "ceiling") || strings.Contains(out, "beyond the target") {
		t.Errorf("targets in reach name a floor:\n%s", out)
	}
	if got := strings.Count(out, "| yes"); got != 3 {
		t.Errorf("targets met read yes %d times, want 3:\n%s", got, out)
	}
}
