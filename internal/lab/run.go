package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CommandTimeout bounds one command run to completion (an admin command, an enrollment).
const CommandTimeout = 30 * time.Second

// Run runs bin with args to completion, within CommandTimeout, with env added to this
// process's environment, and returns its stdout, its stderr and its error.
func Run(ctx context.Context, env []string, bin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, CommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// Must runs a command that has to succeed for the test t and returns its stdout.
func Must(t TB, env []string, bin string, args ...string) string {
	t.Helper()
	out, errOut, err := Run(context.Background(), env, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, errOut)
	}
	return out
}
