package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/mcpserver"
	"github.com/umbranet/umbra/internal/role"
	"github.com/umbranet/umbra/internal/version"
)

// mcpShutdown bounds how long `umbra mcp --http` waits for open requests on exit.
const mcpShutdown = 5 * time.Second

// mcpReadHeader bounds how long a client may take to send its request headers.
const mcpReadHeader = 10 * time.Second

// mcpFlags are `umbra mcp`'s flags.
type mcpFlags struct {
	admin      string
	allowWrite string
	allowAdmin bool
	http       string
}

func newMCPCmd(g *globalFlags) *cobra.Command {
	f := &mcpFlags{}
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "serve the fleet to an AI assistant over the Model Context Protocol (stdio, or --http on loopback)",
		Long: `umbra mcp is an MCP server: an assistant launches it (stdio) or connects to it
(--http 127.0.0.1:PORT with the bearer token in the mcp-token file beside the identity
file). It acts as the identity of --admin, whose key stays in this process; give it a
reader or operator identity (umbra edge create identity NAME --role operator). Only
read-only tools are offered unless --allow-write names write tools.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runMCP(cmd, g, f) },
	}
	cmd.Flags().StringVar(&f.admin, "admin", "", "identity file to act as (default $"+adminEnv+"); a reader or operator identity")
	cmd.Flags().StringVar(&f.allowWrite, "allow-write", "", "write tools to offer: all, or a comma-separated list of "+strings.Join(mcpserver.WriteTools, ","))
	cmd.Flags().BoolVar(&f.allowAdmin, "allow-admin", false, "serve even though the identity has the admin role")
	cmd.Flags().StringVar(&f.http, "http", "", "serve streamable HTTP on this loopback address (127.0.0.1:PORT) instead of stdio")
	return cmd
}

func runMCP(cmd *cobra.Command, g *globalFlags, f *mcpFlags) error {
	ctx := cmd.Context()
	log := g.logger()
	path := f.admin
	if path == "" {
		path = os.Getenv(adminEnv)
	}
	if path == "" {
		return errors.New("no identity: pass --admin FILE or set " + adminEnv)
	}
	if f.http != "" {
		if err := mcpserver.CheckLoopback(f.http); err != nil {
			return err
		}
	}
	id, err := identity.Load(path)
	if err != nil {
		return err
	}
	client, err := api.NewClient(ctx, id)
	if err != nil {
		return err
	}
	defer client.Close()
	self, err := client.Get(ctx, "identities", id.Name)
	if err != nil {
		return fmt.Errorf("read identity %q from the controller: %w", id.Name, err)
	}
	roleName, _ := self["role"].(string)
	isAdmin, _ := self["admin"].(bool)
	r := role.Of(roleName, isAdmin)
	switch {
	case r == role.None:
		return fmt.Errorf("identity %q has no management role: create one with umbra edge create identity NAME --role reader|operator", id.Name)
	case r == role.Admin && !f.allowAdmin:
		return fmt.Errorf("identity %q has the admin role: give the assistant a reader or operator identity (umbra edge create identity NAME --role operator), or pass --allow-admin", id.Name)
	}
	var allow []string
	if f.allowWrite != "" {
		allow = strings.Split(f.allowWrite, ",")
	}
	srv, err := mcpserver.New(mcpserver.Config{API: client, Identity: id.Name, AllowWrite: allow, Logger: log, Version: version.String("umbra")})
	if err != nil {
		return err
	}
	log.Info("mcp server", "identity", id.Name, "role", r, "allow_write", f.allowWrite)
	if f.http == "" {
		err := srv.Run(ctx, &mcp.StdioTransport{})
		if ctx.Err() != nil {
			return nil // stopped by a signal: a clean exit
		}
		return err
	}
	return serveMCPHTTP(ctx, cmd, srv, f.http, filepath.Join(filepath.Dir(path), mcpserver.TokenFile))
}

// serveMCPHTTP serves srv on addr (loopback) until ctx ends.
func serveMCPHTTP(ctx context.Context, cmd *cobra.Command, srv *mcp.Server, addr, tokenPath string) error {
	token, created, err := mcpserver.LoadOrCreateToken(tokenPath)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(cmd.ErrOrStderr(), "umbra mcp: wrote a new bearer token to %s (mode 0600)\n", tokenPath)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mcp: %w", err)
	}
	// Streams a client keeps open (the server-to-client event stream) end when the
	// server shuts down, through their requests' base context.
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	hs := &http.Server{
		Handler:           mcpserver.HTTPHandler(srv, ln.Addr().String(), token),
		ReadHeaderTimeout: mcpReadHeader,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	hs.RegisterOnShutdown(cancelBase)
	fmt.Fprintf(cmd.OutOrStdout(), "mcp http://%s/ bearer token in %s\n", ln.Addr(), tokenPath)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("mcp: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), mcpShutdown)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		// A client still holding a stream past the grace period is cut off: the
		// operator asked the server to stop.
		return hs.Close()
	}
	return nil
}
