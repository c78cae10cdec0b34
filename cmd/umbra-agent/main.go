// Command umbra-agent is the device binary: it enrolls the device's identity with a
// one-time token, keeps its links to the mesh, hosts the device's services and dials the
// services it may reach. It opens no port to the network.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/internal/profile"
	"github.com/umbranet/umbra/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "umbra-agent:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "umbra-agent",
		Short:         "umbra device agent",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	profile.AddFlag(root)
	root.AddCommand(
		&cobra.Command{
			Use:   "version",
			Short: "print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintln(cmd.OutOrStdout(), version.String("umbra-agent"))
			},
		},
		newEnrollCmd(),
		newBoardCmd(),
		newRunCmd(),
		newStatusCmd(),
		newMetricsCmd(),
	)
	return root
}
