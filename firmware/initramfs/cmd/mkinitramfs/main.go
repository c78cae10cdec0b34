// Command mkinitramfs builds the umbra firmware image for QEMU's virt board: a newc cpio
// archive with the init program, the static umbra-agent, the kernel modules the board's
// network needs and, optionally, an enrollment token. See firmware/initramfs/README.md.
package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/umbranet/umbra/firmware/initramfs"
	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
)

// defaultModules are what Debian's cloud-arm64 kernel needs for a virtio-net-pci NIC;
// virtio_pci and virtio_net are modules there, PL011 and PL031 are built in.
var defaultModules = []string{"virtio_pci", "virtio_net"}

func main() {
	if err := newCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func newCmd() *cobra.Command {
	var (
		spec          initramfs.Spec
		out, addr, gw string
	)
	cfg := bootcfg.Default()
	cmd := &cobra.Command{
		Use:           "mkinitramfs --init FILE --agent FILE --modules DIR -o FILE",
		Short:         "build the umbra firmware initramfs for QEMU's virt board",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Address, err = netip.ParsePrefix(addr); err != nil {
				return fmt.Errorf("mkinitramfs: --address: %w", err)
			}
			if cfg.Gateway, err = netip.ParseAddr(gw); err != nil {
				return fmt.Errorf("mkinitramfs: --gateway: %w", err)
			}
			spec.Config = cfg
			return build(out, spec)
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Init, "init", "", "init program built for the board (required)")
	f.StringVar(&spec.Agent, "agent", "", "umbra-agent built for the board (required)")
	f.StringVar(&spec.Token, "token", "", "enrollment token file to bake in")
	f.StringVar(&spec.ModulesDir, "modules", "", "the kernel's unpacked lib/modules/VERSION directory")
	f.StringSliceVar(&spec.Modules, "module", defaultModules, "kernel modules to load at boot; their dependencies are added")
	f.StringSliceVar(&cfg.Routers, "routers", nil, "edge routers HOST:PORT the agent uses instead of the controller's list")
	f.StringArrayVar(&cfg.Hosts, "host", nil, "SERVICE=PROTO:ADDR: where the agent delivers a hosted service (repeatable)")
	f.StringVar(&cfg.Echo, "echo", "", "loopback IP:PORT where init runs a TCP echo service")
	f.StringVar(&cfg.Interface, "interface", cfg.Interface, "network interface to configure")
	f.StringVar(&addr, "address", cfg.Address.String(), "the interface's IPv4 address/prefix")
	f.StringVar(&gw, "gateway", cfg.Gateway.String(), "default gateway")
	f.StringVarP(&out, "output", "o", "", "image file to write (required)")
	for _, req := range []string{"init", "agent", "output"} {
		cmd.MarkFlagRequired(req)
	}
	return cmd
}

// build writes the image next to out and renames it into place, so a failed build
// leaves no half image behind.
func build(out string, spec initramfs.Spec) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".mkinitramfs-*")
	if err != nil {
		return fmt.Errorf("mkinitramfs: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// The image may hold a one-time token: readable by its owner only.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("mkinitramfs: %w", err)
	}
	cfg, err := initramfs.Build(tmp, spec)
	if err != nil {
		return fmt.Errorf("mkinitramfs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("mkinitramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("mkinitramfs: %w", err)
	}
	fmt.Printf("wrote %s: %d modules, routers %v, built %s\n", out, len(cfg.Modules), cfg.Routers, cfg.Built.Format("2006-01-02T15:04:05Z"))
	return nil
}
