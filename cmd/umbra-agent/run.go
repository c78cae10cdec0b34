package main

import (
	"encoding/json"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"umbra/agent"
	"umbra/internal/identity"
)

func newRunCmd() *cobra.Command {
	var (
		idPath, statusSocket, logLevel string
		routers, dials, hosts          []string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "link to the mesh, host this device's services and dial the ones it may reach",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := identity.Load(idPath)
			if err != nil {
				return err
			}
			cfg := agent.Config{Identity: id, IdentityPath: idPath, Routers: routers, StatusSocket: statusSocket, Logger: newLogger(logLevel)}
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
			a, closeKey, err := agent.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer closeKey()
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&idPath, "identity", "", "identity file written by enroll (required)")
	cmd.Flags().StringSliceVar(&routers, "routers", nil, "edge routers HOST:PORT to use instead of the controller's list (comma-separated)")
	cmd.Flags().StringArrayVar(&dials, "dial", nil, "SERVICE[@IDENTITY]=PROTO:LISTEN_ADDR to listen for locally (repeatable)")
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "SERVICE=PROTO:ADDR: deliver a hosted service here instead of at its host address (repeatable)")
	cmd.Flags().StringVar(&statusSocket, "status-socket", agent.DefaultStatusSocket, "unix socket for `umbra-agent status` (empty: none)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.MarkFlagRequired("identity")
	return cmd
}

func newStatusCmd() *cobra.Command {
	var statusSocket string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "print the running agent's links, hosted services and dial listeners as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := agent.ReadStatus(cmd.Context(), statusSocket)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(st)
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
