package agent

import (
	"bufio"
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
// binary. Writable mappings are left alone; MADV_DONTNEED on a private mapping would
// throw away what was written.
func releaseStartupCode() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("agent: release start-up code: %w", err)
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("agent: release start-up code: %w", err)
	}
	defer maps.Close()
	var advised int64
	lines := bufio.NewScanner(maps)
	for lines.Scan() {
		lo, hi, ok := readOnlyMappingOf(lines.Text(), exe)
		if !ok {
			continue
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, lo, hi-lo, unix.MADV_DONTNEED); errno != 0 {
			return advised, fmt.Errorf("agent: release start-up code: madvise %#x-%#x: %w", lo, hi, errno)
		}
		advised += int64(hi - lo)
	}
	if err := lines.Err(); err != nil {
		return advised, fmt.Errorf("agent: release start-up code: read maps: %w", err)
	}
	return advised, nil
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
