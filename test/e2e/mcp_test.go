package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// operatorIdentity creates and enrolls an identity with role r for the assistant and
// returns its file.
func (m *mesh) operatorIdentity(name, r string) string {
	m.t.Helper()
	jwt := filepath.Join(m.dir, name+".jwt")
	m.edge("create", "identity", name, "--role", r, "--jwt-out", jwt)
	out := filepath.Join(m.dir, name+".json")
	must(m.t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", out)
	return out
}

// toolText calls tool and returns its text and whether it is a tool error.
func toolText(t *testing.T, cs *mcp.ClientSession, tool string, args any) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String(), res.IsError
}

// TestMCPOverStdio: an assistant launches `umbra mcp` with an operator identity, as a
// desktop assistant would, lists its read-only tools, reads the fleet, is refused a
// write with a clear error; the calls are in the controller's trail; an admin identity is
// refused without --allow-admin.
func TestMCPOverStdio(t *testing.T) {
	m := startMesh(t)
	m.edge("create", "identity", "drone1", "--attr", "drone", "--jwt-out", filepath.Join(m.dir, "d1.jwt"))
	m.edge("create", "service", "mavlink", "--host", "udp:127.0.0.1:14550")
	idFile := m.operatorIdentity("assistant", "operator")

	_, errOut, err := run(t, nil, bins.umbra, "mcp", "--admin", m.q.Admin)
	if err == nil || !strings.Contains(errOut, "--allow-admin") {
		t.Errorf("umbra mcp with the admin identity: err %v, stderr %q; want a refusal naming --allow-admin", err, errOut)
	}

	var stderr strings.Builder
	cmd := exec.Command(bins.umbra, "mcp", "--admin", idFile)
	cmd.Stderr = &stderr
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-assistant", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect to umbra mcp: %v\n%s", err, stderr.String())
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.Annotations == nil || !tool.Annotations.ReadOnlyHint {
			t.Errorf("tool %s offered by default, want read-only tools only", tool.Name)
		}
	}
	sum, isErr := toolText(t, cs, "fleet_summary", nil)
	var s struct {
		Identities struct{ Total int } `json:"identities"`
		Services   int                 `json:"services"`
	}
	if isErr || json.Unmarshal([]byte(sum), &s) != nil || s.Identities.Total != 3 || s.Services != 1 {
		t.Errorf("fleet_summary = %s, want 3 identities (admin, drone1, assistant) and 1 service", sum)
	}
	if got, isErr := toolText(t, cs, "get_identity", map[string]any{"name": "drone1"}); isErr || !strings.Contains(got, `"name":"drone1"`) {
		t.Errorf("get_identity drone1 = %s", got)
	}
	before := m.edge("get", "service", "mavlink", "-o", "json")
	if got, isErr := toolText(t, cs, "update_service", map[string]any{"name": "mavlink", "host": "udp:10.9.9.9:1"}); !isErr || !strings.Contains(got, "--allow-write") {
		t.Errorf("update_service on a read-only server = %s (error %v), want a refusal naming --allow-write", got, isErr)
	}
	if after := m.edge("get", "service", "mavlink", "-o", "json"); after != before {
		t.Error("a refused write changed the service")
	}
	cs.Close()
	for _, secret := range []string{"-----BEGIN", "eyJ"} {
		if strings.Contains(stderr.String(), secret) {
			t.Errorf("umbra mcp's log contains %q", secret)
		}
	}
	events := m.edge("events", "-o", "json")
	for _, want := range []string{`"type":"mcp-call","name":"fleet_summary","identity":"assistant","reason":"ok","client":"e2e-assistant"`, `"name":"update_service","identity":"assistant","reason":"refused"`} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %s", want)
		}
	}
}

// bearer adds a bearer token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestMCPOverHTTP: `umbra mcp --http` serves loopback only, writes a 0600 token beside
// the identity file, and answers only a client that presents it with a loopback Host.
func TestMCPOverHTTP(t *testing.T) {
	m := startMesh(t)
	idFile := m.operatorIdentity("assistant", "reader")
	if _, errOut, err := run(t, nil, bins.umbra, "mcp", "--admin", idFile, "--http", "0.0.0.0:0"); err == nil || !strings.Contains(errOut, "loopback") {
		t.Errorf("--http 0.0.0.0:0: err %v, stderr %q; want a loopback-only refusal", err, errOut)
	}
	p := start(t, bins.umbra, "mcp", "--admin", idFile, "--http", "127.0.0.1:0")
	defer p.stop(t)
	line := p.waitFor(t, "mcp http://", readyTimeout)
	url := strings.Fields(line)[1]
	tokenFile := filepath.Join(filepath.Dir(idFile), "mcp-token")
	fi, err := os.Stat(tokenFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, want mode 0600", err)
	}
	tok, _ := os.ReadFile(tokenFile)
	token := strings.TrimSpace(string(tok))

	for _, tt := range []struct {
		name, auth, host string
		want             int
	}{
		{"no-token", "", "", http.StatusUnauthorized},
		{"wrong-token", "Bearer nope", "", http.StatusUnauthorized},
		{"foreign-host", "Bearer " + token, "attacker.example:80", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		if tt.host != "" {
			req.Host = tt.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-http", Version: "1"}, nil)
	tr := &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}, Timeout: 30 * time.Second}}
	cs, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connect over HTTP: %v\n%s", err, p.output())
	}
	defer cs.Close()
	if got, isErr := toolText(t, cs, "fleet_summary", nil); isErr || !strings.Contains(got, `"identities"`) {
		t.Errorf("fleet_summary over HTTP = %s", got)
	}
}
