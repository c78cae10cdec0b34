package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"

	"github.com/umbranet/umbra/internal/identity"
)

// The router keeps the controller cluster's members in its data directory, as the
// controllers last told it (on each control link's HelloAck, and pushed when the
// membership changes), so that one restarted while its enrollment controller is gone
// still finds the others.
const (
	// ControllersFile is the list inside the router's data directory: a JSON array of
	// management URLs (https://HOST:PORT).
	ControllersFile = "controllers.json"
	// maxControllers bounds the list a controller may hand a router.
	maxControllers = 64
)

// loadControllers returns the controllers to dial: the list kept in dir when there is
// one, else the identity file's.
func loadControllers(dir string, id *identity.File) ([]string, error) {
	fallback := id.ControllerURLs()
	if dir == "" {
		return fallback, nil
	}
	data, err := os.ReadFile(filepath.Join(dir, ControllersFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fallback, nil
	}
	if err != nil {
		return nil, fmt.Errorf("controller list: %w", err)
	}
	var urls []string
	if err := json.Unmarshal(data, &urls); err != nil {
		return nil, fmt.Errorf("controller list %s: %w", ControllersFile, err)
	}
	if urls = validControllers(urls); len(urls) == 0 {
		return fallback, nil
	}
	return urls, nil
}

// validControllers keeps the https URLs with a host, without repeats, at most
// maxControllers of them.
func validControllers(urls []string) []string {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "https" || u.Host == "" || slices.Contains(out, s) {
			continue
		}
		if out = append(out, s); len(out) == maxControllers {
			break
		}
	}
	return out
}

// controllerList is the current list of controllers to dial.
func (r *Router) controllerList() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.controllers
}

// setControllers adopts the cluster's members as a controller reported them and keeps
// them in the data directory.
func (r *Router) setControllers(urls []string) {
	urls = validControllers(urls)
	if len(urls) == 0 {
		return
	}
	r.mu.Lock()
	same := slices.Equal(r.controllers, urls)
	r.controllers = urls
	r.mu.Unlock()
	if same {
		return
	}
	select {
	case r.membersChanged <- struct{}{}:
	default:
	}
	r.log.Info("controller cluster", "controllers", urls)
	if r.cfg.DataDir == "" {
		return
	}
	data, _ := json.Marshal(urls)
	if err := identity.WriteFileAtomic(filepath.Join(r.cfg.DataDir, ControllersFile), append(data, '\n'), revokedFileMode); err != nil {
		r.log.Warn("controller list", "err", err)
	}
}
