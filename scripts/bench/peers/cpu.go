package peers

import (
	"fmt"
	"syscall"
	"time"
)

// Self stands for this process wherever a PID is asked for.
const Self = 0

// CPUSecondsPerGB is cpuSeconds per 10^9 bytes moved; 0 when nothing moved.
func CPUSecondsPerGB(cpuSeconds float64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return cpuSeconds / (float64(bytes) / bytesPerGB)
}

// CPUSeconds is the user+system CPU time a process has used so far, in seconds. For Self
// it is this process, from getrusage(RUSAGE_SELF). For any other PID it is that process
// and all its live descendants, with the children they have already reaped, from
// /proc/PID/stat: so sshd's per-connection children count towards the sshd that forked
// them. Linux only for PIDs other than Self.
func CPUSeconds(pid int) (float64, error) {
	if pid == Self {
		return selfCPUSeconds(), nil
	}
	return treeCPUSeconds(pid)
}

// CPUMeter measures the CPU time a set of processes uses between StartCPUMeter and
// Seconds. Typical use: start it, move N bytes, then CPUSecondsPerGB(m.Seconds(), N).
type CPUMeter struct {
	pids  []int
	start float64
}

// StartCPUMeter starts measuring the processes pids (Self for this one), each with its
// descendants.
func StartCPUMeter(pids ...int) (*CPUMeter, error) {
	m := &CPUMeter{pids: pids}
	start, err := m.total()
	if err != nil {
		return nil, err
	}
	m.start = start
	return m, nil
}

// Seconds returns the CPU seconds the processes used since StartCPUMeter. A process that
// exited since then and was reaped by a process outside the set is no longer counted, so
// read the meter before stopping what it measures.
func (m *CPUMeter) Seconds() (float64, error) {
	now, err := m.total()
	if err != nil {
		return 0, err
	}
	return now - m.start, nil
}

func (m *CPUMeter) total() (float64, error) {
	var sum float64
	for _, pid := range m.pids {
		s, err := CPUSeconds(pid)
		if err != nil {
			return 0, fmt.Errorf("peers: cpu time of pid %d: %w", pid, err)
		}
		sum += s
	}
	return sum, nil
}

// selfCPUSeconds is this process's user+system CPU time so far, in seconds.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0 // cannot fail for RUSAGE_SELF with a valid pointer
	}
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return (tv(ru.Utime) + tv(ru.Stime)).Seconds()
}
