package peers

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// clockTicksPerSecond converts /proc/PID/stat times to seconds. The kernel reports them
// in USER_HZ, which is 100 on every architecture Linux runs Go on (`getconf CLK_TCK`
// prints it); golang.org/x/sys/unix has no sysconf for Linux to ask at run time.
const clockTicksPerSecond = 100

// Fields of /proc/PID/stat, counted from 1 as in proc(5).
const (
	statPPID   = 4
	statUtime  = 14 // user time of the process
	statStime  = 15 // system time of the process
	statCutime = 16 // user time of its reaped children
	statCstime = 17 // system time of its reaped children
)

// treeCPUSeconds is the CPU time of pid, its live descendants and the children they
// reaped, in seconds.
func treeCPUSeconds(pid int) (float64, error) {
	stats, err := allStats()
	if err != nil {
		return 0, err
	}
	if _, ok := stats[pid]; !ok {
		return 0, fmt.Errorf("no process %d", pid)
	}
	var ticks int64
	for _, p := range append([]int{pid}, tree(stats, pid)...) {
		f := stats[p]
		ticks += f[statUtime] + f[statStime] + f[statCutime] + f[statCstime]
	}
	return float64(ticks) / clockTicksPerSecond, nil
}

// descendants returns the PIDs of pid's live descendants, none if /proc cannot be read.
func descendants(pid int) []int {
	stats, err := allStats()
	if err != nil {
		return nil
	}
	return tree(stats, pid)
}

// tree returns the descendants of pid in stats, parents before children.
func tree(stats map[int]procStat, pid int) []int {
	children := make(map[int][]int)
	for p, f := range stats {
		ppid := int(f[statPPID])
		children[ppid] = append(children[ppid], p)
	}
	var out []int
	queue := children[pid]
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		queue = append(queue, children[p]...)
	}
	return out
}

// procStat holds the numeric fields of one /proc/PID/stat up to statCstime, indexed as
// in proc(5); fields that are not numbers are 0.
type procStat [statCstime + 1]int64

// allStats reads /proc/PID/stat of every process. Processes that exit while it reads are
// left out.
func allStats() (map[int]procStat, error) {
	paths, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	stats := make(map[int]procStat, len(paths))
	for _, path := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited
		}
		f, err := parseStat(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		stats[pid] = f
	}
	return stats, nil
}

// parseStat parses one /proc/PID/stat. The command name, field 2, is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	var f procStat
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return f, fmt.Errorf("no command name")
	}
	rest := bytes.Fields(b[i+1:]) // rest[0] is field 3
	if len(rest) < statCstime-2 {
		return f, fmt.Errorf("%d fields, want at least %d", len(rest)+2, statCstime)
	}
	for n := 4; n <= statCstime; n++ {
		v, err := strconv.ParseInt(string(rest[n-3]), 10, 64)
		if err != nil {
			return f, fmt.Errorf("field %d: %w", n, err)
		}
		f[n] = v
	}
	return f, nil
}
