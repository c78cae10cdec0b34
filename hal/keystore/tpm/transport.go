package tpm

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

const (
	// responseHeaderSize is a TPM 2.0 response header: tag (2), size (4), code (4).
	responseHeaderSize = 10
	// responseSizeOffset and responseCodeOffset locate the header's size and code.
	responseSizeOffset = 2
	responseCodeOffset = 6
	// maxResponseSize bounds a response; TPMs report 4096 (TPM_PT_MAX_RESPONSE_SIZE),
	// this leaves room for larger ones.
	maxResponseSize = 64 << 10
	// streamCommandTimeout bounds one command on the TCP stream. ECC key creation takes
	// well under a second on swtpm; the margin is for a loaded CI machine.
	streamCommandTimeout = 30 * time.Second

	// retryAttempts and retryDelay govern resending a command the TPM asked to retry
	// (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING); the delay grows linearly.
	retryAttempts = 5
	retryDelay    = 20 * time.Millisecond
)

// stream is a transport.TPM for swtpm's `--server type=tcp` port, which carries the
// bare TPM 2.0 command stream: a command goes out as is, and the response is read as a
// header followed by the rest of the size it announces. go-tpm's transport/tcp does not
// fit: it frames every command in the Microsoft simulator protocol (TPM_SEND_COMMAND,
// locality, length) and needs that protocol's platform port, and transport's
// FromReadWriteCloser reads a response with a single Read, which TCP may split.
type stream struct {
	conn   net.Conn
	broken error // set after an I/O error leaves the stream mid-response
}

// Send writes one command and reads its response.
func (s *stream) Send(cmd []byte) ([]byte, error) {
	if s.broken != nil {
		return nil, fmt.Errorf("connection unusable after earlier error: %w", s.broken)
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil {
		s.broken = err
		return nil, err
	}
	return rsp, nil
}

func (s *stream) roundTrip(cmd []byte) ([]byte, error) {
	if err := s.conn.SetDeadline(time.Now().Add(streamCommandTimeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("send command: %w", err)
	}
	hdr := make([]byte, responseHeaderSize)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[responseSizeOffset:])
	if size < responseHeaderSize || size > maxResponseSize {
		return nil, fmt.Errorf("read response: bad size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[responseHeaderSize:]); err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	return rsp, nil
}

// Close closes the TCP connection.
func (s *stream) Close() error { return s.conn.Close() }

// retrying resends commands the TPM answers with a "not now" warning. go-tpm returns
// those as errors; real TPMs send them during self-test and under load. Resending is
// safe here because every command uses a password session, which carries no nonce.
type retrying struct {
	transport.TPMCloser
}

// Send sends cmd, retrying while the TPM asks to.
func (r retrying) Send(cmd []byte) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		rsp, err := r.TPMCloser.Send(cmd)
		if err != nil || attempt == retryAttempts || !askedToRetry(rsp) {
			return rsp, err
		}
		time.Sleep(time.Duration(attempt) * retryDelay)
	}
}

func askedToRetry(rsp []byte) bool {
	if len(rsp) < responseHeaderSize {
		return false
	}
	switch tpm2.TPMRC(binary.BigEndian.Uint32(rsp[responseCodeOffset:])) {
	case tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting:
		return true
	}
	return false
}
