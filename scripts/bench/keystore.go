package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/hal/keystore/atecc608/atecc608sim"
	"github.com/umbranet/umbra/internal/pki"
)

// Sizes of the key store runs. Each figure stops at its count or its time, whichever
// comes first, so a slow store (a real chip, a loaded machine) cannot stall make bench.
const (
	ksMaxSignatures = 5000
	ksSignTime      = 2 * time.Second
	ksMaxHandshakes = 500
	ksHandshakeTime = 2 * time.Second
	// swtpmStartTimeout bounds waiting for swtpm to accept connections.
	swtpmStartTimeout = 10 * time.Second
	// swtpmStopTimeout is how long swtpm gets to exit on SIGTERM before it is killed.
	swtpmStopTimeout = 5 * time.Second
	// swtpmPoll is how often swtpm's port is probed while it starts.
	swtpmPoll = 10 * time.Millisecond
)

// ksStore is one key store to measure: open returns a key in it and how to release it.
type ksStore struct {
	name string
	open func(ctx context.Context) (keystore.Key, func(), error)
}

// benchKeystores measures each key store's signatures per second and the cost of a TLS
// 1.3 handshake whose client certificate's key lives there, each beside the same work
// done with a plain in-memory ECDSA P-256 key measured right before it.
func benchKeystores(ctx context.Context, r *report) error {
	peerKey, err := pki.NewKey()
	if err != nil {
		return err
	}
	hs, err := newHandshakeBench()
	if err != nil {
		return err
	}
	stores := []ksStore{
		{"file", func(context.Context) (keystore.Key, func(), error) {
			k, _, err := keystore.NewFileKey()
			return k, func() { k.Close() }, err
		}},
		{"tpm (swtpm)", openSWTPMKey},
		{"atecc608 (emulated)", func(ctx context.Context) (keystore.Key, func(), error) {
			k, _, err := keystore.NewATECC608KeyOnBus(ctx, atecc608sim.New(atecc608sim.Config{}), 0, 0)
			if err != nil {
				return nil, nil, err
			}
			return k, func() { k.Close() }, nil
		}},
	}

	r.printf("## Key stores (signatures, TLS handshakes)\n\n")
	r.printf("| figure | umbra | peer (same run) | ratio |\n|---|---|---|---|\n")
	var notes []string
	for _, s := range stores {
		key, closeKey, err := s.open(ctx)
		if errors.Is(err, errNoSWTPM) {
			notes = append(notes, fmt.Sprintf("The %s store was not measured: swtpm is not installed (Debian package swtpm; scripts/setup-deps.sh installs it).", s.name))
			continue
		}
		if err != nil {
			return fmt.Errorf("keystore %s: %w", s.name, err)
		}
		peerRate, _, err := signRate(ctx, peerKey)
		if err != nil {
			closeKey()
			return fmt.Errorf("keystore peer: %w", err)
		}
		rate, n, err := signRate(ctx, key)
		if err != nil {
			closeKey()
			return fmt.Errorf("keystore %s: sign: %w", s.name, err)
		}
		r.printf("| P-256 signatures per second, %s key store (%d signatures) | %.0f /s | in-memory `ecdsa.PrivateKey`: %.0f /s | %.2f× |\n",
			s.name, n, rate, peerRate, rate/peerRate)

		peerHS, _, err := hs.median(ctx, peerKey)
		if err != nil {
			closeKey()
			return fmt.Errorf("keystore peer: handshake: %w", err)
		}
		med, n, err := hs.median(ctx, key)
		closeKey()
		if err != nil {
			return fmt.Errorf("keystore %s: handshake: %w", s.name, err)
		}
		r.printf("| TLS 1.3 handshake with the client certificate's key in the %s store (median of %d) | %s | same handshake, in-memory client key: %s | %.1f× |\n",
			s.name, n, msPrecise(med), msPrecise(peerHS), ratio(med, peerHS))
	}
	r.printf("\n")
	r.printf("A handshake here is both ends of a full TLS 1.3 handshake (P-256 ECDHE, the server's and the client's certificate, no resumption) in one process over `net.Pipe`; the key store signs once per handshake. ")
	r.printf("The emulated ATECC608 answers at once, so its figures are the driver's cost (wake pulse, CRC, polling) and not the chip's: CryptoAuthLib's execution times put a real chip's Random, Nonce and Sign at up to 158 ms per signature.\n\n")
	for _, n := range notes {
		r.printf("%s\n\n", n)
	}
	return nil
}

// msPrecise formats a short duration with three decimals of milliseconds.
func msPrecise(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Nanoseconds())/1e6) }

// signRate signs SHA-256 digests with key until ksMaxSignatures or ksSignTime and
// returns the rate and how many were made.
func signRate(ctx context.Context, key crypto.Signer) (float64, int, error) {
	digest := sha256.Sum256([]byte("umbra keystore bench"))
	start := time.Now()
	n := 0
	for n < ksMaxSignatures && time.Since(start) < ksSignTime && ctx.Err() == nil {
		if _, err := key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			return 0, n, err
		}
		n++
	}
	if n == 0 {
		return 0, 0, ctx.Err()
	}
	return float64(n) / time.Since(start).Seconds(), n, nil
}

// handshakeBench holds a CA, a server certificate and the client certificate template for
// TLS handshakes with a client key from any store.
type handshakeBench struct {
	caKey   *ecdsa.PrivateKey
	ca      *x509.Certificate
	server  tls.Certificate
	clients *x509.CertPool
}

func newHandshakeBench() (*handshakeBench, error) {
	caKey, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := pki.NewSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca, err := pki.Issue(&x509.Certificate{SerialNumber: serial, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	h := &handshakeBench{caKey: caKey, ca: ca, clients: x509.NewCertPool()}
	h.clients.AddCert(ca)
	serverKey, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	serverCert, err := h.issue(&serverKey.PublicKey, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	h.server = tls.Certificate{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}
	return h, nil
}

// issue makes a certificate for pub, named "bench", signed by the CA.
func (h *handshakeBench) issue(pub crypto.PublicKey, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	serial, err := pki.NewSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return pki.Issue(&x509.Certificate{SerialNumber: serial, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"bench"}, ExtKeyUsage: []x509.ExtKeyUsage{usage}}, h.ca, pub, h.caKey)
}

// median runs handshakes whose client key is key until ksMaxHandshakes or
// ksHandshakeTime and returns the median time and how many ran.
func (h *handshakeBench) median(ctx context.Context, key crypto.Signer) (time.Duration, int, error) {
	clientCert, err := h.issue(key.Public(), x509.ExtKeyUsageClientAuth)
	if err != nil {
		return 0, 0, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(h.ca)
	client := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "bench",
		Certificates:           []tls.Certificate{{Certificate: [][]byte{clientCert.Raw}, PrivateKey: key}},
		ClientSessionCache:     nil, // a full handshake every time
		SessionTicketsDisabled: true}
	server := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{h.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: h.clients, SessionTicketsDisabled: true}
	var times []time.Duration
	start := time.Now()
	for len(times) < ksMaxHandshakes && time.Since(start) < ksHandshakeTime && ctx.Err() == nil {
		d, err := handshake(ctx, client, server)
		if err != nil {
			return 0, len(times), err
		}
		times = append(times, d)
	}
	if len(times) == 0 {
		return 0, 0, ctx.Err()
	}
	return median(times), len(times), nil
}

// handshake runs one TLS handshake between client and server over an in-memory pipe.
func handshake(ctx context.Context, client, server *tls.Config) (time.Duration, error) {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	t0 := time.Now()
	srvErr := make(chan error, 1)
	go func() { srvErr <- tls.Server(s, server).HandshakeContext(ctx) }()
	if err := tls.Client(c, client).HandshakeContext(ctx); err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	if err := <-srvErr; err != nil {
		return 0, fmt.Errorf("server: %w", err)
	}
	return time.Since(t0), nil
}

// errNoSWTPM says that swtpm is not installed.
var errNoSWTPM = errors.New("swtpm is not installed")

// openSWTPMKey starts a factory-fresh swtpm and makes a key in it; the release function
// closes the key and stops swtpm.
func openSWTPMKey(ctx context.Context) (keystore.Key, func(), error) {
	path, stopTPM, err := startSWTPM(ctx)
	if err != nil {
		return nil, nil, err
	}
	key, _, err := keystore.NewTPMKey(ctx, path)
	if err != nil {
		stopTPM()
		return nil, nil, err
	}
	return key, func() { key.Close(); stopTPM() }, nil
}

// startSWTPM runs swtpm on free loopback ports with its state in a temporary directory
// and returns the path keystore takes (tcp:127.0.0.1:PORT) and how to stop it.
// (hal/keystore/tpm/swtpmtest does the same for tests, through testing.TB.)
func startSWTPM(ctx context.Context) (string, func(), error) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		return "", nil, errNoSWTPM
	}
	dir, err := os.MkdirTemp("", "umbra-bench-swtpm")
	if err != nil {
		return "", nil, err
	}
	port, err := freePortPair()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port),
		"--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port+1),
		"--flags", "not-need-init,startup-clear")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("start swtpm: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stopTPM := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(swtpmStopTimeout):
			cmd.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(swtpmStartTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, swtpmPoll)
		if err == nil {
			conn.Close()
			return "tcp:" + addr, stopTPM, nil
		}
		select {
		case <-exited:
			stopTPM()
			return "", nil, fmt.Errorf("swtpm exited: %s", cmd.ProcessState)
		case <-ctx.Done():
			stopTPM()
			return "", nil, ctx.Err()
		case <-time.After(swtpmPoll):
		}
		if time.Now().After(deadline) {
			stopTPM()
			return "", nil, fmt.Errorf("swtpm not accepting on %s after %v", addr, swtpmStartTimeout)
		}
	}
}

// freePortPair finds a loopback port P such that P and P+1 are both free (swtpm's server
// and control ports).
func freePortPair() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free pair of loopback ports")
}
