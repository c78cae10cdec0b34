package resume

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// TestSwapsKeepBytesExact sends 20 MB each way at once while the stream underneath
// breaks mid-frame at points decided before the transfer starts and is replaced, and
// checks every byte arrives once, in order, followed by io.EOF.
func TestSwapsKeepBytesExact(t *testing.T) {
	// cutsEach is each side's number of cuts; their gaps add up to less than the side
	// sends (two under shortCut bytes, two up to a seventh of it), so all of them land
	// mid-transfer.
	const cutsEach = 4
	for _, tc := range []struct {
		name   string
		tcp    bool
		seed   uint64
		size   int
		window int
	}{
		{"pipe", false, 1, 20 << 20, 0},
		{"tcp-loopback", true, 2, 20 << 20, 0},
		{"pipe-odd-small-window", false, 3, 2 << 20, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkGoroutines(t)
			size := tc.size
			// The plans are drawn here, before any goroutine starts; each goroutine
			// below gets a generator of its own.
			rng := mrand.New(mrand.NewPCG(tc.seed, 0))
			h := &harness{
				a: New(Config{Window: tc.window}), b: New(Config{Window: tc.window}), tcp: tc.tcp,
				cutA: mixedCuts(rng, cutsEach, int64(size)/7),
				cutB: mixedCuts(rng, cutsEach, int64(size)/7),
			}
			defer h.a.Abort(nil)
			defer h.b.Abort(nil)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			served := result(func() error { h.run(ctx, t); return nil })

			ab, ba := randomBytes(tc.seed*2, size), randomBytes(tc.seed*2+1, size)
			sa := result(func() error { return sendAll(h.a, ab, mrand.New(mrand.NewPCG(tc.seed, 1))) })
			sb := result(func() error { return sendAll(h.b, ba, mrand.New(mrand.NewPCG(tc.seed, 2))) })
			var gotA, gotB []byte
			ra := result(func() (err error) { gotA, err = recvAll(h.a, size, mrand.New(mrand.NewPCG(tc.seed, 3))); return })
			rb := result(func() (err error) { gotB, err = recvAll(h.b, size, mrand.New(mrand.NewPCG(tc.seed, 4))); return })
			for what, ch := range map[string]<-chan error{"a's send": sa, "b's send": sb, "a's receive": ra, "b's receive": rb} {
				if err := await(t, what, ch); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			if !bytes.Equal(gotB, ab) {
				t.Errorf("a→b: %s", firstDiff(gotB, ab))
			}
			if !bytes.Equal(gotA, ba) {
				t.Errorf("b→a: %s", firstDiff(gotA, ba))
			}
			h.a.Close()
			h.b.Close()
			await(t, "the streams' end", served)
			for i, err := range h.serveErr[len(h.serveErr)-2:] {
				if err != nil {
					t.Errorf("last Serve %d = %v, want nil (a clean end)", i, err)
				}
			}
			if got, want := int(h.cutCount.Load()), h.cuts(); got != want {
				t.Errorf("cuts = %d, want %d (all of them mid-transfer)", got, want)
			}
			as, bs := h.a.Stats(), h.b.Stats()
			t.Logf("streams %d; a %+v; b %+v", h.streams+1, as, bs)
			if as.Resumes == 0 || bs.Resumes == 0 {
				t.Errorf("resumes = %d and %d, want some on both ends", as.Resumes, bs.Resumes)
			}
			if as.Received != uint64(size) || bs.Received != uint64(size) {
				t.Errorf("received = %d and %d, want %d each (no byte twice)", as.Received, bs.Received, size)
			}
		})
	}
}

// TestTLSOverSwaps runs a TLS 1.3 session over a pair of Conns, as the agents' end-to-end
// layer does, and replaces the stream under it 5 times mid-transfer: TLS must not notice.
func TestTLSOverSwaps(t *testing.T) {
	checkGoroutines(t)
	const size = 4 << 20
	const cuts = 5
	// handshakeCut is the most bytes the client's first cut allows: its ClientHello
	// alone is larger, so the first stream breaks inside the handshake.
	const handshakeCut = 200
	rng := mrand.New(mrand.NewPCG(7, 0))
	// The client's side breaks three times, the server's twice; each side's gaps add up
	// to less than the 4 MB it sends, so every cut lands mid-transfer.
	cutA := []int64{1 + rng.Int64N(handshakeCut), 1 + rng.Int64N(size/cuts), 1 + rng.Int64N(size/cuts)}
	cutB := []int64{1 + rng.Int64N(size/cuts), 1 + rng.Int64N(size/cuts)}
	h := &harness{a: New(Config{}), b: New(Config{}), tcp: true, cutA: cutA, cutB: cutB}
	defer h.a.Abort(nil)
	defer h.b.Abort(nil)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	served := result(func() error { h.run(ctx, t); return nil })

	serverConf, clientConf := tlsConfigs(t)
	client, server := tls.Client(h.a, clientConf), tls.Server(h.b, serverConf)
	hs := result(func() error { return server.HandshakeContext(ctx) })
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := await(t, "server handshake", hs); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if v := client.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("TLS version = %x, want TLS 1.3", v)
	}

	up, down := randomBytes(70, size), randomBytes(71, size)
	sendTLS := func(c *tls.Conn, data []byte, seed uint64) error {
		rng := mrand.New(mrand.NewPCG(7, seed))
		for len(data) > 0 {
			n := min(len(data), 1+rng.IntN(64<<10))
			if _, err := c.Write(data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
		return c.CloseWrite()
	}
	sc := result(func() error { return sendTLS(client, up, 3) })
	ss := result(func() error { return sendTLS(server, down, 4) })
	var gotUp, gotDown []byte
	rs := result(func() (err error) { gotUp, err = recvAll(server, size, mrand.New(mrand.NewPCG(7, 1))); return })
	rc := result(func() (err error) { gotDown, err = recvAll(client, size, mrand.New(mrand.NewPCG(7, 2))); return })
	for what, ch := range map[string]<-chan error{"client send": sc, "server send": ss, "server receive": rs, "client receive": rc} {
		if err := await(t, what, ch); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if !bytes.Equal(gotUp, up) {
		t.Errorf("client→server: %s", firstDiff(gotUp, up))
	}
	if !bytes.Equal(gotDown, down) {
		t.Errorf("server→client: %s", firstDiff(gotDown, down))
	}
	client.Close()
	server.Close()
	await(t, "the streams' end", served)
	if got := int(h.cutCount.Load()); got != cuts {
		t.Errorf("swaps = %d, want %d (all of them mid-transfer)", got, cuts)
	}
	t.Logf("a %+v; b %+v", h.a.Stats(), h.b.Stats())
}

// tlsConfigs returns TLS 1.3 server and client configurations around a self-signed
// certificate made for the test.
func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "resume-test"},
		DNSNames:     []string{"resume-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
	}
	client = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "resume-test"}
	return server, client
}
