package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/linksim"
	"github.com/umbranet/umbra/internal/pki"
)

// TestRadioRidesOutARoundTripJump opens a Radio connection on a clean link, then turns the
// link into a 64 kbit/s radio with a 200 ms round trip, as when a ground station's link
// settles on the bench and the drone then flies out of Wi-Fi range onto its telemetry
// radio. QUIC's round-trip estimate is still the clean link's few milliseconds, so its
// probe timer fires long before any acknowledgement can come back. quic-go v0.65 declared
// the packet each probe replaced lost, and so took no round-trip sample from its late
// acknowledgement: the estimate never grew, and both ends kept probing, filling the radio
// (66 packets a second each way for 25 s in the bench's lab) and holding every echo
// behind a full modem queue. third_party/quic-go samples those acknowledgements too.
func TestRadioRidesOutARoundTripJump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)
	ln := listenRadio(t, ctx, serverTLS, echoStreams)
	// Without the fix a jump set off the storm two times in three: two connections make a
	// miss unlikely.
	for round := range 2 {
		link, proxy, conn := dialOverLink(t, ctx, ln, clientTLS, linksim.Impairment{}, linksim.Impairment{})
		// Settle on the clean link: the round-trip estimate learns about a millisecond.
		for range 20 {
			echoOnce(t, ctx, conn, 40)
		}
		radio := linksim.Impairment{Delay: 100 * time.Millisecond, RateBitsPerSec: 64_000, QueuePackets: 16}
		if err := link.SetUp(radio); err != nil {
			t.Fatal(err)
		}
		if err := link.SetDown(radio); err != nil {
			t.Fatal(err)
		}
		// The agent's link heartbeat: a datagram every 250 ms, echoed by the router.
		beatCtx, stopBeat := context.WithCancel(ctx)
		go heartbeat(beatCtx, conn, 250*time.Millisecond)
		before := proxy.Stats()
		// Echo 64 bytes at a time for 6 s, as an operator's terminal does.
		var took []time.Duration
		for until := time.Now().Add(6 * time.Second); time.Now().Before(until); {
			began := time.Now()
			echoOnce(t, ctx, conn, 64)
			took = append(took, time.Since(began))
		}
		stopBeat()
		after := proxy.Stats()
		slices.Sort(took)
		median := took[len(took)/2]
		up, down := after.Up.PacketsIn-before.Up.PacketsIn, after.Down.PacketsIn-before.Down.PacketsIn
		t.Logf("round %d: %d echoes, median %v, slowest %v; %d packets up, %d down; smoothed RTT %v",
			round, len(took), median, took[len(took)-1], up, down, conn.ConnectionStats().SmoothedRTT)
		// A round trip is 200 ms plus about 40 ms on the air for the echo's packets. The
		// echoes, heartbeats and acknowledgements take about 105 packets each way; the
		// storm took 460 to 490.
		if median > 400*time.Millisecond {
			t.Errorf("round %d: median echo %v over a 200 ms radio, want under 400 ms", round, median)
		}
		if up > 250 || down > 250 {
			t.Errorf("round %d: %d packets up and %d down in 6 s on a 64 kbit/s radio, want at most 250 each: QUIC probes on a stale round trip (smoothed RTT %v)",
				round, up, down, conn.ConnectionStats().SmoothedRTT)
		}
	}
}

// echoOnce writes n bytes on a new stream and reads them back.
func echoOnce(t *testing.T, ctx context.Context, conn *quic.Conn, n int) {
	t.Helper()
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, n)
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := io.ReadFull(s, msg); err != nil {
		t.Fatalf("echo of %d bytes: %v", n, err)
	}
}

// heartbeat sends conn a small datagram every period and reads the echoes, until ctx
// ends: what an agent's link watch does.
func heartbeat(ctx context.Context, conn *quic.Conn, period time.Duration) {
	go func() {
		for {
			if _, err := conn.ReceiveDatagram(ctx); err != nil {
				return
			}
		}
	}()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			conn.SendDatagram(make([]byte, 9))
		}
	}
}

// echoStreams echoes every stream of every connection ln accepts until ctx ends.
func echoStreams(ctx context.Context, ln *quic.Listener) {
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		go func() {
			for {
				d, err := c.ReceiveDatagram(ctx)
				if err != nil {
					return
				}
				c.SendDatagram(d)
			}
		}()
		go func() {
			for {
				s, err := c.AcceptStream(ctx)
				if err != nil {
					return
				}
				go func() {
					defer s.Close()
					io.Copy(s, s)
				}()
			}
		}()
	}
}

// testTLS makes a CA, a server and a client certificate, and the TLS configurations of
// each end with the edge ALPN.
func testTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	caKey, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca, err := pki.Issue(&x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage) tls.Certificate {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := pki.Issue(&x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "end"},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			DNSNames: []string{"router.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	}
	roots := pki.Pool(ca)
	server = &tls.Config{
		Certificates: []tls.Certificate{leaf(2, x509.ExtKeyUsageServerAuth)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: roots,
		NextProtos: []string{ALPNEdge}, MinVersion: tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{leaf(3, x509.ExtKeyUsageClientAuth)},
		RootCAs:      roots, ServerName: "router.test",
		NextProtos: []string{ALPNEdge}, MinVersion: tls.VersionTLS13,
	}
	return server, client
}
