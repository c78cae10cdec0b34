package lane

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/kcp-go"

	"github.com/umbranet/umbra/internal/linksim"
)

// TestMeasureStreamGoodput prints the goodput of one lane stream through the linksim
// UDP proxy: at 10 Mbit/s each way for round trips of 50 and 200 ms and random loss of
// 0, 3, 10 and 20 % each way, at 800 ms clean and at 10 % (how fast the window opens on
// a long path), then under the lte-bad and mesh-radio profiles, whose jitter and
// bursty loss the window must not read as a queue. These are the figures
// that chose lane streams for TCP circuits on a radio (docs/BENCHMARKS.md has umbra's,
// beside TLS over TCP and ssh -L). It runs only with UMBRA_MEASURE=1; UMBRA_MEASURE_ONLY
// picks the rows whose name contains it.
func TestMeasureStreamGoodput(t *testing.T) {
	if os.Getenv("UMBRA_MEASURE") != "1" {
		t.Skip("set UMBRA_MEASURE=1 to measure")
	}
	// The lane idles, then a run warms up and measures for a number of round trips,
	// at least 1.5 and 4 s, as the bench's matrix does.
	const idle = 3 * time.Second
	type row struct {
		name string
		imp  linksim.Impairment
		echo bool // the server echoes, and the client's reads are measured: both ways loaded
	}
	var rows []row
	for _, rtt := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond} {
		losses := []float64{0, 0.03, 0.1, 0.2}
		if rtt > 200*time.Millisecond {
			losses = []float64{0, 0.1} // the window's startup, with and without loss
		}
		for _, loss := range losses {
			rows = append(rows, row{fmt.Sprintf("%v, %.0f %% loss", rtt, loss*100), linksim.Impairment{Loss: loss, Delay: rtt / 2, RateBitsPerSec: 10e6}, false})
		}
	}
	// The bench's goodput matrix: an echo with a round trip and 250 ms of the link's
	// rate in flight, on a 200-packet queue, after the lane has idled.
	for _, rtt := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond} {
		for _, loss := range []float64{0, 0.1} {
			rows = append(rows, row{fmt.Sprintf("%v, %.0f %% loss, echo", rtt, loss*100), linksim.Impairment{Loss: loss, Delay: rtt / 2, RateBitsPerSec: 10e6, QueuePackets: 200}, true})
		}
	}
	for _, name := range []string{"lte-bad", "mesh-radio"} {
		p, _ := linksim.Profile(name)
		rows = append(rows, row{name, p.Up, false}, row{name + ", echo", p.Up, true})
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| link | lane stream, Mbit/s | window at the end | RTT | base RTT | segments sent again, of all (fast, early) | queue drops up, down | link carried up, down (mean packet) |\n|---|---|---|---|---|---|---|---|\n")
	var id uint32
	for _, r := range rows {
		if only := os.Getenv("UMBRA_MEASURE_ONLY"); only != "" && !strings.Contains(r.name, only) {
			continue
		}
		radio, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
		if err != nil {
			t.Fatal(err)
		}
		id++
		client, server, cl, _, proxy := streamPairProxy(t, radio, id)
		radio.SetBoth(r.imp)
		var got atomic.Int64
		reader := server
		if r.echo {
			go io.Copy(server, server)
			reader = client
		}
		go func() {
			buf := make([]byte, 64<<10)
			for {
				n, err := reader.Read(buf)
				got.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		time.Sleep(idle) // the lane idles before the run, as a radio link does between transfers
		warmup, measure := max(1500*time.Millisecond, 6*r.imp.Delay), max(4*time.Second, 12*r.imp.Delay)
		stop := time.Now().Add(warmup + measure)
		flight := int64(float64(r.imp.RateBitsPerSec) / 8 * (2*r.imp.Delay + 250*time.Millisecond).Seconds())
		go func() {
			chunk := make([]byte, 4<<10)
			client.SetWriteDeadline(stop)
			var sent int64
			for time.Now().Before(stop) {
				if r.echo && sent-got.Load() > flight {
					time.Sleep(time.Millisecond) // the echo's flight is full: wait for it to come back
					continue
				}
				n, err := client.Write(chunk)
				sent += int64(n)
				if err != nil {
					return
				}
			}
		}()
		time.Sleep(warmup) // a measurement window, not a wait for readiness
		g0, snmp0, link0 := got.Load(), kcp.DefaultSnmp.Copy(), proxy.Stats()
		time.Sleep(measure)
		snmp, link := kcp.DefaultSnmp.Copy(), proxy.Stats()
		mbit := float64(got.Load()-g0) * 8 / measure.Seconds() / 1e6
		st := cl.Stats()
		out, again, fast, early := snmp.OutSegs-snmp0.OutSegs, snmp.RetransSegs-snmp0.RetransSegs, snmp.FastRetransSegs-snmp0.FastRetransSegs, snmp.EarlyRetransSegs-snmp0.EarlyRetransSegs
		fmt.Fprintf(&table, "| %s | %.2f | %d | %v | %v | %.0f %% (%.0f %%, %.0f %%) | %d, %d | %s, %s |\n", r.name, mbit, st.Window, st.RTT.Round(time.Millisecond), st.MinRTT.Round(time.Millisecond),
			100*float64(again)/float64(max(out, 1)), 100*float64(fast)/float64(max(out, 1)), 100*float64(early)/float64(max(out, 1)),
			link.Up.Dropped.Queue-link0.Up.Dropped.Queue, link.Down.Dropped.Queue-link0.Down.Dropped.Queue,
			carried(link.Up, link0.Up, measure), carried(link.Down, link0.Down, measure))
		client.Fail(ErrStreamClosed)
		server.Fail(ErrStreamClosed)
	}
	t.Log("\n" + table.String())
}

// carried says what one direction of the link delivered between two of its statistics:
// Mbit/s and the mean packet's size.
func carried(now, then linksim.DirStats, over time.Duration) string {
	packets, bytes := now.PacketsOut-then.PacketsOut, now.BytesOut-then.BytesOut
	return fmt.Sprintf("%.2f Mbit/s (%d B)", float64(bytes)*8/over.Seconds()/1e6, bytes/max(packets, 1))
}
