package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/identity"
)

// mcpRuns is how many fleet_summary calls the median is taken of.
const mcpRuns = 5

// benchMCP measures issue 19's figure: what `umbra mcp`'s fleet_summary hands an
// assistant for a fleet of c.identities identities, beside the raw list it summarises.
func benchMCP(ctx context.Context, c config, r *report) error {
	umbra := filepath.Join(c.bin, "umbra")
	tmp, err := os.MkdirTemp("", "umbra-bench-mcp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "qs")
	qs, _, err := startUntil(ctx, "ready", umbra, "quickstart", "--dir", dir)
	if err != nil {
		return err
	}
	defer stop(qs)
	adminPath := filepath.Join(dir, "admin.json")
	admin, err := identity.Load(adminPath)
	if err != nil {
		return err
	}
	client, err := api.NewClient(ctx, admin)
	if err != nil {
		return err
	}
	defer client.Close()
	if err := createIdentities(ctx, client, 1, c.identities); err != nil {
		return err
	}
	var raw json.RawMessage
	if err := client.Do(ctx, http.MethodGet, "/v1/identities", nil, &raw); err != nil {
		return err
	}
	cli := exec.CommandContext(ctx, umbra, "edge", "list", "identities", "-o", "json")
	cli.Env = append(os.Environ(), "UMBRA_ADMIN="+adminPath)
	var cliOut bytes.Buffer
	cli.Stdout = &cliOut
	if err := cli.Run(); err != nil {
		return fmt.Errorf("edge list: %w", err)
	}

	// The server acts as the quickstart's admin here (--allow-admin) only to save
	// enrolling an operator; what it reads is the same.
	mc := mcp.NewClient(&mcp.Implementation{Name: "umbra-bench", Version: "1"}, nil)
	cs, err := mc.Connect(ctx, &mcp.CommandTransport{Command: exec.Command(umbra, "mcp", "--admin", adminPath, "--allow-admin", "--log-level", "warn")}, nil)
	if err != nil {
		return fmt.Errorf("umbra mcp: %w", err)
	}
	defer cs.Close()
	call := func(tool string, args any) (int, time.Duration, error) {
		t0 := time.Now()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		d := time.Since(t0)
		if err != nil {
			return 0, d, err
		}
		n := 0
		for _, ct := range res.Content {
			if tc, ok := ct.(*mcp.TextContent); ok {
				n += len(tc.Text)
			}
		}
		if res.IsError {
			return n, d, fmt.Errorf("%s: tool error", tool)
		}
		return n, d, nil
	}
	var times []time.Duration
	var summary int
	for range mcpRuns {
		n, d, err := call("fleet_summary", nil)
		if err != nil {
			return err
		}
		summary = n
		times = append(times, d)
	}
	page, _, err := call("list_identities", map[string]any{"limit": 200})
	if err != nil {
		return err
	}
	r.printf("## MCP server: what an assistant reads\n\n")
	r.printf("`umbra mcp` over stdio (the go-sdk's CommandTransport) against a quickstart holding %d identities.\n\n", c.identities)
	r.printf("| figure | bytes | raw API list ÷ this |\n|---|---|---|\n")
	r.printf("| `fleet_summary` result (median call %s over %d) | %d | %.0f× |\n", ms(median(times)), mcpRuns, summary, float64(len(raw))/float64(summary))
	r.printf("| `list_identities` limit 200 (one page, capped at 16 KB) | %d | %.0f× |\n", page, float64(len(raw))/float64(page))
	r.printf("| raw `GET /v1/identities` JSON | %d | 1× |\n", len(raw))
	r.printf("| `umbra edge list identities -o json` output | %d | %.2f× |\n\n", cliOut.Len(), float64(len(raw))/float64(cliOut.Len()))
	r.printf("At about 4 bytes a token, the summary is %s tokens against %s for the raw list.\n\n",
		approxTokens(summary), approxTokens(len(raw)))
	return nil
}

// approxTokens renders n bytes as a rough token count (4 bytes a token).
func approxTokens(n int) string {
	t := n / 4
	if t >= 1000 {
		return strings.TrimSuffix(fmt.Sprintf("~%.0fk", float64(t)/1000), ".0")
	}
	return fmt.Sprintf("~%d", t)
}
