// Package cross checks what `make cross` promises: umbra and umbra-agent build as static
// binaries for linux/arm64, armv7 and armv6, and each runs on the CPU it is built for. The
// binaries run under qemu-user (qemu-aarch64-static, qemu-arm-static from the Debian
// package qemu-user-static, which scripts/setup-deps.sh installs), with the CPU pinned so
// that an armv6 build is proven on an ARM1176 (Pi Zero W) rather than on whatever the
// emulator defaults to.
package cross

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	// buildTimeout bounds one cross build on a loaded two-core machine.
	buildTimeout = 5 * time.Minute
	// runTimeout bounds one emulated command; they take well under a second.
	runTimeout = time.Minute
)

// target is one `make cross` output directory.
type target struct {
	dir     string // bin/linux_<dir>
	goarch  string
	goarm   string
	machine elf.Machine
	qemu    string
	cpu     string // the oldest CPU the target must run on
	stamp   string // what `version` prints for the platform, up to the next separator
}

var targets = []target{
	{"arm64", "arm64", "", elf.EM_AARCH64, "qemu-aarch64-static", "cortex-a53", "linux/arm64,"},
	{"armv7", "arm", "7", elf.EM_ARM, "qemu-arm-static", "cortex-a7", "linux/arm GOARM=7"},
	{"armv6", "arm", "6", elf.EM_ARM, "qemu-arm-static", "arm1176", "linux/arm GOARM=6"},
}

var programs = []string{"umbra-agent", "umbra"}

func TestCrossBuildsAreStaticAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("cross builds take minutes; skipped with -short")
	}
	requireQEMU(t)
	out := t.TempDir()
	for _, tg := range targets {
		t.Run(tg.dir, func(t *testing.T) {
			for _, prog := range programs {
				bin := filepath.Join(out, tg.dir, prog)
				build(t, tg, prog, bin)
				checkStatic(t, bin, tg.machine)
				got := emulate(t, tg.qemu, tg.cpu, bin, "version")
				if !strings.Contains(got, tg.stamp) {
					t.Errorf("%s version on %s: got %q, want it to contain %q", prog, tg.cpu, got, tg.stamp)
				}
			}
		})
	}

	// The armv6 check above proves something only if the emulated ARM1176 really lacks
	// ARMv7: a GOARM=7 binary dies there (SIGILL on the first ARMv7 instruction).
	t.Run("armv7-binary-is-refused-by-an-arm1176", func(t *testing.T) {
		bin := filepath.Join(out, "armv7", "umbra-agent")
		if _, err := os.Stat(bin); err != nil {
			t.Skip("the armv7 build failed above")
		}
		ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
		defer cancel()
		b, err := exec.CommandContext(ctx, "qemu-arm-static", "-cpu", "arm1176", bin, "version").CombinedOutput()
		if err == nil {
			t.Errorf("armv7 umbra-agent on arm1176: ran (%q), want it refused", b)
		}
	})
}

// TestAgentDetectsTheBoardUnderEmulation runs `umbra-agent board` as each ARM build on a
// fake device tree, and on this machine's /proc, where no model is known and the fallback
// must name the binary's own architecture.
func TestAgentDetectsTheBoardUnderEmulation(t *testing.T) {
	if testing.Short() {
		t.Skip("cross builds take minutes; skipped with -short")
	}
	requireQEMU(t)
	tests := []struct {
		name      string
		target    int // index into targets
		model     string
		wantBoard string
		wantGOARM string
	}{
		{"pi-4b-on-arm64", 0, "Raspberry Pi 4 Model B Rev 1.4", "rpi4b", ""},
		{"zero-w-on-armv6", 2, "Raspberry Pi Zero W Rev 1.1", "rpizerow", "6"},
		{"no-device-tree-on-armv7-falls-back-to-generic-arm", 1, "", "generic", ""},
	}
	out := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := targets[tt.target]
			bin := filepath.Join(out, tg.dir, "umbra-agent")
			if _, err := os.Stat(bin); err != nil {
				build(t, tg, "umbra-agent", bin)
			}
			root := t.TempDir()
			if tt.model != "" {
				dt := filepath.Join(root, "proc", "device-tree")
				if err := os.MkdirAll(dt, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dt, "model"), []byte(tt.model+"\x00"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var got struct{ Board, GOARCH, GOARM string }
			raw := emulate(t, tg.qemu, tg.cpu, bin, "board", "--root", root)
			if err := json.Unmarshal([]byte(raw), &got); err != nil {
				t.Fatalf("board output %q: %v", raw, err)
			}
			if got.Board != tt.wantBoard || got.GOARCH != tg.goarch || got.GOARM != tt.wantGOARM {
				t.Errorf("board = %s %s/%s, want %s %s/%s", got.Board, got.GOARCH, got.GOARM, tt.wantBoard, tg.goarch, tt.wantGOARM)
			}
		})
	}
}

// requireQEMU fails the test, naming the fix, when qemu-user is not installed.
func requireQEMU(t *testing.T) {
	t.Helper()
	for _, q := range []string{"qemu-aarch64-static", "qemu-arm-static"} {
		if _, err := exec.LookPath(q); err != nil {
			t.Fatalf("%s is not installed; the cross builds are run under qemu-user. "+
				"Run scripts/setup-deps.sh (as root it installs qemu-user-static; `make test` runs it)", q)
		}
	}
}

// build compiles prog for tg as `make cross` does: static, trimmed, stripped.
func build(t *testing.T, tg target, prog, bin string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/umbranet/umbra/cmd/"+prog)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tg.goarch, "GOARM="+tg.goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s for %s: %v\n%s", prog, tg.dir, err, b)
	}
}

// checkStatic fails unless bin is an ELF for machine with no dynamic loader and no
// shared libraries: what `file` reports as "statically linked".
func checkStatic(t *testing.T, bin string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine got %v, want %v", bin, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has a %v program header, want a static binary", bin, p.Type)
		}
	}
}

// emulate runs bin with args under qemu on cpu and returns its standard output.
func emulate(t *testing.T, qemu, cpu, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), runTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, qemu, append([]string{"-cpu", cpu, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -cpu %s %s %s: %v\n%s", qemu, cpu, filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
