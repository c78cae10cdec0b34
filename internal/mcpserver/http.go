package mcpserver

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// tokenBytes is the bearer token's entropy.
const tokenBytes = 32

// sessionIdle is how long an HTTP session may stay silent before the server forgets it,
// so that clients that vanish without closing do not pile up.
const sessionIdle = time.Hour

// TokenFile is the bearer token's file name, kept beside the identity file the server
// uses.
const TokenFile = "mcp-token"

// CheckLoopback refuses a listen address that is not a loopback IP literal: the HTTP
// transport is for an assistant on this machine, never the network.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: want 127.0.0.1:PORT: %w", addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--http %q: only a loopback address (127.0.0.1:PORT or [::1]:PORT) is served", addr)
	}
	return nil
}

// LoadOrCreateToken reads the bearer token from path, or writes a new random one there
// with mode 0600 when the file is absent (created then says so). A token file that
// others may read is refused.
func LoadOrCreateToken(path string) (token string, created bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, tokenBytes)
		if _, err := rand.Read(b); err != nil {
			return "", false, fmt.Errorf("mcp token: %w", err)
		}
		token = hex.EncodeToString(b)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", false, fmt.Errorf("mcp token: %w", err)
		}
		_, werr := f.WriteString(token + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", false, fmt.Errorf("mcp token: %w", werr)
		}
		return token, true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("mcp token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", false, fmt.Errorf("mcp token %s: mode %v lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false, fmt.Errorf("mcp token: %w", err)
	}
	token = strings.TrimSpace(string(data))
	if len(token) < tokenBytes {
		return "", false, fmt.Errorf("mcp token %s: too short (want at least %d characters)", path, tokenBytes)
	}
	return token, false, nil
}

// HTTPHandler serves srv over streamable HTTP to a client that presents token as a
// bearer token, with a Host header naming addr's port on a loopback name (against DNS
// rebinding) and, when a browser sends one, an Origin of the same loopback.
func HTTPHandler(srv *mcp.Server, addr, token string) http.Handler {
	_, port, _ := net.SplitHostPort(addr)
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{SessionTimeout: sessionIdle})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host, port) {
			http.Error(w, "forbidden Host: this server answers only on its loopback address", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Scheme != "http" || !loopbackHost(u.Host, port) {
				http.Error(w, "forbidden Origin", http.StatusForbidden)
				return
			}
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="umbra mcp"`)
			http.Error(w, "a bearer token is required (the mcp-token file beside the identity file)", http.StatusUnauthorized)
			return
		}
		mcpHandler.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether hostport is localhost or a loopback IP with port.
func loopbackHost(hostport, port string) bool {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil || p != port {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
