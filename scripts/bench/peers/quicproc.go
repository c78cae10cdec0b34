package peers

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/umbranet/umbra/third_party/quic-go"
)

// The cross-process raw quic-go peer: the echo server runs in a process of its own, as
// each of umbra's hops does, so both pay the same cross-process wake-ups.

// ServeQUICEcho runs a quic-go echo server until ctx ends and first writes one line to w:
// its address and its certificate (base64 DER), for RemoteQUIC in another process.
func ServeQUICEcho(ctx context.Context, w io.Writer) error {
	srv, cc, err := startQUICEcho(ctx)
	if err != nil {
		return err
	}
	defer srv.stop()
	fmt.Fprintf(w, "%s %s\n", cc.addr, base64.StdEncoding.EncodeToString(cc.certDER))
	<-ctx.Done()
	return nil
}

// RemoteQUIC is a quic-go echo server in a child process.
type RemoteQUIC struct {
	cmd *exec.Cmd
	cc  *quicClientConf
}

// StartRemoteQUIC starts cmd (a process that calls ServeQUICEcho with its stdout) and
// reads where to reach it.
func StartRemoteQUIC(cmd *exec.Cmd) (*RemoteQUIC, error) {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("peers: start quic echo process: %w", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("peers: quic echo process: %w", err)
	}
	cc, err := parseRemote(line)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	return &RemoteQUIC{cmd: cmd, cc: cc}, nil
}

// PID is the server process's id, for CPU accounting.
func (r *RemoteQUIC) PID() int { return r.cmd.Process.Pid }

// Close stops the server process.
func (r *RemoteQUIC) Close() {
	r.cmd.Process.Kill()
	r.cmd.Wait()
}

// Throughput echoes bytes through one stream to the remote server and times their return.
func (r *RemoteQUIC) Throughput(ctx context.Context, bytes int64) (Result, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	conn, st, err := dialQUICStream(ctx, r.cc)
	if err != nil {
		return Result{}, err
	}
	defer conn.CloseWithError(0, "")
	return echoThroughput(ctx, st, bytes, func() { conn.CloseWithError(0, "aborted") })
}

// Latency times n round trips of size bytes on one stream to the remote server.
func (r *RemoteQUIC) Latency(ctx context.Context, n, size int) (Latency, error) {
	ctx, cancel := boundedContext(ctx)
	defer cancel()
	conn, st, err := dialQUICStream(ctx, r.cc)
	if err != nil {
		return Latency{}, err
	}
	defer conn.CloseWithError(0, "")
	return echoLatency(ctx, st, n, size, func() { conn.CloseWithError(0, "aborted") })
}

// ServeQUICRelay runs a bare quic-go relay until ctx ends: every stream of every
// connection it accepts is spliced to a stream of its own connection to upstream (the
// line a ServeQUICEcho process wrote: address and certificate). It first writes the
// same kind of line to w for RemoteQUIC. It is umbra's topology (client, relay process,
// server process, two QUIC hops) with none of umbra's work: no policy, no end-to-end
// encryption, no replay buffer.
func ServeQUICRelay(ctx context.Context, w io.Writer, upstream string) error {
	up, err := parseRemote(upstream)
	if err != nil {
		return err
	}
	serverTLS, _, err := TLSPair(quicALPN)
	if err != nil {
		return err
	}
	ln, err := quic.ListenAddr(loopback, serverTLS, quicConfig())
	if err != nil {
		return fmt.Errorf("peers: quic relay listen: %w", err)
	}
	defer ln.Close()
	fmt.Fprintf(w, "%s %s\n", ln.Addr(), base64.StdEncoding.EncodeToString(serverTLS.Certificates[0].Certificate[0]))
	for {
		down, err := ln.Accept(ctx)
		if err != nil {
			return nil
		}
		go relayConn(ctx, down, up)
	}
}

// relayConn splices each stream of down to a stream of one connection to up.
func relayConn(ctx context.Context, down *quic.Conn, up *quicClientConf) {
	defer down.CloseWithError(0, "")
	upConn, err := quic.DialAddr(ctx, up.addr, up.tls, quicConfig())
	if err != nil {
		return
	}
	defer upConn.CloseWithError(0, "")
	for {
		ds, err := down.AcceptStream(ctx)
		if err != nil {
			return
		}
		us, err := upConn.OpenStreamSync(ctx)
		if err != nil {
			return
		}
		go func() {
			echoCopy(us, ds)
			us.Close()
		}()
		go func() {
			echoCopy(ds, us)
			ds.Close()
		}()
	}
}

// parseRemote reads the line a ServeQUICEcho or ServeQUICRelay process writes.
func parseRemote(line string) (*quicClientConf, error) {
	addr, b64, _ := strings.Cut(strings.TrimSpace(line), " ")
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("peers: quic peer: bad certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("peers: quic peer: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &quicClientConf{addr: addr, certDER: der, tls: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: serverName, NextProtos: []string{quicALPN}}}, nil
}

// Line is what a process serving r writes first, for ServeQUICRelay's upstream.
func (r *RemoteQUIC) Line() string {
	return r.cc.addr + " " + base64.StdEncoding.EncodeToString(r.cc.certDER)
}
