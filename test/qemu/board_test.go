package qemu

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
	"github.com/umbranet/umbra/internal/lab"
)

// The emulated board: QEMU's virt machine with two Cortex-A53 cores under TCG, as lean
// as CI's two cores allow, and a virtio NIC on user-mode networking. romfile= skips the
// NIC's PXE ROM, which only firmware would use (and which lives in another package).
var qemuArgs = []string{
	"-M", "virt", "-cpu", "cortex-a53", "-smp", "2", "-m", "512M",
	"-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
	"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
}

// kernelCmdline: the PL011 console the test reads; warnings and worse from the kernel;
// power off rather than hang on a panic.
const kernelCmdline = "console=ttyAMA0 loglevel=4 panic=-1"

// Budgets of the test. Booting under TCG takes seconds here, but a loaded CI machine
// can be many times slower.
const (
	readyTimeout = 30 * time.Second // the host's controller and router
	bootTimeout  = 5 * time.Minute  // QEMU start to the board's agent hosting
	dialTimeout  = 2 * time.Minute  // first end-to-end echo
	echoTimeout  = 2 * time.Minute  // the bulk echo
	rssTimeout   = 1 * time.Minute  // a memory report after the echo
	echoBytes    = 1 << 20
	// boardEcho is where the board's init runs its echo service.
	boardEcho = "127.0.0.1:7007"
)

type quickstartJSON struct {
	Controller string `json:"controller"`
	Router     string `json:"router"`
	Admin      string `json:"admin"`
}

// TestBoardEnrollsAndHostsAServiceTheHostDials is the make qemu-test of CONTRACT.md: an
// emulated arm64 board boots the firmware image, its agent enrolls and hosts a service
// that the host dials.
func TestBoardEnrollsAndHostsAServiceTheHostDials(t *testing.T) {
	kernel := os.Getenv(envKernel)
	if kernel == "" {
		t.Skip(envKernel + " is not set; run make qemu-test")
	}
	testStart := time.Now()
	dir := t.TempDir()
	out := os.Getenv(envOut)
	if out != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	// The ground station, on the address the board can reach.
	qsDir := filepath.Join(dir, "qs")
	qs := start(t, "quickstart", bins.umbra, "quickstart", "--dir", qsDir, "--host", hostAddr.Addr().String())
	qs.waitLine(t, "ready", readyTimeout, func(l string) bool { return strings.HasPrefix(l, "ready") }, nil)
	var q quickstartJSON
	data, err := os.ReadFile(filepath.Join(qsDir, "quickstart.json"))
	if err != nil || json.Unmarshal(data, &q) != nil {
		t.Fatalf("quickstart.json: %v\n%s", err, data)
	}
	env := []string{"UMBRA_ADMIN=" + q.Admin}
	edge := func(args ...string) { must(t, env, bins.umbra, append([]string{"edge"}, args...)...) }
	edge("create", "service", "echo", "--host", "tcp:127.0.0.1:1")
	edge("create", "service-policy", "echo-bind", "--type", "bind", "--identities", "#board", "--services", "@echo")
	edge("create", "service-policy", "echo-dial", "--type", "dial", "--identities", "#operator", "--services", "@echo")
	boardJWT, opJWT := filepath.Join(dir, "board1.jwt"), filepath.Join(dir, "op.jwt")
	edge("create", "identity", "board1", "--attr", "board", "--jwt-out", boardJWT)
	edge("create", "identity", "op", "--attr", "operator", "--jwt-out", opJWT)
	opID := filepath.Join(dir, "op.json")
	must(t, nil, bins.agent, "enroll", "--jwt", opJWT, "--out", opID)

	// The firmware image, with the board's token and its router baked in.
	image := filepath.Join(cmp.Or(out, dir), "initramfs.cpio")
	must(t, nil, bins.mkinitramfs,
		"--init", bins.boardInit, "--agent", bins.boardAgent, "--token", boardJWT,
		"--modules", filepath.Join(kernel, "modules"),
		"--routers", q.Router, "--host", "echo=tcp:"+boardEcho, "--echo", boardEcho, "-o", image)

	// Boot.
	args := append([]string{"-kernel", filepath.Join(kernel, "vmlinuz"), "-initrd", image, "-append", kernelCmdline}, qemuArgs...)
	booted := time.Now()
	board := start(t, "qemu-system-aarch64", "qemu-system-aarch64", args...)
	board.keep(out, "console.log")
	isFatal := func(l string) bool {
		ev, _, ok := bootcfg.ParseLine(l)
		return (ok && ev == bootcfg.EventFatal) || strings.Contains(l, "Kernel panic")
	}
	event := func(want string) func(string) bool {
		return func(l string) bool {
			ev, _, ok := bootcfg.ParseLine(l)
			return ok && ev == want
		}
	}
	_, boardFields, _ := bootcfg.ParseLine(board.waitLine(t, "the board's board line", bootTimeout, event(bootcfg.EventBoard), isFatal))
	if boardFields["board"] != "qemu-virt" {
		t.Errorf("the agent on the emulated board detects board %q, want qemu-virt", boardFields["board"])
	}
	_, ready, _ := bootcfg.ParseLine(board.waitLine(t, "the board's agent hosting", bootTimeout, event(bootcfg.EventReady), isFatal))
	bootTime := time.Since(booted)
	if ready["hosting"] != "echo" {
		t.Errorf("the board hosts %q, want echo", ready["hosting"])
	}
	// The controller logged the board's enrollment (it came from inside the guest).
	qs.waitLine(t, "the controller's record of board1 enrolling", readyTimeout, func(l string) bool {
		return strings.Contains(l, "msg=enrolled") && strings.Contains(l, "name=board1")
	}, nil)

	// The host dials the board's service end to end.
	listen := freeTCP(t)
	opSock := filepath.Join(dir, "op.sock")
	start(t, "host umbra-agent", bins.agent, "run", "--identity", opID, "--routers", q.Router,
		"--dial", "echo=tcp:"+listen, "--status-socket", opSock)
	waitUntil(t, readyTimeout, "the host agent's dial listener", func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	firstDial := time.Now()
	waitUntil(t, dialTimeout, "a first byte echoed by the board", func() bool { return echoOnce(listen) == nil })
	t.Logf("first echo through the board %v after the host agent listened", time.Since(firstDial).Round(time.Millisecond))

	sent := make([]byte, echoBytes)
	rand.Read(sent)
	echoStart := time.Now()
	got, err := echo(listen, sent, echoTimeout)
	if err != nil {
		t.Fatalf("echo of %d bytes through the board: %v", len(sent), err)
	}
	echoTime := time.Since(echoStart)
	if !bytes.Equal(got, sent) {
		t.Fatalf("echoed %d bytes, want the %d sent byte-exact", len(got), len(sent))
	}

	// The board reports its agent's memory every few seconds; take one after the echo.
	rssLine := board.waitLineFrom(t, board.lineCount(), "a memory report after the echo", rssTimeout, event(bootcfg.EventRSS), isFatal)
	_, rss, _ := bootcfg.ParseLine(rssLine)

	img, _ := os.Stat(image)
	version, _ := os.ReadFile(filepath.Join(kernel, "version"))
	t.Logf("qemu-test: kernel %s; image %.1f MB", strings.TrimSpace(string(version)), float64(img.Size())/1e6)
	t.Logf("qemu-test: boot to hosting %v (guest uptime %ss at ready)", bootTime.Round(100*time.Millisecond), ready["uptime"])
	t.Logf("qemu-test: guest agent RSS %s kB, peak %s kB (after the echo)", rss["rss_kb"], rss["hwm_kb"])
	t.Logf("qemu-test: %d bytes echoed byte-exact in %v (%.2f MB/s each way)", len(sent), echoTime.Round(time.Millisecond), float64(len(sent))/echoTime.Seconds()/1e6)
	t.Logf("qemu-test: whole test %v", time.Since(testStart).Round(100*time.Millisecond))
}

// echoOnce sends one byte through the dial listener and wants it back.
func echoOnce(addr string) error {
	got, err := echo(addr, []byte{'p'}, 10*time.Second)
	if err == nil && string(got) != "p" {
		err = fmt.Errorf("echoed %q, want \"p\"", got)
	}
	return err
}

// echo writes data through a new connection to addr, closes its sending side, and
// returns everything that comes back.
func echo(addr string, data []byte, timeout time.Duration) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return got, err
	}
	return got, <-werr
}

// freeTCP returns a free loopback TCP address.
func freeTCP(t *testing.T) string {
	t.Helper()
	return lab.MustFree(t, lab.FreeTCP)
}
