// Package swtpmtest runs swtpm, a software TPM 2.0, for tests: one process per test,
// serving the raw TPM command stream on a loopback port, with its state in a directory
// that outlives restarts. It is test support only; no program imports it.
//
// swtpm comes from the Debian package of the same name, which scripts/setup-deps.sh
// installs (`make test` runs it). Without it Start fails the test and says so.
package swtpmtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const (
	// startAttempts covers losing the race for free ports to another process.
	startAttempts = 5
	// readyTimeout bounds waiting for swtpm to accept connections.
	readyTimeout = 10 * time.Second
	// pollInterval is how often readiness is probed within that deadline.
	pollInterval = 10 * time.Millisecond
	// stopTimeout is how long swtpm gets to exit on SIGTERM before it is killed.
	stopTimeout = 5 * time.Second
	// rebindTimeout is how long a restart keeps trying to take the same ports back,
	// which the kernel may hold for a moment after the old process exits.
	rebindTimeout = 10 * time.Second
	// maxPort is the highest TCP port; it has no neighbour for the control port.
	maxPort = 65535
	// loopback is where swtpm listens; nothing off the machine can reach it.
	loopback = "127.0.0.1"
)

// TPM is one swtpm process and its state directory.
type TPM struct {
	tb       testing.TB
	stateDir string
	logPath  string
	port     int // server port; the control port is port+1
	cmd      *exec.Cmd
	exited   chan struct{}
	stderr   bytes.Buffer
}

// Start starts a factory-fresh swtpm on free loopback ports and stops it when the test
// ends. It fails the test if swtpm is not installed.
func Start(tb testing.TB) *TPM {
	tb.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		tb.Fatal("swtpm is not installed; the TPM key store is tested against it. " +
			"Run scripts/setup-deps.sh (as root it installs swtpm; `make test` runs it)")
	}
	dir := tb.TempDir()
	s := &TPM{tb: tb, stateDir: filepath.Join(dir, "state"), logPath: filepath.Join(dir, "swtpm.log")}
	if err := os.Mkdir(s.stateDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	var lastErr error
	for range startAttempts {
		port, err := freePortPair()
		if err != nil {
			tb.Fatal(err)
		}
		if lastErr = s.launch(port); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("swtpm did not start: %v", lastErr)
	return nil
}

// Path is what tpm.Open and `umbra-agent enroll --tpm` take: tcp:127.0.0.1:PORT.
func (s *TPM) Path() string { return fmt.Sprintf("tcp:%s:%d", loopback, s.port) }

// Port is the TPM command port; the control port is the next one.
func (s *TPM) Port() int { return s.port }

// Stop ends swtpm, letting it save its state; it is a no-op if swtpm is not running.
func (s *TPM) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.kill()
	}
	s.cmd = nil
}

// Restart stops swtpm and starts it again on the same port with the same state, as a
// device's TPM is across a reboot.
func (s *TPM) Restart() {
	s.tb.Helper()
	s.Stop()
	s.relaunch()
}

// Wipe stops swtpm, deletes its state (seeds included) and starts a factory-fresh TPM
// on the same port: what a TPM clear or a swapped board looks like to a key's owner.
func (s *TPM) Wipe() {
	s.tb.Helper()
	s.Stop()
	if err := os.RemoveAll(s.stateDir); err != nil {
		s.tb.Fatal(err)
	}
	if err := os.Mkdir(s.stateDir, 0o700); err != nil {
		s.tb.Fatal(err)
	}
	s.relaunch()
}

// relaunch starts swtpm on its previous port, retrying while the port is not free yet.
func (s *TPM) relaunch() {
	s.tb.Helper()
	deadline := time.Now().Add(rebindTimeout)
	for {
		err := s.launch(s.port)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("swtpm did not restart on port %d: %v", s.port, err)
		}
		time.Sleep(pollInterval)
	}
}

// launch runs swtpm on port and port+1 and waits until the server port accepts.
func (s *TPM) launch(port int) error {
	s.port = port
	s.stderr.Reset()
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.stateDir,
		"--server", "type=tcp,bindaddr="+loopback+",port="+strconv.Itoa(port),
		"--ctrl", "type=tcp,bindaddr="+loopback+",port="+strconv.Itoa(port+1),
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+s.logPath+",level=1")
	cmd.Stderr = &s.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	addr := net.JoinHostPort(loopback, strconv.Itoa(port))
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("swtpm exited: %s %s", cmd.ProcessState, bytes.TrimSpace(s.stderr.Bytes()))
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, pollInterval)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			s.kill()
			s.cmd = nil
			return fmt.Errorf("port %d not accepting after %v: %v", port, readyTimeout, err)
		}
		select {
		case <-exited:
		case <-time.After(pollInterval):
		}
	}
}

func (s *TPM) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// freePortPair finds a port P such that P and P+1 are both free on loopback.
func freePortPair() (int, error) {
	for {
		l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port == maxPort {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort(loopback, strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return 0, err
		}
	}
}
