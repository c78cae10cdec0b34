package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/umbranet/umbra/scripts/bench/peers"
)

// Issue #3's targets for one TCP circuit on loopback, printed beside the figures as
// checks; they do not fail the bench.
const (
	// targetQUICShare is the least share of raw quic-go's single-stream throughput one
	// circuit through one router is to move; the issue puts the ceiling at half, since a
	// relay does twice a direct connection's QUIC work.
	targetQUICShare   = 0.40
	relayQUICCeiling  = 0.50
	targetLatencyOver = 300 * time.Microsecond
)

// dataPlaneFigures are the section's figures the targets are checked against.
type dataPlaneFigures struct {
	umbra, quicRemote, quicLocal, ssh               peers.Result
	umbraLat, relayLat, quicRemoteLat, quicLocalLat peers.Latency
}

// writeDataPlaneTargets prints each of issue #3's data-plane targets, what this run
// measured against it, whether it was met, and, where the peers' own figures put a target
// beyond any circuit over quic-go on this machine, the figure that does.
func writeDataPlaneTargets(r *report, f dataPlaneFigures) {
	r.printf("### Issue #3's targets\n\n")
	r.printf("Checks of this run's figures above, not a pass or fail of the bench.\n\n")
	r.printf("| target | measured | met |\n|---|---|---|\n")

	local, remote := f.umbra.MBps/f.quicLocal.MBps, f.umbra.MBps/f.quicRemote.MBps
	r.printf("| one circuit ≥ %.2f of raw quic-go's single-stream throughput | umbra %.0f MB/s: %.2f of raw quic-go with both ends in one process (%.0f MB/s), %.2f of raw quic-go to a server in another process (%.0f MB/s), as umbra's ends are | %s (in one process: %s) |\n",
		targetQUICShare, f.umbra.MBps, local, f.quicLocal.MBps, remote, f.quicRemote.MBps, yesNo(remote >= targetQUICShare), yesNo(local >= targetQUICShare))

	above := fmt.Sprintf("umbra %.0f MB/s, `ssh -L` %.0f MB/s: %.2f×", f.umbra.MBps, f.ssh.MBps, f.umbra.MBps/f.ssh.MBps)
	if ceiling := relayQUICCeiling * f.quicLocal.MBps; f.ssh.MBps > ceiling {
		above += fmt.Sprintf(" (the issue's ceiling for a relay, half of raw quic-go in one process, is %.0f MB/s: `ssh -L` moves more than any circuit over quic-go can here)", ceiling)
	}
	r.printf("| one circuit above the `ssh -L` tunnel | %s | %s |\n", above, yesNo(f.umbra.MBps > f.ssh.MBps))

	over := f.umbraLat.P50 - f.quicLocalLat.P50
	latency := fmt.Sprintf("umbra p50 %s, raw quic-go in one process %s: %s over", us(f.umbraLat.P50), us(f.quicLocalLat.P50), us(over))
	var floors []string
	if d := f.quicRemoteLat.P50 - f.quicLocalLat.P50; d > 0 {
		floors = append(floors, fmt.Sprintf("one QUIC hop between processes alone is %s over", us(d)))
	}
	if d := f.relayLat.P50 - f.quicLocalLat.P50; d > targetLatencyOver {
		floors = append(floors, fmt.Sprintf("the bare quic-go relay, umbra's topology with none of its work, is %s over: beyond the target before umbra does anything", us(d)))
	}
	if len(floors) > 0 {
		latency += " (" + strings.Join(floors, "; ") + ")"
	}
	r.printf("| 64-byte echo p50 within %s of raw quic-go's | %s | %s |\n\n", us(targetLatencyOver), latency, yesNo(over <= targetLatencyOver))
}
