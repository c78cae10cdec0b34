package agent

import (
	"crypto/tls"
	"fmt"

	"github.com/umbranet/umbra/internal/pki"
)

// The end-to-end layer: inside every circuit stream the two agents run TLS 1.3 with
// their identity certificates, so routers carry only ciphertext. Each end checks that
// the other is exactly the identity the controller's grant names; the key exchange is
// signed by the identities' own keys and trusts nothing on the control path.

// dialerTLS is the dialing agent's configuration: it presents its identity and accepts
// only the host the grant names.
func (a *Agent) dialerTLS(hostID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return a.currentCert(), nil
		},
		RootCAs:    a.roots,
		ServerName: pki.IdentityServerName(hostID),
		// Full-size records from the first byte: the circuit is not a web page whose
		// first bytes must render early, and small records cost an AEAD call each.
		DynamicRecordSizingDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return expectPeer(cs, hostID)
		},
	}
}

// hostTLS is the hosting agent's configuration: it requires the dialer the grant names.
func (a *Agent) hostTLS(dialerID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.currentCert(), nil
		},
		ClientAuth:                  tls.RequireAndVerifyClientCert,
		ClientCAs:                   a.roots,
		DynamicRecordSizingDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return expectPeer(cs, dialerID)
		},
	}
}

func expectPeer(cs tls.ConnectionState, id string) error {
	if len(cs.VerifiedChains) == 0 {
		return fmt.Errorf("circuit: peer presented no verified certificate")
	}
	subj, err := pki.SubjectOf(cs.VerifiedChains[0][0])
	if err != nil {
		return fmt.Errorf("circuit: %w", err)
	}
	if subj.Kind != pki.KindIdentity || subj.ID != id {
		return fmt.Errorf("circuit: peer is %s %q, not the identity the grant names", subj.Kind, subj.Name)
	}
	return nil
}

// tlsClient and tlsServer wrap a circuit stream in the end-to-end TLS session.
func tlsClient(c streamConn, conf *tls.Config) *tls.Conn { return tls.Client(c, conf) }
func tlsServer(c streamConn, conf *tls.Config) *tls.Conn { return tls.Server(c, conf) }
