// Package newc writes cpio archives in the "newc" (SVR4, no CRC) format, the one the
// Linux kernel unpacks as an initramfs. It writes only: directories, regular files,
// symbolic links and character devices, with owner root and a fixed modification time,
// so the same inputs always give the same bytes.
//
// It is written by hand because the format is a 110-byte ASCII header per entry and the
// kernel needs nothing more; a library would add a module for forty lines.
package newc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Format constants (see the kernel's Documentation/driver-api/early-userspace/buffer-format.rst).
const (
	magic      = "070701"
	headerSize = 110
	align      = 4
	trailer    = "TRAILER!!!"
	// dirPerm is the mode of the parent directories the Writer creates on its own.
	dirPerm = 0o755
)

// File type bits of the header's mode field (S_IFMT values).
const (
	typeDir     = 0o040000
	typeRegular = 0o100000
	typeSymlink = 0o120000
	typeCharDev = 0o020000
)

// Writer writes one archive. Entries are added in order; a parent directory that was not
// added before its first child is added just before it (mode 0755), since the kernel
// cannot create a file in a directory that does not exist yet. Close writes the trailer.
type Writer struct {
	w      io.Writer
	ino    uint32
	seen   map[string]bool
	closed bool
	err    error
}

// NewWriter returns a Writer that writes the archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, seen: map[string]bool{}}
}

// header is one entry's metadata.
type header struct {
	name         string
	mode         uint32
	nlink        uint32
	size         int64
	rmaj, rmin   uint32
	isTrailerEnt bool
}

// Dir adds a directory.
func (w *Writer) Dir(name string, perm fs.FileMode) error {
	name, err := w.prepare(name)
	if err != nil {
		return err
	}
	return w.entry(header{name: name, mode: typeDir | unixPerm(perm), nlink: 2}, nil)
}

// File adds a regular file of size bytes read from r.
func (w *Writer) File(name string, perm fs.FileMode, size int64, r io.Reader) error {
	name, err := w.prepare(name)
	if err != nil {
		return err
	}
	if size < 0 || size > 0xffffffff {
		return w.fail(fmt.Errorf("newc: %s: size %d does not fit the format's 32 bits", name, size))
	}
	return w.entry(header{name: name, mode: typeRegular | unixPerm(perm), nlink: 1, size: size}, r)
}

// Symlink adds a symbolic link name pointing at target.
func (w *Writer) Symlink(name, target string) error {
	name, err := w.prepare(name)
	if err != nil {
		return err
	}
	return w.entry(header{name: name, mode: typeSymlink | 0o777, nlink: 1, size: int64(len(target))}, strings.NewReader(target))
}

// CharDev adds a character device node with the given major and minor numbers.
func (w *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	name, err := w.prepare(name)
	if err != nil {
		return err
	}
	return w.entry(header{name: name, mode: typeCharDev | unixPerm(perm), nlink: 1, rmaj: major, rmin: minor}, nil)
}

// Close writes the trailer that ends the archive. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	return w.entry(header{name: trailer, nlink: 1, isTrailerEnt: true}, nil)
}

// unixPerm turns Go's permission and special bits into the low 12 bits of a Unix mode.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// prepare cleans name to the archive's relative form and adds its missing parents.
func (w *Writer) prepare(name string) (string, error) {
	if w.err != nil {
		return "", w.err
	}
	if w.closed {
		return "", errors.New("newc: write after Close")
	}
	clean := strings.TrimPrefix(path.Clean("/"+name), "/")
	if clean == "" || clean == trailer {
		return "", w.fail(fmt.Errorf("newc: bad entry name %q", name))
	}
	if w.seen[clean] {
		return "", w.fail(fmt.Errorf("newc: %s added twice", clean))
	}
	if dir := path.Dir(clean); dir != "." && !w.seen[dir] {
		if err := w.Dir(dir, dirPerm); err != nil {
			return "", err
		}
	}
	w.seen[clean] = true
	return clean, nil
}

// entry writes a header, the name, the data and the padding after each.
func (w *Writer) entry(h header, data io.Reader) error {
	if w.err != nil {
		return w.err
	}
	ino := uint32(0)
	if !h.isTrailerEnt {
		w.ino++
		ino = w.ino
	}
	// Fields: ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check.
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		magic, ino, h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rmaj, h.rmin, len(h.name)+1, 0)
	if err := w.write([]byte(hdr + h.name + "\x00")); err != nil {
		return err
	}
	if err := w.pad(headerSize + len(h.name) + 1); err != nil {
		return err
	}
	if h.size == 0 {
		return nil
	}
	n, err := io.CopyN(w.w, data, h.size)
	if err != nil {
		return w.fail(fmt.Errorf("newc: %s: wrote %d of %d bytes: %w", h.name, n, h.size, err))
	}
	return w.pad(int(h.size % align))
}

// pad writes the zeros that align the stream after n bytes of an entry's part.
func (w *Writer) pad(n int) error {
	if r := n % align; r != 0 {
		return w.write(make([]byte, align-r))
	}
	return nil
}

func (w *Writer) write(b []byte) error {
	if _, err := w.w.Write(b); err != nil {
		return w.fail(fmt.Errorf("newc: write: %w", err))
	}
	return nil
}

// fail records the first error; every later call returns it.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}
