package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/role"
)

// namedKinds are the kinds `get`, `update` and `delete` take, as the CLI spells them.
var namedKinds = []string{"identity", "router", "service", "service-policy", "edge-router-policy"}

// apiKind maps a kind word of get, update or delete to its API kind, or names the valid
// choices.
func apiKind(word string) (string, error) {
	kind, ok := kindAliases[word]
	if !ok || kind == "links" || kind == "revocations" {
		return "", fmt.Errorf("unknown kind %q: want one of %s", word, strings.Join(namedKinds, ", "))
	}
	return kind, nil
}

func getCmd(f *edgeFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:       "get " + strings.Join(namedKinds, "|") + " NAME",
		Short:     "show one record",
		Args:      cobra.ExactArgs(2),
		ValidArgs: namedKinds,
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, err := apiKind(args[0])
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := f.client(cmd)
			if err != nil {
				return err
			}
			defer c.Close()
			rec, err := c.Get(cmd.Context(), kind, args[1])
			if err != nil {
				return err
			}
			return printRecord(cmd.OutOrStdout(), rec, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// checkOutput accepts the -o formats.
func checkOutput(output string) error {
	if output != "json" && output != "table" {
		return fmt.Errorf("unknown output format %q: want json or table", output)
	}
	return nil
}

// printJSON writes v as indented JSON, as every `-o json` does.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printRecord prints one record as JSON, or as "field: value" lines in a stable order.
func printRecord(w io.Writer, rec map[string]any, output string) error {
	if output == "json" {
		return printJSON(w, rec)
	}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return columnRank(keys[i]) < columnRank(keys[j]) || (columnRank(keys[i]) == columnRank(keys[j]) && keys[i] < keys[j])
	})
	for _, k := range keys {
		fmt.Fprintf(w, "%s: %s\n", k, cell(rec[k]))
	}
	return nil
}

// columnRank orders fields as list tables do; others follow.
func columnRank(field string) int {
	for i, c := range tableColumns {
		if c == field {
			return i
		}
	}
	return len(tableColumns)
}

// attrFlags are the attribute edits every update of an attributed kind takes.
type attrFlags struct {
	set, add, remove []string
}

func (a *attrFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&a.set, "attr", nil, "role attribute (repeatable): replaces the whole set")
	fs.StringArrayVar(&a.add, "add-attr", nil, "add a role attribute (repeatable)")
	fs.StringArrayVar(&a.remove, "remove-attr", nil, "remove a role attribute (repeatable)")
}

// replacement is --attr's value for the API: nil unless --attr was given (--attr "" empties
// the set).
func (a *attrFlags) replacement(fs *pflag.FlagSet) *[]string {
	if !fs.Changed("attr") {
		return nil
	}
	out := []string{}
	for _, v := range a.set {
		if v != "" {
			out = append(out, v)
		}
	}
	return &out
}

func updateCmd(f *edgeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update " + strings.Join(namedKinds, "|") + " NAME [flags]",
		Short: "change a record in place; running routers and agents follow",
	}
	cmd.AddCommand(updateIdentityCmd(f), updateRouterCmd(f), updateServiceCmd(f), updateServicePolicyCmd(f), updateEdgeRouterPolicyCmd(f))
	return cmd
}

// runUpdate patches kind/name with body, refusing an update that changes nothing.
func runUpdate(cmd *cobra.Command, f *edgeFlags, kind, name string, body any) error {
	changed := false
	cmd.LocalFlags().VisitAll(func(fl *pflag.Flag) { changed = changed || fl.Changed })
	if !changed {
		return fmt.Errorf("nothing to update: give at least one of the flags (see umbra edge update %s --help)", cmd.Name())
	}
	c, err := f.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Update(cmd.Context(), kind, name, body); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "updated %s %s\n", cmd.Name(), name)
	return nil
}

// optional returns &v when the flag was given, else nil: an update leaves out what the
// user did not name.
func optional[T any](cmd *cobra.Command, flag string, v T) *T {
	if !cmd.Flags().Changed(flag) {
		return nil
	}
	return &v
}

func updateIdentityCmd(f *edgeFlags) *cobra.Command {
	var attrs attrFlags
	var admin bool
	var roleName string
	cmd := &cobra.Command{
		Use:   "identity NAME",
		Short: "change an identity's attributes or management role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := role.Parse(roleName); err != nil {
				return fmt.Errorf("--role: %w", err)
			}
			body := api.UpdateIdentity{
				Attributes: attrs.replacement(cmd.Flags()), AddAttributes: attrs.add, RemoveAttributes: attrs.remove,
				Admin: optional(cmd, "admin-role", admin),
				Role:  optional(cmd, "role", roleName),
			}
			return runUpdate(cmd, f, "identities", args[0], body)
		},
	}
	attrs.register(cmd.Flags())
	cmd.Flags().BoolVar(&admin, "admin-role", false, "the same as --role admin (--admin-role=false takes admin away)")
	cmd.Flags().StringVar(&roleName, "role", "", "management role: "+role.Choices()+` ("" takes it away)`)
	return cmd
}

func updateRouterCmd(f *edgeFlags) *cobra.Command {
	var attrs attrFlags
	cmd := &cobra.Command{
		Use:   "router NAME",
		Short: "change a router's attributes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := api.UpdateRouter{Attributes: attrs.replacement(cmd.Flags()), AddAttributes: attrs.add, RemoveAttributes: attrs.remove}
			return runUpdate(cmd, f, "routers", args[0], body)
		},
	}
	attrs.register(cmd.Flags())
	return cmd
}

func updateServiceCmd(f *edgeFlags) *cobra.Command {
	var attrs attrFlags
	var host, intercept string
	cmd := &cobra.Command{
		Use:   "service NAME",
		Short: "change a service's attributes, host or intercept address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := api.UpdateService{
				Attributes: attrs.replacement(cmd.Flags()), AddAttributes: attrs.add, RemoveAttributes: attrs.remove,
				Host: optional(cmd, "host", host), Intercept: optional(cmd, "intercept", intercept),
			}
			return runUpdate(cmd, f, "services", args[0], body)
		},
	}
	attrs.register(cmd.Flags())
	cmd.Flags().StringVar(&host, "host", "", "PROTO:ADDR where a binding agent delivers the traffic (tcp or udp; empty clears it)")
	cmd.Flags().StringVar(&intercept, "intercept", "", "PROTO:ADDR where a dialing agent listens by default (empty clears it)")
	return cmd
}

func updateServicePolicyCmd(f *edgeFlags) *cobra.Command {
	var typ string
	var identities, services []string
	cmd := &cobra.Command{
		Use:   "service-policy NAME",
		Short: "change a service policy's type, identities or services",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := api.UpdateServicePolicy{
				Type:       optional(cmd, "type", typ),
				Identities: optional(cmd, "identities", identities),
				Services:   optional(cmd, "services", services),
			}
			return runUpdate(cmd, f, "service-policies", args[0], body)
		},
	}
	cmd.Flags().StringVar(&typ, "type", "", "dial or bind")
	cmd.Flags().StringSliceVar(&identities, "identities", nil, "identity roles: #attr, @name or #all (replaces them)")
	cmd.Flags().StringSliceVar(&services, "services", nil, "service roles: #attr, @name or #all (replaces them)")
	return cmd
}

func updateEdgeRouterPolicyCmd(f *edgeFlags) *cobra.Command {
	var identities, routers []string
	cmd := &cobra.Command{
		Use:   "edge-router-policy NAME",
		Short: "change an edge-router policy's identities or routers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := api.UpdateEdgeRouterPolicy{
				Identities: optional(cmd, "identities", identities),
				Routers:    optional(cmd, "routers", routers),
			}
			return runUpdate(cmd, f, "edge-router-policies", args[0], body)
		},
	}
	cmd.Flags().StringSliceVar(&identities, "identities", nil, "identity roles: #attr, @name or #all (replaces them)")
	cmd.Flags().StringSliceVar(&routers, "routers", nil, "router roles: #attr, @name or #all (replaces them)")
	return cmd
}
