package controller

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/umbranet/umbra/controller/ca"
	"github.com/umbranet/umbra/controller/cluster"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// A backup is a tar archive of two files: the store (a bbolt file, consistent as of one
// moment) and the CA material every member signs with. It holds private keys: it is
// written 0600 and must be kept like the data directory itself.
const (
	backupStore = "umbra.db"
	backupCA    = "ca.json"
	// backupMode is the mode of a backup file.
	backupMode = 0o600
	// maxBackupEntry bounds one file of a backup read back.
	maxBackupEntry = 1 << 30
	// backupTimeout bounds fetching the image from the running controller.
	backupTimeout = 5 * time.Minute
)

// Backup writes an archive of the controller in dataDir to out (mode 0600). While the
// controller runs, its own API hands out a consistent image of the store (an online
// backup); when it does not, the store file is read directly.
func Backup(ctx context.Context, dataDir, out string) error {
	cfg, err := savedConfig(dataDir)
	if err != nil {
		return err
	}
	authority, err := ca.Load(filepath.Join(dataDir, pkiDir))
	if err != nil {
		return fmt.Errorf("controller backup: %w", err)
	}
	image, err := onlineImage(ctx, cfg, authority)
	if errors.Is(err, syscall.ECONNREFUSED) {
		image, err = offlineImage(filepath.Join(dataDir, storeFile))
	}
	if err != nil {
		return fmt.Errorf("controller backup: %w", err)
	}
	if err := checkImage(image); err != nil {
		return fmt.Errorf("controller backup: %w", err)
	}
	material, err := authority.Material()
	if err != nil {
		return fmt.Errorf("controller backup: %w", err)
	}
	caJSON, _ := json.MarshalIndent(material, "", "  ")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, f := range []struct {
		name string
		data []byte
	}{{backupStore, image}, {backupCA, caJSON}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: backupMode, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return fmt.Errorf("controller backup: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("controller backup: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("controller backup: %w", err)
	}
	if err := identity.WriteFileAtomic(out, buf.Bytes(), backupMode); err != nil {
		return fmt.Errorf("controller backup: %w", err)
	}
	return nil
}

// savedConfig reads dataDir's controller.json.
func savedConfig(dataDir string) (Config, error) {
	var cfg Config
	data, err := os.ReadFile(filepath.Join(dataDir, configFile))
	if err != nil {
		return cfg, fmt.Errorf("controller: %w", err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("controller: %s: %w", configFile, err)
	}
	cfg.DataDir = dataDir
	cfg.fill()
	return cfg, nil
}

// onlineImage asks the running controller for an image of its store, as itself (its
// own controller certificate).
func onlineImage(ctx context.Context, cfg Config, authority *ca.CA) ([]byte, error) {
	chain, key := authority.ServerChain()
	client := &http.Client{Timeout: backupTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      authority.Roots(),
		Certificates: []tls.Certificate{{Certificate: chain[:2], PrivateKey: key, Leaf: authority.Server}},
	}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+cfg.Address()+cluster.PathBackup, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return nil, fmt.Errorf("controller at %s answered %s: %s", cfg.Address(), resp.Status, bytes.TrimSpace(msg))
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxBackupEntry))
}

// offlineImage reads the store of a controller that is not running.
func offlineImage(path string) ([]byte, error) {
	st, err := store.Open(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	snap, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Release()
	var buf bytes.Buffer
	_, err = snap.WriteTo(&buf)
	return buf.Bytes(), err
}

// checkImage opens image as a store, so a cut or corrupt image is refused.
func checkImage(image []byte) error {
	dir, err := os.MkdirTemp("", "umbra-backup-check")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, storeFile)
	if err := os.WriteFile(path, image, backupMode); err != nil {
		return err
	}
	if err := store.CheckFile(path); err != nil {
		return err
	}
	st, err := store.Open(path)
	if err != nil {
		return fmt.Errorf("the store image is not a valid store: %w", err)
	}
	return st.Close()
}

// Restore makes cfg.DataDir a new controller, the first member of a new cluster, from
// the backup archive at from: the records as they were, the same CA (every identity,
// router and token stays valid), and a new server certificate for hosts. Other
// controllers join it with `edge create controller` tokens as usual. Nothing is
// written unless the archive is whole and valid; a directory that holds a controller
// is refused.
func Restore(cfg Config, hosts []string, from string) error {
	if _, err := os.Stat(filepath.Join(cfg.DataDir, configFile)); err == nil {
		return fmt.Errorf("controller restore: %s already holds a controller", cfg.DataDir)
	}
	files, err := readBackup(from)
	if err != nil {
		return fmt.Errorf("controller restore: %w", err)
	}
	var material ca.Material
	if err := json.Unmarshal(files[backupCA], &material); err != nil {
		return fmt.Errorf("controller restore: %s: %w", backupCA, err)
	}
	authority, err := ca.FromMaterial(material)
	if err != nil {
		return fmt.Errorf("controller restore: %w", err)
	}
	if err := checkImage(files[backupStore]); err != nil {
		return fmt.Errorf("controller restore: %w", err)
	}
	cfg.fill()
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	server, err := authority.IssueController(pki.Subject{Kind: pki.KindController, ID: "server", Name: "umbra controller"}, &key.PublicKey, hosts, cfg.Now())
	if err != nil {
		return fmt.Errorf("controller restore: %w", err)
	}
	created := false
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	fail := func(err error) error {
		if created {
			os.RemoveAll(cfg.DataDir)
		}
		return fmt.Errorf("controller restore: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fail(err)
	}
	if _, err := ca.Install(filepath.Join(cfg.DataDir, pkiDir), material, server, key); err != nil {
		return fail(err)
	}
	dbPath := filepath.Join(cfg.DataDir, storeFile)
	if err := os.WriteFile(dbPath, files[backupStore], backupMode); err != nil {
		return fail(err)
	}
	st, err := store.Open(dbPath)
	if err != nil {
		return fail(err)
	}
	err = errors.Join(st.ResetApplied(), st.Close())
	if err != nil {
		return fail(err)
	}
	cfg.Joined, cfg.Peers = false, nil
	data, _ := json.MarshalIndent(cfg, "", "  ")
	if err := identity.WriteFileAtomic(filepath.Join(cfg.DataDir, configFile), append(data, '\n'), 0o600); err != nil {
		return fail(err)
	}
	return nil
}

// readBackup reads the archive's two files, refusing anything else.
func readBackup(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a controller backup: %w", path, err)
		}
		if (h.Name != backupStore && h.Name != backupCA) || files[h.Name] != nil || h.Size > maxBackupEntry {
			return nil, fmt.Errorf("%s: not a controller backup (unexpected %q)", path, h.Name)
		}
		if files[h.Name], err = io.ReadAll(io.LimitReader(tr, maxBackupEntry)); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if files[backupStore] == nil || files[backupCA] == nil {
		return nil, fmt.Errorf("%s: not a controller backup (want %s and %s)", path, backupStore, backupCA)
	}
	return files, nil
}
