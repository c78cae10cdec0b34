package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/role"
)

// readTools is the set a server offers by default.
var readTools = []string{
	"explain_circuit_failure", "fleet_summary", "get_identity", "get_policy", "get_router", "get_service",
	"link_health", "list_identities", "list_links", "list_policies", "list_routers", "list_services",
	"policy_advisor", "recent_events",
}

// populate gives the lab a few records of each kind.
func populate(t testing.TB, l *lab) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.admin.Create(ctx, "identities", api.CreateIdentity{Name: "drone1", Attributes: []string{"drone", "north"}}))
	must(l.admin.Create(ctx, "identities", api.CreateIdentity{Name: "drone2", Attributes: []string{"drone"}}))
	must(l.admin.Create(ctx, "services", api.CreateService{Name: "mavlink", Host: "udp:127.0.0.1:14550", Attributes: []string{"telemetry"}}))
	must(l.admin.Create(ctx, "service-policies", api.CreateServicePolicy{Name: "fly", Type: "dial", Identities: []string{"#pilot"}, Services: []string{"@mavlink"}}))
	must(l.admin.Create(ctx, "edge-router-policies", api.CreateEdgeRouterPolicy{Name: "all", Identities: []string{"#all"}, Routers: []string{"#all"}}))
	must(l.admin.Create(ctx, "routers", api.CreateRouter{Name: "mast"}))
}

func toolNames(t *testing.T, s *session) []string {
	t.Helper()
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
		if tool.InputSchema == nil {
			t.Errorf("%s has no input schema", tool.Name)
		}
		if tool.Annotations == nil {
			t.Errorf("%s has no annotations", tool.Name)
			continue
		}
		write := slices.Contains(WriteTools, tool.Name)
		if tool.Annotations.ReadOnlyHint == write {
			t.Errorf("%s: readOnlyHint = %v, want %v", tool.Name, tool.Annotations.ReadOnlyHint, !write)
		}
		if strings.HasPrefix(tool.Name, "delete_") && (tool.Annotations.DestructiveHint == nil || !*tool.Annotations.DestructiveHint) {
			t.Errorf("%s: want destructiveHint true", tool.Name)
		}
	}
	slices.Sort(names)
	return names
}

// TestToolsListed: initialize succeeds, and tools/list offers the read-only set alone by
// default, and write tools only as --allow-write names them.
func TestToolsListed(t *testing.T) {
	l := startLab(t)
	reader := l.enrolled(t, "assistant", role.Reader)
	cases := []struct {
		name  string
		allow []string
		want  []string
	}{
		{"read-only-by-default", nil, readTools},
		{"one-named-write-tool", []string{"update_service"}, append(slices.Clone(readTools), "update_service")},
		{"all", []string{AllWrite}, append(slices.Clone(readTools), WriteTools...)},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			s := connect(t, Config{API: reader, AllowWrite: tt.allow}, "test-client")
			if got := s.InitializeResult(); got == nil || got.ServerInfo == nil || got.ServerInfo.Name != "umbra" {
				t.Fatalf("initialize: got %+v, want server umbra", got)
			}
			want := slices.Sorted(slices.Values(tt.want))
			if got := toolNames(t, s); !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v", got, want)
			}
		})
	}
	if _, err := New(Config{API: reader, AllowWrite: []string{"format_disk"}}); err == nil || !strings.Contains(err.Error(), "update_service") {
		t.Errorf("unknown write tool: got %v, want an error naming the valid ones", err)
	}
}

// TestSummaryAndGet: fleet_summary counts what is there and get_identity shows one
// record, as a reader sees them.
func TestSummaryAndGet(t *testing.T) {
	l := startLab(t)
	populate(t, l)
	s := connect(t, Config{API: l.enrolled(t, "assistant", role.Reader)}, "test-client")
	sum, size := s.object(t, "fleet_summary", map[string]any{})
	ids := sum["identities"].(map[string]any)
	// admin, drone1, drone2 and assistant: two enrolled (admin, assistant), two not.
	if ids["total"] != 4.0 || ids["unenrolled"] != 2.0 || ids["offline"] != 2.0 {
		t.Errorf("identities = %v, want total 4, unenrolled 2, offline 2", ids)
	}
	if sum["services"] != 1.0 || sum["service_policies"] != 1.0 || sum["edge_router_policies"] != 1.0 {
		t.Errorf("counts = services %v, service_policies %v, edge_router_policies %v, want 1 each", sum["services"], sum["service_policies"], sum["edge_router_policies"])
	}
	if r := sum["routers"].(map[string]any); r["total"] != 1.0 || !slices.Contains(r["offline"].([]any), any("mast")) {
		t.Errorf("routers = %v, want mast offline", r)
	}
	if changes := sum["recent_changes"].([]any); len(changes) == 0 {
		t.Error("recent_changes is empty after creates")
	}
	t.Logf("fleet_summary of a small fleet: %d bytes", size)

	got, _ := s.object(t, "get_identity", map[string]any{"name": "drone1"})
	if got["name"] != "drone1" || got["enrolled"] != false || got["role"] != "" {
		t.Errorf("get_identity = %v, want drone1, not enrolled, no role", got)
	}
	if _, ok := got["cert"]; ok {
		t.Error("get_identity shows the raw cert field, want only the listed fields")
	}
	if text, isErr := s.call(t, "get_identity", map[string]any{"name": "nobody"}); !isErr || !strings.Contains(text, "not found") {
		t.Errorf("get_identity nobody: got %q (error %v), want a not-found error", text, isErr)
	}
	page, _ := s.object(t, "list_identities", map[string]any{"attribute": "drone", "limit": 1})
	if page["matched"] != 2.0 || page["returned"] != 1.0 || page["truncated"] != true || page["next_offset"] != 1.0 {
		t.Errorf("list_identities page = %v, want 2 matched, 1 returned, truncated, next_offset 1", page)
	}
	why, _ := s.object(t, "explain_circuit_failure", map[string]any{"identity": "drone1", "service": "mavlink"})
	if why["allowed_now"] != false || len(why["failing_checks"].([]any)) == 0 {
		t.Errorf("explain_circuit_failure drone1 mavlink = %v, want not allowed with failing checks", why)
	}
	evs, _ := s.object(t, "recent_events", map[string]any{"type": "created", "limit": 2})
	items := evs["items"].([]any)
	if evs["returned"] != 2.0 || evs["truncated"] != true || items[1].(map[string]any)["name"] != "assistant" {
		t.Errorf("recent_events created limit 2 = %v, want the newest two (ending with assistant), truncated", evs)
	}
	pol, _ := s.object(t, "get_policy", map[string]any{"name": "all"})
	if pol["kind"] != "edge-router-policy" {
		t.Errorf("get_policy all = %v, want an edge-router-policy", pol)
	}
}

// TestWriteRefusedWhenReadOnly: a write tool called on a read-only server is refused
// with an error that says how to enable it, and nothing changes.
func TestWriteRefusedWhenReadOnly(t *testing.T) {
	l := startLab(t)
	populate(t, l)
	s := connect(t, Config{API: l.admin}, "test-client")
	before := l.dump(t)
	for _, tt := range []struct {
		tool string
		args map[string]any
	}{
		{"update_service", map[string]any{"name": "mavlink", "host": "udp:10.0.0.1:1"}},
		{"delete_identity", map[string]any{"name": "drone1", "id": "x"}},
		{"create_identity", map[string]any{"name": "intruder", "role": "admin"}},
	} {
		text, isErr := s.call(t, tt.tool, tt.args)
		if !isErr || !strings.Contains(text, "--allow-write "+tt.tool) {
			t.Errorf("%s: got %q (error %v), want a refusal naming --allow-write %s", tt.tool, text, isErr, tt.tool)
		}
	}
	if after := l.dump(t); after != before {
		t.Error("store changed by write tools on a read-only server")
	}
}

// TestReaderRefusedByTheController: a server allowed to write but acting as a reader is
// refused by the controller itself; the call is audited as refused.
func TestReaderRefusedByTheController(t *testing.T) {
	l := startLab(t)
	populate(t, l)
	s := connect(t, Config{API: l.enrolled(t, "assistant", role.Reader), AllowWrite: []string{AllWrite}}, "claude-test")
	before := l.dump(t)
	text, isErr := s.call(t, "update_service", map[string]any{"name": "mavlink", "host": "udp:10.0.0.1:1"})
	if !isErr || !strings.Contains(text, "role reader") {
		t.Errorf("got %q (error %v), want the controller's refusal of a reader", text, isErr)
	}
	if after := l.dump(t); after != before {
		t.Error("store changed by a reader's write")
	}
	var buf bytes.Buffer
	if err := l.admin.Events(context.Background(), &buf, 0, false); err != nil {
		t.Fatal(err)
	}
	want := `"type":"mcp-call","name":"update_service","identity":"assistant","reason":"refused","client":"claude-test"`
	if !strings.Contains(buf.String(), want) {
		t.Errorf("events lack %s:\n%s", want, buf.String())
	}
}

// TestOperatorWritesWithChecks: an operator server edits a service; a deletion needs
// the current id; the edit shows in the trail as an mcp-call.
func TestOperatorWritesWithChecks(t *testing.T) {
	l := startLab(t)
	populate(t, l)
	s := connect(t, Config{API: l.admin, AllowWrite: []string{AllWrite}}, "test-client")
	got, _ := s.object(t, "update_service", map[string]any{"name": "mavlink", "add_attributes": []string{"video"}})
	if !slices.Contains(got["attributes"].([]any), any("video")) {
		t.Errorf("update_service = %v, want video among attributes", got)
	}
	before := l.dump(t)
	if text, isErr := s.call(t, "delete_service", map[string]any{"name": "mavlink", "id": "0000"}); !isErr || !strings.Contains(text, "nothing was deleted") {
		t.Errorf("delete with a wrong id: got %q (error %v), want a refusal", text, isErr)
	}
	if after := l.dump(t); after != before {
		t.Error("store changed by a refused deletion")
	}
	svc, _ := s.object(t, "get_service", map[string]any{"name": "mavlink"})
	if _, isErr := s.call(t, "delete_service", map[string]any{"name": "mavlink", "id": svc["id"]}); isErr {
		t.Error("delete with the right name and id failed")
	}
	var se *api.StatusError
	if _, err := l.admin.Get(context.Background(), "services", "mavlink"); !errors.As(err, &se) || se.Status != http.StatusNotFound {
		t.Errorf("get after delete_service: got %v, want 404", err)
	}
	upd, _ := s.object(t, "update_policy", map[string]any{"name": "fly", "identities": []string{"#pilot", "#ops"}})
	if len(upd["identities"].([]any)) != 2 {
		t.Errorf("update_policy = %v, want two identity roles", upd)
	}
}

// secretScan holds what must not appear in anything the server says.
type secretScan struct {
	needles map[string]string // text -> what it is
}

func newSecretScan(l *lab, jti string) *secretScan {
	keyB64 := base64.StdEncoding.EncodeToString(l.adminKey)
	return &secretScan{needles: map[string]string{
		"-----BEGIN":                   "a PEM block",
		jti:                            "the enrollment token's jti",
		keyB64[len(keyB64)/2-16:][:32]: "the admin key (base64)",
		hex.EncodeToString(l.adminKey[len(l.adminKey)/2:][:16]): "the admin key (hex)",
		string(l.adminKey[len(l.adminKey)/2:][:16]):             "the admin key (raw)",
		"eyJ": "a JWT",
	}}
}

func (sc *secretScan) check(t *testing.T, where, text string) {
	t.Helper()
	for needle, what := range sc.needles {
		if strings.Contains(text, needle) {
			t.Errorf("%s contains %s", where, what)
		}
	}
}

// TestNoSecretInAnyOutput: every tool, called with good and bad arguments on a server
// acting as the admin with every write tool on (tokens not named, so withheld), answers
// without a PEM block, the outstanding token's jti, a JWT or the admin key; the log too.
func TestNoSecretInAnyOutput(t *testing.T) {
	l := startLab(t)
	populate(t, l)
	out, err := l.admin.Create(context.Background(), "identities", api.CreateIdentity{Name: "spare", Attributes: []string{"drone"}})
	if err != nil {
		t.Fatal(err)
	}
	scan := newSecretScan(l, jtiOf(t, out.JWT))
	s := connect(t, Config{API: l.admin, AllowWrite: []string{AllWrite}}, "test-client")
	calls := []struct {
		tool string
		args map[string]any
	}{
		{"fleet_summary", nil},
		{"list_identities", nil},
		{"list_identities", map[string]any{"state": "unenrolled"}},
		{"list_identities", map[string]any{"state": "bogus"}},
		{"list_services", nil},
		{"list_routers", nil},
		{"list_policies", nil},
		{"list_links", nil},
		{"link_health", nil},
		{"get_identity", map[string]any{"name": "admin"}},
		{"get_identity", map[string]any{"name": "spare"}},
		{"get_identity", map[string]any{"name": "nobody"}},
		{"get_router", map[string]any{"name": "mast"}},
		{"get_service", map[string]any{"name": "mavlink"}},
		{"get_policy", map[string]any{"name": "fly"}},
		{"get_policy", map[string]any{"name": "nothing"}},
		{"policy_advisor", map[string]any{"identity": "spare", "service": "mavlink"}},
		{"recent_events", map[string]any{"since": "24h", "limit": 200}},
		{"recent_events", map[string]any{"since": "yesterday"}},
		{"explain_circuit_failure", map[string]any{"identity": "spare", "service": "mavlink"}},
		{"create_identity", map[string]any{"name": "newbie"}},
		{"create_enrollment", map[string]any{"name": "spare"}},
		{"update_identity", map[string]any{"name": "spare", "add_attributes": []string{"south"}}},
		{"update_identity", map[string]any{"name": "spare", "add_attributes": []string{"#bad"}}},
		{"delete_router", map[string]any{"name": "mast", "id": "wrong"}},
		{"delete_policy", map[string]any{"name": "all", "id": "wrong"}},
	}
	for _, c := range calls {
		text, _ := s.call(t, c.tool, c.args)
		scan.check(t, c.tool+" result", text)
		if len(text) > MaxResult {
			t.Errorf("%s: %d bytes, over the %d-byte cap", c.tool, len(text), MaxResult)
		}
		if c.tool == "create_identity" || c.tool == "create_enrollment" {
			if !strings.Contains(text, "withheld") {
				t.Errorf("%s under --allow-write all: %s, want the token withheld", c.tool, text)
			}
		}
	}
	scan.check(t, "the log", s.log.String())
	if !strings.Contains(s.log.String(), "tool=fleet_summary") {
		t.Errorf("log lacks the calls:\n%s", s.log.String())
	}
}

// TestTokenOnlyWhenNamed: create_identity named explicitly hands the token over, and
// says so in its description.
func TestTokenOnlyWhenNamed(t *testing.T) {
	l := startLab(t)
	s := connect(t, Config{API: l.admin, AllowWrite: []string{"create_identity"}}, "test-client")
	res, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range res.Tools {
		if tool.Name == "create_identity" && !strings.Contains(tool.Description, "Returns the one-time enrollment token") {
			t.Errorf("description %q does not say it returns the token", tool.Description)
		}
	}
	got, _ := s.object(t, "create_identity", map[string]any{"name": "drone9"})
	tok, _ := got["enrollment_token"].(string)
	if !strings.HasPrefix(tok, "eyJ") {
		t.Errorf("enrollment_token = %q, want the token", tok)
	}
	if strings.Contains(s.log.String(), tok) {
		t.Error("the token is in the log")
	}
}

// TestSummaryOf10000Identities: the summary of a fleet of 10,000 identities stays under
// MaxResult, whatever the raw list weighs.
func TestSummaryOf10000Identities(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 records")
	}
	const fleet = 10000
	l := startLab(t)
	l.seed(t, fleet, "drone")
	s := connect(t, Config{API: l.enrolled(t, "assistant", role.Reader)}, "test-client")
	sum, size := s.object(t, "fleet_summary", nil)
	if total := sum["identities"].(map[string]any)["total"]; total != float64(fleet+2) {
		t.Errorf("total = %v, want %d", total, fleet+2)
	}
	raw, err := l.admin.List(context.Background(), "identities")
	if err != nil {
		t.Fatal(err)
	}
	rawJSON, _ := json.Marshal(raw)
	t.Logf("fleet_summary: %d bytes; raw list identities JSON: %d bytes (%.0fx)", size, len(rawJSON), float64(len(rawJSON))/float64(size))
	if size >= MaxResult {
		t.Errorf("fleet_summary of %d identities = %d bytes, want under %d", fleet, size, MaxResult)
	}
	page, psize := s.object(t, "list_identities", map[string]any{"limit": 200})
	if psize > MaxResult || page["truncated"] != true {
		t.Errorf("list_identities limit 200: %d bytes truncated=%v, want at most %d and truncated", psize, page["truncated"], MaxResult)
	}
}
