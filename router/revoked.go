package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/umbranet/umbra/internal/identity"
)

// The router keeps the serials of revoked certificates in its data directory, so that
// one restarted while the controller is out of reach still refuses a device deleted
// before: the field outlives the ground link. It loads them before it accepts anyone.
const (
	// RevokedFile is the revocation list inside the router's data directory: a JSON
	// array of certificate serials.
	RevokedFile = "revoked.json"
	// revokedFileMode: the list says which devices the fleet lost; only the router reads it.
	revokedFileMode = 0o600
)

// loadRevoked reads the revocation list kept in dir; no dir, or no file yet, is an
// empty list.
func loadRevoked(dir string) (map[string]bool, error) {
	out := map[string]bool{}
	if dir == "" {
		return out, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, RevokedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revocation list: %w", err)
	}
	var serials []string
	if err := json.Unmarshal(data, &serials); err != nil {
		return nil, fmt.Errorf("revocation list %s: %w", RevokedFile, err)
	}
	for _, s := range serials {
		out[s] = true
	}
	return out, nil
}

// saveRevoked writes the router's current revocation list to its data directory,
// atomically, if it has one. Writers are serialized and each writes the list as it is
// when its turn comes, so the file is never older than the last change saved.
func (r *Router) saveRevoked() error {
	if r.cfg.DataDir == "" {
		return nil
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	serials := make([]string, 0, len(r.revoked))
	for s := range r.revoked {
		serials = append(serials, s)
	}
	r.mu.Unlock()
	slices.Sort(serials)
	data, err := json.Marshal(serials)
	if err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	if err := identity.WriteFileAtomic(filepath.Join(r.cfg.DataDir, RevokedFile), append(data, '\n'), revokedFileMode); err != nil {
		return fmt.Errorf("revocation list: %w", err)
	}
	return nil
}
