package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// QuickstartFile is the file `umbra quickstart --dir DIR` writes in DIR once its
// controller and router accept connections (CONTRACT).
const QuickstartFile = "quickstart.json"

// QuickstartState is what QuickstartFile says.
type QuickstartState struct {
	// Controller is the controller's URL; Router, the router's HOST:PORT.
	Controller string `json:"controller"`
	Router     string `json:"router"`
	// Admin is the path of the admin identity file.
	Admin string `json:"admin"`
	// Metrics is the URL of the Prometheus metrics, empty when served nowhere.
	Metrics string `json:"metrics,omitempty"`
}

// ReadQuickstart reads the QuickstartFile in dir; it fails unless the file names a
// router and an admin identity.
func ReadQuickstart(dir string) (QuickstartState, error) {
	var s QuickstartState
	data, err := os.ReadFile(filepath.Join(dir, QuickstartFile))
	if err != nil {
		return s, fmt.Errorf("lab: %w", err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("lab: %s: %w", QuickstartFile, err)
	}
	if s.Router == "" || s.Admin == "" {
		return s, fmt.Errorf("lab: %s names no router or admin: %s", QuickstartFile, data)
	}
	return s, nil
}

// AdminEnv is the environment entry that points umbra's admin commands at admin.
func AdminEnv(admin string) string { return "UMBRA_ADMIN=" + admin }

// StartQuickstart runs `umbra quickstart --dir dir` (with args added) for the test t,
// waits for its ready line and returns it with what it wrote in QuickstartFile.
func StartQuickstart(t TB, umbra, dir string, args ...string) (*Proc, QuickstartState) {
	t.Helper()
	p := Start(t, umbra, append([]string{"quickstart", "--dir", dir}, args...)...)
	p.WaitFor(t, "ready", ReadyTimeout)
	s, err := ReadQuickstart(dir)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return p, s
}
