package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/controller"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/metrics"
)

// defaultControllerListen is where a controller listens when not told otherwise.
const defaultControllerListen = "127.0.0.1:1280"

func newControllerCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "controller", Short: "initialize or run the controller"}
	var (
		data, listen, url, adminOut string
		hosts                       []string
		idLifetime, routerLifetime  time.Duration
	)
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "create the PKI, the store and an admin identity in --data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(hosts) == 0 {
				host := listen[:strings.LastIndex(listen, ":")]
				hosts = []string{host, "localhost"}
			}
			cfg := controller.Config{DataDir: data, Listen: listen, URL: url, IdentityLifetime: idLifetime, RouterLifetime: routerLifetime}
			if err := controller.Init(cmd.Context(), cfg, hosts, adminOut); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "controller initialized in %s\n", data)
			return nil
		},
	}
	initCmd.Flags().StringVar(&data, "data", "", "data directory (required)")
	initCmd.Flags().StringVar(&listen, "listen", defaultControllerListen, "HOST:PORT of the management API")
	initCmd.Flags().StringVar(&url, "url", "", "URL devices reach the controller at (default https://LISTEN)")
	initCmd.Flags().StringSliceVar(&hosts, "host", nil, "name or IP the server certificate is valid for (repeatable; default the listen host and localhost)")
	initCmd.Flags().StringVar(&adminOut, "admin-out", "", "where to write the admin identity (default DATA/admin.json)")
	initCmd.Flags().DurationVar(&idLifetime, "identity-lifetime", 0, "lifetime of identity certificates (default 90 days)")
	initCmd.Flags().DurationVar(&routerLifetime, "router-lifetime", 0, "lifetime of router certificates (default 1 year)")
	initCmd.MarkFlagRequired("data")

	var runData, runListen, runMetrics string
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "run the controller in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := controller.Open(controller.Config{DataDir: runData, Listen: runListen, Logger: g.logger()})
			if err != nil {
				return err
			}
			defer c.Close()
			ln, pc, err := c.Listen()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "controller listening on %s\n", ln.Addr())
			if runMetrics != "" {
				mln, err := metrics.Listen(runMetrics)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "metrics %s\n", metrics.URL(mln))
				go metrics.Serve(cmd.Context(), mln, c.Metrics())
			}
			return c.Serve(cmd.Context(), ln, pc)
		},
	}
	runCmd.Flags().StringVar(&runData, "data", "", "data directory (required)")
	runCmd.Flags().StringVar(&runListen, "listen", "", "HOST:PORT to listen on (default: as initialized)")
	runCmd.Flags().StringVar(&runMetrics, "metrics", "", "HOST:PORT to serve Prometheus metrics on at /metrics (empty: none; use a loopback address unless scrapers elsewhere need it)")
	runCmd.MarkFlagRequired("data")
	var joinJWT, joinData, joinListen, joinURL string
	joinCmd := &cobra.Command{
		Use:   "join",
		Short: "make --data a new member of the cluster that issued --jwt (then `umbra controller run --data DIR`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			token, err := enroll.ReadTokenFile(joinJWT)
			if err != nil {
				return err
			}
			cfg := controller.Config{DataDir: joinData, Listen: joinListen, URL: joinURL}
			if err := controller.Join(cmd.Context(), cfg, token); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "controller joined; run it with: umbra controller run --data %s\n", joinData)
			return nil
		},
	}
	joinCmd.Flags().StringVar(&joinJWT, "jwt", "", "join token from `umbra edge create controller` (required)")
	joinCmd.Flags().StringVar(&joinData, "data", "", "data directory to create (required)")
	joinCmd.Flags().StringVar(&joinListen, "listen", "", "HOST:PORT this controller will listen on (required)")
	joinCmd.Flags().StringVar(&joinURL, "url", "", "URL devices and other controllers reach it at (default https://LISTEN)")
	joinCmd.MarkFlagRequired("jwt")
	joinCmd.MarkFlagRequired("data")
	joinCmd.MarkFlagRequired("listen")
	var backupData, backupOut string
	backupCmd := &cobra.Command{
		Use:   "backup",
		Short: "write a consistent backup of the controller in --data (online while it runs) to --out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := controller.Backup(cmd.Context(), backupData, backupOut); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s (it holds the CA's keys: keep it like the data directory)\n", backupOut)
			return nil
		},
	}
	backupCmd.Flags().StringVar(&backupData, "data", "", "data directory of the controller to back up (required)")
	backupCmd.Flags().StringVar(&backupOut, "out", "", "backup file to write, mode 0600 (required)")
	backupCmd.MarkFlagRequired("data")
	backupCmd.MarkFlagRequired("out")

	var restoreFrom, restoreData, restoreListen, restoreURL string
	var restoreHosts []string
	restoreCmd := &cobra.Command{
		Use:   "restore",
		Short: "make --data the first controller of a new cluster from a backup (then `umbra controller run --data DIR`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(restoreHosts) == 0 {
				restoreHosts = []string{restoreListen[:strings.LastIndex(restoreListen, ":")], "localhost"}
			}
			cfg := controller.Config{DataDir: restoreData, Listen: restoreListen, URL: restoreURL}
			if err := controller.Restore(cfg, restoreHosts, restoreFrom); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "controller restored in %s; run it with: umbra controller run --data %s\n", restoreData, restoreData)
			return nil
		},
	}
	restoreCmd.Flags().StringVar(&restoreFrom, "from", "", "backup file from `umbra controller backup` (required)")
	restoreCmd.Flags().StringVar(&restoreData, "data", "", "data directory to create (required)")
	restoreCmd.Flags().StringVar(&restoreListen, "listen", defaultControllerListen, "HOST:PORT the restored controller listens on")
	restoreCmd.Flags().StringVar(&restoreURL, "url", "", "URL devices reach it at (default https://LISTEN)")
	restoreCmd.Flags().StringSliceVar(&restoreHosts, "host", nil, "name or IP its server certificate is valid for (repeatable; default the listen host and localhost)")
	restoreCmd.MarkFlagRequired("from")
	restoreCmd.MarkFlagRequired("data")
	cmd.AddCommand(initCmd, runCmd, joinCmd, backupCmd, restoreCmd)
	return cmd
}
