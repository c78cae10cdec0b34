package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusedBeforeAnyCall: a bad --role or a non-loopback --http is refused with the
// valid choices named, before any identity is read or the controller called.
func TestRefusedBeforeAnyCall(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.json")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"create-with-an-unknown-role", []string{"edge", "--admin", missing, "create", "identity", "x", "--role", "root", "--jwt-out", missing}, "reader|operator|admin"},
		{"update-with-an-unknown-role", []string{"edge", "--admin", missing, "update", "identity", "x", "--role", "superuser"}, "reader|operator|admin"},
		{"mcp-on-a-network-address", []string{"mcp", "--admin", missing, "--http", "0.0.0.0:8765"}, "loopback"},
		{"mcp-without-an-identity", []string{"mcp"}, "--admin FILE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(adminEnv, "")
			root := newRoot()
			root.SetArgs(tt.args)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line with %q", err, tt.want)
			}
		})
	}
}
