package peers

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/umbranet/umbra/internal/lab"
)

// StartTCPEcho starts a TCP echo server on 127.0.0.1 and returns its address. stop closes
// the listener and every open connection and waits for the server's goroutines to end;
// the server also stops when ctx ends. stop may be called more than once.
func StartTCPEcho(ctx context.Context) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		return "", nil, fmt.Errorf("peers: echo listen: %w", err)
	}
	s := serveEcho(ctx, ln)
	return ln.Addr().String(), s.Close, nil
}

// serveEcho echoes on ln (echoCopy) until the server is closed or ctx ends.
func serveEcho(ctx context.Context, ln net.Listener) *lab.Server {
	s := lab.Serve(ln, func(c net.Conn) { echoCopy(c, c) })
	context.AfterFunc(ctx, s.Close)
	return s
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
