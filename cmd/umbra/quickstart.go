package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/controller"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/metrics"
	"github.com/umbranet/umbra/internal/transport"
	"github.com/umbranet/umbra/router"
)

// Layout of a quickstart directory.
const (
	qsControllerDir = "controller"
	qsRouterDir     = "router1"
	qsRouterName    = "router1"
	qsAdminFile     = "admin.json"
	qsStateFile     = "quickstart.json"
	qsPolicyName    = "all-routers"
)

// quickstartState is DIR/quickstart.json, the contract with scripts and tests.
type quickstartState struct {
	Controller string `json:"controller"`
	Router     string `json:"router"`
	Admin      string `json:"admin"`
	Metrics    string `json:"metrics,omitempty"`
}

// quickstartFlags are the flags of `umbra quickstart`.
type quickstartFlags struct {
	dir, host, metrics   string
	ctrlPort, routerPort int
	idLifetime           time.Duration
	profile              transport.Profile
}

// defaultQuickstartMetrics is where a quickstart serves its metrics: a free port on
// loopback, so nothing off the machine scrapes it unless asked.
const defaultQuickstartMetrics = "127.0.0.1:0"

func newQuickstartCmd(g *globalFlags) *cobra.Command {
	var f quickstartFlags
	var linkProfile string
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "run a controller and an edge router from one directory, creating it on first use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			profile, err := transport.ProfileNamed(linkProfile)
			if err != nil {
				return fmt.Errorf("quickstart: --link-profile: %w", err)
			}
			f.profile = profile
			return runQuickstart(cmd, g, f)
		},
	}
	cmd.Flags().StringVar(&f.dir, "dir", "", "quickstart directory (required)")
	cmd.Flags().StringVar(&f.host, "host", "127.0.0.1", "address to listen on and advertise")
	cmd.Flags().IntVar(&f.ctrlPort, "ctrl-port", 0, "controller port (0: as before in DIR, else a free one)")
	cmd.Flags().IntVar(&f.routerPort, "router-port", 0, "router port (0: as before in DIR, else a free one)")
	cmd.Flags().DurationVar(&f.idLifetime, "identity-lifetime", 0, "lifetime of identity certificates (default 90 days)")
	cmd.Flags().StringVar(&f.metrics, "metrics", defaultQuickstartMetrics, "HOST:PORT to serve the controller's and router's Prometheus metrics on at /metrics (empty: none)")
	cmd.Flags().StringVar(&linkProfile, "link-profile", "lan", "QUIC profile of router1 for its agents: lan, or radio (5-minute idle timeout, small packets)")
	cmd.MarkFlagRequired("dir")
	return cmd
}

func runQuickstart(cmd *cobra.Command, g *globalFlags, f quickstartFlags) error {
	dir, host, ctrlPort, routerPort, idLifetime, profile := f.dir, f.host, f.ctrlPort, f.routerPort, f.idLifetime, f.profile
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	log := g.logger()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("quickstart: %w", err)
	}
	prev := readQuickstartState(filepath.Join(dir, qsStateFile))
	if ctrlPort == 0 {
		ctrlPort = portOf(prev.Controller)
	}
	if routerPort == 0 {
		routerPort = portOf(prev.Router)
	}

	// The controller's port must be known before its PKI and tokens name it.
	ctrlLn, ctrlPC, err := controller.ListenPair(net.JoinHostPort(host, strconv.Itoa(ctrlPort)))
	if err != nil {
		return fmt.Errorf("quickstart: controller port: %w", err)
	}
	defer ctrlLn.Close()
	defer ctrlPC.Close()
	ctrlAddr := ctrlLn.Addr().String()
	ctrlDir := filepath.Join(dir, qsControllerDir)
	adminPath := filepath.Join(dir, qsAdminFile)
	cfg := controller.Config{DataDir: ctrlDir, Listen: ctrlAddr, URL: "https://" + ctrlAddr, IdentityLifetime: idLifetime, Logger: log}
	if _, err := os.Stat(filepath.Join(ctrlDir, "controller.json")); errors.Is(err, os.ErrNotExist) {
		if err := controller.Init(ctx, cfg, []string{host, "localhost"}, adminPath); err != nil {
			return err
		}
	}
	ctrl, err := controller.Open(cfg)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	errc := make(chan error, 3) // controller, router, metrics
	go func() { errc <- ctrl.Serve(ctx, ctrlLn, ctrlPC) }()

	routerID, err := quickstartRouter(ctx, dir, adminPath)
	if err != nil {
		return err
	}
	r, err := router.Listen(ctx, router.Config{Identity: routerID, DataDir: filepath.Join(dir, qsRouterDir), Listen: net.JoinHostPort(host, strconv.Itoa(routerPort)), Profile: profile, Logger: log})
	if err != nil {
		return err
	}
	go func() { errc <- r.Serve(ctx) }()
	if err := waitOnline(ctx, ctrl, routerID.ID, errc); err != nil {
		return err
	}

	state := quickstartState{Controller: ctrl.URL(), Router: r.Addr().String(), Admin: adminPath}
	if f.metrics != "" {
		mln, err := listenMetricsAgain(f.metrics, prev.Metrics)
		if err != nil {
			return fmt.Errorf("quickstart: %w", err)
		}
		state.Metrics = metrics.URL(mln)
		go func() { errc <- metrics.Serve(ctx, mln, ctrl.Metrics(), r.Metrics()) }()
	}
	data, _ := json.MarshalIndent(state, "", "  ")
	if err := identity.WriteFileAtomic(filepath.Join(dir, qsStateFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("quickstart: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ready controller=%s router=%s admin=%s metrics=%s\n", state.Controller, state.Router, state.Admin, state.Metrics)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	cancel()
	return nil
}

// quickstartRouter enrolls router1 through the management API on first use, exactly as an
// operator would, and makes the edge-router policy that lets everyone use every router.
func quickstartRouter(ctx context.Context, dir, adminPath string) (*identity.File, error) {
	idPath := filepath.Join(dir, qsRouterDir, routerIdentityFile)
	if id, err := identity.Load(idPath); err == nil {
		return id, nil
	}
	admin, err := identity.Load(adminPath)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(ctx, admin)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	created, err := c.Create(ctx, "routers", api.CreateRouter{Name: qsRouterName, Attributes: []string{"edge"}})
	if err != nil {
		return nil, fmt.Errorf("quickstart: create %s: %w", qsRouterName, err)
	}
	_, err = c.Create(ctx, "edge-router-policies", api.CreateEdgeRouterPolicy{Name: qsPolicyName, Identities: []string{"#all"}, Routers: []string{"#all"}})
	if err != nil {
		return nil, fmt.Errorf("quickstart: create edge-router policy: %w", err)
	}
	if err := enrollFileKeyToken(ctx, created.JWT, idPath); err != nil {
		return nil, err
	}
	return identity.Load(idPath)
}

// Readiness of the quickstart: the router must report online within this time.
const (
	onlineTimeout = 10 * time.Second
	onlinePoll    = 10 * time.Millisecond
)

// waitOnline polls until the controller sees the router's control link.
func waitOnline(ctx context.Context, ctrl *controller.Controller, routerID string, errc <-chan error) error {
	deadline := time.NewTimer(onlineTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(onlinePoll)
	defer tick.Stop()
	for !ctrl.RouterOnline(routerID) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return fmt.Errorf("quickstart: %w", err)
		case <-deadline.C:
			return fmt.Errorf("quickstart: %s did not come online within %v", qsRouterName, onlineTimeout)
		case <-tick.C:
		}
	}
	return nil
}

// listenMetricsAgain opens the metrics listener at addr; when addr asks for any free port,
// it takes the one the last run of this quickstart used, if it is still free, so that a
// scrape configuration keeps working across restarts.
func listenMetricsAgain(addr, last string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && port == "0" {
		if p := portOf(last); p != 0 {
			if ln, err := metrics.Listen(net.JoinHostPort(host, strconv.Itoa(p))); err == nil {
				return ln, nil
			}
		}
	}
	return metrics.Listen(addr)
}

func readQuickstartState(path string) quickstartState {
	var s quickstartState
	if data, err := os.ReadFile(path); err == nil {
		json.Unmarshal(data, &s)
	}
	return s
}

// portOf returns the port of a URL or HOST:PORT, or 0.
func portOf(addr string) int {
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}
