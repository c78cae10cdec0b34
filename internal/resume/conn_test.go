package resume

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// attach serves a and b over one fresh stream and returns their Serve results.
func attach(t *testing.T, a, b *Conn, tcp bool) (ea, eb <-chan error) {
	t.Helper()
	sa, sb := streamPair(t, tcp)
	return attachStreams(a, b, sa, sb)
}

func attachStreams(a, b *Conn, sa, sb io.ReadWriteCloser) (ea, eb <-chan error) {
	ctx := context.Background()
	return result(func() error { return a.Serve(ctx, sa) }), result(func() error { return b.Serve(ctx, sb) })
}

// TestHalfClose runs a request/response exchange (write, CloseWrite, read the reply),
// with the stream cut at the points that matter for the end of stream.
func TestHalfClose(t *testing.T) {
	req, resp := []byte("GET /telemetry"), bytes.Repeat([]byte("pong "), 3000)
	for _, tc := range []struct {
		name    string
		tcp     bool
		cutA    int64 // bytes a's first stream carries before it breaks; 0: no cut
		cutB    int64
		streams int // streams needed
	}{
		{name: "pipe", streams: 1},
		{name: "tcp", tcp: true, streams: 1},
		{name: "fin-cut-mid-frame", cutA: headerLen + dataHeaderLen + int64(len(req)) + 4, streams: 2},
		{name: "fin-ack-cut-mid-frame", cutB: headerLen + 4, streams: 2},
		{name: "cut-inside-header", cutA: 7, streams: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			a, b := New(Config{}), New(Config{})
			defer a.Abort(nil)
			defer b.Abort(nil)
			var cuts atomic.Int32
			var serveErrs []error
			served := result(func() error {
				for i := 0; i < maxStreams; i++ {
					sa, sb := streamPair(t, tc.tcp)
					var ra, rb io.ReadWriteCloser = sa, sb
					if i == 0 && tc.cutA > 0 {
						ra = &cutStream{Conn: sa, budget: tc.cutA, cut: &cuts}
					}
					if i == 0 && tc.cutB > 0 {
						rb = &cutStream{Conn: sb, budget: tc.cutB, cut: &cuts}
					}
					ea, eb := attachStreams(a, b, ra, rb)
					serveErrs = append(serveErrs, <-ea, <-eb)
					if isClosed(a.done) && isClosed(b.done) {
						return nil
					}
				}
				return errors.New("too many streams")
			})

			server := result(func() error {
				got, err := io.ReadAll(b)
				if err != nil {
					return err
				}
				if !bytes.Equal(got, req) {
					t.Errorf("server read %q, want %q", got, req)
				}
				if _, err := b.Write(resp); err != nil {
					return err
				}
				return b.Close()
			})
			if _, err := a.Write(req); err != nil {
				t.Fatalf("write request: %v", err)
			}
			if err := a.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			got, err := io.ReadAll(a)
			if err != nil {
				t.Fatalf("read reply: %v", err)
			}
			if !bytes.Equal(got, resp) {
				t.Errorf("reply: %s", firstDiff(got, resp))
			}
			if err := await(t, "server", server); err != nil {
				t.Fatalf("server: %v", err)
			}
			if _, err := a.Write([]byte("x")); !errors.Is(err, ErrWriteAfterCloseWrite) {
				t.Errorf("write after CloseWrite = %v, want %v", err, ErrWriteAfterCloseWrite)
			}
			if err := await(t, "both ends", served); err != nil {
				t.Fatal(err)
			}
			if len(serveErrs) != 2*tc.streams {
				t.Errorf("streams = %d, want %d (Serve results %v)", len(serveErrs)/2, tc.streams, serveErrs)
			}
			for i, err := range serveErrs[len(serveErrs)-2:] {
				if err != nil {
					t.Errorf("last Serve %d = %v, want nil", i, err)
				}
			}
			if a.Err() != nil || b.Err() != nil {
				t.Errorf("Err() = %v and %v, want nil after a clean end", a.Err(), b.Err())
			}
		})
	}
}

// TestCloseEndsBothDirections checks that Close on both ends finishes the Conns in
// order, Serve returning nil, and that Read and Write then report net.ErrClosed.
func TestCloseEndsBothDirections(t *testing.T) {
	checkGoroutines(t)
	a, b := New(Config{}), New(Config{})
	ea, eb := attach(t, a, b, true)
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if _, err := a.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v, want net.ErrClosed", err)
	}
	if _, err := a.Write(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
	if _, err := b.Read(buf); err != io.EOF {
		t.Errorf("peer Read = %v, want io.EOF", err)
	}
	b.Close()
	if err := await(t, "a's Serve", ea); err != nil {
		t.Errorf("a's Serve = %v, want nil", err)
	}
	if err := await(t, "b's Serve", eb); err != nil {
		t.Errorf("b's Serve = %v, want nil", err)
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
}

// TestCloseLingerResetsIdlePeer checks that a closed Conn whose peer never ends its side
// gives up after CloseLinger: Serve returns nil, and the peer learns of the reset.
func TestCloseLingerResetsIdlePeer(t *testing.T) {
	checkGoroutines(t)
	a, b := New(Config{CloseLinger: 100 * time.Millisecond}), New(Config{})
	defer b.Abort(nil)
	ea, eb := attach(t, a, b, false)
	a.Close()
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("peer Read = %v, want io.EOF", err)
	}
	if err := await(t, "a's Serve", ea); err != nil {
		t.Errorf("a's Serve = %v, want nil", err)
	}
	if err := await(t, "b's Serve", eb); !errors.Is(err, ErrPeerReset) {
		t.Errorf("b's Serve = %v, want %v", err, ErrPeerReset)
	}
	if _, err := b.Write([]byte("late")); !errors.Is(err, ErrPeerReset) {
		t.Errorf("peer Write = %v, want %v", err, ErrPeerReset)
	}
}

// TestWindowBlocksWriter checks that a writer faster than the peer's reader blocks once
// Window bytes are unacknowledged, that the reader holds no more than its window, and
// that the writer continues once the reader catches up.
func TestWindowBlocksWriter(t *testing.T) {
	checkGoroutines(t)
	const window = 64 << 10
	cfg := Config{Window: window}
	a, b := New(cfg), New(cfg)
	defer a.Abort(nil)
	defer b.Abort(nil)
	attach(t, a, b, true)

	data := randomBytes(9, 16*window)
	a.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := a.Write(data)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write = %d, %v; want it to block until the deadline", n, err)
	}
	if n != window {
		t.Errorf("Write took %d bytes before blocking, want the window, %d", n, window)
	}
	waitFor(t, "the window's bytes to arrive", func() bool { return b.Stats().Received == window })
	if got := b.Stats().Received; got > window {
		t.Errorf("peer holds %d unread bytes, want at most %d", got, window)
	}

	a.SetWriteDeadline(time.Time{})
	rest := result(func() error {
		if _, err := a.Write(data[n:]); err != nil {
			return err
		}
		return a.CloseWrite()
	})
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("read: %s", firstDiff(got, data))
	}
	if err := await(t, "the rest", rest); err != nil {
		t.Fatal(err)
	}
}

// TestAbortUnblocksEverything aborts a Conn with a Read and a Write pending: both, and
// Serve, return the abort's error, and the peer sees a reset.
func TestAbortUnblocksEverything(t *testing.T) {
	checkGoroutines(t)
	cfg := Config{Window: 16 << 10}
	a, b := New(cfg), New(cfg)
	defer b.Abort(nil)
	ea, eb := attach(t, a, b, true)
	revoked := errors.New("circuit revoked")

	rd := result(func() error { _, err := a.Read(make([]byte, 10)); return err })
	wr := result(func() error { _, err := a.Write(make([]byte, 1<<20)); return err })
	waitFor(t, "the writer to fill the window", func() bool { return a.Stats().Sent == 16<<10 })
	a.Abort(revoked)
	for what, ch := range map[string]<-chan error{"Read": rd, "Write": wr, "Serve": ea} {
		if err := await(t, what, ch); !errors.Is(err, revoked) {
			t.Errorf("%s = %v, want %v", what, err, revoked)
		}
	}
	if err := await(t, "peer's Serve", eb); !errors.Is(err, ErrPeerReset) {
		t.Errorf("peer's Serve = %v, want %v", err, ErrPeerReset)
	}
	if _, err := b.Read(make([]byte, 1)); !errors.Is(err, ErrPeerReset) {
		t.Errorf("peer Read = %v, want %v", err, ErrPeerReset)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, revoked) {
		t.Errorf("later Write = %v, want %v", err, revoked)
	}
}

// TestDetachTimeout checks that a Conn left without a stream fails pending and later
// calls with ErrExpired, and that Read and Write block rather than fail before that.
func TestDetachTimeout(t *testing.T) {
	checkGoroutines(t)
	a, b := New(Config{DetachTimeout: 300 * time.Millisecond}), New(Config{})
	defer b.Abort(nil)
	sa, sb := streamPair(t, false)
	ea, eb := attachStreams(a, b, sa, sb)
	if _, err := b.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(a, buf); err != nil {
		t.Fatal(err)
	}
	sa.Close() // the radio link dies
	if err := await(t, "a's Serve", ea); err == nil {
		t.Errorf("a's Serve = nil, want the stream's error")
	}
	await(t, "b's Serve", eb)

	start := time.Now()
	_, err := a.Read(buf)
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("Read while detached = %v, want %v", err, ErrExpired)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("Read failed after %v, want it to block until the detach timeout", waited)
	}
	if _, err := a.Write(buf); !errors.Is(err, ErrExpired) {
		t.Errorf("Write = %v, want %v", err, ErrExpired)
	}
	sa, sb = streamPair(t, false)
	defer sb.Close()
	if err := a.Serve(context.Background(), sa); !errors.Is(err, ErrExpired) {
		t.Errorf("Serve after expiry = %v, want %v", err, ErrExpired)
	}
}

// TestDeadlines checks read and write deadlines against net.Conn's contract.
func TestDeadlines(t *testing.T) {
	checkGoroutines(t)
	cfg := Config{Window: 16 << 10}
	a, b := New(cfg), New(cfg)
	defer a.Abort(nil)
	defer b.Abort(nil)
	attach(t, a, b, false)

	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := a.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline = %v, want os.ErrDeadlineExceeded (a timeout)", err)
	}
	// A pending Read returns when the deadline moves into the past.
	rd := result(func() error {
		a.SetReadDeadline(time.Time{})
		_, err := a.Read(make([]byte, 1))
		return err
	})
	waitFor(t, "Read to block", func() bool { return len(a.readLock) == 1 })
	a.SetReadDeadline(time.Now().Add(-time.Second))
	if err := await(t, "Read", rd); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("pending Read after SetReadDeadline(past) = %v, want os.ErrDeadlineExceeded", err)
	}
	// Clearing the deadline makes Read work again.
	a.SetDeadline(time.Time{})
	b.Write([]byte("z"))
	if n, err := a.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Errorf("Read after clearing the deadline = %d, %v; want 1, nil", n, err)
	}
	a.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := a.Write([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Write past the deadline = %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestTLSHandshakeCancel checks that cancelling crypto/tls's HandshakeContext, which
// closes the Conn, unblocks the handshake and lets Serve end.
func TestTLSHandshakeCancel(t *testing.T) {
	checkGoroutines(t)
	a, b := New(Config{CloseLinger: 200 * time.Millisecond}), New(Config{})
	defer b.Abort(nil)
	ea, _ := attach(t, a, b, true) // b attached, but nobody answers the handshake

	_, clientConf := tlsConfigs(t)
	ctx, cancel := context.WithCancel(context.Background())
	hs := result(func() error { return tls.Client(a, clientConf).HandshakeContext(ctx) })
	waitFor(t, "the ClientHello to arrive", func() bool { return b.Stats().Received > 0 })
	cancel()
	if err := await(t, "the handshake", hs); err == nil {
		t.Fatal("handshake succeeded, want the cancellation")
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after the cancelled handshake = %v, want net.ErrClosed", err)
	}
	if err := await(t, "a's Serve", ea); err != nil {
		t.Errorf("a's Serve = %v, want nil (closed, then lingered)", err)
	}
}

// TestServeReplacesServe checks that a second Serve takes over from the first, which
// returns ErrReplaced, and that the bytes continue on the new stream.
func TestServeReplacesServe(t *testing.T) {
	checkGoroutines(t)
	a, b := New(Config{}), New(Config{})
	defer a.Abort(nil)
	defer b.Abort(nil)
	ea, eb := attach(t, a, b, false)
	a.Write([]byte("one "))
	waitFor(t, "the first bytes", func() bool { return b.Stats().Received == 4 })
	ea2, eb2 := attach(t, a, b, false)
	// Each first Serve is replaced, unless the other end's replacement broke its stream first.
	errA, errB := await(t, "a's first Serve", ea), await(t, "b's first Serve", eb)
	if !errors.Is(errA, ErrReplaced) && !errors.Is(errB, ErrReplaced) {
		t.Errorf("first Serves = %v and %v, want %v", errA, errB, ErrReplaced)
	}
	a.Write([]byte("two"))
	a.CloseWrite()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "one two" {
		t.Errorf("read %q, %v; want %q", got, err, "one two")
	}
	a.Close()
	b.Close()
	await(t, "a's second Serve", ea2)
	await(t, "b's second Serve", eb2)
}

// fakePeer is a stream whose peer sends fixed bytes and then ends, and which swallows
// whatever is written to it.
type fakePeer struct{ r io.Reader }

func newFakePeer(b []byte) *fakePeer            { return &fakePeer{r: bytes.NewReader(b)} }
func (f *fakePeer) Read(p []byte) (int, error)  { return f.r.Read(p) }
func (f *fakePeer) Write(p []byte) (int, error) { return len(p), nil }
func (f *fakePeer) Close() error                { return nil }

func helloBytes(window uint32, recvd uint64) []byte {
	return appendHello(nil, hello{window: window, recvd: recvd})
}

// TestGarbageFromPeer feeds Serve bad headers and frames: each fails Serve with a clear
// one-line error and leaves the Conn's data intact for the next, genuine stream.
func TestGarbageFromPeer(t *testing.T) {
	good := helloBytes(DefaultWindow, 500) // what the genuine peer would say
	for _, tc := range []struct {
		name, peer, want string
	}{
		{"not-a-resume-stream", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", `bad magic "GET "`},
		{"wrong-version", "UMRS\x02\x00\x00\x00\x00\x10\x00\x00" + strings.Repeat("\x00", 8), "peer speaks version 2"},
		{"tiny-window", string(helloBytes(16, 0)), "peer window 16 outside"},
		{"offset-beyond-sent", string(helloBytes(DefaultWindow, 900)), "peer claims offset 900 beyond the 500 bytes sent"},
		{"offset-behind-acked", string(helloBytes(DefaultWindow, 100)), "peer claims offset 100, behind the 500"},
		{"unknown-frame", string(good) + "\x7f", "unknown frame type 0x7f"},
		{"oversized-data", string(good) + "\x01\x00\x01\x11\x70", "data frame of 70000 bytes"},
		{"empty-data", string(good) + "\x01\x00\x00\x00\x00", "data frame of 0 bytes"},
		{"past-window", string(helloBytes(DefaultWindow, 500)) + "\x01\x00\x01\x00\x00" + strings.Repeat("x", 65536), "past the 4096-byte window"},
		{"ack-beyond-sent", string(helloBytes(DefaultWindow, 500)) + "\x02" + u64(501), "acknowledges offset 501 beyond the 500 bytes sent"},
		{"ack-going-back", string(helloBytes(DefaultWindow, 500)) + "\x02" + u64(400), "acknowledges offset 400 after 500"},
		{"fin-at-wrong-offset", string(helloBytes(DefaultWindow, 500)) + "\x03" + u64(3), "ends its stream at offset 3, but 0 bytes arrived"},
		{"half-frame", string(helloBytes(DefaultWindow, 500)) + "\x01\x00\x00\x00\x10abc", "stream ended mid-frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			cfg := Config{Window: 4096}
			a, b := New(cfg), New(cfg)
			defer a.Abort(nil)
			defer b.Abort(nil)
			// A genuine first stream: a sends 500 bytes, b reads them (so they are acknowledged).
			sa, sb := streamPair(t, false)
			ea, eb := attachStreams(a, b, sa, sb)
			first := randomBytes(3, 500)
			a.Write(first)
			got := make([]byte, 500)
			if _, err := io.ReadFull(b, got); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "b's ack", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return a.peerAcked == 500 })
			sa.Close()
			await(t, "first Serve", ea)
			await(t, "first Serve", eb)

			err := a.Serve(context.Background(), newFakePeer([]byte(tc.peer)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Serve = %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines, want one", err)
			}
			if a.Err() != nil {
				t.Errorf("Conn ended with %v, want it detached and intact", a.Err())
			}

			// The genuine peer comes back: nothing lost, nothing repeated.
			ea, eb = attach(t, a, b, false)
			second := randomBytes(4, 3000)
			a.Write(second)
			a.CloseWrite()
			rest, err := io.ReadAll(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rest, second) {
				t.Errorf("after the garbage: %s", firstDiff(rest, second))
			}
			a.Close()
			b.Close()
			if err := await(t, "a's Serve", ea); err != nil {
				t.Errorf("a's Serve = %v", err)
			}
			await(t, "b's Serve", eb)
		})
	}
}

func u64(v uint64) string { return string(binary.BigEndian.AppendUint64(nil, v)) }
