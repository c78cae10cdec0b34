package main

import (
	"fmt"
)

// The comparison of issue 17 (one transport): in the same run, TCP circuits on QUIC
// streams under umbra's congestion controller against the best TCP or QUIC peer in every
// cell, and the same circuit across a radio router link (the relay).

// oneTransportPeers are the peers the issue compares with: ssh -L, TLS over TCP with the
// namespaces' congestion control (BBR) and raw quic-go.
var oneTransportPeers = []int{radioPathSSH, radioPathTLS, radioPathQUIC}

// bestPeer is the fastest of oneTransportPeers in rates/errs, and its index (-1 if none
// has a rate).
func bestPeer(rates []float64, errs []error) (float64, int) {
	best, at := 0.0, -1
	for _, i := range oneTransportPeers {
		if i < len(rates) && errs[i] == nil && rates[i] > best {
			best, at = rates[i], i
		}
	}
	return best, at
}

// writeOneTransport prints, per cell of the matrix and per bulk profile, umbra's circuit
// on QUIC with umbra's controller beside the best peer and the relay.
func writeOneTransport(r *report, res radioResults) {
	if len(res.paths) <= radioPathRelay {
		return
	}
	r.printf("### One transport (issue 17): umbra's controller on QUIC streams\n\n")
	r.printf("The same cells and runs as above, read for issue 17: umbra's TCP circuit on QUIC streams\n")
	r.printf("with umbra's congestion controller (`internal/congestion`; operator agent with\n")
	r.printf("`--link-profile radio`, the router with `--link-profile radio`) beside the best of\n")
	r.printf("ssh -L, TLS over TCP (%s) and raw quic-go (NewReno). The issue's targets: QUIC ≥ best\n", res.tcpCC)
	r.printf("peer in every lossy cell, ≥ 0.9× in clean cells, ≥ 7.2 Mbit/s (900 KB/s) at 10 %% / 200 ms.\n\n")
	r.printf("The relay column is the same circuit from an agent on a relay router on side A, whose\n")
	r.printf("router link (`--link-profile radio`) crosses the radio: the issue wants it within 0.8× of\n")
	r.printf("the agent's hop on QUIC.\n\n")
	r.printf("| cell | QUIC + umbra's controller | best peer | QUIC ÷ best peer | relay | relay ÷ QUIC |\n|---|---|---|---|---|---|\n")
	for _, loss := range res.plan.losses {
		for _, rtt := range res.plan.rtts {
			c, ok := matrixCellAt(res.matrix, loss, rtt)
			if !ok || len(c.rates) <= radioPathRelay {
				continue
			}
			writeOneTransportRow(r, fmt.Sprintf("%s, %v", fmtLoss(loss), rtt), res.paths, c.rates, c.errs)
		}
	}
	for _, pr := range res.plan.profiles {
		fs := res.figures[pr.name]
		if !pr.bulk || len(fs) <= radioPathRelay {
			continue
		}
		rates, errs := make([]float64, len(fs)), make([]error, len(fs))
		for i, f := range fs {
			rates[i], errs[i] = f.rate, f.rateErr
		}
		writeOneTransportRow(r, pr.name+" bulk", res.paths, rates, errs)
	}
	r.printf("\n")
}

func writeOneTransportRow(r *report, cell string, paths []radioPath, rates []float64, errs []error) {
	q, qErr := rates[radioPathUmbra], errs[radioPathUmbra]
	best, at := bestPeer(rates, errs)
	cellOf := func(x float64, err error) string {
		if err != nil {
			return failedCell(err)
		}
		return fmtRate(x)
	}
	peer, bestRatio := "—", "—"
	if at >= 0 {
		peer = fmtRate(best) + " (" + shortPath(paths[at].name) + ")"
		bestRatio = rateRatio(q, qErr, best, nil)
	}
	relay := cellOf(rates[radioPathRelay], errs[radioPathRelay])
	relayRatio := rateRatio(rates[radioPathRelay], errs[radioPathRelay], q, qErr)
	r.printf("| %s | %s | %s | %s | %s | %s |\n", cell, cellOf(q, qErr), peer, bestRatio, relay, relayRatio)
}

// shortPath names a peer path in a few words.
func shortPath(name string) string {
	switch {
	case len(name) > 24:
		return name[:24] + "…"
	}
	return name
}
