package mcpserver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestCheckLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:8080", true},
		{"[::1]:0", true},
		{"0.0.0.0:8080", false},
		{"localhost:8080", false}, // a name could resolve anywhere; only literals
		{"192.168.1.2:8080", false},
		{"8080", false},
	} {
		if err := CheckLoopback(tt.addr); (err == nil) != tt.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok %v", tt.addr, err, tt.ok)
		}
	}
}

// TestTokenFile: a token is made 0600 once and read back after; a file others may read
// is refused.
func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), TokenFile)
	tok, created, err := LoadOrCreateToken(path)
	if err != nil || !created || len(tok) < tokenBytes {
		t.Fatalf("first call: %q created %v err %v, want a new token", tok, created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateToken(path)
	if err != nil || created || again != tok {
		t.Errorf("second call: %q created %v err %v, want the same token read back", again, created, err)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable token file: got %v, want a refusal", err)
	}
}

// TestHTTPGuards: the handler answers only with the bearer token, a loopback Host of its
// own port, and no foreign Origin.
func TestHTTPGuards(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	h := HTTPHandler(srv, "127.0.0.1:7777", "secret-token-0123456789abcdef0123")
	for _, tt := range []struct {
		name, host, origin, auth string
		want                     int
	}{
		{"no-token", "127.0.0.1:7777", "", "", http.StatusUnauthorized},
		{"wrong-token", "127.0.0.1:7777", "", "Bearer wrong", http.StatusUnauthorized},
		{"rebinding-host", "evil.example:7777", "", "Bearer secret-token-0123456789abcdef0123", http.StatusForbidden},
		{"other-port", "127.0.0.1:8888", "", "Bearer secret-token-0123456789abcdef0123", http.StatusForbidden},
		{"foreign-origin", "127.0.0.1:7777", "https://evil.example", "Bearer secret-token-0123456789abcdef0123", http.StatusForbidden},
		{"localhost-origin-passes-the-guard", "localhost:7777", "http://localhost:7777", "Bearer secret-token-0123456789abcdef0123", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
			req.Host = tt.host
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			switch {
			case tt.want != 0 && rec.Code != tt.want:
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			case tt.want == 0 && (rec.Code == http.StatusUnauthorized || rec.Code == http.StatusForbidden):
				t.Errorf("status %d: the guard refused a good request (%s)", rec.Code, rec.Body)
			}
		})
	}
}

// TestFitKeepsWhatMatters: a list cut to size keeps its first records and says where to
// continue; an event page keeps its newest.
func TestFitKeepsWhatMatters(t *testing.T) {
	big := strings.Repeat("x", 1000)
	mk := func(newestLast bool) *page {
		p := &page{newestLast: newestLast}
		for i := range 100 {
			p.Items = append(p.Items, map[string]any{"seq": i, "pad": big})
		}
		p.Matched, p.Returned = 100, 100
		return p
	}
	for _, tt := range []struct {
		name       string
		newestLast bool
		wantFirst  float64
	}{
		{"a-list-keeps-its-head", false, 0},
		{"events-keep-the-newest", true, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text, err := mk(tt.newestLast).fit(false)
			if err != nil || len(text) > MaxResult {
				t.Fatalf("%d bytes, %v; want at most %d", len(text), err, MaxResult)
			}
			var got page
			json.Unmarshal([]byte(text), &got)
			first, last := got.Items[0]["seq"].(float64), got.Items[len(got.Items)-1]["seq"].(float64)
			if !got.Truncated || got.Note == "" {
				t.Errorf("truncated %v note %q, want both set", got.Truncated, got.Note)
			}
			if tt.wantFirst == 0 && (first != 0 || got.NextOffset != len(got.Items)) {
				t.Errorf("first %v next_offset %d, want 0 and %d", first, got.NextOffset, len(got.Items))
			}
			if tt.wantFirst < 0 && last != 99 {
				t.Errorf("last seq %v, want 99 (the newest)", last)
			}
		})
	}
}
