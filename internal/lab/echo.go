package lab

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// udpEchoBuffer holds the largest datagram a UDP echo answers whole.
const udpEchoBuffer = 64 << 10

// Server is a TCP server whose Close stops accepting, closes every connection still
// open and waits for their handlers.
type Server struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
	once  sync.Once
}

// Serve runs handle on each connection ln accepts, in its own goroutine, and closes the
// connection once handle returns.
func Serve(ln net.Listener, handle func(net.Conn)) *Server {
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.done {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				handle(c)
			})
		}
	})
	return s
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and waits for its handlers. Calling it again does nothing.
func (s *Server) Close() {
	s.once.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		s.done = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// Echo answers every byte of c with itself, after writing greeting and a newline if
// greeting is set, and half-closes c once the far end has.
func Echo(c net.Conn, greeting string) {
	if greeting != "" {
		fmt.Fprintln(c, greeting)
	}
	io.Copy(c, c)
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	}
}

// ServeEcho echoes every connection ln accepts (Echo, with no greeting).
func ServeEcho(ln net.Listener) *Server {
	return Serve(ln, func(c net.Conn) { Echo(c, "") })
}

// ServeTCP listens on loopback and runs handle on each connection for the test t; the
// server closes, and its handlers are waited for, with the test. It returns the address.
func ServeTCP(t TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	s := Serve(ln, handle)
	t.Cleanup(s.Close)
	return s.Addr()
}

// EchoServer is a loopback TCP echo for the test t, which writes greeting first if set.
func EchoServer(t TB, greeting string) string {
	t.Helper()
	return ServeTCP(t, func(c net.Conn) { Echo(c, greeting) })
}

// ServeUDPEcho answers every datagram pc receives with itself, to its sender, until pc
// is closed.
func ServeUDPEcho(pc net.PacketConn) {
	go func() {
		buf := make([]byte, udpEchoBuffer)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// UDPEcho is a loopback UDP echo; close the returned conn to stop it.
func UDPEcho() (net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	ServeUDPEcho(pc)
	return pc, nil
}

// UDPEchoServer is a loopback UDP echo for the test t, closed with it; it returns the
// address.
func UDPEchoServer(t TB) string {
	t.Helper()
	pc, err := UDPEcho()
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// EchoExact writes n random bytes to c, an echoed connection, while reading them back,
// and fails unless the same bytes return in order within timeout.
func EchoExact(c net.Conn, n int, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	msg := make([]byte, n)
	rand.Read(msg)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo of %d bytes: %w", n, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("echo of %d bytes: write: %w", n, err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes: got different bytes back, want the same", n)
	}
	return nil
}
