package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/umbranet/umbra/agent"
)

// printStatus writes the summary `umbra-agent status` shows by default: who the agent is,
// then its links, hosted services and dial listeners, each with what is wrong, if
// anything.
func printStatus(w io.Writer, st agent.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	state := st.IdentityState
	if state == "revoked" {
		state = "REVOKED: the routers refuse its certificate; retrying slowly (re-enroll with a new token)"
	}
	fmt.Fprintf(tw, "identity\t%s (%s)\n", st.Identity, state)
	if !st.CertExpires.IsZero() {
		fmt.Fprintf(tw, "certificate\texpires %s (in %s)\n", st.CertExpires.Local().Format(time.RFC3339), time.Until(st.CertExpires).Round(time.Minute))
	}
	fmt.Fprintf(tw, "agent\t%s, up %s\n", st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String())
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "LINK\tSTATE\tRTT\tLOSS\tSENT\tRECEIVED\tERROR")
	for _, l := range st.Links {
		fmt.Fprintf(tw, "%s\t%s\t%.1f ms\t%.1f %%\t%s\t%s\t%s\n", l.Router, l.State, l.RTTms, l.LossPercent, bytes(l.BytesSent), bytes(l.BytesReceived), dash(l.Error))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "HOSTING\tADDRESS\tSTATE\tCIRCUITS\tERROR")
	for _, h := range st.Hosting {
		state := h.State
		if h.Target != "" && h.Target != "reachable" {
			state = "target " + h.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", h.Service, h.Address, state, h.Circuits, dash(h.Error))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "DIALING\tLISTEN\tSTATE\tCIRCUITS\tLAST ERROR")
	for _, d := range st.Dialing {
		svc := d.Service
		if d.Host != "" {
			svc += "@" + d.Host
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", svc, d.Listen, d.State, d.Circuits, dash(d.LastError))
	}
	if dg := st.Datagrams; dg.Sent > 0 || dg.Delivered > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "UDP datagrams	sent %d, delivered %d, rebuilt by FEC %d, held in order %d, late %d\n", dg.Sent, dg.Delivered, dg.RecoveredFEC, dg.Held, dg.Late)
		dropped := ""
		for _, r := range slices.Sorted(maps.Keys(dg.Dropped)) {
			if n := dg.Dropped[r]; n > 0 {
				dropped += fmt.Sprintf(", %s %d", r, n)
			}
		}
		if dropped == "" {
			dropped = ", none"
		}
		fmt.Fprintf(tw, "  dropped\t%s\n", dropped[2:])
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bytes formats a byte count for reading: 812 B, 3.4 MB.
func bytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
