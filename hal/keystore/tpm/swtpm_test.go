package tpm

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
	// swtpmStartAttempts covers losing the race for the free ports to another process.
	swtpmStartAttempts = 5
	// swtpmReadyTimeout bounds waiting for swtpm to accept connections.
	swtpmReadyTimeout = 10 * time.Second
	// swtpmPollInterval is how often readiness is probed within that deadline.
	swtpmPollInterval = 10 * time.Millisecond
	// swtpmStopTimeout is how long swtpm gets to exit on SIGTERM before it is killed.
	swtpmStopTimeout = 5 * time.Second
	// maxPort is the highest TCP port; it has no neighbour for the control port.
	maxPort = 65535
)

// swtpm is a software TPM 2.0 serving the raw command stream on a loopback port, with
// its state in a directory that outlives restarts.
type swtpm struct {
	tb       testing.TB
	stateDir string
	logPath  string
	port     int // server port; the control port is port+1
	cmd      *exec.Cmd
	exited   chan struct{}
	stderr   bytes.Buffer
}

// startSwtpm starts a fresh swtpm for the test and stops it on cleanup. It skips the
// test if swtpm is not installed.
func startSwtpm(tb testing.TB) *swtpm {
	tb.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		tb.Skip("umbra/hal/keystore/tpm: swtpm not installed (apt-get install swtpm); skipping TPM tests")
	}
	dir := tb.TempDir()
	s := &swtpm{tb: tb, stateDir: filepath.Join(dir, "state"), logPath: filepath.Join(dir, "swtpm.log")}
	if err := os.Mkdir(s.stateDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

// path is the Open path of the running swtpm.
func (s *swtpm) path() string { return fmt.Sprintf("%s127.0.0.1:%d", tcpPrefix, s.port) }

// start launches swtpm on free ports and waits until its server port accepts.
func (s *swtpm) start() {
	s.tb.Helper()
	var lastErr error
	for range swtpmStartAttempts {
		port, err := freePortPair()
		if err != nil {
			s.tb.Fatal(err)
		}
		if lastErr = s.launch(port); lastErr == nil {
			return
		}
	}
	s.tb.Fatalf("swtpm did not start: %v", lastErr)
}

func (s *swtpm) launch(port int) error {
	s.port = port
	s.stderr.Reset()
	s.cmd = exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+s.stateDir,
		"--server", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port),
		"--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port+1),
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+s.logPath+",level=1")
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.exited = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	deadline := time.Now().Add(swtpmReadyTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("swtpm exited: %s %s", s.cmd.ProcessState, bytes.TrimSpace(s.stderr.Bytes()))
		default:
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), swtpmPollInterval)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("port %d not accepting after %v: %v", port, swtpmReadyTimeout, err)
		}
		select {
		case <-s.exited:
		case <-time.After(swtpmPollInterval):
		}
	}
}

// stop ends swtpm, letting it save its state; it is a no-op if swtpm is not running.
func (s *swtpm) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(swtpmStopTimeout):
		s.kill()
	}
	s.cmd = nil
}

func (s *swtpm) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// wipe stops swtpm, deletes its state (seeds included) and starts a factory-fresh TPM.
func (s *swtpm) wipe() {
	s.tb.Helper()
	s.stop()
	if err := os.RemoveAll(s.stateDir); err != nil {
		s.tb.Fatal(err)
	}
	if err := os.Mkdir(s.stateDir, 0o700); err != nil {
		s.tb.Fatal(err)
	}
	s.start()
}

// freePortPair finds a port P such that P and P+1 are both free on loopback.
func freePortPair() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if port == maxPort {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
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
