package router

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/umbranet/umbra/internal/identity"
)

// FuzzControllersFile: a controllers.json of any content never panics the router, and
// the list it yields is never empty and holds only https URLs, without repeats.
func FuzzControllersFile(f *testing.F) {
	f.Add([]byte(`["https://10.0.0.1:1280","https://10.0.0.2:1280"]`))
	f.Add([]byte(`["http://x","https://a:1","https://a:1"]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{`))
	id := &identity.File{Controller: "https://127.0.0.1:1280"}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, ControllersFile), data, 0o600)
		urls, err := loadControllers(dir, id)
		if err != nil {
			return
		}
		if len(urls) == 0 {
			t.Fatal("an empty controller list")
		}
		seen := map[string]bool{}
		for _, u := range urls {
			if !strings.HasPrefix(u, "https://") || seen[u] {
				t.Fatalf("list %q: want unique https URLs", urls)
			}
			seen[u] = true
		}
	})
}
