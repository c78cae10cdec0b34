package agent

import (
	"strings"
	"testing"
)

// TestEarlyDatagramsWaitForTheirCircuit: datagrams of a circuit that has no end yet are
// kept, in order, for the end that comes; a full store drops and counts the excess.
func TestEarlyDatagramsWaitForTheirCircuit(t *testing.T) {
	var q earlyDatagrams
	for i := range 3 {
		if dropped := q.put(nil, 7, []byte{byte(i)}); dropped != 0 {
			t.Fatalf("put %d: %d dropped, want none", i, dropped)
		}
	}
	q.put(nil, 8, []byte{9})
	pkts, stale := q.take(nil, 7)
	if len(pkts) != 3 || stale != 0 || pkts[0][0] != 0 || pkts[2][0] != 2 {
		t.Fatalf("took %v (%d stale), want datagrams 0, 1, 2 in order", pkts, stale)
	}
	if pkts, _ := q.take(nil, 7); len(pkts) != 0 {
		t.Fatalf("took %v a second time, want nothing", pkts)
	}
	for range earlyMax {
		q.put(nil, 9, []byte{1})
	}
	if dropped := q.put(nil, 9, []byte{1}); dropped != 1 {
		t.Fatalf("a put beyond %d held dropped %d, want 1", earlyMax, dropped)
	}
}

// TestDatagramMetricsNameEveryReason: each drop reason is exported from the start.
func TestDatagramMetricsNameEveryReason(t *testing.T) {
	var c udpCounters
	c.drop(udpDropQueueFull, 2)
	var b strings.Builder
	if err := WriteMetrics(&b, Status{Datagrams: c.status()}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, r := range udpDropReasons {
		if !strings.Contains(out, `umbra_agent_udp_datagrams_dropped_total{reason="`+r+`"}`) {
			t.Errorf("metrics lack reason %s", r)
		}
	}
	if !strings.Contains(out, `umbra_agent_udp_datagrams_dropped_total{reason="queue_full"} 2`) {
		t.Errorf("queue_full not 2 in:\n%s", out)
	}
}
