package peers

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// Raw quic-go peer. Its windows equal umbra's transport.LAN profile, so that the peer
// differs from umbra by umbra's own work, not by flow control.
const (
	// quicALPN names the echo protocol in the QUIC handshake.
	quicALPN = "umbra-bench-echo"
	// quicStreamWindow and quicConnWindow are the largest flow-control windows quic-go
	// may grow to: they cover loopback's bandwidth × delay many times over.
	quicStreamWindow = 16 << 20
	quicConnWindow   = 32 << 20
)

// quicConfig is the quic-go configuration of both ends.
func quicConfig() *quic.Config {
	return &quic.Config{
		MaxStreamReceiveWindow:     quicStreamWindow,
		MaxConnectionReceiveWindow: quicConnWindow,
	}
}

// quicEcho is a quic-go server echoing every stream of every connection.
type quicEcho struct {
	ln     *quic.Listener
	ctx    context.Context // ends when stop is called
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// startQUICEcho starts a quic-go echo server on 127.0.0.1. It stops when stop is called
// or ctx ends.
func startQUICEcho(ctx context.Context) (*quicEcho, *quicClientConf, error) {
	serverTLS, clientTLS, err := TLSPair(quicALPN)
	if err != nil {
		return nil, nil, err
	}
	ln, err := quic.ListenAddr(loopback, serverTLS, quicConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("peers: quic listen: %w", err)
	}
	s := &quicEcho{ln: ln}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Go(func() {
		for {
			conn, err := ln.Accept(s.ctx)
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serveConn(conn) })
		}
	})
	return s, &quicClientConf{addr: ln.Addr().String(), tls: clientTLS, certDER: serverTLS.Certificates[0].Certificate[0]}, nil
}

// serveConn echoes each stream of conn until conn or the server closes.
func (s *quicEcho) serveConn(conn *quic.Conn) {
	stopOnCancel := context.AfterFunc(s.ctx, func() { conn.CloseWithError(0, "echo server stopped") })
	defer stopOnCancel()
	var streams sync.WaitGroup
	defer streams.Wait()
	for {
		st, err := conn.AcceptStream(s.ctx)
		if err != nil {
			return
		}
		streams.Go(func() {
			echoCopy(st, st)
			st.Close()
		})
	}
}

func (s *quicEcho) stop() {
	s.once.Do(func() {
		s.cancel()
		s.ln.Close()
		s.wg.Wait()
	})
}

// quicClientConf is what a client needs to reach a quicEcho.
type quicClientConf struct {
	addr    string
	tls     *tls.Config
	certDER []byte // the server's self-signed certificate, for clients in other processes
}

// dialQUICStream connects to an echo server started by startQUICEcho and opens one
// bidirectional stream. Closing the returned connection ends the stream.
func dialQUICStream(ctx context.Context, cc *quicClientConf) (*quic.Conn, *quic.Stream, error) {
	conn, err := quic.DialAddr(ctx, cc.addr, cc.tls, quicConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("peers: quic dial: %w", err)
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, nil, fmt.Errorf("peers: quic open stream: %w", err)
	}
	return conn, st, nil
}

// QUICThroughput sends bytes over one bidirectional stream of a raw quic-go connection on
// loopback to an echo server in this process and times their return. The handshake is not
// timed.
func QUICThroughput(ctx context.Context, bytes int64) (Result, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	srv, cc, err := startQUICEcho(ctx)
	if err != nil {
		return Result{}, err
	}
	defer srv.stop()
	conn, st, err := dialQUICStream(ctx, cc)
	if err != nil {
		return Result{}, err
	}
	defer conn.CloseWithError(0, "")
	r, err := echoThroughput(ctx, st, bytes, func() { conn.CloseWithError(0, "aborted") })
	if err != nil {
		return Result{}, fmt.Errorf("peers: quic echo: %w", err)
	}
	return r, nil
}

// QUICEchoLatency times n round trips of size bytes (at most 128 KiB) on one stream of a
// raw quic-go connection on loopback.
func QUICEchoLatency(ctx context.Context, n, size int) (Latency, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	srv, cc, err := startQUICEcho(ctx)
	if err != nil {
		return Latency{}, err
	}
	defer srv.stop()
	conn, st, err := dialQUICStream(ctx, cc)
	if err != nil {
		return Latency{}, err
	}
	defer conn.CloseWithError(0, "")
	l, err := echoLatency(ctx, st, n, size, func() { conn.CloseWithError(0, "aborted") })
	if err != nil {
		return Latency{}, fmt.Errorf("peers: quic echo latency: %w", err)
	}
	return l, nil
}
