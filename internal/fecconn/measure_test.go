package fecconn

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"umbra/internal/linksim"
)

// Measurement grid of TestMeasureGoodput (UMBRA_MEASURE=1).
const (
	measureRate        = 10_000_000 // bits per second each way
	measureDefaultSecs = 8          // seconds of transfer per cell
	measureChunk       = 64 << 10   // bytes per stream write
)

// measureMode is one column of the table: plain QUIC, or QUIC over the shim.
type measureMode struct {
	name string
	cfg  *Config // nil: no shim
}

var measureModes = []measureMode{
	{"plain", nil},
	{"8:4", &Config{K: 8, M: 4}},
	{"8:4 unordered", &Config{K: 8, M: 4, Unordered: true}},
	{"8:6", &Config{K: 8, M: 6}},
	{"16:8", &Config{K: 16, M: 8}},
	{"8:4 flush 5ms", &Config{K: 8, M: 4, FlushDelay: 5 * time.Millisecond}},
}

// TestMeasureGoodput prints the goodput of one quic-go stream (transport.Radio
// profile) through the linksim UDP proxy at 10 Mbit/s each way, for RTTs of 50 and 200
// ms and random loss of 0, 3, 10 and 20 % each way, without and with the shim. It
// runs only with UMBRA_MEASURE=1; UMBRA_MEASURE_SECONDS sets the seconds per cell
// (default 8), UMBRA_MEASURE_MODES a comma-separated subset of the modes.
func TestMeasureGoodput(t *testing.T) {
	if os.Getenv("UMBRA_MEASURE") != "1" {
		t.Skip("set UMBRA_MEASURE=1 to measure")
	}
	secs := measureDefaultSecs
	if s, err := strconv.Atoi(os.Getenv("UMBRA_MEASURE_SECONDS")); err == nil && s > 0 && s <= 10 {
		secs = s
	}
	modes := measureModes
	if only := os.Getenv("UMBRA_MEASURE_MODES"); only != "" {
		modes = nil
		for _, m := range measureModes {
			if strings.Contains(","+only+",", ","+m.name+",") {
				modes = append(modes, m)
			}
		}
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| RTT | loss each way |")
	for _, m := range modes {
		fmt.Fprintf(&table, " %s |", m.name)
	}
	fmt.Fprintf(&table, "\n|---|---|%s\n", strings.Repeat("---|", len(modes)))
	for _, rtt := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond} {
		for _, loss := range []float64{0, 0.03, 0.10, 0.20} {
			fmt.Fprintf(&table, "| %v | %.0f %% |", rtt, loss*100)
			for _, m := range modes {
				mbps, note := measureCell(t, rtt, loss, m, time.Duration(secs)*time.Second)
				t.Logf("rtt %v loss %.0f%% %-14s %6.2f Mbit/s %s", rtt, loss*100, m.name, mbps, note)
				fmt.Fprintf(&table, " %.2f |", mbps)
			}
			table.WriteString("\n")
		}
	}
	t.Logf("goodput in Mbit/s, %d s per cell, link %d Mbit/s each way:\n%s", secs, measureRate/1_000_000, table.String())
}

// measureCell returns the goodput of one stream over d, in Mbit/s, and a note of the
// shim's counters.
func measureCell(t *testing.T, rtt time.Duration, loss float64, m measureMode, d time.Duration) (float64, string) {
	imp := linksim.Impairment{Loss: loss, Delay: rtt / 2, RateBitsPerSec: measureRate}
	var client, server *Config
	if m.cfg != nil {
		c, s := *m.cfg, *m.cfg
		c.Initiate = true
		client, server = &c, &s
	}
	var mbps float64
	var note string
	t.Run(fmt.Sprintf("rtt=%v/loss=%.0f%%/%s", rtt, loss*100, m.name), func(t *testing.T) {
		p := newQUICPair(t, pairOpts{server: server, client: client, via: viaLink(t, imp, imp)})
		ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Second)
		defer cancel()
		var received atomic.Int64
		go func() {
			s, err := p.server.AcceptStream(ctx)
			if err != nil {
				return
			}
			buf := make([]byte, measureChunk)
			for {
				n, err := s.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		s, err := p.client.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		s.SetWriteDeadline(start.Add(d))
		chunk := pattern(2, measureChunk)
		for time.Since(start) < d {
			if _, err := s.Write(chunk); err != nil {
				break
			}
		}
		mbps = float64(received.Load()) * 8 / time.Since(start).Seconds() / 1e6
		if p.clientFEC != nil {
			cs := p.clientFEC.Stats()
			note = fmt.Sprintf("(sent %d+%d parity, server recovered %d, unrepaired %d)",
				cs.DataSent, cs.ParitySent, p.serverFEC.Stats().Recovered, p.serverFEC.Stats().Unrepaired)
		}
		s.CancelWrite(0)
	})
	return mbps, note
}
