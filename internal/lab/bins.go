package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Packages of the binaries, as `go build` names them.
const (
	umbraPkg = "github.com/umbranet/umbra/cmd/umbra"
	agentPkg = "github.com/umbranet/umbra/cmd/umbra-agent"
)

// BuildTimeout bounds building both binaries: generous, since the machine is shared.
const BuildTimeout = 5 * time.Minute

// Bins are the paths of the umbra and umbra-agent binaries.
type Bins struct {
	Umbra string
	Agent string
}

// Build builds umbra and umbra-agent for this machine, static (CGO_ENABLED=0) as `make
// build` does, into dir. It runs `go build` from the current directory, which must be
// inside the module (a test's package directory is).
func Build(ctx context.Context, dir string) (Bins, error) {
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	b := Bins{Umbra: filepath.Join(dir, "umbra"), Agent: filepath.Join(dir, "umbra-agent")}
	for out, pkg := range map[string]string{b.Umbra: umbraPkg, b.Agent: agentPkg} {
		if err := buildOne(ctx, out, pkg); err != nil {
			return Bins{}, err
		}
	}
	return b, nil
}

// BuildUmbra builds only the umbra binary into dir and returns its path.
func BuildUmbra(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, BuildTimeout)
	defer cancel()
	out := filepath.Join(dir, "umbra")
	return out, buildOne(ctx, out, umbraPkg)
}

func buildOne(ctx context.Context, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("lab: build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// Locate finds binaries already built into dir (`make build`'s bin/) and returns their
// absolute paths, so they still work from another working directory or namespace.
func Locate(dir string) (Bins, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Bins{}, fmt.Errorf("lab: %w", err)
	}
	b := Bins{Umbra: filepath.Join(abs, "umbra"), Agent: filepath.Join(abs, "umbra-agent")}
	for _, p := range []string{b.Umbra, b.Agent} {
		if _, err := os.Stat(p); err != nil {
			return Bins{}, fmt.Errorf("lab: %w (run make build)", err)
		}
	}
	return b, nil
}
