package lane

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"umbra/internal/linksim"
)

// TestMeasureStreamGoodput prints the goodput of one lane stream through the linksim
// UDP proxy at 10 Mbit/s each way, for round trips of 50 and 200 ms and random loss of
// 0, 3, 10 and 20 % each way: the figures that chose lane streams for TCP circuits on a
// radio (docs/BENCHMARKS.md has umbra's, beside TLS over TCP and ssh -L). It runs only
// with UMBRA_MEASURE=1.
func TestMeasureStreamGoodput(t *testing.T) {
	if os.Getenv("UMBRA_MEASURE") != "1" {
		t.Skip("set UMBRA_MEASURE=1 to measure")
	}
	const (
		warmup  = 2 * time.Second
		measure = 6 * time.Second
	)
	var table strings.Builder
	fmt.Fprintf(&table, "| RTT | loss | lane stream, Mbit/s | window at the end |\n|---|---|---|---|\n")
	var id uint32
	for _, rtt := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		for _, loss := range []float64{0, 0.03, 0.1, 0.2} {
			radio, err := linksim.NewLink(linksim.Impairment{}, linksim.Impairment{})
			if err != nil {
				t.Fatal(err)
			}
			id++
			client, server, cl, _ := streamPair(t, radio, id)
			radio.SetBoth(linksim.Impairment{Loss: loss, Delay: rtt / 2, RateBitsPerSec: 10e6})
			var got atomic.Int64
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := server.Read(buf)
					got.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
			stop := time.Now().Add(warmup + measure)
			go func() {
				chunk := make([]byte, 64<<10)
				client.SetWriteDeadline(stop)
				for time.Now().Before(stop) {
					if _, err := client.Write(chunk); err != nil {
						return
					}
				}
			}()
			time.Sleep(warmup) // a measurement window, not a wait for readiness
			g0 := got.Load()
			time.Sleep(measure)
			mbit := float64(got.Load()-g0) * 8 / measure.Seconds() / 1e6
			fmt.Fprintf(&table, "| %v | %.0f %% | %.2f | %d |\n", rtt, loss*100, mbit, cl.Stats().Window)
			client.Fail(ErrStreamClosed)
			server.Fail(ErrStreamClosed)
		}
	}
	t.Log("\n" + table.String())
}
