package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/metrics"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/router"
)

// routerIdentityFile is the router's identity inside its data directory.
const routerIdentityFile = "identity.json"

func newRouterCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "router", Short: "enroll or run an edge or relay router"}
	var jwtFile, data string
	enrollCmd := &cobra.Command{
		Use:   "enroll",
		Short: "redeem a router's one-time token and write DATA/identity.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := filepath.Join(data, routerIdentityFile)
			if err := enrollFileKey(cmd, jwtFile, out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "router enrolled: %s\n", out)
			return nil
		},
	}
	enrollCmd.Flags().StringVar(&jwtFile, "jwt", "", "file holding the enrollment token (required)")
	enrollCmd.Flags().StringVar(&data, "data", "", "router data directory (required)")
	enrollCmd.MarkFlagRequired("jwt")
	enrollCmd.MarkFlagRequired("data")

	var runData, listen, advertise string
	var linkTo []string
	var linkProfile, metricsAddr string
	runCmd := &cobra.Command{
		Use:   "run",
		Short: "run the router in the foreground",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := identity.Load(filepath.Join(runData, routerIdentityFile))
			if err != nil {
				return err
			}
			profile, err := transport.ProfileNamed(linkProfile)
			if err != nil {
				return fmt.Errorf("router run: --link-profile: %w", err)
			}
			r, err := router.Listen(cmd.Context(), router.Config{Identity: id, DataDir: runData, Listen: listen, Advertise: advertise, LinkTo: linkTo, Profile: profile, Logger: g.logger()})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "router %s listening on %s\n", id.Name, r.Addr())
			if metricsAddr != "" {
				mln, err := metrics.Listen(metricsAddr)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "metrics %s\n", metrics.URL(mln))
				go metrics.Serve(cmd.Context(), mln, r.Metrics())
			}
			return r.Serve(cmd.Context())
		},
	}
	runCmd.Flags().StringVar(&runData, "data", "", "router data directory (required)")
	runCmd.Flags().StringVar(&listen, "listen", "", "UDP HOST:PORT for agents and routers (required)")
	runCmd.Flags().StringVar(&advertise, "advertise", "", "HOST:PORT others reach this router at (default: the listen address)")
	runCmd.Flags().StringSliceVar(&linkTo, "link-to", nil, "HOST:PORT of routers to link to (comma-separated)")
	runCmd.Flags().StringVar(&metricsAddr, "metrics", "", "HOST:PORT to serve Prometheus metrics on at /metrics (empty: none; use a loopback address unless scrapers elsewhere need it)")
	runCmd.Flags().StringVar(&linkProfile, "link-profile", "lan", "QUIC profile for agents and router links: lan, or radio (5-minute idle timeout, small packets, random loss up to half the packets not slowing QUIC, router links dead only after 10 s of silence) when they reach this router over a radio")
	runCmd.MarkFlagRequired("data")
	runCmd.MarkFlagRequired("listen")
	cmd.AddCommand(enrollCmd, runCmd)
	return cmd
}

// enrollFileKey redeems the token in jwtFile with a new file key and writes the identity
// to out. A failure writes nothing.
func enrollFileKey(cmd *cobra.Command, jwtFile, out string) error {
	token, err := enroll.ReadTokenFile(jwtFile)
	if err != nil {
		return err
	}
	return enrollFileKeyToken(cmd.Context(), token, out)
}

// enrollFileKeyToken redeems a router's token with a new file key and writes the
// identity to out. An identity's token is refused before anything is spent or written.
func enrollFileKeyToken(ctx context.Context, token, out string) error {
	if _, err := enroll.CheckKind(token, pki.KindRouter); err != nil {
		return err
	}
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		return err
	}
	defer key.Close()
	id, err := enroll.Enroll(ctx, token, pki.KindRouter, key)
	if err != nil {
		return err
	}
	id.Key = ref
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	return id.Save(out)
}
