package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// DefaultStatusSocket is where `umbra-agent run` and `umbra-agent status` meet by default.
const DefaultStatusSocket = "/run/umbra-agent.sock"

// statusTimeout bounds one status exchange.
const statusTimeout = 5 * time.Second

// listenStatus opens the status socket with mode 0600, replacing a stale one.
func listenStatus(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		// A socket nobody answers on is left over from an agent that died.
		if c, err := net.DialTimeout("unix", path, statusTimeout); err == nil {
			c.Close()
			return nil, fmt.Errorf("agent: status socket %s: another agent is running", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("agent: status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("agent: status socket: %w", err)
	}
	return ln, nil
}

// serveStatus writes the status as JSON to every connection until ctx ends.
func (a *Agent) serveStatus(ctx context.Context, ln net.Listener) {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(statusTimeout))
		json.NewEncoder(c).Encode(a.Status())
		c.Close()
	}
}

// maxStatusSize bounds what a status client reads.
const maxStatusSize = 1 << 20

// ReadStatus asks the agent listening on path for its status.
func ReadStatus(ctx context.Context, path string) (Status, error) {
	var st Status
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return st, fmt.Errorf("status: is the agent running? %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(statusTimeout))
	data, err := io.ReadAll(io.LimitReader(c, maxStatusSize))
	if err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, errors.New("status: the agent answered something that is not its status")
	}
	return st, nil
}
