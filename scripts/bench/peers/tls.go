package peers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Certificate of the TLS and QUIC echo servers.
const (
	// serverName is the name the clients verify; the certificate also holds 127.0.0.1.
	serverName = "localhost"
	// certLifetime covers any one run with room to spare.
	certLifetime = time.Hour
	// certBackdate tolerates a little clock difference at the certificate's start.
	certBackdate = time.Minute
)

// TLSPair returns a server configuration with a fresh self-signed ECDSA P-256
// certificate and a client configuration that trusts only that certificate, both TLS 1.3
// only. Go does not let TLS 1.3 cipher suites be configured: with AES hardware on both
// ends, as on any amd64 or arm64 bench machine, it negotiates TLS_AES_128_GCM_SHA256.
func TLSPair(alpn string) (server, client *tls.Config, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("peers: generate key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "umbra bench peer"},
		NotBefore:             now.Add(-certBackdate),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{serverName},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("peers: self-sign: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("peers: parse certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	var protos []string
	if alpn != "" {
		protos = []string{alpn}
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
		NextProtos:   protos,
	}
	client = &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		ServerName: serverName,
		NextProtos: protos,
	}
	return server, client, nil
}

// TLSThroughput sends bytes over one TLS 1.3 connection on loopback to an echo server in
// this process and times their return. The handshake is not timed.
func TLSThroughput(ctx context.Context, bytes int64) (Result, error) {
	r, _, err := tlsThroughput(ctx, bytes)
	return r, err
}

// tlsThroughput is TLSThroughput that also returns the negotiated cipher suite.
func tlsThroughput(ctx context.Context, bytes int64) (Result, uint16, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	serverConf, clientConf, err := TLSPair("")
	if err != nil {
		return Result{}, 0, err
	}
	ln, err := tls.Listen("tcp", loopback, serverConf)
	if err != nil {
		return Result{}, 0, fmt.Errorf("peers: tls listen: %w", err)
	}
	srv := serveEcho(ctx, ln)
	defer srv.Close()

	d := tls.Dialer{Config: clientConf}
	nc, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return Result{}, 0, fmt.Errorf("peers: tls dial: %w", err)
	}
	c := nc.(*tls.Conn)
	defer c.Close()
	suite := c.ConnectionState().CipherSuite
	r, err := echoThroughput(ctx, c, bytes, func() { c.Close() })
	if err != nil {
		return Result{}, suite, fmt.Errorf("peers: tls echo: %w", err)
	}
	return r, suite, nil
}
