// Package metrics serves a program's Prometheus metrics: the registries of its parts (a
// quickstart has a controller's and a router's) with the Go runtime and process
// collectors once beside them, on a listener that answers GET /metrics in the text format
// and nothing else. What to measure belongs to each part; this package must not know
// about circuits, links or identities.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is the only path the metrics listener answers.
const Path = "/metrics"

// Server timeouts: a scrape is one small request.
const (
	readHeaderTimeout = 5 * time.Second
	scrapeTimeout     = 10 * time.Second
	shutdownGrace     = 2 * time.Second
)

// runtimeRegistry holds the Go runtime and process collectors, which every umbra program
// exports once beside its parts' own metrics.
func runtimeRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler answers GET /metrics from parts and the runtime collectors, and 404 for every
// other path.
func Handler(parts ...prometheus.Gatherer) http.Handler {
	all := append(prometheus.Gatherers{runtimeRegistry()}, parts...)
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, promhttp.HandlerFor(all, promhttp.HandlerOpts{Timeout: scrapeTimeout}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "only GET "+Path+" is served here", http.StatusNotFound)
	})
	return mux
}

// Serve answers scrapes of parts on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener, parts ...prometheus.Gatherer) error {
	srv := &http.Server{Handler: Handler(parts...), ReadHeaderTimeout: readHeaderTimeout}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// Listen opens addr for Serve. A metrics listener off loopback must be asked for by
// address: it names no port an attacker could not find, but it tells them much.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	return ln, nil
}

// URL is the scrape address of a listener.
func URL(ln net.Listener) string { return "http://" + ln.Addr().String() + Path }
