package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/wire"
)

// Certificate renewal: the agent asks for a new certificate over its router link once two
// thirds of the current one's lifetime have passed, with the same key, so a fleet does
// not die on day 90.
const (
	// renewAt is the fraction of the lifetime after which renewal starts.
	renewNumerator, renewDenominator = 2, 3
	// renewRetryMax caps the wait between failed renewals.
	renewRetryMax = 30 * time.Second
	// renewRetryMin is the first wait after a failed renewal.
	renewRetryMin = 500 * time.Millisecond
)

// currentCert is the identity's certificate in use; renewal replaces it.
func (a *Agent) currentCert() *tls.Certificate {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.cert
	return &c
}

// renewLoop renews the certificate whenever its time comes, until ctx ends.
func (a *Agent) renewLoop(ctx context.Context) {
	retry := renewRetryMin
	for {
		leaf := a.currentCert().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		at := leaf.NotBefore.Add(life * renewNumerator / renewDenominator)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		if err := a.renewOnce(ctx); err != nil {
			a.log.Warn("certificate renewal failed", "err", err, "expires", leaf.NotAfter)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			retry = min(2*retry, renewRetryMax, max(renewRetryMin, time.Until(leaf.NotAfter)/10))
			continue
		}
		retry = renewRetryMin
	}
}

// renewOnce sends a CSR signed by the identity's key over the router link, checks the
// new chain and writes it to the identity file atomically.
func (a *Agent) renewOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	conn, err := a.waitConn(ctx)
	if err != nil {
		return err
	}
	cur := a.currentCert()
	key, ok := cur.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("renew: key cannot sign")
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return fmt.Errorf("renew: CSR: %w", err)
	}
	var out wire.Renewed
	if err := a.request(ctx, conn, wire.TypeRenew, wire.Renew{CSR: csr}, wire.TypeRenewed, &out); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	chain, err := pki.ParseCerts([]byte(out.Cert))
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	subj, err := pki.Verify(chain, a.roots, x509.ExtKeyUsageClientAuth)
	if err != nil || subj.ID != a.id.ID || !pki.SameKey(chain[0].PublicKey, key.Public()) {
		return fmt.Errorf("renew: the controller's certificate does not fit this identity: %v", err)
	}
	next := tls.Certificate{PrivateKey: cur.PrivateKey, Leaf: chain[0]}
	for _, c := range chain {
		next.Certificate = append(next.Certificate, c.Raw)
	}
	if a.idPath != "" {
		f := a.identityFile()
		f.Cert = out.Cert
		if err := f.Save(a.idPath); err != nil {
			return fmt.Errorf("renew: %w", err)
		}
	}
	a.mu.Lock()
	a.cert = next
	a.id.Cert = out.Cert
	a.mu.Unlock()
	a.log.Info("certificate renewed", "serial", pki.SerialString(chain[0]), "not_after", chain[0].NotAfter)
	return nil
}
