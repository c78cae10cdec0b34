package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/role"
	"github.com/umbranet/umbra/internal/svcaddr"
)

// adminEnv names the admin identity file when --admin is not given.
const adminEnv = "UMBRA_ADMIN"

// edgeFlags are shared by every `umbra edge` command.
type edgeFlags struct {
	admin string

	// The identity file the command used, and its client, so that the cluster's
	// members the controller listed can be kept in the file afterwards.
	path string
	id   *identity.File
	last *api.Client
}

// keepControllers writes the cluster's members, as the last answer listed them, into
// the admin identity file when they differ from what it holds: the next command fails
// over among the controllers of the cluster as it is now.
func (f *edgeFlags) keepControllers() error {
	if f.last == nil {
		return nil
	}
	learned := f.last.Controllers()
	if len(learned) == 0 || slices.Equal(learned, f.id.Controllers) {
		return nil
	}
	f.id.Controllers = learned
	if err := f.id.Save(f.path); err != nil {
		return fmt.Errorf("keep the cluster's controllers in %s: %w", f.path, err)
	}
	return nil
}

func (f *edgeFlags) client(cmd *cobra.Command) (*api.Client, error) {
	path := f.admin
	if path == "" {
		path = os.Getenv(adminEnv)
	}
	if path == "" {
		return nil, errors.New("no admin identity: pass --admin FILE or set " + adminEnv)
	}
	id, err := identity.Load(path)
	if err != nil {
		return nil, err
	}
	c, err := api.NewClient(cmd.Context(), id)
	if err != nil {
		return nil, err
	}
	f.path, f.id, f.last = path, id, c
	return c, nil
}

// kindAliases maps the CLI's kind words to API kinds.
var kindAliases = map[string]string{
	"identity": "identities", "identities": "identities",
	"router": "routers", "routers": "routers",
	"service": "services", "services": "services",
	"service-policy": "service-policies", "service-policies": "service-policies",
	"edge-router-policy": "edge-router-policies", "edge-router-policies": "edge-router-policies",
	"link": "links", "links": "links",
	"revocations": "revocations",
	"controller":  "controllers", "controllers": "controllers",
}

func newEdgeCmd() *cobra.Command {
	f := &edgeFlags{}
	cmd := &cobra.Command{Use: "edge", Short: "manage identities, routers, services and policies"}
	cmd.PersistentFlags().StringVar(&f.admin, "admin", "", "admin identity file (default $"+adminEnv+")")
	cmd.PersistentPostRunE = func(*cobra.Command, []string) error { return f.keepControllers() }

	create := &cobra.Command{Use: "create", Short: "create a record"}
	create.AddCommand(createIdentityCmd(f), createRouterCmd(f), createServiceCmd(f), createServicePolicyCmd(f), createEdgeRouterPolicyCmd(f), createEnrollmentCmd(f), createControllerCmd(f))

	var output string
	list := &cobra.Command{
		Use:       "list identities|services|service-policies|edge-router-policies|routers|links|revocations|controllers",
		Short:     "list records",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"identities", "services", "service-policies", "edge-router-policies", "routers", "links", "revocations", "controllers"},
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, ok := kindAliases[args[0]]
			if !ok {
				return fmt.Errorf("unknown kind %q: want one of %s", args[0], strings.Join(cmd.ValidArgs, ", "))
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			recs, err := c.List(cmd.Context(), kind)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), recs)
			}
			if output != "" && output != "table" {
				return fmt.Errorf("unknown output format %q: want json or table", output)
			}
			printTable(cmd, kindColumns[kind], recs)
			return nil
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	del := &cobra.Command{
		Use:   "delete identity|service|service-policy|edge-router-policy|router|controller NAME",
		Short: "delete a record (an identity's, router's or controller's certificate is revoked; a controller leaves the cluster)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := apiKind(args[0])
			if kindAliases[args[0]] == "controllers" {
				kind, err = "controllers", nil
			}
			if err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.Delete(cmd.Context(), kind, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s %s\n", args[0], args[1])
			return nil
		},
	}
	cmd.AddCommand(create, list, getCmd(f), updateCmd(f), del, policyAdvisorCmd(f), eventsCmd(f))
	return cmd
}

// runCreate posts body and writes the enrollment token, if any, to jwtOut.
func runCreate(cmd *cobra.Command, f *edgeFlags, kind string, body any, jwtOut string) error {
	c, err := f.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	out, err := c.Create(cmd.Context(), kind, body)
	if err != nil {
		return err
	}
	if jwtOut != "" {
		if err := identity.WriteFileAtomic(jwtOut, []byte(out.JWT+"\n"), 0o600); err != nil {
			return fmt.Errorf("created %s but could not save its token: %w", out.Name, err)
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "created %s %s (id %s)\n", cmd.Name(), out.Name, out.ID)
	for _, w := range out.Warnings {
		fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
	}
	if out.ExpiresAt != nil {
		fmt.Fprintf(cmd.OutOrStdout(), "token %s expires %s\n", jwtOut, out.ExpiresAt.Local().Format(time.RFC3339))
	}
	return nil
}

// expiresHelp is the help of --expires: the token lifetime the controller applies when the
// flag is left out.
var expiresHelp = fmt.Sprintf("how long the one-time token stays valid, such as 1h or 72h (default %v)", enroll.DefaultTokenLifetime)

func createEnrollmentCmd(f *edgeFlags) *cobra.Command {
	var jwtOut, expires, kind string
	cmd := &cobra.Command{
		Use:   "enrollment NAME",
		Short: "issue a new one-time token for an existing identity or router (a replaced or wiped device); using it revokes the old certificate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := api.CreateEnrollment{Name: args[0], Expires: expires}
			if kind != "" {
				k, ok := kindAliases[kind]
				if !ok || (k != "identities" && k != "routers") {
					return fmt.Errorf("--kind %q: want identity or router", kind)
				}
				body.Kind = k
			}
			return runCreate(cmd, f, strings.TrimPrefix(api.PathEnrollments, api.PathPrefix), body, jwtOut)
		},
	}
	cmd.Flags().StringVar(&jwtOut, "jwt-out", "", "file to write the enrollment token to (required)")
	cmd.Flags().StringVar(&expires, "expires", "", expiresHelp)
	cmd.Flags().StringVar(&kind, "kind", "", "identity or router, when both kinds have a record called NAME")
	cmd.MarkFlagRequired("jwt-out")
	return cmd
}

func createControllerCmd(f *edgeFlags) *cobra.Command {
	var jwtOut, expires string
	cmd := &cobra.Command{
		Use:   "controller NAME",
		Short: "issue a one-time token for a new member of the controller cluster (redeem it with `umbra controller join`)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCreate(cmd, f, strings.TrimPrefix(api.PathControllers, api.PathPrefix), api.CreateController{Name: args[0], Expires: expires}, jwtOut)
		},
	}
	cmd.Flags().StringVar(&jwtOut, "jwt-out", "", "file to write the join token to (required)")
	cmd.Flags().StringVar(&expires, "expires", "", expiresHelp)
	cmd.MarkFlagRequired("jwt-out")
	return cmd
}

func createIdentityCmd(f *edgeFlags) *cobra.Command {
	var attrs []string
	var admin bool
	var jwtOut, expires, roleName string
	cmd := &cobra.Command{
		Use:   "identity NAME",
		Short: "create an identity and write its one-time enrollment token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := role.Parse(roleName); err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			return runCreate(cmd, f, "identities", api.CreateIdentity{Name: args[0], Attributes: attrs, Admin: admin, Role: roleName, Expires: expires}, jwtOut)
		},
	}
	cmd.Flags().StringArrayVar(&attrs, "attr", nil, "role attribute (repeatable)")
	cmd.Flags().BoolVar(&admin, "admin-role", false, "the same as --role admin")
	cmd.Flags().StringVar(&roleName, "role", "", "management role: "+role.Choices()+" (none: a device, no management access)")
	cmd.Flags().StringVar(&jwtOut, "jwt-out", "", "file to write the enrollment token to (required)")
	cmd.Flags().StringVar(&expires, "expires", "", expiresHelp)
	cmd.MarkFlagRequired("jwt-out")
	return cmd
}

func createRouterCmd(f *edgeFlags) *cobra.Command {
	var attrs []string
	var jwtOut, expires string
	cmd := &cobra.Command{
		Use:   "router NAME",
		Short: "create a router and write its one-time enrollment token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCreate(cmd, f, "routers", api.CreateRouter{Name: args[0], Attributes: attrs, Expires: expires}, jwtOut)
		},
	}
	cmd.Flags().StringArrayVar(&attrs, "attr", nil, "role attribute (repeatable)")
	cmd.Flags().StringVar(&jwtOut, "jwt-out", "", "file to write the enrollment token to (required)")
	cmd.Flags().StringVar(&expires, "expires", "", expiresHelp)
	cmd.MarkFlagRequired("jwt-out")
	return cmd
}

func createServiceCmd(f *edgeFlags) *cobra.Command {
	var attrs []string
	var host, intercept string
	cmd := &cobra.Command{
		Use:   "service NAME",
		Short: "create a service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkServiceAddresses(host, intercept); err != nil {
				return err
			}
			return runCreate(cmd, f, "services", api.CreateService{Name: args[0], Attributes: attrs, Host: host, Intercept: intercept}, "")
		},
	}
	cmd.Flags().StringArrayVar(&attrs, "attr", nil, "role attribute (repeatable)")
	cmd.Flags().StringVar(&host, "host", "", "PROTO:HOST:PORT where a binding agent delivers the traffic (tcp or udp)")
	cmd.Flags().StringVar(&intercept, "intercept", "", "PROTO:HOST:PORT where a dialing agent listens by default")
	return cmd
}

// checkServiceAddresses refuses a malformed --host or --intercept before anything is sent;
// the controller checks them again, for every client.
func checkServiceAddresses(host, intercept string) error {
	for _, a := range []struct{ flag, v string }{{"host", host}, {"intercept", intercept}} {
		if a.v == "" {
			continue
		}
		if _, err := svcaddr.Parse(a.v); err != nil {
			return fmt.Errorf("--%s: %w", a.flag, err)
		}
	}
	return nil
}

func createServicePolicyCmd(f *edgeFlags) *cobra.Command {
	var typ string
	var identities, services []string
	cmd := &cobra.Command{
		Use:   "service-policy NAME",
		Short: "let identities dial or bind services",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCreate(cmd, f, "service-policies", api.CreateServicePolicy{Name: args[0], Type: typ, Identities: identities, Services: services}, "")
		},
	}
	cmd.Flags().StringVar(&typ, "type", "", "dial or bind (required)")
	cmd.Flags().StringSliceVar(&identities, "identities", nil, "identity roles: #attr, @name or #all (required)")
	cmd.Flags().StringSliceVar(&services, "services", nil, "service roles: #attr, @name or #all (required)")
	for _, n := range []string{"type", "identities", "services"} {
		cmd.MarkFlagRequired(n)
	}
	return cmd
}

func createEdgeRouterPolicyCmd(f *edgeFlags) *cobra.Command {
	var identities, routers []string
	cmd := &cobra.Command{
		Use:   "edge-router-policy NAME",
		Short: "let identities use edge routers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCreate(cmd, f, "edge-router-policies", api.CreateEdgeRouterPolicy{Name: args[0], Identities: identities, Routers: routers}, "")
		},
	}
	cmd.Flags().StringSliceVar(&identities, "identities", nil, "identity roles: #attr, @name or #all (required)")
	cmd.Flags().StringSliceVar(&routers, "routers", nil, "router roles: #attr, @name or #all (required)")
	cmd.MarkFlagRequired("identities")
	cmd.MarkFlagRequired("routers")
	return cmd
}

// kindColumns are the columns of each kind's table, in order; a kind not listed shows
// tableColumns.
var kindColumns = map[string][]string{
	"identities":           {"name", "attributes", "role", "enrolled", "online", "router", "link_rtt_ms", "link_loss_pct", "last_seen", "cert_expires"},
	"routers":              {"name", "attributes", "advertise", "online", "version"},
	"services":             {"name", "host", "intercept", "attributes"},
	"service-policies":     {"name", "type", "identities", "services"},
	"edge-router-policies": {"name", "identities", "routers"},
	"links":                {"name", "state", "rtt_ms", "loss", "dialed"},
	"revocations":          {"serial", "kind", "name", "revoked_at"},
	"controllers":          {"name", "address", "role", "voter", "reachable", "last_contact", "applied_index"},
}

// tableColumns are shown first, in this order, when present; other scalar fields follow.
var tableColumns = []string{"name", "serial", "kind", "revoked_at", "id", "type", "attributes", "role", "admin", "online", "host", "intercept", "identities", "services", "routers"}

// printTable prints recs under cols, or, without cols, the tableColumns they have.
func printTable(cmd *cobra.Command, cols []string, recs []map[string]any) {
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	defer tw.Flush()
	if len(cols) > 0 {
		printRows(tw, cols, recs)
		return
	}
	for _, c := range tableColumns {
		for _, r := range recs {
			if _, ok := r[c]; ok {
				cols = append(cols, c)
				break
			}
		}
	}
	if len(cols) == 0 {
		for _, r := range recs {
			for k := range r {
				cols = append(cols, k)
			}
			break
		}
		sort.Strings(cols)
	}
	printRows(tw, cols, recs)
}

func printRows(tw io.Writer, cols []string, recs []map[string]any) {
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range recs {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cell(r[c])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
}

func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + cell(v[k])
		}
		return strings.Join(parts, " ")
	}
	return fmt.Sprint(v)
}

// errAdviceRefused makes `edge policy-advisor` exit 1 once it has printed its checks.
var errAdviceRefused = errors.New("a dial would fail now (see the checks above)")

func policyAdvisorCmd(f *edgeFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "policy-advisor IDENTITY SERVICE",
		Short: "say, one line per check, whether IDENTITY may dial SERVICE now and why; exit 0 when it would succeed",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			adv, err := c.Advise(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				if err := printJSON(w, adv); err != nil {
					return err
				}
			} else {
				for _, ch := range adv.Checks {
					mark := "ok  "
					if !ch.OK {
						mark = "FAIL"
					}
					fmt.Fprintf(w, "%s  %-12s  %s\n", mark, ch.Check, ch.Detail)
				}
			}
			if !adv.Allowed {
				return errAdviceRefused
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func eventsCmd(f *edgeFlags) *cobra.Command {
	var (
		output string
		follow bool
		since  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "print the controller's audit trail as JSON lines: changes, enrollments, routers and links, hosting and circuits",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "json" {
				return fmt.Errorf("unknown output format %q: want json (one event a line)", output)
			}
			if since < 0 {
				return fmt.Errorf("--since %v: want a duration of 0 or more", since)
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			return c.Events(cmd.Context(), cmd.OutOrStdout(), since, follow)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json (one event a line)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing events as they happen, until interrupted")
	cmd.Flags().DurationVar(&since, "since", 0, "start this far back, such as 10m (default: everything the controller remembers)")
	return cmd
}
