package newc

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// entry is one parsed archive member.
type entry struct {
	name       string
	mode       uint32
	rmaj, rmin uint32
	data       string
}

// parse reads a newc archive the way the kernel's unpacker does, checking the magic and
// the four-byte alignment of every header and every file's data.
func parse(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	off := 0
	for {
		if off%align != 0 {
			t.Fatalf("header at %d is not 4-byte aligned", off)
		}
		if len(b) < off+headerSize || string(b[off:off+6]) != magic {
			t.Fatalf("no newc header at %d", off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, namesize := field(1), field(6), field(9), field(10), field(11)
		name := string(b[off+headerSize : off+headerSize+int(namesize)-1])
		off += headerSize + int(namesize)
		off = (off + align - 1) &^ (align - 1)
		data := string(b[off : off+int(size)])
		off += int(size)
		off = (off + align - 1) &^ (align - 1)
		if name == trailer {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, entry{name, mode, rmaj, rmin, data})
	}
}

func TestArchiveAsTheKernelReadsIt(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.CharDev("/dev/console", 0o600, 5, 1))
	must(w.File("init", 0o755, 5, strings.NewReader("hello")))
	must(w.Dir("etc", 0o700))
	must(w.File("etc/umbra/token", 0o600, 0, strings.NewReader("")))
	must(w.Symlink("bin/sh", "/init"))
	must(w.Close())

	want := []entry{
		{name: "dev", mode: 0o040755},
		{name: "dev/console", mode: 0o020600, rmaj: 5, rmin: 1},
		{name: "init", mode: 0o100755, data: "hello"},
		{name: "etc", mode: 0o040700},
		{name: "etc/umbra", mode: 0o040755},
		{name: "etc/umbra/token", mode: 0o100600},
		{name: "bin", mode: 0o040755},
		{name: "bin/sh", mode: 0o120777, data: "/init"},
	}
	got := parse(t, buf.Bytes())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("archive holds\n%v\nwant\n%v", got, want)
	}
}

func TestSameInputSameBytes(t *testing.T) {
	build := func() []byte {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.File("a/b", 0o644, 3, strings.NewReader("abc"))
		w.Close()
		return buf.Bytes()
	}
	if !bytes.Equal(build(), build()) {
		t.Error("two archives of the same files differ")
	}
}

func TestWriterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  func(w *Writer) error
	}{
		{"same-name-twice", func(w *Writer) error {
			w.Dir("etc", 0o755)
			return w.Dir("/etc/", 0o755)
		}},
		{"short-data", func(w *Writer) error { return w.File("f", 0o644, 10, strings.NewReader("abc")) }},
		{"empty-name", func(w *Writer) error { return w.Dir("/", 0o755) }},
		{"trailer-name", func(w *Writer) error { return w.Dir(trailer, 0o755) }},
		{"write-after-close", func(w *Writer) error {
			w.Close()
			return w.Dir("late", 0o755)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter(io.Discard)
			if err := tc.add(w); err == nil {
				t.Fatal("accepted, want an error")
			}
		})
	}
}

// TestGNUCpioLists checks the archive against GNU cpio where it is installed.
func TestGNUCpioLists(t *testing.T) {
	bin, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio is not installed")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.File("etc/hostname", 0o644, 5, strings.NewReader("board"))
	w.CharDev("dev/console", 0o600, 5, 1)
	w.Close()
	cmd := exec.Command(bin, "-it", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -it: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, " ") != "etc etc/hostname dev dev/console" {
		t.Errorf("cpio lists %v", got)
	}
}
