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
	addr, b64, _ := strings.Cut(strings.TrimSpace(line), " ")
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("peers: quic echo process: bad certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("peers: quic echo process: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	cc := &quicClientConf{addr: addr, tls: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: serverName, NextProtos: []string{quicALPN}}}
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
