package quic

import (
	"errors"
	"syscall"
)

// isICMPError reports whether err is an ICMP error a socket reported on a read: a
// peer's port or host unreachable. (umbra)
func isICMPError(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH)
}
