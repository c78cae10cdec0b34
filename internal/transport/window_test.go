package transport

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// TestRadioStreamOpensWithAFullWindow checks what a radio stream may send before its
// reader reads: the Radio profile's whole stream window (4 MiB), not quic-go's 512 KiB. On
// a lossy radio the reader waits for each hole's retransmission, so quic-go's window tuning
// never grows the window, and 512 KiB per round trip was what held the bench's circuits at
// 30 % loss and 800 ms (docs/BENCHMARKS.md, "Run C, follow-up"). The far end here accepts
// the stream and never reads; the writer stops where flow control stops it.
func TestRadioStreamOpensWithAFullWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)
	ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS, Radio.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan *quic.Stream, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		s, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		held <- s // never read
	}()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), clientTLS, Radio.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Write until a write makes no progress for a second: the window is spent.
	buf := make([]byte, 64<<10)
	var written int
	for written < 16<<20 {
		if err := s.SetWriteDeadline(time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := s.Write(buf)
		written += n
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("write after %d bytes: %v", written, err)
		}
	}
	// quic-go's own initial window would stop the writer near 512 KiB; the profile's
	// maximum, 4 MiB. Half of that leaves room for what quic-go buffers on either side.
	if want := int(Radio.MaxStreamReceiveWindow / 2); written < want {
		t.Errorf("wrote %d bytes before the unread stream's window closed, want >= %d (the Radio profile's window is %d)",
			written, want, Radio.MaxStreamReceiveWindow)
	}
	if written >= 16<<20 {
		t.Errorf("wrote %d bytes to a stream nobody reads: flow control never stopped the writer", written)
	}
	t.Logf("wrote %d bytes before the window closed", written)
}
