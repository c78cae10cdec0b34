//go:build !linux

package linksim

import (
	"errors"
	"os"
)

// errNoNetns is what the network-namespace mode answers on systems without them.
var errNoNetns = errors.New("linksim: network-namespace links need Linux")

func checkNetnsOS() error { return errNoNetns }

// InNamespace runs fn inside a network namespace; only Linux has them.
func InNamespace(name string, fn func() error) error { return errNoNetns }

func openTUN(name string) (*os.File, error) { return nil, errNoNetns }
