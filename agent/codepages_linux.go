package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupCode unmaps the pages of the agent's own executable that this process
// has mapped (its code and read-only data) and returns how many bytes of mappings it
// advised. The pages stay in the kernel's page cache, shared and reclaimable: what the
// agent runs again maps back in on a minor fault, and what ran only while starting
// (flag parsing, every package's init, loading and checking the identity, the first TLS
// handshakes) stops counting against its resident memory. The kernel maps a file's
// cached pages 64 KB around each fault, so an agent that ran a few functions of a package
// holds most of it: idle and linked, the hosting agent held 10.0 MB of its 12.3 MB
// binary. Writable mappings, and read-only ones holding a page that was written, are left
// alone: MADV_DONTNEED on a private mapping throws away what was written.
func releaseStartupCode() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("agent: release start-up code: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("agent: release start-up code: %w", err)
	}
	var advised int64
	for _, m := range cleanMappingsOf(string(smaps), exe) {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.lo, m.hi-m.lo, unix.MADV_DONTNEED); errno != 0 {
			return advised, fmt.Errorf("agent: release start-up code: madvise %#x-%#x: %w", m.lo, m.hi, errno)
		}
		advised += int64(m.hi - m.lo)
	}
	return advised, nil
}

// mapping is an address range of the process.
type mapping struct{ lo, hi uintptr }

// cleanMappingsOf returns the read-only private mappings of file path in smaps (the text
// of /proc/self/smaps) that hold no anonymous page: none was ever written. A
// position-independent build relocates pointers in a segment it then makes read-only
// (RELRO); those pages are private copies, and dropping them would bring back the file's
// unrelocated bytes.
func cleanMappingsOf(smaps, path string) []mapping {
	var (
		out     []mapping
		cur     mapping
		inside  bool // in the fields of a mapping of path
		written bool
	)
	flush := func() {
		if inside && !written {
			out = append(out, cur)
		}
		inside, written = false, false
	}
	for line := range strings.Lines(smaps) {
		if lo, hi, ok := readOnlyMappingOf(line, path); ok {
			flush()
			cur, inside = mapping{lo, hi}, true
			continue
		}
		if isMappingLine(line) {
			flush()
			continue
		}
		if v, ok := strings.CutPrefix(line, "Anonymous:"); ok && inside {
			if kb := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")); kb != "0" {
				written = true
			}
		}
	}
	flush()
	return out
}

// isMappingLine reports whether a line of /proc/self/smaps starts a mapping ("lo-hi
// perms ...") rather than giving one of its fields ("Rss:   12 kB").
func isMappingLine(line string) bool {
	first, _, _ := strings.Cut(line, " ")
	return strings.Contains(first, "-") && !strings.HasSuffix(first, ":")
}

// readOnlyMappingOf parses one line of /proc/self/maps ("lo-hi perms offset dev inode
// path") and returns its range if it maps file path privately without write access.
func readOnlyMappingOf(line, path string) (lo, hi uintptr, ok bool) {
	f := strings.Fields(line)
	if len(f) != 6 || f[5] != path || len(f[1]) != 4 || f[1][0] != 'r' || f[1][1] != '-' || f[1][3] != 'p' {
		return 0, 0, false
	}
	l, h, found := strings.Cut(f[0], "-")
	if !found {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(l, 16, 64)
	b, err2 := strconv.ParseUint(h, 16, 64)
	if err1 != nil || err2 != nil || b <= a {
		return 0, 0, false
	}
	return uintptr(a), uintptr(b), true
}
