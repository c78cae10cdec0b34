package peers

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Sizes of the test runs. -bytes raises the throughput runs for a quick look at figures:
//
//	go test ./scripts/bench/peers/ -run Throughput -v -args -bytes=268435456
var (
	testBytes      = flag.Int64("bytes", 8<<20, "bytes each throughput test echoes")
	testRoundTrips = flag.Int("round-trips", 200, "round trips each latency test times")
)

const (
	// testTimeout bounds each test, under the race detector included.
	testTimeout = 2 * time.Minute
	// requestSize is the latency tests' request and response size.
	requestSize = 64
	// leakWait is how long goroutines may take to wind down after a peer returns.
	leakWait = 5 * time.Second
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// checkResult fails t unless r is a complete, plausible echo of want bytes.
func checkResult(t *testing.T, r Result, want int64) {
	t.Helper()
	if r.Bytes != want {
		t.Errorf("bytes = %d, want %d", r.Bytes, want)
	}
	if r.Elapsed <= 0 || r.MBps <= 0 {
		t.Errorf("elapsed = %v, MB/s = %v, want both > 0", r.Elapsed, r.MBps)
	}
	if r.CPUSeconds < 0 {
		t.Errorf("cpu seconds = %v, want ≥ 0", r.CPUSeconds)
	}
	t.Logf("%s", r)
}

// checkLatency fails t unless l is a plausible distribution of n round trips.
func checkLatency(t *testing.T, l Latency, n int) {
	t.Helper()
	if l.N != n {
		t.Errorf("round trips = %d, want %d", l.N, n)
	}
	if l.P50 <= 0 || l.P99 < l.P50 {
		t.Errorf("p50 = %v, p99 = %v, want 0 < p50 ≤ p99", l.P50, l.P99)
	}
	t.Logf("%s", l)
}

// checkNoLeak fails t if more goroutines run than before, once leakWait has passed.
func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(leakWait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("goroutines = %d, want ≤ %d:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestThroughputEchoesEveryByte(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(context.Context, int64) (Result, error)
	}{
		{"tcp", TCPThroughput},
		{"tls", TLSThroughput},
		{"quic", QUICThroughput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := runtime.NumGoroutine()
			r, err := tc.run(testContext(t), *testBytes)
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			checkResult(t, r, *testBytes)
			checkNoLeak(t, before)
		})
	}
}

func TestTLSThroughputNegotiatesTLS13AEAD(t *testing.T) {
	_, suite, err := tlsThroughput(testContext(t), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256:
		t.Logf("negotiated %s", tls.CipherSuiteName(suite))
	default:
		t.Errorf("cipher suite = %s, want a TLS 1.3 one", tls.CipherSuiteName(suite))
	}
}

// corruptEcho echoes on a loopback listener but flips the byte at offset bad.
func corruptEcho(t *testing.T, bad int64) string {
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, chunkSize)
		var off int64
		for {
			n, err := c.Read(buf)
			if bad >= off && bad < off+int64(n) {
				buf[bad-off] ^= 0xff
			}
			off += int64(n)
			if _, werr := c.Write(buf[:n]); err != nil || werr != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}

func TestTunnelThroughputRejectsCorruptEcho(t *testing.T) {
	const bad = 3<<20 + 17
	_, err := TunnelThroughput(testContext(t), corruptEcho(t, bad), 4<<20)
	if err == nil || !strings.Contains(err.Error(), "echoed byte 3145745") {
		t.Errorf("got error %v, want one naming echoed byte %d", err, bad)
	}
}

func TestTunnelThroughputRejectsShortEcho(t *testing.T) {
	ctx := testContext(t)
	ln, err := net.Listen("tcp", loopback)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer func() { ln.Close(); <-done }()
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.CopyN(c, c, 1000) // echoes 1000 bytes, then hangs up
		c.Close()
	}()
	if _, err := TunnelThroughput(ctx, ln.Addr().String(), 1<<20); err == nil {
		t.Error("got no error from an echo that hung up after 1000 bytes, want one")
	}
}

func TestLatency(t *testing.T) {
	t.Run("quic", func(t *testing.T) {
		before := runtime.NumGoroutine()
		l, err := QUICEchoLatency(testContext(t), *testRoundTrips, requestSize)
		if err != nil {
			t.Fatal(err)
		}
		checkLatency(t, l, *testRoundTrips)
		checkNoLeak(t, before)
	})
	t.Run("tcp", func(t *testing.T) {
		before := runtime.NumGoroutine()
		ctx := testContext(t)
		addr, stop, err := StartTCPEcho(ctx)
		if err != nil {
			t.Fatal(err)
		}
		l, err := TCPEchoLatency(ctx, addr, *testRoundTrips, requestSize)
		stop()
		if err != nil {
			t.Fatal(err)
		}
		checkLatency(t, l, *testRoundTrips)
		checkNoLeak(t, before)
	})
}

func TestLatencyRejectsBadSizes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n, size int
	}{
		{"no-round-trips", 0, requestSize},
		{"empty-request", 10, 0},
		{"request-over-chunk", 10, chunkSize + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := QUICEchoLatency(testContext(t), tc.n, tc.size); err == nil {
				t.Errorf("n = %d, size = %d: got no error, want one", tc.n, tc.size)
			}
		})
	}
}

func TestStartTCPEchoStops(t *testing.T) {
	before := runtime.NumGoroutine()
	addr, stop, err := StartTCPEcho(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr) // left open: stop must close it
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // twice is fine
	if c2, err := net.Dial("tcp", addr); err == nil {
		c2.Close()
		t.Errorf("dial %s after stop: got a connection, want refused", addr)
	}
	checkNoLeak(t, before)
}

func TestStartTCPEchoStopsWithContext(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	addr, stop, err := StartTCPEcho(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cancel()
	checkNoLeak(t, before)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Errorf("dial %s after cancel: got a connection, want refused", addr)
	}
}

func TestSSHTunnel(t *testing.T) {
	ctx := testContext(t)
	echo, stopEcho, err := StartTCPEcho(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stopEcho()
	tun, err := SSHTunnel(ctx, echo)
	if errors.Is(err, ErrNoOpenSSH) {
		t.Fatalf("%v (the ssh -L peer needs openssh-server: scripts/setup-deps.sh installs it)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()
	pids := tun.PIDs()

	meter, err := StartCPUMeter(pids...)
	if err != nil {
		t.Fatal(err)
	}
	r, err := TunnelThroughput(ctx, tun.Addr(), *testBytes)
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	checkResult(t, r, *testBytes)
	cpu, err := meter.Seconds()
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("ssh and sshd cpu seconds = %v, want > 0 after moving %d bytes", cpu, *testBytes)
	}
	t.Logf("ssh+sshd: %.3f CPU s, %.2f CPU s/GB (cipher %s)", cpu, CPUSecondsPerGB(cpu, r.Bytes), SSHCipher)

	l, err := TCPEchoLatency(ctx, tun.Addr(), *testRoundTrips, requestSize)
	if err != nil {
		t.Fatal(err)
	}
	checkLatency(t, l, *testRoundTrips)

	dir := tun.dir
	if err := tun.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still exists after Close", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("stat %s after Close: %v, want not exist", dir, err)
	}
	if c, err := net.Dial("tcp", tun.Addr()); err == nil {
		c.Close()
		t.Errorf("dial %s after Close: got a connection, want refused", tun.Addr())
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i+1) * time.Millisecond
		}
		return d
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{"one-sample-p50", ms(1), 50, time.Millisecond},
		{"one-sample-p99", ms(1), 99, time.Millisecond},
		{"hundred-p50", ms(100), 50, 50 * time.Millisecond},
		{"hundred-p99", ms(100), 99, 99 * time.Millisecond},
		{"two-hundred-p99", ms(200), 99, 198 * time.Millisecond},
		{"ten-p99-is-max", ms(10), 99, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("percentile(%d of %d) = %v, want %v", tc.p, len(tc.in), got, tc.want)
			}
		})
	}
}

func TestCPUSeconds(t *testing.T) {
	self, err := CPUSeconds(Self)
	if err != nil || self <= 0 {
		t.Errorf("CPUSeconds(Self) = %v, %v; want > 0, nil", self, err)
	}
	if got := CPUSecondsPerGB(2, 500_000_000); got != 4 {
		t.Errorf("CPUSecondsPerGB(2 s, 0.5 GB) = %v, want 4", got)
	}
	if got := CPUSecondsPerGB(2, 0); got != 0 {
		t.Errorf("CPUSecondsPerGB(2 s, 0 bytes) = %v, want 0", got)
	}
}
