package resume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout bounds every wait in these tests; generous for -race on a loaded 2-core machine.
const testTimeout = 2 * time.Minute

// maxStreams bounds how many streams a harness attaches, so a bug cannot loop forever.
const maxStreams = 200

// checkGoroutines fails the test if, once everything else has cleaned up, more
// goroutines run than before it started (polled with a deadline, never a fixed sleep).
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(testTimeout)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines = %d, want at most %d as before the test:\n%s", n, before, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// streamPair returns the two ends of a fresh underlying stream: net.Pipe, or a TCP
// connection over loopback.
func streamPair(t testing.TB, tcp bool) (net.Conn, net.Conn) {
	t.Helper()
	if !tcp {
		return net.Pipe()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		acc <- res{c, err}
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-acc
	if r.err != nil {
		a.Close()
		t.Fatalf("accept: %v", r.err)
	}
	return a, r.c
}

// errCut is the error of a cut stream's write.
var errCut = errors.New("test: stream cut")

// cutStream is a stream that breaks after budget written bytes: it writes the bytes
// that fit (typically half a frame), closes the underlying stream and fails.
type cutStream struct {
	net.Conn
	budget int64
	cut    *atomic.Int32 // counts cuts that happened
}

func (s *cutStream) Write(p []byte) (int, error) {
	if int64(len(p)) < s.budget {
		n, err := s.Conn.Write(p)
		s.budget -= int64(n)
		return n, err
	}
	n, _ := s.Conn.Write(p[:s.budget])
	s.budget = 0
	s.Conn.Close()
	s.cut.Add(1)
	return n, errCut
}

// cutPlan is where one side's writes break its streams, decided before the transfer
// starts: the i'th cut comes after gaps[i] more bytes written by that side, whichever
// stream carries them. A side writes at least every byte it sends, so when the gaps add
// up to less than what it sends, every cut happens, mid-transfer, however the two sides'
// goroutines are scheduled. A plan is used by one side's streams, one after another.
type cutPlan struct {
	mu      sync.Mutex // a stream's writer and its Serve's reset may both write
	gaps    []int64    // bytes written before each cut, counted from the cut before
	written int64      // bytes written since the last cut
	cuts    *atomic.Int32
}

// newCutPlan returns a plan cutting after each of gaps bytes, counting cuts in cuts.
func newCutPlan(gaps []int64, cuts *atomic.Int32) *cutPlan {
	for i, g := range gaps {
		if g < 1 {
			panic(fmt.Sprintf("cut %d after %d bytes: a gap must be at least 1 byte", i, g))
		}
	}
	return &cutPlan{gaps: gaps, cuts: cuts}
}

// left returns how many bytes may still be written before the next cut, or -1 when no
// cut is left.
func (p *cutPlan) left() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.gaps) == 0 {
		return -1
	}
	return p.gaps[0] - p.written
}

// wrote records n bytes written; cut reports whether they reached the next cut, which
// then counts as done.
func (p *cutPlan) wrote(n int) (cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.written += int64(n)
	if len(p.gaps) == 0 || p.written < p.gaps[0] {
		return false
	}
	p.gaps, p.written = p.gaps[1:], 0
	p.cuts.Add(1)
	return true
}

// plannedStream is one side's end of a stream, breaking where that side's plan says.
type plannedStream struct {
	net.Conn
	plan *cutPlan
}

func (s *plannedStream) Write(b []byte) (int, error) {
	left := s.plan.left()
	if left < 0 || int64(len(b)) < left {
		n, err := s.Conn.Write(b)
		if s.plan.wrote(n) { // another write of this side's reached the cut meanwhile
			s.Conn.Close()
			return n, errCut
		}
		return n, err
	}
	// The bytes up to the cut (typically part of a frame) go out, then the stream breaks.
	// A write the peer's side already broke counts only what got through, and the cut
	// moves to the next stream.
	n, err := s.Conn.Write(b[:left])
	if !s.plan.wrote(n) {
		return n, err
	}
	s.Conn.Close()
	return n, errCut
}

// harness keeps two Conns attached to each other, replacing the stream each time one
// breaks; each side's writes break the streams where its plan says.
type harness struct {
	a, b       *Conn
	tcp        bool
	cutA, cutB []int64 // each side's cut plan: the gaps, in bytes that side writes

	streams  int          // streams attached
	cutCount atomic.Int32 // cuts that happened
	serveErr []error      // every Serve result, in order
}

// cuts returns how many cuts the plans hold.
func (h *harness) cuts() int { return len(h.cutA) + len(h.cutB) }

// run attaches streams until both Conns have ended, ctx ends or maxStreams is reached.
func (h *harness) run(ctx context.Context, t testing.TB) {
	planA, planB := newCutPlan(h.cutA, &h.cutCount), newCutPlan(h.cutB, &h.cutCount)
	for h.streams = 0; h.streams < maxStreams && ctx.Err() == nil; h.streams++ {
		sa, sb := streamPair(t, h.tcp)
		ra, rb := &plannedStream{Conn: sa, plan: planA}, &plannedStream{Conn: sb, plan: planB}
		errs := make(chan error, 2)
		go func() { errs <- h.a.Serve(ctx, ra) }()
		go func() { errs <- h.b.Serve(ctx, rb) }()
		h.serveErr = append(h.serveErr, <-errs, <-errs)
		if isClosed(h.a.done) && isClosed(h.b.done) {
			return
		}
	}
}

// shortCut is the most bytes a short gap holds: it cuts inside the resume header or the
// first frames after a swap.
const shortCut = 64

// mixedCuts returns n gaps decided by rng: every third (the first included) under
// shortCut bytes, the others up to long bytes.
func mixedCuts(rng *rand.Rand, n int, long int64) []int64 {
	gaps := make([]int64, n)
	for i := range gaps {
		if i%3 == 0 {
			gaps[i] = 1 + rng.Int64N(shortCut)
		} else {
			gaps[i] = 1 + rng.Int64N(long)
		}
	}
	return gaps
}

// sendAll writes data to c in random-sized writes, then CloseWrite.
func sendAll(c *Conn, data []byte, rng *rand.Rand) error {
	for len(data) > 0 {
		n := min(len(data), 1+rng.IntN(200<<10))
		if _, err := c.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return c.CloseWrite()
}

// recvAll reads c to io.EOF in random-sized reads and returns what it read.
func recvAll(c io.Reader, size int, rng *rand.Rand) ([]byte, error) {
	got := make([]byte, 0, size)
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf[:1+rng.IntN(len(buf))])
		got = append(got, buf[:n]...)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// randomBytes returns n bytes from a seeded generator.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	rand.NewChaCha8(s).Read(b)
	return b
}

// firstDiff describes where got and want part, for failure messages.
func firstDiff(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at offset %d of %d", i, len(want))
		}
	}
	return fmt.Sprintf("got %d bytes, want %d", len(got), len(want))
}

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// result runs f in a goroutine and returns a channel with its error.
func result(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// await returns the error from ch, failing the test after testTimeout.
func await(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}
