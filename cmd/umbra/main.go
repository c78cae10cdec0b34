// Command umbra is the ground station: the controller, the router, the admin CLI
// (`umbra edge …`) and a one-command quickstart.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
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
		fmt.Fprintln(os.Stderr, "umbra:", err)
		os.Exit(1)
	}
}

// globalFlags are the flags every command shares.
type globalFlags struct {
	logLevel string
}

func (g *globalFlags) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "umbra",
		Short:         "umbra ground station: controller, router and admin CLI",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	profile.AddFlag(root)
	root.AddCommand(
		&cobra.Command{
			Use:   "version",
			Short: "print the version",
			Args:  cobra.NoArgs,
			Run: func(cmd *cobra.Command, _ []string) {
				fmt.Fprintln(cmd.OutOrStdout(), version.String("umbra"))
			},
		},
		newQuickstartCmd(g),
		newControllerCmd(g),
		newRouterCmd(g),
		newEdgeCmd(),
		newConsoleCmd(),
		newLinksimCmd(),
		newMCPCmd(g),
	)
	requireSubcommands(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (the flags are listed by %s --help)", err, cmd.CommandPath())
	})
	return root
}

// requireSubcommands makes every command that only groups others (edge, edge create, …)
// refuse a word that is none of them, naming the valid ones; cobra would print the help
// and exit 0, so a typo in a script would pass unseen. Alone, such a command prints its
// help.
func requireSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		requireSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() || !cmd.HasParent() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		var valid []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				valid = append(valid, sub.Name())
			}
		}
		return fmt.Errorf("unknown command %q for %q: want one of %s", args[0], cmd.CommandPath(), strings.Join(valid, ", "))
	}
}
