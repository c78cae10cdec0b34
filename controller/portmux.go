package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/umbranet/umbra/controller/cluster"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/transport"
)

// Bounds of the TCP port's handshakes.
const (
	// handshakeTimeout bounds a TLS handshake on the management port, so a peer that
	// connects and stays silent holds nothing for long.
	handshakeTimeout = 10 * time.Second
	// httpBacklog bounds handshaken management connections not yet taken by the server.
	httpBacklog = 64
)

// portMux is the management port's listener: it completes each TLS handshake and hands
// connections whose ALPN is transport.ALPNRaft, from a controller of this cluster, to
// Raft; the others are the management API's (HTTP/1.1).
type portMux struct {
	ln    net.Listener
	conf  *tls.Config
	raft  *cluster.StreamLayer
	check func(tls.ConnectionState) error
	conns chan net.Conn

	once   sync.Once
	closed chan struct{}
}

func newPortMux(ctx context.Context, ln net.Listener, conf *tls.Config, raft *cluster.StreamLayer, check func(tls.ConnectionState) error) *portMux {
	m := &portMux{ln: ln, conf: conf, raft: raft, check: check, conns: make(chan net.Conn, httpBacklog), closed: make(chan struct{})}
	go m.run(ctx)
	return m
}

func (m *portMux) run(ctx context.Context) {
	defer m.Close()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		go m.handshake(ctx, c)
	}
}

func (m *portMux) handshake(ctx context.Context, raw net.Conn) {
	tc := tls.Server(raw, m.conf)
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		tc.Close()
		return
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol == transport.ALPNRaft {
		if err := m.check(st); err != nil {
			tc.Close()
			return
		}
		m.raft.Handoff(tc)
		return
	}
	select {
	case m.conns <- tc:
	case <-m.closed:
		tc.Close()
	}
}

// Accept returns the next management API connection.
func (m *portMux) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case <-m.closed:
		return nil, net.ErrClosed
	}
}

// Close closes the TCP listener.
func (m *portMux) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		err = m.ln.Close()
	})
	return err
}

// Addr is the TCP listener's address.
func (m *portMux) Addr() net.Addr { return m.ln.Addr() }

// checkPeerController admits a Raft connection from a controller of this cluster whose
// certificate was not revoked (a deleted member's).
func (c *Controller) checkPeerController(st tls.ConnectionState) error {
	if len(st.VerifiedChains) == 0 {
		return errors.New("controller: raft connection without a verified certificate")
	}
	leaf := st.VerifiedChains[0][0]
	if err := cluster.CheckController(st.VerifiedChains[0]); err != nil {
		return err
	}
	if revoked, _ := c.store.Revoked(pki.SerialString(leaf)); revoked {
		return errors.New("controller: raft connection with a revoked certificate")
	}
	return nil
}

// joinCluster asks the cluster to add a joined controller that has no Raft state yet
// (its first run after `umbra controller join`).
func (c *Controller) joinCluster(ctx context.Context) {
	if !c.cfg.Joined || c.node.HasState() {
		return
	}
	c.log.Info("asking the cluster to add this controller", "peers", c.cfg.Peers)
	if err := c.node.AskToJoin(ctx, c.cfg.Peers); err == nil {
		c.log.Info("added to the cluster")
	}
}
