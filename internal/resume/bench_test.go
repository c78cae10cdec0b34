package resume

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// Sizes for the throughput benchmarks.
const (
	benchChunk = 4 << 20  // bytes moved per iteration
	benchWrite = 32 << 10 // bytes per Write, as io.Copy does
	benchRead  = 64 << 10 // bytes per Read
)

// BenchmarkLoopback measures one-way throughput over a loopback TCP pair, raw and
// through a pair of Conns, in the same run.
func BenchmarkLoopback(b *testing.B) {
	b.Run("tcp", func(b *testing.B) {
		w, r := streamPair(b, true)
		defer w.Close()
		defer r.Close()
		benchStream(b, w, r)
	})
	b.Run("resume", func(b *testing.B) {
		w, r, stop := resumePair(b)
		defer stop()
		benchStream(b, w, r)
	})
}

// BenchmarkResumeVsTCP moves the same bytes over raw TCP and over Conns in alternation
// and reports both rates and their ratio (1 = no cost).
func BenchmarkResumeVsTCP(b *testing.B) {
	tw, tr := streamPair(b, true)
	defer tw.Close()
	defer tr.Close()
	rw, rr, stop := resumePair(b)
	defer stop()
	var tcpTime, resumeTime time.Duration
	b.ReportAllocs()
	for b.Loop() {
		tcpTime += timeTransfer(b, tw, tr)
		resumeTime += timeTransfer(b, rw, rr)
	}
	mb := float64(b.N) * benchChunk / 1e6
	b.ReportMetric(mb/tcpTime.Seconds(), "tcp-MB/s")
	b.ReportMetric(mb/resumeTime.Seconds(), "resume-MB/s")
	b.ReportMetric(tcpTime.Seconds()/resumeTime.Seconds(), "ratio")
}

// resumePair returns two Conns served over a loopback TCP pair.
func resumePair(b *testing.B) (w, r *Conn, stop func()) {
	sa, sb := streamPair(b, true)
	w, r = New(Config{}), New(Config{})
	ctx := context.Background()
	ea := result(func() error { return w.Serve(ctx, sa) })
	eb := result(func() error { return r.Serve(ctx, sb) })
	return w, r, func() {
		w.Abort(nil)
		r.Abort(nil)
		<-ea
		<-eb
	}
}

// benchStream writes b.N chunks to w while reading them from r.
func benchStream(b *testing.B, w io.Writer, r io.Reader) {
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	total := int64(b.N) * benchChunk
	done := result(func() error { return drain(r, total) })
	buf := make([]byte, benchWrite)
	b.ResetTimer()
	for range b.N {
		for off := 0; off < benchChunk; off += len(buf) {
			if _, err := w.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// timeTransfer moves one chunk from w to r and returns how long it took.
func timeTransfer(b *testing.B, w io.Writer, r io.Reader) time.Duration {
	start := time.Now()
	done := result(func() error { return drain(r, benchChunk) })
	buf := make([]byte, benchWrite)
	for off := 0; off < benchChunk; off += len(buf) {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// drain reads n bytes from r.
func drain(r io.Reader, n int64) error {
	buf := make([]byte, benchRead)
	for n > 0 {
		k, err := r.Read(buf[:min(int64(len(buf)), n)])
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

var _ net.Conn = (*Conn)(nil)

// BenchmarkPingPong times a 64-byte round trip over TCP on loopback, bare and through a
// resume.Conn at both ends: what the replay layer adds to an interactive circuit's
// latency.
func BenchmarkPingPong(b *testing.B) {
	pingPong := func(b *testing.B, a, c io.ReadWriter) {
		go func() {
			buf := make([]byte, 64)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 64)
		for b.Loop() {
			if _, err := a.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(a, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("tcp", func(b *testing.B) {
		a, c := streamPair(b, true)
		defer a.Close()
		defer c.Close()
		pingPong(b, a, c)
	})
	b.Run("resume", func(b *testing.B) {
		a, c, stop := resumePair(b)
		defer stop()
		pingPong(b, a, c)
	})
}
