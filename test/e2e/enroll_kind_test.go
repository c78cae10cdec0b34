package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnrollRefusesTheOtherKindsToken: `umbra router enroll` given an identity's token
// and `umbra-agent enroll` given a router's each exit non-zero with one line naming the
// right command and write nothing; the same tokens then enroll with the right commands,
// so the refusals spent neither.
func TestEnrollRefusesTheOtherKindsToken(t *testing.T) {
	dir := t.TempDir()
	ctrlData := filepath.Join(dir, "ctrl")
	must(t, nil, bins.umbra, "controller", "init", "--data", ctrlData, "--listen", freePort(t))
	ctrl := start(t, bins.umbra, "controller", "run", "--data", ctrlData)
	ctrl.waitFor(t, "controller listening", readyTimeout)
	env := []string{"UMBRA_ADMIN=" + filepath.Join(ctrlData, "admin.json")}

	idJWT := filepath.Join(dir, "drone1.jwt")
	routerJWT := filepath.Join(dir, "relay1.jwt")
	must(t, env, bins.umbra, "edge", "create", "identity", "drone1", "--jwt-out", idJWT)
	must(t, env, bins.umbra, "edge", "create", "router", "relay1", "--jwt-out", routerJWT)
	routerData := filepath.Join(dir, "relay1")
	idFile := filepath.Join(dir, "drone1.json")

	refusals := []struct {
		name    string
		bin     string
		args    []string
		wantErr string
		written string
	}{
		{"a router enrolling with an identity token is refused", bins.umbra,
			[]string{"router", "enroll", "--jwt", idJWT, "--data", routerData},
			"enroll: this is an identity token; use `umbra-agent enroll`", routerData},
		{"an agent enrolling with a router token is refused", bins.agent,
			[]string{"enroll", "--jwt", routerJWT, "--out", idFile},
			"enroll: this is a router token; use `umbra router enroll`", idFile},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := run(t, nil, tt.bin, tt.args...)
			if err == nil {
				t.Fatalf("got exit 0 (%q), want a refusal", out)
			}
			if got := strings.TrimSpace(errOut); strings.Count(got, "\n") != 0 || !strings.Contains(got, tt.wantErr) {
				t.Errorf("got stderr %q, want one line with %q", errOut, tt.wantErr)
			}
			if _, err := os.Stat(tt.written); !os.IsNotExist(err) {
				t.Errorf("got %s written (stat: %v), want nothing written", tt.written, err)
			}
		})
	}

	// Neither token was spent: each enrolls with its own command.
	if out := must(t, nil, bins.umbra, "router", "enroll", "--jwt", routerJWT, "--data", routerData); !strings.Contains(out, "router enrolled") {
		t.Errorf("got %q from router enroll with the router token, want \"router enrolled\"", out)
	}
	if out := must(t, nil, bins.agent, "enroll", "--jwt", idJWT, "--out", idFile); !strings.Contains(out, "enrolled drone1") {
		t.Errorf("got %q from umbra-agent enroll with the identity token, want \"enrolled drone1\"", out)
	}
}
