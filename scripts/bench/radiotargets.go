package main

import (
	"fmt"
	"strings"
	"time"
)

// Issue #4's targets for umbra over a radio, printed beside the figures as checks; they
// do not fail the bench.
const (
	// At targetGoodputLoss and targetGoodputRTT, umbra's goodput is to be at least
	// targetGoodputRatio times TLS over TCP's.
	targetGoodputRatio = 3.0
	targetGoodputLoss  = 0.10
	targetGoodputRTT   = 200 * time.Millisecond
	// Traffic is to flow within targetRecovery of the link's return after any blackout.
	targetRecovery = time.Second
	// At targetDeliveryLoss, at least targetDelivery of a UDP flow's datagrams are to
	// arrive, with forward error correction costing at most targetFECOverhead more bytes.
	targetDelivery     = 0.99
	targetDeliveryLoss = 0.10
	targetFECOverhead  = 0.25
)

// writeTargets prints each target, what this run measured against it, and whether it
// was met.
func writeTargets(r *report, res radioResults) {
	r.printf("### Issue #4's targets\n\n")
	r.printf("Checks of this run's figures above, not a pass or fail of the bench.\n\n")
	r.printf("| target | measured | met |\n|---|---|---|\n")

	goodput, met := "not measured", "—"
	if c, ok := matrixCellAt(res.matrix, targetGoodputLoss, targetGoodputRTT); ok {
		um, tl := c.rates[radioPathUmbra], c.rates[radioPathTLS]
		switch {
		case c.errs[radioPathUmbra] != nil:
			goodput, met = "umbra: "+failedCell(c.errs[radioPathUmbra]), "no"
		case c.errs[radioPathTLS] != nil:
			goodput = "TLS over TCP: " + failedCell(c.errs[radioPathTLS])
		default:
			peer := "TLS over TCP"
			if res.tcpCC != "" {
				peer += " (" + res.tcpCC + ", this machine's default)"
			}
			goodput = fmt.Sprintf("umbra %s, %s %s: %s×", fmtRate(um), peer, fmtRate(tl), rateRatio(um, nil, tl, nil))
			met = yesNo(um >= targetGoodputRatio*tl)
			// A link losing a share of its packets delivers at most the rest of its rate,
			// headers and acknowledgements before payload: a peer that already moves over
			// a third of that leaves a target no path can reach. Say so, so that the "no"
			// is not read as umbra falling short.
			if want, link := targetGoodputRatio*tl, float64(matrixRate)/8*(1-targetGoodputLoss); want > link {
				goodput += fmt.Sprintf(" (%.0f× is %s, above the %s the link delivers at %s loss: out of any path's reach)",
					targetGoodputRatio, fmtRate(want), fmtRate(link), fmtLoss(targetGoodputLoss))
			}
		}
		if len(c.rates) > radioPathTLSCubic && c.errs[radioPathTLSCubic] == nil && c.errs[radioPathUmbra] == nil {
			cu := c.rates[radioPathTLSCubic]
			goodput += fmt.Sprintf("; TLS over TCP with CUBIC %s: %s×", fmtRate(cu), rateRatio(um, nil, cu, nil))
			met += fmt.Sprintf(" (CUBIC: %s)", yesNo(um >= targetGoodputRatio*cu))
		}
	}
	r.printf("| umbra's goodput ≥ %.0f× TLS over TCP's at %s loss, %v RTT | %s | %s |\n",
		targetGoodputRatio, fmtLoss(targetGoodputLoss), targetGoodputRTT, goodput, met)

	recovery, met := "not measured", "—"
	if len(res.plan.blackouts) > 0 && (res.plan.onlyPaths == nil || res.plan.onlyPaths[radioPathUmbra]) {
		var same, fresh time.Duration
		var errs []string
		for _, d := range res.plan.blackouts {
			rs, ok := res.recoveries[d]
			if !ok {
				continue
			}
			x := rs[radioPathUmbra]
			if x.sameErr != nil {
				errs = append(errs, fmt.Sprintf("open connection after %v: %s", d, recoveryCell(x.same, x.sameErr)))
			}
			if x.freshErr != nil {
				errs = append(errs, fmt.Sprintf("new connection after %v: %s", d, recoveryCell(x.fresh, x.freshErr)))
			}
			same, fresh = max(same, x.same), max(fresh, x.fresh)
		}
		recovery = fmt.Sprintf("slowest after blackouts of %s: open connection %s, new connection %s",
			fmtSeconds(res.plan.blackouts), recoveryCell(same, nil), recoveryCell(fresh, nil))
		for _, e := range errs {
			recovery += "; " + e
		}
		met = yesNo(len(errs) == 0 && same <= targetRecovery && fresh <= targetRecovery)
	}
	r.printf("| umbra's traffic flows within %v of the link's return after any blackout | %s | %s |\n", targetRecovery, recovery, met)

	delivery, met := "not measured", "—"
	at := udpCellsAt(res.udp, targetDeliveryLoss, res.plan.udpRTT)
	if f, ok := at[udpFlowFEC]; ok {
		plain, ok := at[udpFlowUmbra]
		switch {
		case f.err != nil:
			delivery, met = "with FEC: "+failedCell(f.err), "no"
		case !ok || plain.err != nil || plain.wire == 0:
			delivery = fmt.Sprintf("%.1f %% delivered; overhead not measured (no run without FEC)", f.delivered()*100)
		default:
			overhead := f.wirePerDatagram()/plain.wirePerDatagram() - 1
			delivery = fmt.Sprintf("FEC %s: %.1f %% delivered one way (%.1f %% without FEC), %+.0f %% bytes on the wire",
				udpFEC, f.delivered()*100, plain.delivered()*100, overhead*100)
			if plain.packets > 0 {
				packets := float64(f.packets)/float64(max(1, f.sent))/(float64(plain.packets)/float64(max(1, plain.sent))) - 1
				delivery += fmt.Sprintf(" (%+.0f %% packets)", packets*100)
			}
			met = yesNo(f.delivered() >= targetDelivery && overhead <= targetFECOverhead)
		}
	}
	r.printf("| ≥ %.0f %% of a UDP flow's datagrams delivered at %s loss with ≤ %.0f %% FEC overhead | %s | %s |\n\n",
		targetDelivery*100, fmtLoss(targetDeliveryLoss), targetFECOverhead*100, delivery, met)
}

// fmtSeconds formats durations as a list of whole seconds.
func fmtSeconds(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.0f", d.Seconds()))
	}
	return strings.Join(parts, ", ") + " s"
}

// fmtMinutes formats a duration of minutes.
func fmtMinutes(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f min", d.Minutes())
}
