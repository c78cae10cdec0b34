package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Runner starts long-running programs with their output in Dir/NAME.log and runs
// commands to completion, all with Env, the way a benchmark's lab does: on this host, or
// on one side of a linksim namespace link (Command).
type Runner struct {
	// Ctx bounds everything the runner starts: its end kills them.
	Ctx context.Context
	// Dir holds the logs.
	Dir string
	// Env is the programs' whole environment; nil means this process's.
	Env []string
	// Timeout bounds one command Run runs; zero means CommandTimeout.
	Timeout time.Duration
	// Command makes a program's command; nil means exec.CommandContext. A namespace
	// link's CommandContext, bound to a side, runs programs inside that namespace.
	Command func(ctx context.Context, bin string, args ...string) *exec.Cmd
	// Prepare, when set, adjusts each command before it starts (SysProcAttr, say).
	Prepare func(*exec.Cmd)
}

func (r Runner) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	mk := r.Command
	if mk == nil {
		mk = exec.CommandContext
	}
	cmd := mk(ctx, bin, args...)
	cmd.Env = r.Env
	if r.Prepare != nil {
		r.Prepare(cmd)
	}
	return cmd
}

// Start starts bin with args, its output in Dir/NAME.log (created anew; the program
// writes to it itself), and returns the running command for the caller to stop
// (StopCmd).
func (r Runner) Start(name, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(r.Dir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := r.command(r.Ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s: %w", name, err)
	}
	return cmd, nil
}

// Run runs bin with args to completion within Timeout; a failure names the command and
// quotes what it printed.
func (r Runner) Run(bin string, args ...string) error {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = CommandTimeout
	}
	ctx, cancel := context.WithTimeout(r.Ctx, timeout)
	defer cancel()
	if out, err := r.command(ctx, bin, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

// Logs is the runner's logs, each cut to its last max bytes (0: whole), for a failure's
// message.
func (r Runner) Logs(max int) string { return Logs(filepath.Join(r.Dir, "*.log"), max) }
