package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/agent"
	"github.com/umbranet/umbra/hal/led"
	"github.com/umbranet/umbra/hal/watchdog"
)

// defaultProcs is --procs: an agent carries a radio's worth of bytes, which one CPU
// moves many times over (about 45 MB/s through a circuit on the bench machine), and
// each CPU more costs hand-offs across threads and per-CPU caches.
const defaultProcs = 1

// setProcs applies --procs: n CPUs run Go code at once, unless the GOMAXPROCS
// environment variable (read through getenv) says otherwise or n is 0.
func setProcs(n int, getenv func(string) string) error {
	if n < 0 {
		return fmt.Errorf("--procs %d: want 0 or more", n)
	}
	if n > 0 && getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(n)
	}
	return nil
}

func newRunCmd() *cobra.Command {
	var (
		idPath, statusSocket, logLevel string
		metricsAddr                    string
		routers, dials, hosts          []string
		watchdogPath, ledSpec          string
		linkProfile, udpFEC            string
		watchdogTimeout                time.Duration
		ledActiveLow                   bool
		procs                          int
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "link to the mesh, host this device's services and dial the ones it may reach",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(logLevel)
			if err := setProcs(procs, os.Getenv); err != nil {
				return err
			}
			id, err := agent.LoadIdentity(idPath)
			if err != nil {
				return err
			}
			cfg := agent.Config{Identity: id, Routers: routers, StatusSocket: statusSocket, Metrics: metricsAddr, Logger: log}
			if cfg.UDPFEC, cfg.UDPFECOff, err = parseFEC(udpFEC); err != nil {
				return err
			}
			if cfg.LinkProfile, err = parseLinkProfile(linkProfile); err != nil {
				return err
			}
			for _, d := range dials {
				spec, err := agent.ParseDialSpec(d)
				if err != nil {
					return err
				}
				cfg.Dials = append(cfg.Dials, spec)
			}
			for _, h := range hosts {
				svc, addr, err := agent.ParseHostOverride(h)
				if err != nil {
					return err
				}
				if cfg.Hosts == nil {
					cfg.Hosts = map[string]string{}
				}
				cfg.Hosts[svc] = addr
			}
			pin, err := openStatusLED(ledSpec, ledActiveLow, log)
			if err != nil {
				return err
			}
			a, err := agent.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer a.Close()
			// Hand back to the OS what a transfer grew, once the agent is quiet again.
			trimCtx, stopTrim := context.WithCancel(cmd.Context())
			defer stopTrim()
			go agent.TrimMemory(trimCtx, agent.TrimConfig{Logger: log})
			s := &supervisor{agent: runUntilDone{a}, log: log}
			if pin != nil {
				s.led = led.New(led.Config{Pin: pin})
			}
			s.notify, s.sdWatchdog = systemdNotify(log)
			if watchdogPath != "" {
				// Armed last, just before the agent runs: from here on a hang reboots.
				wd, err := watchdog.Open(watchdogPath, watchdogTimeout)
				if err != nil {
					return err
				}
				s.watchdog = wd
			}
			return s.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&idPath, "identity", "", "identity file written by enroll (required)")
	cmd.Flags().StringSliceVar(&routers, "routers", nil, "edge routers HOST:PORT to use instead of the controller's list (comma-separated)")
	cmd.Flags().StringArrayVar(&dials, "dial", nil, "SERVICE[@IDENTITY]=PROTO:LISTEN_ADDR to listen for locally (repeatable)")
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "SERVICE=PROTO:ADDR: deliver a hosted service here instead of at its host address (repeatable)")
	cmd.Flags().StringVar(&statusSocket, "status-socket", agent.DefaultStatusSocket, "unix socket for `umbra-agent status` (empty: none)")
	cmd.Flags().StringVar(&udpFEC, "udp-fec", "auto", "forward error correction on the UDP datagrams this agent sends: auto (16:4 in blocks of up to 30 ms, parity in proportion to a short block, while the router link's heartbeats show loss; none while it is clean), off, video (blocks of one frame, 16:8 with parity in proportion to a short block, parity 3 ms after the frame's last packet; ≥ 99 % of RTP packets at 10 % loss), K:M or K:M:FLUSH (M parity packets per K, sent when K datagrams have gone or FLUSH (default 250ms) after the first; 52:11:300ms, 21 % more packets and about 24 % more bytes, keeps ≥ 99 % at 10 % loss for a 200 datagram/s flow)")
	cmd.Flags().StringVar(&linkProfile, "link-profile", "lan", "QUIC profile of the router links: lan, or radio (long handshake and idle timeouts that ride out blackouts, small first packets, Reed–Solomon parity under QUIC sized to the loss the peer reports, windows for a slow link, more random loss taken as the radio's, not congestion); a lossy link needs no profile: on both, TCP circuits ride QUIC streams and UDP circuits QUIC datagrams under umbra's congestion control, which random loss does not slow down")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&metricsAddr, "metrics", "", "loopback HOST:PORT to serve Prometheus metrics on at /metrics, for a local exporter (empty: none)")
	cmd.Flags().IntVar(&procs, "procs", defaultProcs, "CPUs that run the agent's Go code at once (GOMAXPROCS, which wins when set); 0: every CPU. One keeps a circuit's hand-offs between goroutines on one thread: on a 2-core bench, 64-byte echoes came back about 150 µs sooner at the same throughput, and the idle agent is 1 MB smaller")
	cmd.Flags().StringVar(&watchdogPath, "watchdog", "", "hardware watchdog to arm and pet while the agent is healthy, e.g. "+watchdog.DefaultPath+" (empty: none)")
	cmd.Flags().DurationVar(&watchdogTimeout, "watchdog-timeout", watchdog.DefaultTimeout, "hardware watchdog timeout, whole seconds (a Raspberry Pi allows at most 15s)")
	cmd.Flags().StringVar(&ledSpec, "led", ledAuto, "status LED: auto (the board's, if it has one), none, sysfs:NAME, or a GPIO name (gpio:NAME)")
	cmd.Flags().BoolVar(&ledActiveLow, "led-active-low", false, "the --led GPIO lights when driven low")
	cmd.MarkFlagRequired("identity")
	return cmd
}

// runUntilDone is a started agent as the supervisor runs it: until ctx ends, then closed.
type runUntilDone struct{ *agent.Agent }

func (r runUntilDone) Run(ctx context.Context) error {
	<-ctx.Done()
	return r.Close()
}

// parseLinkProfile reads --link-profile: lan or radio.
func parseLinkProfile(s string) (agent.LinkProfile, error) {
	switch p := agent.LinkProfile(s); p {
	case agent.ProfileLAN, agent.ProfileRadio:
		return p, nil
	}
	return "", fmt.Errorf("--link-profile %q: want %s or %s", s, agent.ProfileLAN, agent.ProfileRadio)
}

func newStatusCmd() *cobra.Command {
	var statusSocket, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "print the running agent's identity, links, hosted services and dial listeners (-o json: one JSON object)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "json" && output != "text" {
				return fmt.Errorf("unknown output format %q: want text or json", output)
			}
			st, err := agent.ReadStatus(cmd.Context(), statusSocket)
			if err != nil {
				return err
			}
			if output == "text" {
				return printStatus(cmd.OutOrStdout(), st)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		},
	}
	cmd.Flags().StringVar(&statusSocket, "status-socket", agent.DefaultStatusSocket, "the agent's status socket")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text (a summary to read) or json")
	return cmd
}

func newMetricsCmd() *cobra.Command {
	var statusSocket string
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "print the running agent's metrics in the Prometheus text format",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := agent.ReadStatus(cmd.Context(), statusSocket)
			if err != nil {
				return err
			}
			return agent.WriteMetrics(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().StringVar(&statusSocket, "status-socket", agent.DefaultStatusSocket, "the agent's status socket")
	return cmd
}

func newLogger(level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// parseFEC reads --udp-fec: "auto", "off", "video", "K:M" or "K:M:FLUSH"; without
// FLUSH the agent's default flush delay applies.
func parseFEC(s string) (c agent.FEC, off bool, err error) {
	switch s {
	case "", "auto":
		return agent.FEC{}, false, nil
	case "off":
		return agent.FEC{}, true, nil
	case "video":
		return agent.VideoFEC, false, nil
	}
	parts := strings.Split(s, ":")
	bad := fmt.Errorf("--udp-fec %q: want auto, off, video, K:M or K:M:FLUSH, e.g. 32:8 or 32:8:100ms", s)
	if len(parts) < 2 || len(parts) > 3 {
		return agent.FEC{}, false, bad
	}
	kn, err1 := strconv.Atoi(parts[0])
	mn, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return agent.FEC{}, false, bad
	}
	c = agent.FEC{K: kn, M: mn}
	if len(parts) == 3 {
		d, err := time.ParseDuration(parts[2])
		if err != nil || d <= 0 {
			return agent.FEC{}, false, bad
		}
		c.Flush = d
	}
	if err := c.Check(); err != nil {
		return agent.FEC{}, false, fmt.Errorf("--udp-fec %q: %w", s, err)
	}
	return c, false, nil
}
