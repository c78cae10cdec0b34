// Package kmod finds Linux kernel modules in an unpacked modules tree (lib/modules/VERSION
// from a Debian linux-image package) and orders the ones an image needs so that every
// module's dependencies load before it. It reads each module's .modinfo section, so it
// needs no modules.dep (Debian's package ships none: depmod makes it at install time).
// It never loads anything.
package kmod

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Limits of the .modinfo decoder: real modules have a few hundred bytes and a handful of
// dependencies.
const (
	maxModinfoSize = 1 << 20
	maxDepends     = 64
	// maxModules bounds the dependency walk, which a cycle in broken input could
	// otherwise extend.
	maxModules = 256
)

// Modinfo is what a module's .modinfo section says about it.
type Modinfo struct {
	// Name is the module's name as the kernel knows it (underscores, no .ko).
	Name string
	// Depends lists the modules it needs loaded first.
	Depends []string
	// Vermagic is the kernel release and build options it was built for.
	Vermagic string
}

// Module is one module to put in an image.
type Module struct {
	// Name is the module's name, as in Modinfo.
	Name string
	// Path is the .ko file in the tree.
	Path string
}

// Tree is an unpacked modules directory.
type Tree struct {
	dir     string
	paths   map[string]string // module name → file
	builtin map[string]bool   // modules compiled into the kernel
}

// Open indexes the .ko files under dir (a lib/modules/VERSION directory) and reads its
// modules.builtin list, if there is one.
func Open(dir string) (*Tree, error) {
	t := &Tree{dir: dir, paths: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			t.paths[Normalize(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kmod: index %s: %w", dir, err)
	}
	if len(t.paths) == 0 {
		return nil, fmt.Errorf("kmod: no .ko files under %s", dir)
	}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if errors.Is(err, fs.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		base := filepath.Base(strings.TrimSpace(sc.Text()))
		if base != "." && base != "" {
			t.builtin[Normalize(strings.TrimSuffix(base, ".ko"))] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("kmod: modules.builtin: %w", err)
	}
	return t, nil
}

// Normalize turns a module or file name into the kernel's spelling: dashes become
// underscores (virtio-rng.ko is the module virtio_rng).
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// Builtin reports whether the kernel has the module compiled in.
func (t *Tree) Builtin(name string) bool {
	return t.builtin[Normalize(name)]
}

// Resolve returns the modules to load for names, dependencies first, each once. A name
// that is built into the kernel needs nothing and is left out; a name that is neither a
// module nor built in is an error.
func (t *Tree) Resolve(names ...string) ([]Module, error) {
	var out []Module
	done := map[string]bool{}
	visiting := map[string]bool{}
	var visit func(name, wantedBy string) error
	visit = func(name, wantedBy string) error {
		name = Normalize(name)
		if done[name] || t.builtin[name] {
			return nil
		}
		if visiting[name] {
			return fmt.Errorf("kmod: dependency cycle through %s", name)
		}
		if len(visiting)+len(out) >= maxModules {
			return fmt.Errorf("kmod: more than %d modules needed", maxModules)
		}
		p, ok := t.paths[name]
		if !ok {
			if wantedBy != "" {
				return fmt.Errorf("kmod: %s (needed by %s) is neither a module in %s nor built in", name, wantedBy, t.dir)
			}
			return fmt.Errorf("kmod: %s is neither a module in %s nor built in", name, t.dir)
		}
		info, err := ReadModinfo(p)
		if err != nil {
			return err
		}
		visiting[name] = true
		for _, dep := range info.Depends {
			if err := visit(dep, name); err != nil {
				return err
			}
		}
		delete(visiting, name)
		done[name] = true
		out = append(out, Module{Name: name, Path: p})
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadModinfo reads the .modinfo section of the module file at path.
func ReadModinfo(path string) (Modinfo, error) {
	f, err := elf.Open(path)
	if err != nil {
		return Modinfo{}, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return Modinfo{}, fmt.Errorf("kmod: %s has no .modinfo section", path)
	}
	if sec.Size > maxModinfoSize {
		return Modinfo{}, fmt.Errorf("kmod: %s: .modinfo of %d bytes exceeds %d", path, sec.Size, maxModinfoSize)
	}
	data, err := sec.Data()
	if err != nil {
		return Modinfo{}, fmt.Errorf("kmod: %s: .modinfo: %w", path, err)
	}
	info, err := ParseModinfo(data)
	if err != nil {
		return Modinfo{}, fmt.Errorf("kmod: %s: %w", path, err)
	}
	if info.Name == "" {
		info.Name = Normalize(strings.TrimSuffix(filepath.Base(path), ".ko"))
	}
	return info, nil
}

// ParseModinfo decodes a .modinfo section: NUL-terminated key=value strings, with NUL
// padding between them. Keys other than name, depends and vermagic are skipped.
func ParseModinfo(data []byte) (Modinfo, error) {
	var info Modinfo
	if len(data) > maxModinfoSize {
		return info, fmt.Errorf("modinfo of %d bytes exceeds %d", len(data), maxModinfoSize)
	}
	for _, field := range bytes.Split(data, []byte{0}) {
		if len(field) == 0 {
			continue
		}
		key, value, ok := bytes.Cut(field, []byte{'='})
		if !ok {
			return Modinfo{}, fmt.Errorf("modinfo field %q has no '='", truncate(field))
		}
		switch string(key) {
		case "name":
			info.Name = Normalize(string(value))
		case "vermagic":
			info.Vermagic = string(value)
		case "depends":
			if len(value) == 0 {
				continue
			}
			deps := strings.Split(string(value), ",")
			if len(info.Depends)+len(deps) > maxDepends {
				return Modinfo{}, fmt.Errorf("modinfo lists more than %d dependencies", maxDepends)
			}
			for _, d := range deps {
				if d == "" || strings.ContainsAny(d, "/ ") {
					return Modinfo{}, fmt.Errorf("modinfo dependency %q is not a module name", d)
				}
				info.Depends = append(info.Depends, Normalize(d))
			}
		}
	}
	return info, nil
}

// truncate keeps error messages about garbage short.
func truncate(b []byte) []byte {
	const n = 40
	if len(b) > n {
		return b[:n]
	}
	return b
}
