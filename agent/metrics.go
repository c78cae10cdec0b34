package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The agent's metrics are written in the Prometheus text format by hand, from its Status:
// client_golang would add its registry, protobuf and runtime collectors to a binary whose
// size and memory are budgets on a Pi Zero, for the dozen figures a device has.

// metricsReadHeaderTimeout bounds a scrape's request on the agent's loopback listener.
const metricsReadHeaderTimeout = 5 * time.Second

// metric is one family: its name, help, type and samples.
type metric struct {
	name, help, kind string
	samples          []sample
}

type sample struct {
	labels [][2]string
	value  float64
}

// WriteMetrics writes st in the Prometheus text exposition format: links (state, RTT,
// loss, bytes), hosted services and dial listeners (circuits, and whether each works),
// the identity's state and certificate expiry, uptime.
func WriteMetrics(w io.Writer, st Status) error {
	bw := bufio.NewWriter(w)
	for _, m := range metricsOf(st) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		for _, s := range m.samples {
			bw.WriteString(m.name)
			if len(s.labels) > 0 {
				parts := make([]string, len(s.labels))
				for i, l := range s.labels {
					parts[i] = l[0] + "=" + strconv.Quote(l[1])
				}
				bw.WriteString("{" + strings.Join(parts, ",") + "}")
			}
			bw.WriteString(" " + strconv.FormatFloat(s.value, 'g', -1, 64) + "\n")
		}
	}
	return bw.Flush()
}

func metricsOf(st Status) []metric {
	info := metric{name: "umbra_agent_info", help: "The agent's identity, release and identity state (value 1).", kind: "gauge",
		samples: []sample{{labels: [][2]string{{"identity", st.Identity}, {"version", st.Version}, {"identity_state", st.IdentityState}}, value: 1}}}
	revoked := metric{name: "umbra_agent_identity_revoked", help: "1 while the routers refuse this identity's certificate.", kind: "gauge",
		samples: []sample{{value: boolValue(st.IdentityState == identityRevoked)}}}
	uptime := metric{name: "umbra_agent_uptime_seconds", help: "How long the agent has run.", kind: "gauge", samples: []sample{{value: st.UptimeSeconds}}}
	ms := []metric{info, revoked, uptime,
		{name: "umbra_agent_links_up_total", help: "Router links that came up: the first, then each reconnect or fresh connection replacing a stalled one.", kind: "counter", samples: []sample{{value: float64(st.LinksUp)}}},
		{name: "umbra_agent_link_stalls_total", help: "Router links found silent (stalled) while up.", kind: "counter", samples: []sample{{value: float64(st.Stalls)}}},
		{name: "umbra_agent_keystore_signatures_total", help: "Signatures the identity's key store made (TLS handshakes, renewals), by store.", kind: "counter",
			samples: []sample{{labels: [][2]string{{"store", st.KeyStore}}, value: float64(st.KeySignatures)}}},
	}
	if !st.CertExpires.IsZero() {
		ms = append(ms, metric{name: "umbra_agent_certificate_expiry_timestamp_seconds", help: "When the identity's certificate expires, in Unix seconds.", kind: "gauge",
			samples: []sample{{value: float64(st.CertExpires.Unix())}}})
	}
	up := metric{name: "umbra_agent_link_up", help: "1 for the router link that carries traffic, 0 for the others.", kind: "gauge"}
	rtt := metric{name: "umbra_agent_link_rtt_seconds", help: "Smoothed round trip of the up link.", kind: "gauge"}
	loss := metric{name: "umbra_agent_link_loss_ratio", help: "Share of the up link's QUIC packets declared lost, 0 to 1.", kind: "gauge"}
	sent := metric{name: "umbra_agent_link_sent_bytes_total", help: "Bytes the up link's QUIC connection sent.", kind: "counter"}
	recv := metric{name: "umbra_agent_link_received_bytes_total", help: "Bytes the up link's QUIC connection received.", kind: "counter"}
	for _, l := range st.Links {
		lbl := [][2]string{{"router", l.Router}}
		up.samples = append(up.samples, sample{lbl, boolValue(l.State == stateUp)})
		if l.State != stateUp {
			continue
		}
		rtt.samples = append(rtt.samples, sample{lbl, l.RTTms / 1000})
		loss.samples = append(loss.samples, sample{lbl, l.LossPercent / 100})
		sent.samples = append(sent.samples, sample{lbl, float64(l.BytesSent)})
		recv.samples = append(recv.samples, sample{lbl, float64(l.BytesReceived)})
	}
	hosted := metric{name: "umbra_agent_hosted_circuits", help: "Circuits delivered to a hosted service now.", kind: "gauge"}
	bound := metric{name: "umbra_agent_hosted_bound", help: "1 while the service is bound at the router.", kind: "gauge"}
	target := metric{name: "umbra_agent_hosted_target_reachable", help: "1 while the service's local address takes connections, 0 when it refused the last one.", kind: "gauge"}
	for _, h := range st.Hosting {
		lbl := [][2]string{{"service", h.Service}}
		hosted.samples = append(hosted.samples, sample{lbl, float64(h.Circuits)})
		bound.samples = append(bound.samples, sample{lbl, boolValue(h.State == hostBound)})
		if h.Target != "" {
			target.samples = append(target.samples, sample{lbl, boolValue(h.Target == targetReachable)})
		}
	}
	dialing := metric{name: "umbra_agent_dial_circuits", help: "Circuits open from a dial listener now.", kind: "gauge"}
	listening := metric{name: "umbra_agent_dial_listening", help: "1 while the dial listener is open, 0 when its address could not be bound.", kind: "gauge"}
	for _, d := range st.Dialing {
		lbl := [][2]string{{"service", d.Service}, {"listen", d.Listen}}
		dialing.samples = append(dialing.samples, sample{lbl, float64(d.Circuits)})
		listening.samples = append(listening.samples, sample{lbl, boolValue(d.State == dialListening)})
	}
	ms = append(ms, up, rtt, loss, sent, recv, hosted, bound, target, dialing, listening)
	ms = append(ms, datagramMetrics(st.Datagrams)...)
	for i := range ms {
		sort.SliceStable(ms[i].samples, func(a, b int) bool { return labelKey(ms[i].samples[a]) < labelKey(ms[i].samples[b]) })
	}
	return ms
}

func labelKey(s sample) string {
	var b strings.Builder
	for _, l := range s.labels {
		b.WriteString(l[1] + "\x00")
	}
	return b.String()
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveMetrics answers GET /metrics on ln (a loopback listener) from the agent's status
// until the agent stops; every other path is 404.
func (a *Agent) serveMetrics(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, a.Status())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadHeaderTimeout}
	go func() {
		<-a.runCtx.Done()
		srv.Close()
	}()
	srv.Serve(ln)
}
