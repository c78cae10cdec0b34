package router

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/umbranet/umbra/third_party/quic-go"
)

// routerMetrics is what the router counts as circuits run; the rest is read from its
// state at each scrape (stateCollector). Labels are bounded: service names and link
// peers, never circuit ids.
type routerMetrics struct {
	registry  *prometheus.Registry
	bytes     *prometheus.CounterVec
	datagrams *prometheus.CounterVec
	circuits  *prometheus.CounterVec
	active    prometheus.Gauge
	drops     dropCounters
	// linkMissed and controlMissed count heartbeats missed on router links, by peer,
	// and on the control link (internal/heartbeat's OnMissed).
	linkMissed    *prometheus.CounterVec
	controlMissed prometheus.Counter
}

// Reasons the router drops a circuit datagram, as umbra_router_datagrams_dropped_total
// labels them: a fixed set, so the label stays bounded.
const (
	// dropMalformed: the datagram has no valid circuit id.
	dropMalformed = "malformed"
	// dropUnknownCircuit: no circuit has that id on the connection it came in on (the
	// circuit ended, or never ran here).
	dropUnknownCircuit = "unknown_circuit"
	// dropQueueFull: the far connection fell behind and its queue's oldest datagram was
	// dropped to make room (datagramQueue deep).
	dropQueueFull = "queue_full"
	// dropOversize: larger than the far hop carries in one datagram.
	dropOversize = "oversize"
	// dropReceiveFull: quic-go's queue of datagrams received on a connection was full
	// when one arrived (the router's reader fell behind); quic-go drops it and counts it
	// (third_party/quic-go, umbra-datagram-drops.patch).
	dropReceiveFull = "receive_full"
	// dropStale: it waited in the far connection's queue longer than datagramStale.
	dropStale = "stale"
)

// dropCounters holds one counter per drop reason, resolved once, so counting a drop on
// the datagram path is an atomic add with no label lookup.
type dropCounters struct {
	malformed, unknownCircuit, queueFull, oversize, receiveFull, stale prometheus.Counter
}

func newDropCounters(vec *prometheus.CounterVec) dropCounters {
	return dropCounters{
		malformed:      vec.WithLabelValues(dropMalformed),
		unknownCircuit: vec.WithLabelValues(dropUnknownCircuit),
		queueFull:      vec.WithLabelValues(dropQueueFull),
		oversize:       vec.WithLabelValues(dropOversize),
		receiveFull:    vec.WithLabelValues(dropReceiveFull),
		stale:          vec.WithLabelValues(dropStale),
	}
}

// Directions of a circuit's bytes and datagrams, as their metrics label them.
const (
	towardHost   = "toward_host"
	towardDialer = "toward_dialer"
)

func newRouterMetrics(r *Router) *routerMetrics {
	drops := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "umbra_router_datagrams_dropped_total",
		Help: "Circuit datagrams this router dropped, by reason.",
	}, []string{"reason"})
	m := &routerMetrics{
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_router_circuit_datagrams_total",
			Help: "Datagrams of circuits (UDP services) this router forwarded, by service and direction.",
		}, []string{"service", "direction"}),
		drops:    newDropCounters(drops),
		registry: prometheus.NewRegistry(),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_router_circuit_bytes_total",
			Help: "Bytes of TCP circuits carried through this router, by service and direction.",
		}, []string{"service", "direction"}),
		circuits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_router_circuits_total",
			Help: "Circuits this router carried (as the dialer's edge router or as a relay), by service.",
		}, []string{"service"}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "umbra_router_circuits_active",
			Help: "Circuits running through this router now.",
		}),
		linkMissed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_router_link_heartbeats_missed_total",
			Help: "Heartbeats missed on the router link to peer: each 200 ms the peer stayed silent past two heartbeat intervals.",
		}, []string{"peer"}),
		controlMissed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "umbra_router_control_heartbeats_missed_total",
			Help: "Heartbeats missed on the control link to the controller: each 200 ms it stayed silent past two heartbeat intervals.",
		}),
	}
	m.registry.MustRegister(m.bytes, m.datagrams, drops, m.circuits, m.active, m.linkMissed, m.controlMissed, stateCollector{r})
	return m
}

// Metrics is the router's Prometheus registry, for a metrics listener
// (internal/metrics.Serve adds the runtime's).
func (r *Router) Metrics() *prometheus.Registry { return r.metrics.registry }

// countingStream adds what passes through a circuit stream to a counter.
type countingStream struct {
	*quic.Stream
	read prometheus.Counter
}

func (c countingStream) Read(p []byte) (int, error) {
	n, err := c.Stream.Read(p)
	c.read.Add(float64(n))
	return n, err
}

// Descriptions of the figures read from the router's state at each scrape.
var (
	descAgents       = prometheus.NewDesc("umbra_router_agents_connected", "Agents with a link to this router now.", nil, nil)
	descControlUp    = prometheus.NewDesc("umbra_router_control_link_up", "1 while a control link to a controller member is up.", nil, nil)
	descControlLinks = prometheus.NewDesc("umbra_router_control_links", "Control links up, one per controller member reached.", nil, nil)
	descLinkUp       = prometheus.NewDesc("umbra_router_link_up", "1 while the router link to peer carries heartbeats.", []string{"peer"}, nil)
	descLinkRTT      = prometheus.NewDesc("umbra_router_link_rtt_seconds", "Smoothed heartbeat round trip of the router link to peer.", []string{"peer"}, nil)
	descLinkLoss     = prometheus.NewDesc("umbra_router_link_loss_ratio", "Share of the router link's recent packets lost, 0 to 1.", []string{"peer"}, nil)
	descRevocations  = prometheus.NewDesc("umbra_router_revoked_certificates", "Certificate serials this router refuses.", nil, nil)
)

// stateCollector reads the router's state when scraped.
type stateCollector struct{ r *Router }

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descAgents, descControlUp, descControlLinks, descLinkUp, descLinkRTT, descLinkLoss, descRevocations} {
		ch <- d
	}
}

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	r := s.r
	r.mu.Lock()
	agents, revoked, control := len(r.sessions), len(r.revoked), len(r.ctrls)
	links := make([]*link, 0, len(r.links))
	for l := range r.links {
		links = append(links, l)
	}
	r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(agents))
	ch <- prometheus.MustNewConstMetric(descRevocations, prometheus.GaugeValue, float64(revoked))
	ch <- prometheus.MustNewConstMetric(descControlUp, prometheus.GaugeValue, boolValue(control > 0))
	ch <- prometheus.MustNewConstMetric(descControlLinks, prometheus.GaugeValue, float64(control))
	for _, l := range links {
		st := l.state()
		ch <- prometheus.MustNewConstMetric(descLinkUp, prometheus.GaugeValue, boolValue(st.Up), l.peer.Name)
		ch <- prometheus.MustNewConstMetric(descLinkRTT, prometheus.GaugeValue, float64(st.RTTMicros)/1e6, l.peer.Name)
		ch <- prometheus.MustNewConstMetric(descLinkLoss, prometheus.GaugeValue, float64(st.LossPermille)/1000, l.peer.Name)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
