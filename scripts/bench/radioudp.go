package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// UDP over the radio: a telemetry-like flow (a fixed rate of small datagrams, as MAVLink
// or a sensor stream sends) from side A to a UDP echo on side B, through umbra's UDP
// circuit with and without forward error correction, and straight over the link as the
// peer. The echo server runs in the bench process, so it reads the sender's clock: every
// datagram's one-way delivery and latency is measured, not only its round trip.
const (
	// udpFlowRate and udpFlowSize make the flow: 200 datagrams/s of 100 bytes, 20 KB/s.
	udpFlowRate = 200
	udpFlowSize = 100
	// udpFlowWarmup is sent, uncounted, after the link takes the cell's conditions;
	// udpFlowCount is the counted part that follows.
	udpFlowWarmup = time.Second
	// Twenty seconds is 4,000 datagrams: about 77 blocks of udpFEC, enough that one block
	// the code cannot rebuild (about 2 % of them at 10 % loss, each losing some ten
	// datagrams) does not decide the figure, as it did over 3 s.
	udpFlowCount = 20 * time.Second
	// udpUmbraStraggle is how long after its last datagram an umbra flow is waited for,
	// beyond one round trip: the agent drops a datagram that waited over 2 s to be sent,
	// and a FEC block waits at most 0.5 s for its missing packets.
	udpUmbraStraggle = 2500 * time.Millisecond
	// udpPlainStraggle is the same for datagrams sent straight over the link, which only
	// wait in the link's queue.
	udpPlainStraggle = 300 * time.Millisecond
	// udpProbeEvery paces the datagrams that open a flow (an umbra circuit is set up by
	// the first one) until one is echoed.
	udpProbeEvery = 200 * time.Millisecond
	// udpFEC is the agents' --udp-fec for the FEC rows: 11 parity per 52, 21 % more
	// packets, and with each packet's 5-byte FEC header about 24 % more bytes, under
	// issue 4's 25 %. The code rebuilds a block when at most 11 of its 63 packets are
	// lost: at 10 % loss all but about 0.4 % of datagrams arrive. The flush delay is
	// raised from agent.DefaultFECFlush to 300 ms so that a block fills (52 datagrams
	// at 200 a second take 255 ms) before the flush closes it short, where its 11
	// parity would cost more than 11/52.
	udpFEC       = "52:11:300ms"
	udpFECData   = 52                     // udpFEC's K
	udpFECParity = 11                     // udpFEC's M
	udpFECFlush  = 300 * time.Millisecond // udpFEC's flush delay
	// udpFullRate is the share of sent × (1 − loss) datagrams per second a flow must
	// deliver to count as carried at its full rate: a little under 1 for the spread of
	// random loss over a few hundred datagrams.
	udpFullRate = 0.95
	// The flows, in the order every table shows them.
	udpFlowLink  = 0 // straight over the link: the peer
	udpFlowUmbra = 1 // umbra's UDP circuit
	udpFlowFEC   = 2 // umbra's UDP circuit with --udp-fec udpFEC
	// Listeners of the operator agents' UDP dials, in side A.
	radioUDPListen    = "127.0.0.1:7010"
	radioUDPFECListen = "127.0.0.1:7011"
)

// probeHeader is the start of every datagram of a flow: run (4 bytes), sequence number
// (4), send time in nanoseconds since the bench's clock base (8), big-endian.
const probeHeader = 16

// putProbe writes a datagram's header into b, which holds at least probeHeader bytes.
func putProbe(b []byte, run, seq uint32, sent time.Duration) {
	binary.BigEndian.PutUint32(b[0:], run)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(sent))
}

// parseProbe reads a datagram's header; ok is false for a datagram too short to hold one.
func parseProbe(b []byte) (run, seq uint32, sent time.Duration, ok bool) {
	if len(b) < probeHeader {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(b[0:]), binary.BigEndian.Uint32(b[4:]), time.Duration(binary.BigEndian.Uint64(b[8:])), true
}

// udpSink echoes every datagram on its socket and records, for the current run, when each
// sequence number first arrived.
type udpSink struct {
	pc   net.PacketConn
	base time.Time
	wg   sync.WaitGroup

	mu   sync.Mutex
	run  uint32
	seen map[uint32]time.Duration // sequence number → one-way latency, first copy
}

// startUDPSink echoes on pc until stop; base is the clock the senders stamp.
func startUDPSink(pc net.PacketConn, base time.Time) *udpSink {
	s := &udpSink{pc: pc, base: base, seen: map[uint32]time.Duration{}}
	s.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if run, seq, sent, ok := parseProbe(buf[:n]); ok {
				at := time.Since(s.base)
				s.mu.Lock()
				if _, dup := s.seen[seq]; run == s.run && run != 0 && !dup {
					s.seen[seq] = at - sent
				}
				s.mu.Unlock()
			}
			pc.WriteTo(buf[:n], from)
		}
	})
	return s
}

// begin starts recording run (not 0, which marks probes), forgetting the last one.
func (s *udpSink) begin(run uint32) {
	s.mu.Lock()
	s.run, s.seen = run, map[uint32]time.Duration{}
	s.mu.Unlock()
}

// arrived returns the one-way latency of every sequence number in [from, to) of the
// current run that has arrived.
func (s *udpSink) arrived(from, to uint32) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lat []time.Duration
	for seq, d := range s.seen {
		if seq >= from && seq < to {
			lat = append(lat, d)
		}
	}
	return lat
}

// stop closes the socket and waits for the echo loop.
func (s *udpSink) stop() {
	s.pc.Close()
	s.wg.Wait()
}

// udpFlow is one way for a datagram from side A to a sink on side B.
type udpFlow struct {
	name     string
	addr     string // where side A sends
	sink     *udpSink
	straggle time.Duration // waited for beyond one round trip after the last datagram
	// size is the bytes of each datagram; 0 is udpFlowSize.
	size int
}

// udpCell is what one flow did at one loss rate and round-trip time.
type udpCell struct {
	loss    float64
	rtt     time.Duration
	flow    int             // index into the flows
	sent    int             // counted datagrams sent
	oneWay  []time.Duration // one-way latency of each counted datagram that arrived
	echoed  []time.Duration // round trip of each counted datagram echoed back
	sendFor time.Duration   // how long the counted datagrams took to send
	wire    uint64          // bytes offered to the A→B direction while they were sent
	packets uint64          // packets offered to the A→B direction while they were sent
	err     error
}

// delivered is the share of counted datagrams that reached side B.
func (c udpCell) delivered() float64 { return float64(len(c.oneWay)) / float64(max(1, c.sent)) }

// perSecond is the counted datagrams delivered per second of sending.
func (c udpCell) perSecond() float64 { return float64(len(c.oneWay)) / c.sendFor.Seconds() }

// wirePerDatagram is the bytes the link was offered per counted datagram.
func (c udpCell) wirePerDatagram() float64 { return float64(c.wire) / float64(max(1, c.sent)) }

// udpMatrix runs every flow at every loss rate of the plan at its UDP round-trip time,
// and at the plan's full-rate check.
func (l *radioLab) udpMatrix(ctx context.Context, flows []udpFlow, plan radioPlan, progress func(string, ...any)) ([]udpCell, error) {
	type point struct {
		loss float64
		rtt  time.Duration
	}
	var points []point
	for _, loss := range plan.losses {
		points = append(points, point{loss, plan.udpRTT})
	}
	points = append(points, point{plan.udpCheckLoss, plan.udpCheckRTT})
	var cells []udpCell
	run := uint32(0)
	for _, pt := range points {
		for i, f := range flows {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("radio: udp: %w", ctx.Err())
			}
			run++
			c := l.udpRun(ctx, f, matrixConditions(0, pt.rtt), matrixConditions(pt.loss, pt.rtt), pt.rtt, run)
			c.loss, c.rtt, c.flow = pt.loss, pt.rtt, i
			progress("udp %s loss, %v RTT, %s: %d/%d delivered, %d echoed, %.0f B and %.2f packets a datagram on the wire %v",
				fmtLoss(pt.loss), pt.rtt, f.name, len(c.oneWay), c.sent, len(c.echoed), c.wirePerDatagram(),
				float64(c.packets)/float64(max(1, c.sent)), c.err)
			cells = append(cells, c)
		}
	}
	return cells, l.setConditions(linksim.Impairment{}, linksim.Impairment{})
}

// udpRun opens a flow through f under base (the cell's link without its loss), then
// impairs the link with imp and sends udpFlowRate datagrams a second for udpFlowWarmup
// and udpFlowCount, and waits for the stragglers. The link is back at base and drained
// when it returns.
func (l *radioLab) udpRun(ctx context.Context, f udpFlow, base, imp linksim.Impairment, rtt time.Duration, run uint32) udpCell {
	var cell udpCell
	if err := l.setConditions(base, base); err != nil {
		cell.err = err
		return cell
	}
	dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
	defer cancel()
	c, err := l.nl.DialContext(dctx, linksim.SideA, "udp", f.addr)
	if err != nil {
		cell.err = err
		return cell
	}
	defer func() {
		c.Close()
		l.setConditions(base, base)
		l.drain(ctx)
	}()
	if err := probeUDP(dctx, c, f.sink.base); err != nil {
		cell.err = fmt.Errorf("before the loss: %w", err)
		return cell
	}
	if err := l.setConditions(imp, imp); err != nil {
		cell.err = err
		return cell
	}
	f.sink.begin(run)

	interval := time.Second / udpFlowRate
	warm := uint32(udpFlowWarmup / interval)
	counted := uint32(udpFlowCount / interval)
	end := warm + counted
	var (
		mu     sync.Mutex
		echoed = map[uint32]time.Duration{}
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return // the deadline set below, or the socket closed
			}
			if err != nil {
				continue // an ICMP error reported on the socket: the next datagram may pass
			}
			got, seq, sent, ok := parseProbe(buf[:n])
			if !ok || got != run || seq < warm || seq >= end {
				continue
			}
			mu.Lock()
			if _, dup := echoed[seq]; !dup {
				echoed[seq] = time.Since(f.sink.base) - sent
			}
			mu.Unlock()
		}
	}()
	msg := make([]byte, udpFlowSize)
	if f.size > 0 {
		msg = make([]byte, max(f.size, probeHeader))
	}
	t0 := time.Now()
	var wire0, packets0 uint64
	var countFrom time.Time
	for seq := uint32(0); seq < end; seq++ {
		if !sleepCtx(ctx, time.Until(t0.Add(time.Duration(seq)*interval))) {
			cell.err = ctx.Err()
			break
		}
		if seq == warm {
			st := l.nl.Stats()
			wire0, packets0, countFrom = st.Up.BytesIn, st.Up.PacketsIn, time.Now()
		}
		putProbe(msg, run, seq, time.Since(f.sink.base))
		if _, err := c.Write(msg); err != nil && cell.err == nil {
			cell.err = fmt.Errorf("write: %w", err)
		}
	}
	// Stamped at the next datagram's slot, so that the last one's bytes are in.
	sleepCtx(ctx, time.Until(t0.Add(time.Duration(end)*interval)))
	st := l.nl.Stats()
	cell.sent, cell.sendFor = int(counted), time.Since(countFrom)
	cell.wire, cell.packets = st.Up.BytesIn-wire0, st.Up.PacketsIn-packets0

	deadline := time.Now().Add(rtt + f.straggle)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		mu.Lock()
		back := len(echoed)
		mu.Unlock()
		if back == int(counted) && len(f.sink.arrived(warm, end)) == int(counted) {
			break
		}
		sleepCtx(ctx, radioPoll)
	}
	c.SetReadDeadline(time.Unix(1, 0))
	<-readDone
	cell.oneWay = f.sink.arrived(warm, end)
	for _, d := range echoed {
		cell.echoed = append(cell.echoed, d)
	}
	return cell
}

// waitFlows waits until every flow has echoed a probe, on the link as it is.
func (l *radioLab) waitFlows(ctx context.Context, flows []udpFlow) error {
	for _, f := range flows {
		dctx, cancel := context.WithTimeout(ctx, radioSetupTimeout)
		c, err := l.nl.DialContext(dctx, linksim.SideA, "udp", f.addr)
		if err == nil {
			err = probeUDP(dctx, c, f.sink.base)
			c.Close()
		}
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

// probeUDP sends probes (run 0) on c every udpProbeEvery until one is echoed, within ctx.
func probeUDP(ctx context.Context, c net.Conn, base time.Time) error {
	msg, buf := make([]byte, udpFlowSize), make([]byte, 64<<10)
	var last error
	for seq := uint32(0); ; seq++ {
		putProbe(msg, 0, seq, time.Since(base))
		if _, err := c.Write(msg); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		c.SetReadDeadline(time.Now().Add(udpProbeEvery))
		n, err := c.Read(buf)
		if err == nil {
			if run, _, _, ok := parseProbe(buf[:n]); ok && run == 0 {
				c.SetReadDeadline(time.Time{})
				return nil
			}
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			last = err // an ICMP error while the far end is not listening yet
			sleepCtx(ctx, udpProbeEvery)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no echo of a probe: %w (last: %v)", ctx.Err(), last)
		}
	}
}

// writeUDP prints the UDP flows at every loss rate, and the full-rate check.
func writeUDP(r *report, flows []udpFlow, plan radioPlan, cells []udpCell) {
	r.printf("### UDP: a telemetry flow under loss\n\n")
	r.printf("%d datagrams a second of %d bytes (%d KB/s) from side A to a UDP echo on side B, on\n",
		udpFlowRate, udpFlowSize, udpFlowRate*udpFlowSize/1000)
	r.printf("the goodput matrix's link (%s each way, the loss in each direction) at %v RTT.\n",
		fmtRate(matrixRate/8), plan.udpRTT)
	r.printf("umbra's flow is a UDP service hosted by a drone agent on side B and dialed by an operator\n")
	r.printf("agent on side A, sealed end to end and carried as the agents carry UDP by default; the\n")
	r.printf("FEC rows run both of those agents with `--udp-fec %s` (each end codes what it sends).\n", udpFEC)
	r.printf("The peer is the same flow sent straight over the link: what the radio itself delivers.\n")
	r.printf("Each flow is opened under the delay without loss; then the loss is switched on, %v of\n", udpFlowWarmup)
	r.printf("the flow is sent uncounted and %v (%d datagrams) counted, and late ones are waited for\n",
		udpFlowCount, int(udpFlowCount/(time.Second/udpFlowRate)))
	r.printf("(a round trip plus %v for umbra, plus %v for the bare link). The echo server runs\n", udpUmbraStraggle, udpPlainStraggle)
	r.printf("in the bench process and reads the sender's clock, so delivery and latency are one way\n")
	r.printf("(A→B); \"echoed\" is the round trip, which crosses the loss twice. Wire is the bytes (whole\n")
	r.printf("IP packets, the idle link's heartbeats included) offered to the A→B direction per datagram\n")
	r.printf("while the counted ones were sent; FEC overhead is the FEC row's wire over the row without\n")
	r.printf("FEC at the same loss, minus one. An encoder sends a block's parity once it holds K messages\n")
	r.printf("or %v after its first (the flush delay `--udp-fec` gives it), so at one datagram every %v a block\n", udpFECFlush, time.Second/udpFlowRate)
	r.printf("closes with %d messages and %s costs %.0f %% more packets.\n",
		udpFlushedBlock(), udpFEC, 100*float64(udpFECParity)/float64(udpFlushedBlock()))
	r.printf("delivered ÷ link: umbra's one-way delivery over the bare link's, higher is better.\n\n")
	r.printf("| loss | flow | delivered one way | delivered ÷ link | latency p50 | p99 | echoed | RTT p50 | wire per datagram | FEC overhead |\n")
	r.printf("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, loss := range plan.losses {
		writeUDPRows(r, flows, udpCellsAt(cells, loss, plan.udpRTT))
	}
	r.printf("\n")

	r.printf("At %s loss and %v RTT: is a %d KB/s flow delivered at its full rate, that is, are at\n",
		fmtLoss(plan.udpCheckLoss), plan.udpCheckRTT, udpFlowRate*udpFlowSize/1000)
	r.printf("least %.0f %% of sent × (1 − loss) datagrams a second delivered (the radio loses the rest)?\n\n", udpFullRate*100)
	check := udpCellsAt(cells, plan.udpCheckLoss, plan.udpCheckRTT)
	r.printf("| flow | sent /s | sent × (1 − loss) /s | delivered /s | delivered ÷ (sent × (1 − loss)) | full rate | latency p50 | p99 |\n")
	r.printf("|---|---|---|---|---|---|---|---|\n")
	for i, f := range flows {
		c, ok := check[i]
		if !ok {
			continue
		}
		if c.err != nil {
			r.printf("| %s | %s | — | — | — | — | — | — |\n", f.name, failedCell(c.err))
			continue
		}
		sent := float64(c.sent) / c.sendFor.Seconds()
		want := sent * (1 - c.loss)
		ratio := c.perSecond() / want
		r.printf("| %s | %.0f | %.0f | %.0f | %.2f | %s | %s | %s |\n", f.name, sent, want, c.perSecond(), ratio,
			yesNo(ratio >= udpFullRate), latCell(c.oneWay, 0.5), latCell(c.oneWay, 0.99))
	}
	r.printf("\n")
}

// udpFlushedBlock is how many of the flow's messages an encoder's block holds when its
// flush delay closes it (at most K).
func udpFlushedBlock() int {
	return min(udpFECData, int(udpFECFlush/(time.Second/udpFlowRate))+1)
}

// writeUDPRows prints one loss rate's rows.
func writeUDPRows(r *report, flows []udpFlow, at map[int]udpCell) {
	link, linkOK := at[udpFlowLink]
	noFEC, noFECOK := at[udpFlowUmbra]
	for i, f := range flows {
		c, ok := at[i]
		if !ok {
			continue
		}
		if c.err != nil {
			r.printf("| %s | %s | %s | — | — | — | — | — | — | — | — |\n", fmtLoss(c.loss), f.name, failedCell(c.err))
			continue
		}
		ratio, overhead := "—", "—"
		if i != udpFlowLink && linkOK && link.err == nil && link.delivered() > 0 {
			ratio = fmtRatio(c.delivered() / link.delivered())
		}
		if i == udpFlowFEC && noFECOK && noFEC.err == nil && noFEC.wire > 0 {
			overhead = fmt.Sprintf("%+.0f %%", (c.wirePerDatagram()/noFEC.wirePerDatagram()-1)*100)
		}
		r.printf("| %s | %s | %.1f %% | %s | %s | %s | %.1f %% | %s | %.0f B | %s |\n", fmtLoss(c.loss), f.name,
			c.delivered()*100, ratio, latCell(c.oneWay, 0.5), latCell(c.oneWay, 0.99),
			float64(len(c.echoed))/float64(max(1, c.sent))*100, latCell(c.echoed, 0.5), c.wirePerDatagram(), overhead)
	}
}

// udpCellsAt returns the cells at loss and rtt by flow.
func udpCellsAt(cells []udpCell, loss float64, rtt time.Duration) map[int]udpCell {
	at := map[int]udpCell{}
	for _, c := range cells {
		if c.loss == loss && c.rtt == rtt {
			at[c.flow] = c
		}
	}
	return at
}

// latCell formats the p-th percentile of ds, or a dash when there are none.
func latCell(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "—"
	}
	return ms(percentile(ds, p))
}

// yesNo formats a check.
func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
