package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/umbranet/umbra/internal/linksim"
)

// TestMeasureCircuitGoodput prints the one-way goodput of one TCP circuit through the
// real binaries, the operator's agent behind the linksim UDP proxy with --link-profile
// radio (its TCP circuits on QUIC streams under umbra's controller), on the links
// internal/transport's TestRadioKeepsItsRateUnderRandomLoss measures a bare QUIC stream
// on: what the circuit's layers above QUIC cost. The rows run one after another on one
// agent, as the bench's matrix does, so a row also shows how the controller takes a
// link's new round trip. It runs only with UMBRA_MEASURE=1; UMBRA_MEASURE_ONLY picks the
// rows whose name contains it, UMBRA_MEASURE_ARGS adds flags to the operator's agent,
// and UMBRA_MEASURE_STATUS=1 logs the operator's status (its link's round trip and loss)
// after each row.
func TestMeasureCircuitGoodput(t *testing.T) {
	if os.Getenv("UMBRA_MEASURE") != "1" {
		t.Skip("set UMBRA_MEASURE=1 to measure")
	}
	const (
		warmup  = 2 * time.Second
		measure = 6 * time.Second
	)
	type row struct {
		name string
		imp  linksim.Impairment
	}
	var rows []row
	for _, rtt := range []time.Duration{50 * time.Millisecond, 200 * time.Millisecond, 800 * time.Millisecond} {
		for _, loss := range []float64{0, 0.1} {
			rows = append(rows, row{fmt.Sprintf("%v, %.0f %% loss", rtt, loss*100), linksim.Impairment{Loss: loss, Delay: rtt / 2, RateBitsPerSec: 10e6}})
		}
	}
	for _, name := range []string{"lte-bad", "mesh-radio"} {
		p, _ := linksim.Profile(name)
		rows = append(rows, row{name, p.Up})
	}
	var got atomic.Int64
	counter := countingServer(t, &got)
	m := startMesh(t)
	m.edge("create", "service", "count", "--host", "tcp:"+counter)
	m.edge("create", "service-policy", "b", "--type", "bind", "--identities", "#drone", "--services", "@count")
	m.edge("create", "service-policy", "d", "--type", "dial", "--identities", "#operator", "--services", "@count")
	radio, proxy := newRadio(t, m.q.Router)
	listen := freeTCP(t)
	drone := m.agent("drone", m.enroll("drone", "drone"))
	args := []string{"--link-profile", "radio", "--dial", "count=tcp:" + listen}
	if extra := os.Getenv("UMBRA_MEASURE_ARGS"); extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	op := m.agentVia("op", m.enroll("op", "operator"), proxy.Addr().String(), args...)
	drone.waitHosting(t, "count")
	op.waitLinkUp(t)

	var table strings.Builder
	fmt.Fprintf(&table, "| link | circuit, Mbit/s | queue drops up |\n|---|---|---|\n")
	for _, r := range rows {
		if only := os.Getenv("UMBRA_MEASURE_ONLY"); only != "" && !strings.Contains(r.name, only) {
			continue
		}
		radio.SetBoth(r.imp)
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		stop := time.Now().Add(warmup + measure)
		go func() {
			chunk := make([]byte, 32<<10)
			c.SetWriteDeadline(stop)
			for time.Now().Before(stop) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		time.Sleep(warmup) // a measurement window, not a wait for readiness
		g0, link0 := got.Load(), proxy.Stats()
		time.Sleep(measure)
		link := proxy.Stats()
		if os.Getenv("UMBRA_MEASURE_STATUS") == "1" {
			out, _, _ := run(t, nil, bins.agent, "status", "--status-socket", op.socket, "-o", "json")
			t.Logf("%s: operator's status at the end:\n%s", r.name, out)
		}
		mbit := float64(got.Load()-g0) * 8 / measure.Seconds() / 1e6
		fmt.Fprintf(&table, "| %s | %.2f | %d |\n", r.name, mbit, link.Up.Dropped.Queue-link0.Up.Dropped.Queue)
		c.Close()
		radio.SetBoth(linksim.Impairment{})
		time.Sleep(2 * time.Second) // the link drains between rows
	}
	t.Log("\n" + table.String())
}

// countingServer reads every connection to its end, adding what it reads to got.
func countingServer(t *testing.T, got *atomic.Int64) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
}
