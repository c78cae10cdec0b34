package controller

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/umbranet/umbra/controller/store"
)

// controllerMetrics is what the controller counts as it goes; the rest is read from its
// state at each scrape (stateCollector).
type controllerMetrics struct {
	registry *prometheus.Registry
	events   *prometheus.CounterVec
	requests *prometheus.CounterVec
	paths    *prometheus.CounterVec
}

// Results of a dial's path computation, as umbra_controller_path_computations_total
// labels them.
const (
	// pathLocal: a host is bound at the dialer's own router; no search.
	pathLocal = "local"
	// pathMesh: the shortest path through the router mesh to a host's router.
	pathMesh = "mesh"
	// pathNone: hosts are bound, but no path of links that are up reaches one.
	pathNone = "no_path"
)

func newControllerMetrics(c *Controller) *controllerMetrics {
	m := &controllerMetrics{
		registry: prometheus.NewRegistry(),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_controller_events_total",
			Help: "Events in the audit trail by type: records changed, enrollments, routers and links up and down, hosting, circuits opened, closed and refused.",
		}, []string{"type"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_controller_api_requests_total",
			Help: "Management API requests by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
		paths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "umbra_controller_path_computations_total",
			Help: "Paths chosen for circuits, by result: local (host at the dialer's router), mesh (shortest path through the router mesh), no_path.",
		}, []string{"result"}),
	}
	for _, r := range []string{pathLocal, pathMesh, pathNone} {
		m.paths.WithLabelValues(r) // every result from the first scrape
	}
	m.registry.MustRegister(m.events, m.requests, m.paths, stateCollector{c})
	return m
}

// Metrics is the controller's Prometheus registry, for a metrics listener
// (internal/metrics.Serve adds the runtime's).
func (c *Controller) Metrics() *prometheus.Registry { return c.metrics.registry }

// countRequests wraps the management API so that each request is counted by the pattern
// it matched (bounded: the mux's own patterns) and its status.
func (m *controllerMetrics) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
	})
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush passes on to the writer beneath, for the followed event stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Descriptions of the figures read from the controller's state at each scrape.
var (
	descIdentities = prometheus.NewDesc("umbra_controller_identities",
		"Identities by state: enrolled (holding a certificate), unenrolled, online (a router relayed for it lately).", []string{"state"}, nil)
	descRoutersOnline = prometheus.NewDesc("umbra_controller_routers_online",
		"Routers with a control link up.", nil, nil)
	descRouters      = prometheus.NewDesc("umbra_controller_routers", "Routers in the store.", nil, nil)
	descCircuits     = prometheus.NewDesc("umbra_controller_circuits", "Circuits granted and still running.", nil, nil)
	descBindings     = prometheus.NewDesc("umbra_controller_bindings", "Services bound by hosting agents now.", nil, nil)
	descRevocations  = prometheus.NewDesc("umbra_controller_revocations", "Certificate serials revoked and not yet expired.", nil, nil)
	descStoreBytes   = prometheus.NewDesc("umbra_controller_store_bytes", "Size of the controller's store file.", nil, nil)
	descRecordsTotal = prometheus.NewDesc("umbra_controller_records", "Records in the store by kind.", []string{"kind"}, nil)
)

// stateCollector reads the controller's state when scraped.
type stateCollector struct{ c *Controller }

func (s stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descIdentities, descRoutersOnline, descRouters, descCircuits, descBindings, descRevocations, descStoreBytes, descRecordsTotal} {
		ch <- d
	}
}

func (s stateCollector) Collect(ch chan<- prometheus.Metric) {
	c := s.c
	now := c.cfg.Now()
	var enrolled, unenrolled, online float64
	if raws, err := c.store.List(store.Identities); err == nil {
		c.mu.Lock()
		for _, raw := range raws {
			var id store.Identity
			if json.Unmarshal(raw, &id) != nil {
				continue
			}
			if id.Cert != nil {
				enrolled++
			} else {
				unenrolled++
			}
			if seen, ok := c.seen[id.ID]; ok && now.Sub(seen) < presenceWindow {
				online++
			}
		}
		c.mu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(descIdentities, prometheus.GaugeValue, enrolled, "enrolled")
	ch <- prometheus.MustNewConstMetric(descIdentities, prometheus.GaugeValue, unenrolled, "unenrolled")
	ch <- prometheus.MustNewConstMetric(descIdentities, prometheus.GaugeValue, online, "online")
	for _, k := range store.Kinds {
		if raws, err := c.store.List(k); err == nil {
			ch <- prometheus.MustNewConstMetric(descRecordsTotal, prometheus.GaugeValue, float64(len(raws)), string(k))
		}
	}
	c.mu.Lock()
	routersOnline, circuits, bindings := len(c.online), len(c.circuits), len(c.bindings)
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descRoutersOnline, prometheus.GaugeValue, float64(routersOnline))
	if raws, err := c.store.List(store.Routers); err == nil {
		ch <- prometheus.MustNewConstMetric(descRouters, prometheus.GaugeValue, float64(len(raws)))
	}
	ch <- prometheus.MustNewConstMetric(descCircuits, prometheus.GaugeValue, float64(circuits))
	ch <- prometheus.MustNewConstMetric(descBindings, prometheus.GaugeValue, float64(bindings))
	if revs, err := c.store.Revocations(); err == nil {
		n := 0
		for _, r := range revs {
			if r.NotAfter.After(now) {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(descRevocations, prometheus.GaugeValue, float64(n))
	}
	if fi, err := os.Stat(filepath.Join(c.cfg.DataDir, storeFile)); err == nil {
		ch <- prometheus.MustNewConstMetric(descStoreBytes, prometheus.GaugeValue, float64(fi.Size()))
	}
}
