//go:build !linux

package peers

import "syscall"

// childAttr has no parent-death signal to ask for outside Linux: only Close stops the
// started processes.
func childAttr() *syscall.SysProcAttr { return nil }
