//go:build linux

package main

import (
	"fmt"
	"io"
	"net"
)

// startEcho serves a TCP echo on addr until the listener is closed: whatever a client
// sends comes back, and the connection closes after the client's end does. It is the
// service a board without an application hosts for bring-up and tests.
func startEcho(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("init: echo service: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				if tc, ok := c.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}()
		}
	}()
	return ln, nil
}
