package peers

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
)

// echoServer echoes every connection a listener accepts until stopped.
type echoServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]struct{} // open connections, closed by stop
	done bool
	once sync.Once
}

// StartTCPEcho starts a TCP echo server on 127.0.0.1 and returns its address. stop closes
// the listener and every open connection and waits for the server's goroutines to end;
// the server also stops when ctx ends. stop may be called more than once.
func StartTCPEcho(ctx context.Context) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return "", nil, fmt.Errorf("peers: echo listen: %w", err)
	}
	s := serveEcho(ctx, ln)
	return ln.Addr().String(), s.stop, nil
}

// serveEcho echoes on ln until stop is called or ctx ends.
func serveEcho(ctx context.Context, ln net.Listener) *echoServer {
	s := &echoServer{ln: ln, conn: make(map[net.Conn]struct{})}
	stopOnCancel := context.AfterFunc(ctx, s.stop)
	s.wg.Go(func() {
		defer stopOnCancel()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed by stop
			}
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Go(func() {
				defer s.untrack(c)
				echoCopy(c, c)
			})
		}
	})
	return s
}

// track records an open connection; it reports false once the server is stopping.
func (s *echoServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.conn[c] = struct{}{}
	return true
}

func (s *echoServer) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conn, c)
	s.mu.Unlock()
}

func (s *echoServer) stop() {
	s.once.Do(func() {
		s.ln.Close()
		s.mu.Lock()
		s.done = true
		for c := range s.conn {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// echoCopy writes back everything it reads, chunkSize at a time, until src fails or ends.
// It hides io.ReaderFrom and io.WriterTo so that a TCP echo copies through user space like
// the TLS and QUIC ones do, rather than splicing inside the kernel: every peer's server
// then does the same work per byte.
func echoCopy(dst io.Writer, src io.Reader) {
	buf := make([]byte, chunkSize)
	_, _ = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
}

// TCPThroughput sends bytes over one plain TCP connection on loopback to an echo server in
// this process and times their return.
func TCPThroughput(ctx context.Context, bytes int64) (Result, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	addr, stop, err := StartTCPEcho(ctx)
	if err != nil {
		return Result{}, err
	}
	defer stop()
	return TunnelThroughput(ctx, addr, bytes)
}
