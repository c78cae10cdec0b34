//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
)

// Budgets of the agent's supervision.
const (
	// enrollAttempts and enrollRetry: the first attempt may meet a network that is
	// still settling (ARP, the host's NAT); a token the controller refuses fails every
	// attempt the same way.
	enrollAttempts = 5
	enrollRetry    = 3 * time.Second
	// commandTimeout bounds one enrollment or board query.
	commandTimeout = 2 * time.Minute
	// statusPoll is how often init reads the agent's status until it is ready.
	statusPoll = 500 * time.Millisecond
	// rssInterval is how often init reports the agent's memory once it is ready.
	rssInterval = 5 * time.Second
	// restartDelay doubles after each exit of the agent, up to restartDelayMax.
	restartDelay    = 2 * time.Second
	restartDelayMax = 30 * time.Second
	// statusTimeout bounds one status read; maxStatusSize bounds its answer.
	statusTimeout = 5 * time.Second
	maxStatusSize = 1 << 20
)

// reportBoard prints the board umbra-agent detects; a failure is reported, not fatal.
func reportBoard(ctx context.Context, con *console, agent string) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, agent, "board").Output()
	var b struct {
		Board string `json:"board"`
	}
	if err == nil {
		err = json.Unmarshal(out, &b)
	}
	if err != nil || b.Board == "" {
		con.printf("board detection failed: %v %s", err, bytes.TrimSpace(out))
		return
	}
	con.event(bootcfg.EventBoard, "board", b.Board)
}

// enroll redeems the token in the image unless an identity is already there.
func enroll(ctx context.Context, con *console, cfg bootcfg.Config) error {
	if _, err := os.Stat(cfg.Identity); err == nil {
		con.printf("identity %s present", cfg.Identity)
		return nil
	}
	var err error
	for attempt := 1; attempt <= enrollAttempts; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, commandTimeout)
		cmd := exec.CommandContext(cctx, cfg.Agent, "enroll", "--jwt", cfg.Token, "--out", cfg.Identity)
		cmd.Stdout, cmd.Stderr = con.w, con.w
		err = cmd.Run()
		cancel()
		if err == nil {
			con.printf("enrolled: %s", cfg.Identity)
			return nil
		}
		con.printf("enroll attempt %d of %d: %v", attempt, enrollAttempts, err)
		if attempt < enrollAttempts {
			if err := sleep(ctx, enrollRetry); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("init: enrollment failed %d times, last: %w", enrollAttempts, err)
}

// agentArgs is the command line of `umbra-agent run` for cfg.
func agentArgs(cfg bootcfg.Config) []string {
	args := []string{"run", "--identity", cfg.Identity, "--status-socket", cfg.StatusSocket}
	if len(cfg.Routers) > 0 {
		args = append(args, "--routers", strings.Join(cfg.Routers, ","))
	}
	for _, h := range cfg.Hosts {
		args = append(args, "--host", h)
	}
	return args
}

// supervise runs the agent, restarting it with backoff whenever it exits, and reports
// readiness and memory for each run. It returns only when ctx ends.
func supervise(ctx context.Context, con *console, cfg bootcfg.Config) error {
	delay := restartDelay
	for {
		cmd := exec.Command(cfg.Agent, agentArgs(cfg)...)
		cmd.Stdout, cmd.Stderr = con.w, con.w
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("init: start agent: %w", err)
		}
		con.printf("agent started, pid %d", cmd.Process.Pid)
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			watch(wctx, con, cfg, cmd.Process.Pid)
		}()
		err := cmd.Wait()
		stop()
		<-done
		con.printf("agent exited: %v; restarting in %v", err, delay)
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, restartDelayMax)
	}
}

// watch polls the agent's status until it is ready, reports that, then reports its
// memory every rssInterval until ctx ends.
func watch(ctx context.Context, con *console, cfg bootcfg.Config, pid int) {
	want := hostedServices(cfg.Hosts)
	for {
		if st, err := readStatus(ctx, cfg.StatusSocket); err == nil {
			if hosting, ok := ready(st, want); ok {
				con.event(bootcfg.EventReady, "uptime", uptime(), "hosting", strings.Join(hosting, ","))
				break
			}
		}
		if sleep(ctx, statusPoll) != nil {
			return
		}
	}
	for {
		if rss, hwm, err := readRSS(pid); err == nil {
			con.event(bootcfg.EventRSS, "rss_kb", rss, "hwm_kb", hwm)
		}
		if sleep(ctx, rssInterval) != nil {
			return
		}
	}
}

// hostedServices are the service names of --host overrides, the services the board is
// configured to host.
func hostedServices(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		svc, _, _ := strings.Cut(h, "=")
		out = append(out, svc)
	}
	return out
}

// agentStatus is the part of `umbra-agent status` init reads.
type agentStatus struct {
	Links   []linkStatus    `json:"links"`
	Hosting []hostingStatus `json:"hosting"`
}

type linkStatus struct {
	State string `json:"state"`
}

type hostingStatus struct {
	Service string `json:"service"`
	State   string `json:"state"`
}

// ready reports whether the agent has a router link up and binds every service it
// hosts, including each of want; it returns the bound services.
func ready(st agentStatus, want []string) ([]string, bool) {
	up := slices.ContainsFunc(st.Links, func(l linkStatus) bool { return l.State == "up" })
	var bound []string
	for _, h := range st.Hosting {
		if h.State != "bound" {
			return nil, false
		}
		bound = append(bound, h.Service)
	}
	for _, w := range want {
		if !slices.Contains(bound, w) {
			return nil, false
		}
	}
	return bound, up && len(bound) > 0
}

// readStatus reads the agent's status socket (one JSON document per connection).
func readStatus(ctx context.Context, socket string) (agentStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return agentStatus{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(statusTimeout))
	data, err := io.ReadAll(io.LimitReader(c, maxStatusSize))
	if err != nil {
		return agentStatus{}, err
	}
	return parseStatus(data)
}

// parseStatus decodes the agent's status JSON.
func parseStatus(data []byte) (agentStatus, error) {
	var st agentStatus
	if len(data) > maxStatusSize {
		return st, errors.New("status too large")
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return agentStatus{}, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// readRSS returns a process's resident memory and its peak, in kB.
func readRSS(pid int) (rss, hwm int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return parseRSS(f)
}

// parseRSS reads VmRSS and VmHWM from a /proc/PID/status file.
func parseRSS(r io.Reader) (rss, hwm int, err error) {
	sc := bufio.NewScanner(r)
	found := 0
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected %q", key, value)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, errors.New("no VmRSS and VmHWM lines")
	}
	return rss, hwm, nil
}
