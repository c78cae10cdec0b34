package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// CLI enrolls identities and routers as an operator does, with the real binaries: `umbra
// edge create …` for the token, then `umbra-agent enroll` or `umbra router enroll`. Tokens,
// identity files and router data directories go in Dir, named after what they enroll.
type CLI struct {
	Bins Bins
	// Env is added to this process's environment for admin commands: AdminEnv(admin).
	Env []string
	// Dir holds NAME.jwt, NAME.json (an identity) and NAME/ (a router's data).
	Dir string
}

// Edge runs `umbra edge ARGS...` and returns its stdout; a failure names the command and
// what it printed.
func (c CLI) Edge(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, c.Env, c.Bins.Umbra, append([]string{"edge"}, args...)...)
}

func (c CLI) run(ctx context.Context, env []string, bin string, args ...string) (string, error) {
	out, errOut, err := Run(ctx, env, bin, args...)
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out, errOut)
	}
	return out, nil
}

// EnrollIdentity creates identity name with attrs and enrolls it with a file key; it
// returns the identity file, Dir/NAME.json.
func (c CLI) EnrollIdentity(ctx context.Context, name string, attrs ...string) (string, error) {
	jwt, out := filepath.Join(c.Dir, name+".jwt"), filepath.Join(c.Dir, name+".json")
	args := []string{"create", "identity", name, "--jwt-out", jwt}
	for _, a := range attrs {
		args = append(args, "--attr", a)
	}
	if _, err := c.Edge(ctx, args...); err != nil {
		return "", err
	}
	_, err := c.run(ctx, nil, c.Bins.Agent, "enroll", "--jwt", jwt, "--out", out)
	return out, err
}

// EnrollRouter creates router name with attrs and enrolls it; it returns its data
// directory, Dir/NAME, for `umbra router run --data`.
func (c CLI) EnrollRouter(ctx context.Context, name string, attrs ...string) (string, error) {
	jwt, data := filepath.Join(c.Dir, name+".jwt"), filepath.Join(c.Dir, name)
	args := []string{"create", "router", name, "--jwt-out", jwt}
	for _, a := range attrs {
		args = append(args, "--attr", a)
	}
	if _, err := c.Edge(ctx, args...); err != nil {
		return "", err
	}
	_, err := c.run(ctx, nil, c.Bins.Umbra, "router", "enroll", "--jwt", jwt, "--data", data)
	return data, err
}
