package transport

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/umbranet/umbra/third_party/quic-go"

	"github.com/umbranet/umbra/internal/linksim"
)

// listenRadio listens on loopback with the Radio profile and hands the listener to
// serve in its own goroutine; the listener closes with the test.
func listenRadio(t *testing.T, ctx context.Context, serverTLS *tls.Config, serve func(context.Context, *quic.Listener)) *quic.Listener {
	t.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", serverTLS, Radio.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ctx, ln)
	return ln
}

// dialOverLink dials ln with the Radio profile through an emulated link that starts with
// the impairments up and down, and returns the link, its proxy and the connection, all
// closed with the test.
func dialOverLink(t *testing.T, ctx context.Context, ln *quic.Listener, clientTLS *tls.Config, up, down linksim.Impairment) (*linksim.Link, *linksim.UDPProxy, *quic.Conn) {
	t.Helper()
	link, proxy := linkTo(t, ctx, ln.Addr(), up, down)
	conn, err := quic.DialAddr(ctx, proxy.Addr().String(), clientTLS, Radio.QUIC())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return link, proxy, conn
}

// linkTo starts a UDP proxy to target through an emulated link that starts with the
// impairments up and down; the proxy closes with the test.
func linkTo(t *testing.T, ctx context.Context, target net.Addr, up, down linksim.Impairment) (*linksim.Link, *linksim.UDPProxy) {
	t.Helper()
	link, err := linksim.NewLink(up, down)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := linksim.NewUDPProxy(ctx, "127.0.0.1:0", target.String(), link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	return link, proxy
}
