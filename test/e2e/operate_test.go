package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"umbra/internal/identity"
)

// TestEnrollNeverDestroysAnIdentity: another identity's token aimed at a device's identity
// file is refused without --force and spends nothing; with --force the file is replaced,
// whole, once the new enrollment succeeded.
func TestEnrollNeverDestroysAnIdentity(t *testing.T) {
	m := startMesh(t)
	idFile := m.enroll("drone1", "drone")
	before, err := os.ReadFile(idFile)
	if err != nil {
		t.Fatal(err)
	}
	jwt := filepath.Join(m.dir, "spare.jwt")
	m.edge("create", "identity", "spare", "--jwt-out", jwt)

	_, errOut, err := run(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile)
	if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "--force") {
		t.Errorf("enroll over drone1's identity file: err %v, stderr %q; want one line refusing and naming --force", err, errOut)
	}
	if after, _ := os.ReadFile(idFile); string(after) != string(before) {
		t.Fatalf("a refused enrollment changed drone1's identity file")
	}

	// The token was not spent: with --force it enrolls, and the file is spare's now.
	must(t, nil, bins.agent, "enroll", "--jwt", jwt, "--out", idFile, "--force")
	id, err := identity.Load(idFile)
	if err != nil || id.Name != "spare" {
		t.Fatalf("identity file after enroll --force: %v, name %q; want spare", err, id.Name)
	}
	fi, err := os.Stat(idFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity file after enroll --force: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

// TestEdgeGetAndUpdate: an operator reads one record, changes it in place with the
// create flags and the attribute edits, and a refused update changes nothing.
func TestEdgeGetAndUpdate(t *testing.T) {
	m := startMesh(t)
	m.edge("create", "identity", "drone1", "--attr", "drone", "--attr", "north", "--jwt-out", filepath.Join(m.dir, "d.jwt"))
	m.edge("create", "service", "mavlink", "--host", "udp:127.0.0.1:14550")
	m.edge("update", "identity", "drone1", "--add-attr", "relay", "--remove-attr", "north")
	m.edge("update", "service", "mavlink", "--host", "udp:127.0.0.1:14551", "--intercept", "udp:127.0.0.1:14560")

	get := func(kind, name string) map[string]any {
		t.Helper()
		var rec map[string]any
		out := m.edge("get", kind, name, "-o", "json")
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatalf("get %s %s -o json: %v\n%s", kind, name, err, out)
		}
		return rec
	}
	if got := jsonText(get("identity", "drone1")["attributes"]); got != `["drone","relay"]` {
		t.Errorf("drone1's attributes = %s, want [drone relay]", got)
	}
	svc := get("service", "mavlink")
	if svc["host"] != "udp:127.0.0.1:14551" || svc["intercept"] != "udp:127.0.0.1:14560" {
		t.Errorf("mavlink = %v, want host udp:127.0.0.1:14551 and intercept udp:127.0.0.1:14560", svc)
	}
	if out := m.edge("get", "service", "mavlink"); !strings.Contains(out, "host: udp:127.0.0.1:14551") {
		t.Errorf("get service mavlink (table) = %q, want a host line", out)
	}

	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"unknown-name", []string{"update", "service", "nothing", "--host", "tcp:127.0.0.1:1"}, "not found"},
		{"unknown-kind", []string{"update", "gadget", "x"}, "want one of"},
		{"unknown-flag", []string{"update", "service", "mavlink", "--colour", "red"}, "unknown flag"},
		{"bad-address", []string{"update", "service", "mavlink", "--host", "tcp:nowhere"}, "host"},
		{"bad-role", []string{"update", "identity", "drone1", "--add-attr", "#x"}, "attribute"},
		{"nothing-to-update", []string{"update", "service", "mavlink"}, "nothing to update"},
		{"unknown-get-kind", []string{"get", "gadget", "x"}, "want one of"},
		{"unknown-edge-command", []string{"frobnicate"}, "want one of"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := m.edge("get", "service", "mavlink", "-o", "json") + m.edge("get", "identity", "drone1", "-o", "json")
			_, errOut, err := run(t, m.env, bins.umbra, append([]string{"edge"}, tt.args...)...)
			if err == nil || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("edge %s: err %v, stderr %q; want one line with %q", strings.Join(tt.args, " "), err, errOut, tt.want)
			}
			if after := m.edge("get", "service", "mavlink", "-o", "json") + m.edge("get", "identity", "drone1", "-o", "json"); after != before {
				t.Errorf("a refused command changed the records")
			}
		})
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
