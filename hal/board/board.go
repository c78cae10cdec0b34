// Package board finds out which board the agent runs on: it reads the device tree's model
// and serial number (or, where there is no device tree, the Model and Serial lines of
// /proc/cpuinfo) and looks the model up in package boards. It only reads; it drives no
// hardware and never fails for want of a device tree, falling back to the generic board
// of the running architecture.
package board

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/umbranet/umbra/boards"
)

// Files read, relative to Config.Root. /proc/device-tree is the kernel's link to
// /sys/firmware/devicetree/base.
const (
	modelPath  = "proc/device-tree/model"
	serialPath = "proc/device-tree/serial-number"
	cpuinfo    = "proc/cpuinfo"
)

// Config says where to look; its zero value inspects this machine.
type Config struct {
	// Root is the filesystem the /proc paths are read from, without the leading slash.
	// Nil means the machine's root, os.DirFS("/"); tests pass a fake device tree.
	Root fs.FS
	// GOARCH picks the fallback board when the model is unknown. Empty means
	// runtime.GOARCH.
	GOARCH string
}

// Info is what detection found.
type Info struct {
	// Board is the matched board, or boards.Fallback(GOARCH) when the model is unknown.
	Board boards.Board
	// Model is the model string as the kernel reports it ("Raspberry Pi 4 Model B Rev
	// 1.4"); empty when the kernel reports none.
	Model string
	// Serial is the board's serial number ("10000000abcdef01" on a Pi); empty when the
	// kernel reports none.
	Serial string
}

// Detect identifies the board. A missing file is not an error (most amd64 machines have
// no device tree); an unreadable one is.
func Detect(cfg Config) (Info, error) {
	root := cfg.Root
	if root == nil {
		root = os.DirFS("/")
	}
	goarch := cfg.GOARCH
	if goarch == "" {
		goarch = runtime.GOARCH
	}
	var info Info
	var err error
	if info.Model, err = readDTString(root, modelPath); err != nil {
		return Info{}, err
	}
	if info.Serial, err = readDTString(root, serialPath); err != nil {
		return Info{}, err
	}
	// Without a device tree (ACPI arm64 servers, amd64, some older Pi kernels that
	// print the same facts in cpuinfo) fall back to /proc/cpuinfo's lines.
	if info.Model == "" || info.Serial == "" {
		model, serial, err := readCPUInfo(root)
		if err != nil {
			return Info{}, err
		}
		if info.Model == "" {
			info.Model = model
		}
		if info.Serial == "" {
			info.Serial = serial
		}
	}
	b, ok := boards.ByModel(info.Model)
	if !ok {
		b = boards.Fallback(goarch)
	}
	info.Board = b
	return info, nil
}

// readDTString reads one device-tree string property: "" if it is absent. Device-tree
// strings end in a NUL byte (a string list has one after each entry), which is trimmed
// with any surrounding white space.
func readDTString(root fs.FS, path string) (string, error) {
	b, err := fs.ReadFile(root, path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("board: %w", err)
	}
	return strings.TrimSpace(string(bytes.TrimRight(b, "\x00"))), nil
}

// readCPUInfo returns the values of the "Model" and "Serial" lines of /proc/cpuinfo,
// "" for those that are missing. Serials of all zeros (what kernels print when the
// firmware told them none) count as missing.
func readCPUInfo(root fs.FS) (model, serial string, err error) {
	b, err := fs.ReadFile(root, cpuinfo)
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("board: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch strings.TrimSpace(key) {
		case "Model":
			model = value
		case "Serial":
			if strings.Trim(value, "0") != "" {
				serial = value
			}
		}
	}
	return model, serial, sc.Err()
}
