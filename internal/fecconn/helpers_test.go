package fecconn

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"umbra/internal/linksim"
	"umbra/internal/transport"
)

// testTLS is a self-signed server certificate the client trusts as its only root.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fecconn.test"},
		DNSNames: []string{"fecconn.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"fecconn-test"}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{RootCAs: roots, ServerName: "fecconn.test", NextProtos: []string{"fecconn-test"}, MinVersion: tls.VersionTLS13}
	return server, client
}

// radioQUIC is transport.Radio's QUIC configuration, which the shim is meant for.
func radioQUIC() *quic.Config {
	q := transport.Radio.QUIC()
	q.DisablePathMTUDiscovery = true
	return q
}

// pairOpts sets up a quicPair: each end wrapped with its Config, or plain when nil.
type pairOpts struct {
	server, client *Config
	// via returns where the client sends, given the server's address: a linksim
	// proxy, say. Nil means straight to the server.
	via  func(server net.Addr) net.Addr
	quic *quic.Config
}

// quicPair is a QUIC connection over loopback, with both ends' transports and shims.
type quicPair struct {
	clientTr, serverTr   *quic.Transport
	client, server       *quic.Conn
	clientFEC, serverFEC *Conn // nil for a plain end
	clientRaw, serverRaw *net.UDPConn
}

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wrapOrNot wraps pc with cfg, or returns pc itself when cfg is nil.
func wrapOrNot(t testing.TB, pc *net.UDPConn, cfg *Config) (net.PacketConn, *Conn) {
	t.Helper()
	if cfg == nil {
		return pc, nil
	}
	c, err := Wrap(pc, *cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, c
}

func newQUICPair(t testing.TB, o pairOpts) *quicPair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)
	p := &quicPair{serverRaw: listenLoopback(t), clientRaw: listenLoopback(t)}
	spc, sfec := wrapOrNot(t, p.serverRaw, o.server)
	cpc, cfec := wrapOrNot(t, p.clientRaw, o.client)
	p.serverFEC, p.clientFEC = sfec, cfec
	p.serverTr, p.clientTr = &quic.Transport{Conn: spc}, &quic.Transport{Conn: cpc}
	t.Cleanup(func() {
		p.clientTr.Close()
		p.serverTr.Close()
		spc.Close()
		cpc.Close()
	})
	qconf := o.quic
	if qconf == nil {
		qconf = radioQUIC()
	}
	ln, err := p.serverTr.Listen(serverTLS, qconf)
	if err != nil {
		t.Fatal(err)
	}
	to := net.Addr(p.serverRaw.LocalAddr())
	if o.via != nil {
		to = o.via(to)
	}
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	if p.client, err = p.clientTr.Dial(ctx, to, clientTLS, qconf); err != nil {
		t.Fatalf("dial: %v", err)
	}
	p.server = <-accepted
	if p.server == nil {
		t.Fatal("server accepted no connection")
	}
	return p
}

// viaLink returns a pairOpts.via that runs the client's packets through a linksim
// UDP proxy with the given impairments (Up: client to server).
func viaLink(t testing.TB, up, down linksim.Impairment) func(net.Addr) net.Addr {
	return func(server net.Addr) net.Addr {
		link, err := linksim.NewLink(up, down)
		if err != nil {
			t.Fatal(err)
		}
		proxy, err := linksim.NewUDPProxy(context.Background(), "127.0.0.1:0", server.String(), link)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { proxy.Close() })
		return proxy.Addr()
	}
}

// pattern returns n bytes of a seeded pseudo-random stream.
func pattern(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// transfer sends data from client to server over one stream and returns what the
// server read, its SHA-256 and how long it took, within ctx.
func transfer(ctx context.Context, p *quicPair, data []byte) ([sha256.Size]byte, int, time.Duration, error) {
	start := time.Now()
	type result struct {
		sum [sha256.Size]byte
		n   int
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, err := p.server.AcceptStream(ctx)
		if err != nil {
			got <- result{err: fmt.Errorf("accept: %w", err)}
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, s)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = int(n), err
		got <- r
	}()
	s, err := p.client.OpenStreamSync(ctx)
	if err != nil {
		return [sha256.Size]byte{}, 0, 0, fmt.Errorf("open: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		s.SetWriteDeadline(dl)
	}
	if _, err := s.Write(data); err != nil {
		return [sha256.Size]byte{}, 0, 0, fmt.Errorf("write: %w", err)
	}
	if err := s.Close(); err != nil {
		return [sha256.Size]byte{}, 0, 0, fmt.Errorf("close: %w", err)
	}
	select {
	case r := <-got:
		return r.sum, r.n, time.Since(start), r.err
	case <-ctx.Done():
		return [sha256.Size]byte{}, 0, 0, errors.New("transfer: " + ctx.Err().Error())
	}
}

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mangler relays UDP between one client and a server, passing each client-to-server
// packet through up, which returns what to forward (nil drops it).
type mangler struct {
	ln, upstream *net.UDPConn
	up           func(pkt []byte) []byte
}

// newMangler starts a relay to server; it stops at the test's end.
func newMangler(t testing.TB, server net.Addr, up func([]byte) []byte) net.Addr {
	t.Helper()
	m := &mangler{ln: listenLoopback(t), up: up}
	up2, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	m.upstream = up2
	t.Cleanup(func() { m.ln.Close(); m.upstream.Close() })
	client := make(chan net.Addr, 1)
	go func() {
		buf := make([]byte, maxRead)
		var known bool
		for {
			n, from, err := m.ln.ReadFrom(buf)
			if err != nil {
				return
			}
			if !known {
				client <- from
				known = true
			}
			if out := m.up(bytes.Clone(buf[:n])); out != nil {
				m.upstream.Write(out)
			}
		}
	}()
	go func() {
		buf := make([]byte, maxRead)
		to := <-client
		for {
			n, err := m.upstream.Read(buf)
			if err != nil {
				return
			}
			m.ln.WriteTo(buf[:n], to)
		}
	}()
	return m.ln.LocalAddr()
}
