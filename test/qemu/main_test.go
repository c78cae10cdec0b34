// Package qemu is the full-system test of the firmware: QEMU's emulated arm64 virt board
// boots a Debian kernel with the firmware initramfs (firmware/initramfs), whose agent
// enrolls with a controller on the host and hosts a service that an agent on the host
// dials end to end.
//
// It runs only when UMBRA_QEMU_KERNEL names an unpacked kernel (a directory with vmlinuz
// and modules/), which scripts/qemu-system-test.sh (`make qemu-test`) prepares; plain
// `go test ./...` skips it at once. It needs root and qemu-system-aarch64.
//
// The board reaches the host through QEMU's user-mode network, which turns the guest's
// connections into ordinary connections of the QEMU process. So that the controller's
// URL in the token and the router address mean the same inside and outside the guest,
// the test re-executes itself in a private network namespace whose loopback also holds
// hostAddr, and runs the controller, the router, QEMU and the host agent there. The
// namespace has no other interface, so no packet of the test leaves the machine, and it
// vanishes with the test's process, whatever way that ends.
package qemu

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/umbranet/umbra/firmware/initramfs/netconf"
)

// Environment of the test.
const (
	// envKernel names the unpacked kernel; unset, the tests skip.
	envKernel = "UMBRA_QEMU_KERNEL"
	// envOut, when set, is a directory where the test keeps the image and the console
	// log for a human to look at.
	envOut = "UMBRA_QEMU_OUT"
	// envBins and envInNetns tell the re-executed test where the binaries are and that
	// it runs in its private namespace.
	envBins    = "UMBRA_QEMU_BINS"
	envInNetns = "UMBRA_QEMU_NETNS"
)

// hostAddr is the host's address as the board sees it, on the namespace's loopback. It
// is in 198.18.0.0/15, the range set aside for benchmarking networks (RFC 2544), which
// no production network uses.
var hostAddr = netip.MustParsePrefix("198.18.0.1/32")

// buildTimeout bounds building the five binaries.
const buildTimeout = 10 * time.Minute

// binaries are the programs the test runs: on the host, and in the board's image.
type binaries struct {
	umbra, agent          string // host
	boardAgent, boardInit string // linux/arm64
	mkinitramfs           string // host
}

func binsIn(dir string) binaries {
	return binaries{
		umbra:       filepath.Join(dir, "umbra"),
		agent:       filepath.Join(dir, "umbra-agent"),
		boardAgent:  filepath.Join(dir, "board-umbra-agent"),
		boardInit:   filepath.Join(dir, "board-init"),
		mkinitramfs: filepath.Join(dir, "mkinitramfs"),
	}
}

// bins is set once by TestMain, in the namespace, before any test runs.
var bins binaries

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv(envKernel) == "" {
		return m.Run() // every test skips
	}
	if os.Getenv(envInNetns) == "" {
		return reexecInNetns()
	}
	bins = binsIn(os.Getenv(envBins))
	if err := setUpNetns(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// reexecInNetns builds the binaries, then runs this test binary again with the same
// arguments in a new network namespace, and returns its exit code.
func reexecInNetns() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "qemu test: needs root, to run in a private network namespace")
		return 1
	}
	if _, err := exec.LookPath("qemu-system-aarch64"); err != nil {
		fmt.Fprintln(os.Stderr, "qemu test: qemu-system-aarch64 is missing; install the Debian package qemu-system-arm (scripts/setup-deps.sh)")
		return 1
	}
	dir, err := os.MkdirTemp("", "umbra-qemu-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildAll(binsIn(dir)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), envInNetns+"=1", envBins+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() > 0 {
			return cmd.ProcessState.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "qemu test: run in a network namespace: %v\n", err)
		return 1
	}
	return 0
}

// buildAll builds the host's and the board's binaries, static like `make build` and
// `make cross`.
func buildAll(b binaries) error {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	builds := []struct {
		out, pkg, goarch string
	}{
		{b.umbra, "github.com/umbranet/umbra/cmd/umbra", ""},
		{b.agent, "github.com/umbranet/umbra/cmd/umbra-agent", ""},
		{b.mkinitramfs, "github.com/umbranet/umbra/firmware/initramfs/cmd/mkinitramfs", ""},
		{b.boardAgent, "github.com/umbranet/umbra/cmd/umbra-agent", "arm64"},
		{b.boardInit, "github.com/umbranet/umbra/firmware/initramfs/init", "arm64"},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, bd := range builds {
		wg.Go(func() {
			cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bd.out, bd.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if bd.goarch != "" {
				cmd.Env = append(cmd.Env, "GOOS=linux", "GOARCH="+bd.goarch)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s for %s: %v\n%s", bd.pkg, cmp.Or(bd.goarch, "the host"), err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// setUpNetns brings the namespace's loopback up and gives it hostAddr.
func setUpNetns() error {
	nc, err := netconf.Open()
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.LinkUp("lo"); err != nil {
		return err
	}
	return nc.AddAddress("lo", hostAddr)
}
