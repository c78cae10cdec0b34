package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// The goodput matrix: one connection through each path kept full for a fixed time under
// random loss × round-trip time, behind one rate-capped radio. These are its sizes; every
// run below is bounded by them in time, so a cell whose throughput collapsed costs no more
// than one that flowed.
const (
	// matrixRate caps each direction of the link: a radio, not loopback.
	matrixRate = 10_000_000
	// matrixQueue is the queue in front of the rate cap, in packets: about 240 ms of
	// 1,500-byte packets at matrixRate, the buffer of a radio modem rather than of a
	// router (a queue deeper than that only adds delay once the link is full).
	matrixQueue = 200
	// A run keeps its connection full for a warm-up whose bytes are not counted, then
	// counts the bytes echoed in a fixed window. Both grow with the round-trip time (in
	// round trips) beyond their minimum, so that slow start has comparable room at every
	// RTT; at 800 ms the run is still shorter than the few tens of round trips a window
	// of 1 MB takes to open, and every path pays that alike. Ten counted round trips, not
	// six: at 30 % loss and 800 ms one hole whose retransmission is lost again holds the
	// echo for seconds, and over six round trips one such draw decided the cell.
	matrixMinWarmup  = 1500 * time.Millisecond
	matrixWarmupRTTs = 3
	matrixMinCount   = 3 * time.Second
	matrixCountRTTs  = 10
	// matrixFlightSlack is what a run keeps in flight beyond one round trip at the link's
	// rate: room for the queue, no more, so that what is still in a tunnel's buffers when
	// the run ends drains in a second once the loss is off.
	matrixFlightSlack = 250 * time.Millisecond
	// matrixRowSettle is how long every path echoes under a new round-trip time before
	// its row is measured. A long-lived TCP connection (ssh -L's) under BBR keeps the
	// lowest RTT it saw for 10 s and sizes its window from it: without this, it would
	// send a 50 ms window into an 800 ms path.
	matrixRowSettle = 11 * time.Second
)

// matrixCell is the goodput of every path at one loss rate and round-trip time.
type matrixCell struct {
	loss  float64
	rtt   time.Duration
	rates []float64 // bytes per second echoed, one way; by path
	errs  []error   // why a path has no rate; by path
}

// matrixConditions is one direction of the link in a cell: the loss on its own, half the
// round trip as fixed delay, no jitter (it would only add noise to a one-run figure).
func matrixConditions(loss float64, rtt time.Duration) linksim.Impairment {
	return linksim.Impairment{Loss: loss, Delay: rtt / 2, RateBitsPerSec: matrixRate, QueuePackets: matrixQueue}
}

// matrixTiming is how long a run at rtt warms up and counts, and how many bytes it keeps
// in flight.
func matrixTiming(rtt time.Duration) (warmup, count time.Duration, flight int64) {
	warmup = max(matrixMinWarmup, matrixWarmupRTTs*rtt)
	count = max(matrixMinCount, matrixCountRTTs*rtt)
	flight = int64(float64(matrixRate) / 8 * (rtt + matrixFlightSlack).Seconds())
	return warmup, count, flight
}

// goodputMatrix measures every path in every cell of the plan, a row of cells per
// round-trip time. Everything but the counted runs happens on the row's link without
// loss (its delay and rate cap): connections open and drain under it, so their round-trip
// estimates are the row's, never a clean link's.
func (l *radioLab) goodputMatrix(ctx context.Context, paths []radioPath, plan radioPlan, progress func(string, ...any)) ([]matrixCell, error) {
	var cells []matrixCell
	for _, rtt := range plan.rtts {
		base := matrixConditions(0, rtt)
		if err := l.setConditions(base, base); err != nil {
			return nil, err
		}
		l.drain(ctx)
		progress("matrix: settling at %v RTT", rtt)
		l.echoAll(ctx, paths, matrixRowSettle)
		for _, loss := range plan.losses {
			cell := matrixCell{loss: loss, rtt: rtt, rates: make([]float64, len(paths)), errs: make([]error, len(paths))}
			for i, p := range paths {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("radio: matrix: %w", ctx.Err())
				}
				if plan.onlyPaths != nil && !plan.onlyPaths[i] {
					cell.errs[i] = errNotMeasured
					continue
				}
				cell.rates[i], cell.errs[i] = l.goodput(ctx, p, base, matrixConditions(loss, rtt), rtt)
				progress("matrix %s loss, %v RTT, %s: %s %v", fmtLoss(loss), rtt, p.name, fmtRate(cell.rates[i]), cell.errs[i])
			}
			cells = append(cells, cell)
		}
	}
	return cells, l.setConditions(linksim.Impairment{}, linksim.Impairment{})
}

// echoAll keeps an echo going on a new connection through every path at once, every
// radioEchoEvery for d. A path that fails is left for the runs to report.
func (l *radioLab) echoAll(ctx context.Context, paths []radioPath, d time.Duration) {
	until := time.Now().Add(d)
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Go(func() {
			dctx, cancel := context.WithDeadline(ctx, until)
			defer cancel()
			c, err := p.dial(dctx)
			if err != nil {
				return
			}
			defer c.Close()
			stop := make(chan struct{})
			defer context.AfterFunc(dctx, func() { close(stop) })()
			keepEcho(c, stop, until.Add(radioEchoGrace), &echoLog{})
		})
	}
	wg.Wait()
}

// goodput opens a connection through p and echoes once under base (the cell's link
// without its loss, so that set-up, which this figure is not about, cannot fail it), then
// impairs the link with imp and returns the bytes per second echoed in the counted
// window. The link is back at base and drained when it returns.
func (l *radioLab) goodput(ctx context.Context, p radioPath, base, imp linksim.Impairment, rtt time.Duration) (float64, error) {
	dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
	c, err := p.dial(dctx)
	cancel()
	if err != nil {
		return 0, err
	}
	defer func() {
		c.Close()
		l.setConditions(base, base)
		l.drain(ctx)
	}()
	if _, err := echoRounds(c, 1, radioEchoTime); err != nil {
		return 0, fmt.Errorf("before the loss: %w", err)
	}
	if err := l.setConditions(imp, imp); err != nil {
		return 0, err
	}
	warmup, count, flight := matrixTiming(rtt)
	return timedBulk(c, warmup, count, flight)
}

// matrixCellAt returns the cell at loss and rtt, if the matrix has it.
func matrixCellAt(cells []matrixCell, loss float64, rtt time.Duration) (matrixCell, bool) {
	for _, c := range cells {
		if c.loss == loss && c.rtt == rtt {
			return c, true
		}
	}
	return matrixCell{}, false
}

// writeMatrix prints the goodput matrix: a row per loss rate and path, a column pair
// (goodput, umbra ÷ path) per round-trip time.
func writeMatrix(r *report, paths []radioPath, plan radioPlan, cells []matrixCell, tcpCC string) {
	w0, c0, _ := matrixTiming(0)
	wN, cN, _ := matrixTiming(plan.rtts[len(plan.rtts)-1])
	r.printf("### Goodput under loss × round-trip time\n\n")
	r.printf("Each direction of the link capped at %s behind a %d-packet queue (about %d ms of\n",
		fmtRate(matrixRate/8), matrixQueue, matrixQueue*1500*8*1000/matrixRate)
	r.printf("1,500-byte packets: a radio modem's buffer), the round trip split as half its delay each\n")
	r.printf("way (no jitter), and the loss rate applied to each direction independently. A row per\n")
	r.printf("round-trip time: first every path echoes for %v under the row's delay without loss\n", matrixRowSettle)
	r.printf("(a long-lived TCP connection under BBR sizes its window from the lowest RTT of the last\n")
	r.printf("10 s). Then, per cell and path: a new connection opens and echoes under the delay without\n")
	r.printf("loss (set-up is not what this measures, and a connection opened on a clean link would\n")
	r.printf("carry that link's RTT into the run); the loss is switched on; the connection is kept full\n")
	r.printf("(an echo, %d KiB writes, one round trip at the link's rate plus %v in flight) for an\n", radioChunk>>10, matrixFlightSlack)
	r.printf("uncounted warm-up of %v (%d round trips from %v on), and the bytes echoed in the\n", w0, matrixWarmupRTTs, time.Duration(float64(matrixMinWarmup)/matrixWarmupRTTs))
	r.printf("following %v (%d round trips from %v on) are counted: payload rate one way, while\n", c0, matrixCountRTTs, time.Duration(float64(matrixMinCount)/matrixCountRTTs))
	r.printf("the echo loads both directions (at %v RTT: %v warm-up, %v counted). A collapsed\n", plan.rtts[len(plan.rtts)-1], wN, cN)
	r.printf("connection therefore costs no more time than one that flows. The loss is then switched\n")
	r.printf("off and the link drained. TCP's congestion control is the namespaces' default: %s.\n", tcpCC)
	r.printf("umbra ÷ path: higher is better for umbra. One run per cell: at 20–30 %% loss expect wide\n")
	r.printf("spread between runs.\n\n")
	r.printf("| loss | path |")
	for _, rtt := range plan.rtts {
		r.printf(" %v RTT | umbra ÷ path |", rtt)
	}
	r.printf("\n|---|---|%s\n", strings.Repeat("---|---|", len(plan.rtts)))
	for _, loss := range plan.losses {
		for i, p := range paths {
			label := p.name
			if i == 0 {
				label = "**" + p.name + "**"
			}
			r.printf("| %s | %s |", fmtLoss(loss), label)
			for _, rtt := range plan.rtts {
				c, ok := matrixCellAt(cells, loss, rtt)
				if !ok {
					r.printf(" — | — |")
					continue
				}
				rate, ratio := fmtRate(c.rates[i]), "—"
				if c.errs[i] != nil {
					rate = failedCell(c.errs[i])
				}
				if i > 0 {
					ratio = rateRatio(c.rates[0], c.errs[0], c.rates[i], c.errs[i])
				}
				r.printf(" %s | %s |", rate, ratio)
			}
			r.printf("\n")
		}
	}
	r.printf("\nquic-go's congestion controller (NewReno) halves its window on every loss it detects,\n")
	r.printf("as TCP's does; the raw quic-go row shows how much of umbra's figure is QUIC's own.\n\n")
}

// rateRatio is umbra's rate over the path's, where both have one.
func rateRatio(um float64, umErr error, x float64, xErr error) string {
	switch {
	case umErr != nil || xErr != nil:
		return "—"
	case x <= 0 && um > 0:
		return "∞ (path moved nothing)"
	case x <= 0:
		return "—"
	}
	return fmtRatio(um / x)
}

// fmtLoss formats a loss probability as a percentage.
func fmtLoss(p float64) string { return fmt.Sprintf("%g %%", p*100) }
