package firmware

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var units = []string{"umbra-agent.service", "umbra-enroll.service"}

// TestUnitsVerify runs `systemd-analyze verify` on the units inside a root that holds
// them, the programs they start, and this machine's own units (sysinit.target and
// friends), so that a misspelt key or section fails the test.
func TestUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd); the units are not verified")
	}
	var hostUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "sysinit.target")); err == nil {
			hostUnits = d
			break
		}
	}
	if hostUnits == "" {
		t.Skip("systemd-analyze is installed but systemd's units are not; the units are not verified")
	}
	root := t.TempDir()
	for _, d := range []string{"etc/systemd/system", "usr/local/bin", "usr/local/lib/umbra", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "-a", hostUnits, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", hostUnits, err, out)
	}
	for _, u := range units {
		copyFile(t, filepath.Join(bundle, u), filepath.Join(root, "etc/systemd/system", u), 0o644)
	}
	copyFile(t, filepath.Join(bundle, "umbra-firstboot"), filepath.Join(root, "usr/local/lib/umbra/umbra-firstboot"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/umbra-agent"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no", "--root=" + root}, units...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// systemd's own rating of the agent's sandbox, 0 (locked down) to 10 (none). The
	// unit rates 2.1; ProtectKernelTunables and PrivateDevices, which the LED and the key
	// stores rule out, are most of what is left.
	out, err = exec.Command(analyze, "security", "--offline=true", "--root="+root,
		fmt.Sprintf("--threshold=%d", maxAgentExposure), "umbra-agent.service").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "unrecognized option") {
			t.Skipf("this systemd-analyze cannot rate units offline: %s", out)
		}
		t.Errorf("systemd-analyze security rates umbra-agent.service above %.1f: %v\n%s", float64(maxAgentExposure)/10, err, lastLines(string(out), 3))
	}
}

// maxAgentExposure is the highest exposure level systemd-analyze security may give the
// agent's unit, in its --threshold unit of tenths.
const maxAgentExposure = 30

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestAgentUnitIsHardened checks the settings the issue asks of the agent's unit: its own
// user, no new privileges, a read-only system, readiness and a watchdog.
func TestAgentUnitIsHardened(t *testing.T) {
	unit := readUnit(t, "umbra-agent.service")
	for _, want := range []string{
		"Type=notify",
		"WatchdogSec=30s",
		"User=umbra",
		"NoNewPrivileges=yes",
		"ProtectSystem=strict",
		"CapabilityBoundingSet=",
		"StateDirectory=umbra",
		"StateDirectoryMode=0700",
		"Restart=always",
		"After=network-online.target time-sync.target umbra-enroll.service",
		"ConditionPathExists=/var/lib/umbra/ID.json",
		"EnvironmentFile=-/etc/umbra/agent.conf",
	} {
		if !unit[want] {
			t.Errorf("umbra-agent.service lacks the line %q", want)
		}
	}
}

// TestEnrollUnitRunsOnceWithAToken checks that first-boot enrollment runs only while
// there is a token on either boot partition path and no identity yet.
func TestEnrollUnitRunsOnceWithAToken(t *testing.T) {
	unit := readUnit(t, "umbra-enroll.service")
	for _, want := range []string{
		"Type=oneshot",
		"ConditionPathExists=!/var/lib/umbra/ID.json",
		"ConditionPathExists=|/boot/firmware/umbra-token.jwt",
		"ConditionPathExists=|/boot/umbra-token.jwt",
		"Before=umbra-agent.service",
		"ExecStart=/usr/local/lib/umbra/umbra-firstboot",
	} {
		if !unit[want] {
			t.Errorf("umbra-enroll.service lacks the line %q", want)
		}
	}
}

// readUnit returns the set of a unit file's lines, comments left out.
func readUnit(t *testing.T, name string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, name))
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines[l] = true
		}
	}
	return lines
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
