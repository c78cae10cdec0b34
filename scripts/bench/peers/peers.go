// Package peers measures the transports umbra is compared against in `make bench`: plain
// TCP, TLS 1.3, raw quic-go and an OpenSSH `ssh -L` tunnel, all on 127.0.0.1 and all with
// the same echo pattern, so that the benchmark program can print each umbra figure as a
// ratio to peers measured in the same run on the same machine.
//
// The pattern: a client sends a deterministic pseudo-random byte stream to an echo server
// and times how long it takes until every byte has come back, checking each one. Connection
// set-up and handshakes are not timed. TunnelThroughput and TCPEchoLatency run the same
// client against any local TCP address whose far end is an echo server (StartTCPEcho), so
// umbra's circuits and ssh -L are measured by one piece of code.
//
// The package owns its servers, processes and temp files and stops them all before a call
// returns (SSHTunnel's before Tunnel.Close returns). It must not listen beyond loopback,
// touch the system's sshd, or write to docs/: reporting is the benchmark program's job.
package peers

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// Sizes and bounds shared by every peer.
const (
	// chunkSize is the most the echo client writes, and any echo server copies, at once.
	chunkSize = 128 << 10
	// patternPeriod is the length of the pseudo-random pattern the client repeats. It is odd
	// so that a lost or repeated power-of-two block shows up as a mismatch.
	patternPeriod = 1<<20 + 9
	// patternSeed seeds the pattern; any fixed value makes every run send the same bytes.
	patternSeed = "umbra bench peers echo pattern"
	// maxRunTime bounds any one measurement whose context has no earlier deadline.
	maxRunTime = 5 * time.Minute
	// latencyWarmup round trips run before timing starts, so that one-time costs (stream
	// opening, window growth, the first scheduler wake-ups) are not counted as latency.
	latencyWarmup = 10
	// loopback is where every server listens.
	loopback = "127.0.0.1:0"
)

// bytesPerMB and bytesPerGB are decimal, as network throughput is usually quoted.
const (
	bytesPerMB = 1e6
	bytesPerGB = 1e9
)

// Result is one throughput measurement.
type Result struct {
	// Bytes is the payload sent one way; the same number came back.
	Bytes int64
	// Elapsed runs from the first byte written to the last byte read back.
	Elapsed time.Duration
	// MBps is Bytes/Elapsed in 10^6 bytes per second: one-way payload rate.
	MBps float64
	// CPUSeconds is user+system CPU time this process spent during Elapsed. For the
	// in-process peers that is client and server together; for TunnelThroughput it is
	// the client and whatever else runs in this process (an in-process echo server), not
	// the tunnel's own processes, which the caller measures with a CPUMeter.
	CPUSeconds float64
}

// CPUSecondsPerGB is the result's CPU time per 10^9 bytes sent one way.
func (r Result) CPUSecondsPerGB() float64 { return CPUSecondsPerGB(r.CPUSeconds, r.Bytes) }

// String formats the result for logs.
func (r Result) String() string {
	return fmt.Sprintf("%d bytes in %v: %.1f MB/s, %.2f CPU s/GB", r.Bytes, r.Elapsed.Round(time.Millisecond), r.MBps, r.CPUSecondsPerGB())
}

// Latency is the distribution of N timed request/response round trips.
type Latency struct {
	// P50 and P99 are nearest-rank percentiles of the round-trip times: from writing a
	// request to having read its whole echo.
	P50, P99 time.Duration
	// N is how many round trips were timed, after latencyWarmup untimed ones.
	N int
}

// String formats the latency for logs.
func (l Latency) String() string {
	return fmt.Sprintf("p50 %v, p99 %v over %d round trips", l.P50, l.P99, l.N)
}

// pattern holds patternPeriod pseudo-random bytes followed by the first chunkSize of them
// again, so that the pattern from any stream offset is one contiguous slice of up to
// chunkSize bytes.
var pattern = sync.OnceValue(func() []byte {
	var seed [32]byte
	copy(seed[:], patternSeed)
	p := make([]byte, patternPeriod+chunkSize)
	_, _ = rand.NewChaCha8(seed).Read(p[:patternPeriod]) // ChaCha8.Read never fails
	copy(p[patternPeriod:], p)
	return p
})

// patternAt returns the n ≤ chunkSize pattern bytes that belong at stream offset off.
func patternAt(off int64, n int) []byte {
	start := int(off % patternPeriod)
	return pattern()[start : start+n]
}

// boundedContext gives ctx a deadline of at most maxRunTime.
func boundedContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, maxRunTime)
}

// echoThroughput sends n pattern bytes on rw and reads them back, checking each byte. It
// starts timing at its first write and stops at its last read. abort must unblock rw's
// reads and writes; it runs if ctx ends first.
func echoThroughput(ctx context.Context, rw io.ReadWriter, n int64, abort func()) (Result, error) {
	if n <= 0 {
		return Result{}, fmt.Errorf("peers: bytes = %d, want > 0", n)
	}
	stopAbort := context.AfterFunc(ctx, abort)
	defer stopAbort()

	cpu0 := selfCPUSeconds()
	start := time.Now()
	writeErr := make(chan error, 1)
	go func() {
		var off int64
		for off < n {
			m := int(min(chunkSize, n-off))
			w, err := rw.Write(patternAt(off, m))
			off += int64(w)
			if err != nil {
				writeErr <- fmt.Errorf("write at byte %d: %w", off, err)
				return
			}
		}
		writeErr <- nil
	}()

	buf := make([]byte, chunkSize)
	var off int64
	var readErr error
	for off < n {
		r, err := rw.Read(buf[:min(chunkSize, n-off)])
		if want := patternAt(off, r); !slices.Equal(buf[:r], want) {
			i := 0
			for buf[i] == want[i] {
				i++
			}
			readErr = fmt.Errorf("echoed byte %d = %#02x, want %#02x", off+int64(i), buf[i], want[i])
			break
		}
		off += int64(r)
		if err != nil && off < n {
			readErr = fmt.Errorf("read at byte %d of %d: %w", off, n, err)
			break
		}
	}
	elapsed := time.Since(start)
	cpu := selfCPUSeconds() - cpu0
	if readErr != nil {
		abort() // unblock the writer
	}
	werr := <-writeErr
	if err := firstError(ctx.Err(), readErr, werr); err != nil {
		return Result{}, err
	}
	return Result{
		Bytes:      n,
		Elapsed:    elapsed,
		MBps:       float64(n) / bytesPerMB / elapsed.Seconds(),
		CPUSeconds: cpu,
	}, nil
}

// echoLatency times n round trips of size pattern bytes each on rw, after latencyWarmup
// untimed ones. abort must unblock rw; it runs if ctx ends first.
func echoLatency(ctx context.Context, rw io.ReadWriter, n, size int, abort func()) (Latency, error) {
	if n <= 0 || size <= 0 || size > chunkSize {
		return Latency{}, fmt.Errorf("peers: round trips = %d, size = %d; want > 0 and size ≤ %d", n, size, chunkSize)
	}
	stopAbort := context.AfterFunc(ctx, abort)
	defer stopAbort()

	buf := make([]byte, size)
	times := make([]time.Duration, 0, n)
	var off int64
	for i := range latencyWarmup + n {
		want := patternAt(off, size)
		start := time.Now()
		if _, err := rw.Write(want); err != nil {
			return Latency{}, firstError(ctx.Err(), fmt.Errorf("round trip %d: write: %w", i, err))
		}
		if _, err := io.ReadFull(rw, buf); err != nil {
			return Latency{}, firstError(ctx.Err(), fmt.Errorf("round trip %d: read: %w", i, err))
		}
		d := time.Since(start)
		if !slices.Equal(buf, want) {
			return Latency{}, fmt.Errorf("round trip %d: echo differs from request", i)
		}
		if i >= latencyWarmup {
			times = append(times, d)
		}
		off += int64(size)
	}
	slices.Sort(times)
	return Latency{P50: percentile(times, 50), P99: percentile(times, 99), N: n}, nil
}

// percentile returns the nearest-rank p-th percentile of sorted, which is not empty.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TunnelThroughput sends bytes through the local TCP address dial, whose far end must be
// an echo server, and times their return. It measures an ssh -L tunnel, one of umbra's
// circuits, or a plain echo server alike.
func TunnelThroughput(ctx context.Context, dial string, bytes int64) (Result, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", dial)
	if err != nil {
		return Result{}, fmt.Errorf("peers: dial %s: %w", dial, err)
	}
	defer c.Close()
	r, err := echoThroughput(ctx, c, bytes, func() { c.Close() })
	if err != nil {
		return Result{}, fmt.Errorf("peers: echo through %s: %w", dial, err)
	}
	return r, nil
}

// TCPEchoLatency times n round trips of size bytes on one TCP connection to addr, whose
// far end must be an echo server (directly, or through umbra or ssh -L). size is at most
// 128 KiB.
func TCPEchoLatency(ctx context.Context, addr string, n, size int) (Latency, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Latency{}, fmt.Errorf("peers: dial %s: %w", addr, err)
	}
	defer c.Close()
	// Go sets TCP_NODELAY by default, so each request leaves at once.
	l, err := echoLatency(ctx, c, n, size, func() { c.Close() })
	if err != nil {
		return Latency{}, fmt.Errorf("peers: echo latency through %s: %w", addr, err)
	}
	return l, nil
}
