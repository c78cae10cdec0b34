package lane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// quicPair is a QUIC connection over loopback with the transports of both ends, whose
// non-QUIC packets the test reads.
type quicPair struct {
	clientTr, serverTr *quic.Transport
	client, server     *quic.Conn
}

// testTLS is a self-signed server certificate the client trusts as its only root.
func testTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lane.test"},
		DNSNames: []string{"lane.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, NextProtos: []string{"lane-test"}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{RootCAs: roots, ServerName: "lane.test", NextProtos: []string{"lane-test"}, MinVersion: tls.VersionTLS13}
	return server, client
}

// newQUICPair connects a client to a server on loopback; the client's packets go to
// via (a linksim proxy, say) when it is set, else straight to the server.
func newQUICPair(t testing.TB, via func(server net.Addr) net.Addr) *quicPair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	serverTLS, clientTLS := testTLS(t)
	spc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cpc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &quicPair{serverTr: &quic.Transport{Conn: spc}, clientTr: &quic.Transport{Conn: cpc}}
	t.Cleanup(func() {
		p.clientTr.Close()
		p.serverTr.Close()
		spc.Close()
		cpc.Close()
	})
	ln, err := p.serverTr.Listen(serverTLS, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	to := net.Addr(spc.LocalAddr())
	if via != nil {
		to = via(to)
	}
	accepted := make(chan *quic.Conn, 1)
	go func() {
		c, err := ln.Accept(ctx)
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	if p.client, err = p.clientTr.Dial(ctx, to, clientTLS, &quic.Config{}); err != nil {
		t.Fatal(err)
	}
	p.server = <-accepted
	if p.server == nil {
		t.Fatal("server accepted no connection")
	}
	return p
}

// lanes makes both ends' lanes of p.
func (p *quicPair) lanes(t testing.TB, cfg Config) (client, server *Lane) {
	t.Helper()
	client, err := New(p.client.ConnectionState().TLS, true, p.clientTr.WriteTo, p.client.RemoteAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	server, err = New(p.server.ConnectionState().TLS, false, p.serverTr.WriteTo, p.server.RemoteAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	Prime(p.clientTr.ReadNonQUICPacket)
	Prime(p.serverTr.ReadNonQUICPacket)
	return client, server
}

// readLane hands every datagram tr's lane l receives to got, until ctx ends.
func readLane(ctx context.Context, tr *quic.Transport, l *Lane, got func([]byte)) {
	Pump(ctx, tr.ReadNonQUICPacket, func(pkt []byte, from net.Addr) {
		if d, err := l.Receive(nil, pkt, from); err == nil && d != nil {
			got(d)
		}
	})
}
