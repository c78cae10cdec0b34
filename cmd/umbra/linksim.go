package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/umbranet/umbra/internal/linksim"
)

// Defaults of `umbra linksim netns`: fixed names, so a person can find the namespaces
// with `ip netns exec linksim-a …` while the link runs.
const (
	linksimNSA = "linksim-a"
	linksimNSB = "linksim-b"
)

func newLinksimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "linksim",
		Short: "emulate a lossy radio link: a UDP proxy, or an IP link between two network namespaces",
		Long: `Emulate a lossy radio link (loss, bursts, delay, jitter, reordering, duplication,
rate and MTU caps, blackouts) in front of real programs. It runs in the foreground,
prints a line starting with "ready" once the link carries packets, takes commands on
stdin (try "help"), toggles a blackout on SIGUSR1 and prints its counters on exit.`,
	}
	cmd.AddCommand(newLinksimUDPCmd(), newLinksimNetnsCmd(), newLinksimProfilesCmd())
	return cmd
}

// impairmentFlags are the flags both modes share: a starting profile and changes to it.
type impairmentFlags struct {
	profile, profileFile string
	// both, up and down hold NAME=VALUE settings in the order given.
	both, up, down []string
}

func (f *impairmentFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.profile, "profile", "", "start from this named profile (see umbra linksim profiles)")
	fs.StringVar(&f.profileFile, "profile-file", "", "start from the profile in this JSON file")
	fs.StringArrayVar(&f.up, "up", nil, "set NAME=VALUE in the up direction (A to B, client to target) only; repeatable")
	fs.StringArrayVar(&f.down, "down", nil, "set NAME=VALUE in the down direction (B to A, target to client) only; repeatable")
	for _, p := range linksim.Params() {
		fs.Var(&paramFlag{name: p.Name, settings: &f.both}, p.Name, "both directions: "+p.Usage)
	}
}

// paramFlag records --NAME VALUE as NAME=VALUE, checked later against the profile.
type paramFlag struct {
	name     string
	value    string
	settings *[]string
}

func (p *paramFlag) String() string { return p.value }
func (p *paramFlag) Type() string   { return "value" }
func (p *paramFlag) Set(v string) error {
	// Each field's range is independent of the others: check it now, on its own.
	var probe linksim.Impairment
	if err := linksim.SetParam(&probe, p.name, v); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "linksim: "))
	}
	p.value = v
	*p.settings = append(*p.settings, p.name+"="+v)
	return nil
}

// conditions builds the starting conditions: the profile, then the flags' settings.
func (f *impairmentFlags) conditions() (linksim.Conditions, error) {
	var c linksim.Conditions
	switch {
	case f.profile != "" && f.profileFile != "":
		return c, errors.New("linksim: --profile and --profile-file are exclusive")
	case f.profile != "":
		var ok bool
		if c, ok = linksim.Profile(f.profile); !ok {
			return c, fmt.Errorf("linksim: unknown profile %q (have %s)", f.profile, strings.Join(linksim.ProfileNames(), ", "))
		}
	case f.profileFile != "":
		var err error
		if c, err = linksim.LoadConditions(f.profileFile); err != nil {
			return c, err
		}
	}
	apply := func(imp *linksim.Impairment, settings []string, flag string) error {
		for _, s := range settings {
			name, value, ok := strings.Cut(s, "=")
			if !ok {
				return fmt.Errorf("linksim: --%s %q: want NAME=VALUE", flag, s)
			}
			if err := linksim.SetParam(imp, name, value); err != nil {
				return err
			}
		}
		return nil
	}
	for _, step := range []struct {
		imps     []*linksim.Impairment
		settings []string
		flag     string
	}{
		{[]*linksim.Impairment{&c.Up, &c.Down}, f.both, "NAME"},
		{[]*linksim.Impairment{&c.Up}, f.up, "up"},
		{[]*linksim.Impairment{&c.Down}, f.down, "down"},
	} {
		for _, imp := range step.imps {
			if err := apply(imp, step.settings, step.flag); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

func newLinksimUDPCmd() *cobra.Command {
	var listen, target string
	var imp impairmentFlags
	cmd := &cobra.Command{
		Use:   "udp --listen ADDR --target ADDR [--profile NAME | --profile-file FILE] [--loss P ...]",
		Short: "a UDP proxy: clients send to --listen, the link carries their datagrams to --target and back",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cond, err := imp.conditions()
			if err != nil {
				return err
			}
			link, err := linksim.NewLink(cond.Up, cond.Down)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			p, err := linksim.NewUDPProxy(ctx, listen, target, link)
			if err != nil {
				return err
			}
			defer p.Close()
			ready := fmt.Sprintf("ready udp listen=%s target=%s", p.Addr(), target)
			return runLinksim(ctx, cmd, link, cond, p.Stats, ready)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address clients send to (port 0 picks one; the ready line says which)")
	cmd.Flags().StringVar(&target, "target", "", "address the datagrams are forwarded to (required)")
	cmd.MarkFlagRequired("target")
	imp.register(cmd.Flags())
	return cmd
}

func newLinksimNetnsCmd() *cobra.Command {
	var cfg linksim.NetnsConfig
	var addrA, addrB string
	var imp impairmentFlags
	cmd := &cobra.Command{
		Use:   "netns [--ns-a A --ns-b B --addr-a PREFIX --addr-b PREFIX] [--profile NAME | --profile-file FILE] [--loss P ...]",
		Short: "an IP link between two network namespaces through TUN devices (root): up is A to B",
		Long: `An IP link between two network namespaces through TUN devices; needs root.
Namespaces that do not exist are created and deleted again on exit. Run programs on
either side with "ip netns exec NAME …": every packet between the two addresses
crosses the emulated link, A to B through "up", B to A through "down".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.AddrA, err = netip.ParsePrefix(addrA); err != nil {
				return fmt.Errorf("linksim: --addr-a: want an address with prefix length such as 10.77.0.1/24, got %q", addrA)
			}
			if cfg.AddrB, err = netip.ParsePrefix(addrB); err != nil {
				return fmt.Errorf("linksim: --addr-b: want an address with prefix length such as 10.77.0.2/24, got %q", addrB)
			}
			cond, err := imp.conditions()
			if err != nil {
				return err
			}
			link, err := linksim.NewLink(cond.Up, cond.Down)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			l, err := linksim.NewNetnsLink(ctx, cfg, link)
			if err != nil {
				return err
			}
			c := l.Config()
			ready := fmt.Sprintf("ready netns ns-a=%s addr-a=%v ns-b=%s addr-b=%v dev=%s mtu=%d", c.NSA, c.AddrA, c.NSB, c.AddrB, c.Dev, c.MTU)
			runErr := runLinksim(ctx, cmd, link, cond, l.Stats, ready)
			return errors.Join(runErr, l.Close())
		},
	}
	cmd.Flags().StringVar(&cfg.NSA, "ns-a", linksimNSA, "network namespace of side A (created if missing)")
	cmd.Flags().StringVar(&cfg.NSB, "ns-b", linksimNSB, "network namespace of side B (created if missing)")
	cmd.Flags().StringVar(&addrA, "addr-a", linksim.DefaultNetnsAddrA, "address and prefix of side A's TUN device")
	cmd.Flags().StringVar(&addrB, "addr-b", linksim.DefaultNetnsAddrB, "address and prefix of side B's TUN device")
	// Not --mtu: that is the impairment's cap, which drops what the devices let through.
	cmd.Flags().IntVar(&cfg.MTU, "dev-mtu", 0, "MTU of both TUN devices (0 means 1500)")
	cmd.Flags().StringVar(&cfg.Dev, "dev", linksim.DefaultNetnsDev, "name of the TUN device in each namespace")
	imp.register(cmd.Flags())
	return cmd
}

func newLinksimProfilesCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "profiles [-o json]",
		Short: "list the named profiles and their parameters",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				all := make(map[string]linksim.Conditions)
				for _, name := range linksim.ProfileNames() {
					all[name], _ = linksim.Profile(name)
				}
				data, err := json.MarshalIndent(all, "", "  ")
				if err != nil {
					return fmt.Errorf("linksim: %w", err)
				}
				fmt.Fprintf(out, "%s\n", data)
			case "", "text":
				for _, name := range linksim.ProfileNames() {
					c, _ := linksim.Profile(name)
					fmt.Fprintf(out, "%s\n  models:   %s\n  up:       %v\n  down:     %v\n", name, c.Models, c.Up, c.Down)
					for _, s := range c.Schedule {
						fmt.Fprintf(out, "  at %v:%s\n", s.At, describeStep(s))
					}
				}
			default:
				return fmt.Errorf("linksim: -o %q: want text or json", output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (the --profile-file format)")
	return cmd
}

// describeStep writes what a schedule step does, for the profiles listing.
func describeStep(s linksim.Step) string {
	var b strings.Builder
	if s.Blackout > 0 {
		fmt.Fprintf(&b, " blackout for %v", s.Blackout)
	}
	if s.Up != nil {
		fmt.Fprintf(&b, " up %v", *s.Up)
	}
	if s.Down != nil {
		fmt.Fprintf(&b, " down %v", *s.Down)
	}
	return b.String()
}

// runLinksim announces the link, then serves stdin commands and SIGUSR1 until ctx ends
// (SIGINT or SIGTERM), and prints "stopped" and the counters.
func runLinksim(ctx context.Context, cmd *cobra.Command, link *linksim.Link, cond linksim.Conditions, stats func() linksim.Stats, ready string) error {
	out := cmd.OutOrStdout()
	console := linksim.NewConsole(ctx, link, stats)
	defer console.Close()
	if err := console.Apply(cond); err != nil {
		return err
	}

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	lines := make(chan string)
	go readLines(ctx, cmd.InOrStdin(), lines)

	fmt.Fprintln(out, ready)
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "stopped")
			fmt.Fprintln(out, linksim.FormatStats(stats()))
			return nil
		case <-usr1:
			on := !link.BlackedOut()
			link.SetBlackout(on)
			fmt.Fprintln(out, "blackout", map[bool]string{true: "on", false: "off"}[on])
		case line := <-lines:
			reply, err := console.Exec(line)
			if err != nil {
				fmt.Fprintln(out, "error:", err)
			} else if reply != "" {
				fmt.Fprintln(out, reply)
			}
		}
	}
}

// readLines sends each line of r to lines until r ends or ctx does. At the end of
// input it simply stops: the link runs on until SIGINT, as when stdin is /dev/null.
func readLines(ctx context.Context, r io.Reader, lines chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		select {
		case lines <- sc.Text():
		case <-ctx.Done():
			return
		}
	}
}
