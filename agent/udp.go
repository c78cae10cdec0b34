package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/quic-go/quic-go"
)

// serveUDPDial carries a local UDP listener's flows over circuits.
func (a *Agent) serveUDPDial(pc net.PacketConn, st *dialState) {
	<-a.runCtx.Done()
	pc.Close()
}

// hostUDP delivers a UDP circuit to the local service.
func (a *Agent) hostUDP(ctx context.Context, conn *quic.Conn, cid uint64, tc *tls.Conn, h *hostState) error {
	return errors.New("UDP circuits are not built yet")
}
