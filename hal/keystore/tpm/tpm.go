// Package tpm keeps a device's identity key inside a TPM 2.0: an ECDSA P-256 signing
// key created under the owner hierarchy's storage key, used through crypto.Signer. It
// hands out only the TPM-sealed key blobs for the identity file; it never sees, stores
// or exports the private scalar, and it does not know about identity files or Refs.
package tpm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// maxTransientObjects bounds how many leftover transient objects one look lists; TPMs
// hold three to a few dozen.
const maxTransientObjects = 64

// tcpPrefix marks a path as swtpm's TCP server port ("tcp:127.0.0.1:2321") rather
// than a device file.
const tcpPrefix = "tcp:"

// Errors that name a TPM condition the operator can act on; match them with errors.Is.
var (
	// ErrNoDevice is returned by Open when the device file does not exist.
	ErrNoDevice = errors.New("no such device")
	// ErrLockout is returned when the TPM refuses authorization because its
	// dictionary-attack protection is engaged.
	ErrLockout = errors.New("TPM is in dictionary-attack lockout; wait for the lockout to expire or reset it with the lockout authorization (tpm2_dictionarylockout -c)")
	// ErrOwnerAuth is returned when the owner hierarchy has a password, which umbra
	// does not use and cannot supply.
	ErrOwnerAuth = errors.New("TPM owner hierarchy has a password set; umbra needs an empty owner authorization")
	// ErrWrongTPM is returned by LoadKey when the blobs were sealed by another TPM or
	// by this one before it was cleared.
	ErrWrongTPM = errors.New("key blobs were not made by this TPM (it was cleared, or this is another device)")
	// ErrClosed is returned when a TPM or Key is used after Close.
	ErrClosed = errors.New("closed")
)

// srkTemplate is the TCG reference ECC P-256 storage root key template. The TPM derives
// the same primary key from it for as long as its owner seed lives, so the key is
// recreated on every use and never has to occupy a persistent handle.
var srkTemplate = tpm2.ECCSRKTemplate

// signingKeyTemplate describes the identity key: P-256 ECDSA with SHA-256, generated
// inside the TPM (sensitiveDataOrigin), bound to this TPM and to its parent (fixedTPM,
// fixedParent, so it can never be duplicated out), usable with an empty password
// (userWithAuth).
var signingKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		// The key's password is empty, so dictionary-attack protection guards nothing;
		// without noDA anyone able to send bad passwords to other objects could lock the
		// drone out of its own identity.
		NoDA:        true,
		SignEncrypt: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme: tpm2.TPMTECCScheme{
			Scheme: tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{
				HashAlg: tpm2.TPMAlgSHA256,
			}),
		},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// TPM is a connection to one TPM 2.0. It is safe for concurrent use: one command is on
// the wire at a time. Keys made from it share the connection, which stays open until
// the TPM and every Key from it are closed.
type TPM struct {
	path string

	mu     sync.Mutex // serialises commands and guards the fields below
	tr     transport.TPMCloser
	refs   int  // the caller's hold plus one per open Key
	closed bool // the caller's hold was released
}

// Open connects to the TPM at path: a device such as /dev/tpmrm0, or tcp:HOST:PORT for
// swtpm's TCP server port. ctx bounds only the connection attempt.
func Open(ctx context.Context, path string) (*TPM, error) {
	var (
		tr  transport.TPMCloser
		err error
	)
	if addr, ok := strings.CutPrefix(path, tcpPrefix); ok {
		tr, err = dialStream(ctx, addr)
	} else {
		tr, err = openDevice(path)
	}
	if err != nil {
		return nil, err
	}
	t := &TPM{path: path, tr: retrying{tr}, refs: 1}
	t.flushLeftovers()
	return t, nil
}

// flushLeftovers evicts transient objects that a process which died holding this TPM
// left behind. swtpm's port and a bare /dev/tpm0 have no resource manager: objects
// outlive the connection that loaded them, the TPM has room for only three, and after
// three crashed agents no key would load again (TPM_RC_OBJECT_MEMORY). Such a TPM serves
// one connection at a time, so every transient object it lists while this one is open
// is a leftover. Behind /dev/tpmrm0 the resource manager shows each connection only its
// own objects, of which a new one has none. Failures are not reported: the key
// operations that follow report the TPM's state better.
func (t *TPM) flushLeftovers() {
	t.mu.Lock()
	defer t.mu.Unlock()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTTransient) << 24,
		PropertyCount: maxTransientObjects,
	}.Execute(t.tr)
	if err != nil {
		return
	}
	handles, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		return
	}
	for _, h := range handles.Handle {
		t.flushLocked(h)
	}
}

func openDevice(path string) (transport.TPMCloser, error) {
	tr, err := linuxtpm.Open(path)
	switch {
	case err == nil:
		return tr, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("tpm: open %s: %w", path, ErrNoDevice)
	case errors.Is(err, linuxtpm.ErrFileIsNotDevice):
		return nil, fmt.Errorf("tpm: open %s: not a device file", path)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		// Drop the PathError's own "open /dev/tpmrm0" so the path is named once.
		err = pe.Err
	}
	return nil, fmt.Errorf("tpm: open %s: %w", path, err)
}

func dialStream(ctx context.Context, addr string) (transport.TPMCloser, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("tpm: connect %s: %w", addr, syscall.ECONNREFUSED)
		}
		return nil, fmt.Errorf("tpm: connect %s: %w", addr, err)
	}
	return &stream{conn: conn}, nil
}

// Path returns the device path or tcp:HOST:PORT the TPM was opened with.
func (t *TPM) Path() string { return t.path }

// Close releases the caller's hold on the connection. The connection itself closes once
// every Key made from this TPM is closed too.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return t.releaseLocked()
}

// releaseLocked drops one hold and closes the transport with the last one.
func (t *TPM) releaseLocked() error {
	t.refs--
	if t.refs > 0 {
		return nil
	}
	err := t.tr.Close()
	t.tr = nil
	if err != nil {
		return fmt.Errorf("tpm: close %s: %w", t.path, err)
	}
	return nil
}

// CreateKey makes a new P-256 signing key in the TPM and loads it. public and private
// are the blobs to keep in the identity file; private is sealed by the TPM's storage
// key and useless anywhere else.
func (t *TPM) CreateKey(ctx context.Context) (key *Key, public, private []byte, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usableLocked(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("tpm: create key: %w", err)
	}
	srk, err := t.createPrimaryLocked()
	if err != nil {
		return nil, nil, nil, err
	}
	defer t.flushLocked(srk.Handle)

	created, err := tpm2.Create{
		ParentHandle: srk,
		InPublic:     tpm2.New2B(signingKeyTemplate),
	}.Execute(t.tr)
	if err != nil {
		return nil, nil, nil, wrap("create key", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("tpm: create key: %w", err)
	}
	key, err = t.loadLocked(srk, created.OutPublic, created.OutPrivate)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, tpm2.Marshal(created.OutPublic), tpm2.Marshal(created.OutPrivate), nil
}

// LoadKey loads a key CreateKey made, from its public and private blobs. It fails with
// ErrWrongTPM if the TPM has been cleared since, or is not the one that made the key.
func (t *TPM) LoadKey(ctx context.Context, public, private []byte) (*Key, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](public)
	if err != nil {
		return nil, fmt.Errorf("tpm: load key: public blob: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](private)
	if err != nil {
		return nil, fmt.Errorf("tpm: load key: private blob: %w", err)
	}
	if _, err := publicKey(*pub); err != nil {
		return nil, fmt.Errorf("tpm: load key: public blob: %w", err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usableLocked(ctx); err != nil {
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	srk, err := t.createPrimaryLocked()
	if err != nil {
		return nil, err
	}
	defer t.flushLocked(srk.Handle)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	return t.loadLocked(srk, *pub, *priv)
}

func (t *TPM) usableLocked(ctx context.Context) error {
	if t.closed {
		return ErrClosed
	}
	return ctx.Err()
}

// createPrimaryLocked recreates the storage root key under the owner hierarchy.
func (t *TPM) createPrimaryLocked() (tpm2.NamedHandle, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(srkTemplate),
	}.Execute(t.tr)
	if err != nil {
		if errors.Is(err, tpm2.TPMRCBadAuth) || errors.Is(err, tpm2.TPMRCAuthFail) {
			return tpm2.NamedHandle{}, fmt.Errorf("tpm: create storage key: %w", ErrOwnerAuth)
		}
		return tpm2.NamedHandle{}, wrap("create storage key", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// loadLocked loads a key under srk and returns it holding a reference to t.
func (t *TPM) loadLocked(srk tpm2.NamedHandle, pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate) (*Key, error) {
	ecPub, err := publicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tpm: load key: %w", err)
	}
	rsp, err := tpm2.Load{
		ParentHandle: srk,
		InPrivate:    priv,
		InPublic:     pub,
	}.Execute(t.tr)
	if err != nil {
		// The private blob's integrity HMAC is keyed from the parent's seed; a cleared
		// or different TPM derives another parent and rejects the blob as corrupt.
		if errors.Is(err, tpm2.TPMRCIntegrity) {
			return nil, fmt.Errorf("tpm: load key: %w", ErrWrongTPM)
		}
		return nil, wrap("load key", err)
	}
	t.refs++
	return &Key{
		tpm:    t,
		handle: tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		public: ecPub,
	}, nil
}

// flushLocked evicts a transient object. A failure leaks one TPM slot until the
// connection closes (the resource manager or swtpm then frees it), so it is not reported.
func (t *TPM) flushLocked(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.tr)
}

// wrap adds the package prefix and operation to a TPM error, turning conditions an
// operator can act on into their sentinel errors.
func wrap(op string, err error) error {
	if errors.Is(err, tpm2.TPMRCLockout) {
		return fmt.Errorf("tpm: %s: %w", op, ErrLockout)
	}
	return fmt.Errorf("tpm: %s: %w", op, err)
}
