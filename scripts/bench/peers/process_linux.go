package peers

import "syscall"

// childAttr makes the kernel kill a started process if this one dies without Close, as
// after log.Fatal in the benchmark program: sshd and ssh are not left running. Linux
// sends the signal when the forking thread exits, which for Go's unlocked threads is when
// the process exits.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
