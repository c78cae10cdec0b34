// Package initramfs assembles the firmware image QEMU boots: a newc cpio archive holding
// the init program, the static umbra-agent, the kernel modules the board's network needs,
// the enrollment token and the configuration init reads (package bootcfg). It writes the
// archive and nothing else: no compression (QEMU loads it as is, and a TCG-emulated
// kernel would spend seconds inflating it), no signing.
package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
	"github.com/umbranet/umbra/firmware/initramfs/kmod"
	"github.com/umbranet/umbra/firmware/initramfs/newc"
)

// Where things go in the image.
const (
	initPath   = "/init" // the kernel runs /init from an initramfs
	moduleDir  = "/lib/modules"
	consoleDev = "/dev/console"
	// consoleMajor and consoleMinor are /dev/console's device numbers. The kernel opens
	// it as init's stdin, stdout and stderr before init can mount devtmpfs, so it must
	// be in the archive.
	consoleMajor, consoleMinor = 5, 1
)

// Spec says what goes into an image. Paths are on the building machine; the binaries
// must be built for the board (GOOS=linux GOARCH=arm64 CGO_ENABLED=0).
type Spec struct {
	// Init is the init program (firmware/initramfs/init).
	Init string
	// Agent is the umbra-agent binary.
	Agent string
	// Token is the enrollment token file; empty builds an image without one, whose
	// init expects an identity already there (none is, in a RAM-only image).
	Token string
	// ModulesDir is the kernel's unpacked lib/modules/VERSION directory; empty when the
	// kernel needs no modules.
	ModulesDir string
	// Modules names the modules to load; their dependencies are added before them.
	Modules []string
	// Config is the configuration init reads. Build fills in Modules and, when zero,
	// Built.
	Config bootcfg.Config
}

// Build writes the image to w and returns the configuration it baked in.
func Build(w io.Writer, s Spec) (bootcfg.Config, error) {
	cfg := s.Config
	if cfg.Built.IsZero() {
		cfg.Built = time.Now().UTC().Truncate(time.Second)
	}
	var mods []kmod.Module
	if len(s.Modules) > 0 {
		if s.ModulesDir == "" {
			return cfg, fmt.Errorf("initramfs: modules %v asked for without a modules directory", s.Modules)
		}
		tree, err := kmod.Open(s.ModulesDir)
		if err != nil {
			return cfg, fmt.Errorf("initramfs: %w", err)
		}
		if mods, err = tree.Resolve(s.Modules...); err != nil {
			return cfg, fmt.Errorf("initramfs: %w", err)
		}
	}
	cfg.Modules = nil
	for _, m := range mods {
		cfg.Modules = append(cfg.Modules, path.Join(moduleDir, m.Name+".ko"))
	}
	conf, err := cfg.Encode()
	if err != nil {
		return cfg, fmt.Errorf("initramfs: %w", err)
	}

	a := newc.NewWriter(w)
	for _, d := range []struct {
		name string
		perm os.FileMode
	}{
		{"/dev", 0o755}, {"/proc", 0o555}, {"/sys", 0o555}, {"/run", 0o755},
		{"/tmp", 0o777 | os.ModeSticky}, {"/bin", 0o755}, {"/etc", 0o755}, {"/etc/umbra", 0o700},
		{"/var/lib/umbra", 0o700},
	} {
		if err := a.Dir(d.name, d.perm); err != nil {
			return cfg, fmt.Errorf("initramfs: %w", err)
		}
	}
	if err := a.CharDev(consoleDev, 0o600, consoleMajor, consoleMinor); err != nil {
		return cfg, fmt.Errorf("initramfs: %w", err)
	}
	files := []copySpec{{s.Init, initPath, 0o755}, {s.Agent, cfg.Agent, 0o755}}
	if s.Token != "" {
		files = append(files, copySpec{s.Token, cfg.Token, 0o600})
	}
	for i, m := range mods {
		files = append(files, copySpec{m.Path, cfg.Modules[i], 0o644})
	}
	for _, f := range files {
		if err := addFile(a, f.src, f.dst, f.perm); err != nil {
			return cfg, err
		}
	}
	if err := a.File(bootcfg.Path, 0o644, int64(len(conf)), bytes.NewReader(conf)); err != nil {
		return cfg, fmt.Errorf("initramfs: %w", err)
	}
	if err := a.Close(); err != nil {
		return cfg, fmt.Errorf("initramfs: %w", err)
	}
	return cfg, nil
}

// copySpec is one file to copy from the building machine into the image.
type copySpec struct {
	src, dst string
	perm     os.FileMode
}

// addFile copies one file from the building machine into the archive.
func addFile(a *newc.Writer, src, dst string, perm os.FileMode) error {
	if src == "" {
		return fmt.Errorf("initramfs: no file given for %s", dst)
	}
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", dst, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", dst, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s: %s is not a regular file", dst, src)
	}
	if err := a.File(dst, perm, fi.Size(), f); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
