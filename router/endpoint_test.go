package router

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/umbranet/umbra/internal/datagram"
)

// TestRouteCountsEachDatagramWhereItGoes: a joined circuit's datagrams count as
// forwarded in their direction, and a datagram of no circuit, one without a circuit id
// and one that overruns the far queue each count once under their reason.
func TestRouteCountsEachDatagramWhereItGoes(t *testing.T) {
	drops := newDropCounters(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "d"}, []string{"reason"}))
	a, b := newEndpoint(nil, 1, 1, &drops), newEndpoint(nil, 1, 1, &drops)
	toHost, toDialer := prometheus.NewCounter(prometheus.CounterOpts{Name: "h"}), prometheus.NewCounter(prometheus.CounterOpts{Name: "t"})
	unjoin := join(&a, 5, &b, 7, toHost, toDialer)
	defer unjoin()

	buf := make([]byte, 0, datagram.MaxCircuitIDLen+maxDatagram)
	pkt := func(cid uint64) []byte {
		p, _ := datagram.AppendCircuitID(nil, cid)
		return append(p, "payload"...)
	}
	for range datagramQueue + 3 { // b never sends, so its queue overruns by 3
		a.route(pkt(5), buf)
	}
	b.route(pkt(7), buf)
	a.route(pkt(9), buf) // no circuit 9 here
	a.route(nil, buf)    // no circuit id at all

	for _, c := range []struct {
		name string
		got  prometheus.Counter
		want float64
	}{
		{"forwarded toward the host", toHost, datagramQueue + 3},
		{"forwarded toward the dialer", toDialer, 1},
		{"dropped, queue full", drops.queueFull, 3},
		{"dropped, unknown circuit", drops.unknownCircuit, 1},
		{"dropped, malformed", drops.malformed, 1},
		{"dropped, oversize", drops.oversize, 0},
	} {
		if got := counterValue(c.got); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	if got := b.out.Len(); got != datagramQueue {
		t.Errorf("b's queue holds %d datagrams, want %d (full)", got, datagramQueue)
	}
}

// counterValue reads a counter as a scrape would.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}
