package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/internal/console"
)

// defaultConsoleListen is where the console listens unless told: a free loopback port.
const defaultConsoleListen = "127.0.0.1:0"

func newConsoleCmd() *cobra.Command {
	f := &edgeFlags{}
	var listen string
	cmd := &cobra.Command{
		Use:   "console",
		Short: "serve the web console on loopback; it talks to the controller with the admin identity, so the browser holds no key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, _, err := net.SplitHostPort(listen)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return fmt.Errorf("--listen %q: want a loopback address such as 127.0.0.1:8080: the console acts with the admin identity", listen)
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("console: %w", err)
			}
			srv := console.New(c, ln)
			fmt.Fprintf(cmd.OutOrStdout(), "console %s\n", srv.URL())
			return srv.Serve(cmd.Context(), ln)
		},
	}
	cmd.Flags().StringVar(&f.admin, "admin", "", "admin identity file (default $"+adminEnv+")")
	cmd.Flags().StringVar(&listen, "listen", defaultConsoleListen, "loopback HOST:PORT to serve the console on")
	return cmd
}
