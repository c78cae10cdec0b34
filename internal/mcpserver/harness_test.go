package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/umbranet/umbra/controller"
	"github.com/umbranet/umbra/controller/store"
	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
	"github.com/umbranet/umbra/internal/role"
)

// lab is a controller serving HTTPS on loopback, with its admin identity and client.
type lab struct {
	ctrl     *controller.Controller
	adminID  *identity.File
	admin    *api.Client
	dataDir  string
	adminKey []byte // the admin key's DER bytes, which nothing may hand out
}

// startLab initializes and serves a controller in a temporary directory.
func startLab(t testing.TB) *lab {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ln, pc, err := controller.ListenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := controller.Config{DataDir: filepath.Join(t.TempDir(), "ctrl"), Listen: ln.Addr().String()}
	if err := controller.Init(ctx, cfg, []string{"127.0.0.1"}, ""); err != nil {
		t.Fatal(err)
	}
	c, err := controller.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln, pc) }()
	adminID, err := identity.Load(filepath.Join(cfg.DataDir, controller.AdminFile))
	if err != nil {
		t.Fatal(err)
	}
	client, err := api.NewClient(ctx, adminID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		client.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		c.Close()
	})
	blk, _ := pem.Decode([]byte(adminID.Key.PEM))
	if blk == nil {
		t.Fatal("admin key: no PEM block")
	}
	return &lab{ctrl: c, adminID: adminID, admin: client, dataDir: cfg.DataDir, adminKey: blk.Bytes}
}

// dump is the store's whole state.
func (l *lab) dump(t testing.TB) string {
	t.Helper()
	d, err := l.ctrl.Store().Dump()
	if err != nil {
		t.Fatal(err)
	}
	return string(d)
}

// enrolled creates identity name with role r, enrolls it and returns its client.
func (l *lab) enrolled(t testing.TB, name string, r role.Role) *api.Client {
	t.Helper()
	ctx := context.Background()
	out, err := l.admin.Create(ctx, "identities", api.CreateIdentity{Name: name, Role: string(r)})
	if err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	key, ref, err := keystore.NewFileKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := enroll.Enroll(ctx, out.JWT, pki.KindIdentity, key)
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	id.Key = ref
	c, err := api.NewClient(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// logBuffer collects log lines safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// session is an MCP client session to a server built from cfg, with what it logged.
type session struct {
	*mcp.ClientSession
	log *logBuffer
}

// connect serves New(cfg) over in-memory transports and connects the SDK's client to
// it as clientName.
func connect(t testing.TB, cfg Config, clientName string) *session {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, ct := mcp.NewInMemoryTransports()
	ss, err := srv.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: clientName, Version: "test"}, nil)
	cs, err := client.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cs.Close()
		ss.Wait()
		cancel()
	})
	return &session{ClientSession: cs, log: logs}
}

// call calls tool with args and returns its text and whether it is a tool error; a
// protocol error fails the test.
func (s *session) call(t testing.TB, tool string, args any) (string, bool) {
	t.Helper()
	res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error %v", tool, err)
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	return text.String(), res.IsError
}

// object calls tool, wants success, and decodes its JSON answer.
func (s *session) object(t testing.TB, tool string, args any) (map[string]any, int) {
	t.Helper()
	text, isErr := s.call(t, tool, args)
	if isErr {
		t.Fatalf("%s: %s", tool, text)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("%s: answer is not a JSON object: %v\n%s", tool, err, text)
	}
	return m, len(text)
}

// jtiOf is the jti claim of an enrollment token, read without checking it.
func jtiOf(t testing.TB, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		JTI string `json:"jti"`
	}
	json.Unmarshal(payload, &claims)
	if claims.JTI == "" {
		t.Fatal("token has no jti")
	}
	return claims.JTI
}

// seed creates n identities named PREFIX-N straight in the store in one transaction
// (the API would take a token signature and an fsync per record), every third one with a
// second attribute.
func (l *lab) seed(t testing.TB, n int, prefix string) {
	t.Helper()
	bulk, ok := l.ctrl.Store().(interface {
		ApplyAll(context.Context, []store.Command) error
	})
	if !ok {
		t.Fatalf("store %T cannot bulk-load", l.ctrl.Store())
	}
	start := time.Now()
	cmds := make([]store.Command, n)
	for i := range n {
		attrs := []string{prefix}
		if i%3 == 0 {
			attrs = append(attrs, "north")
		}
		id := store.Identity{Meta: store.Meta{ID: fmt.Sprintf("%032x", i+1), Name: fmt.Sprintf("%s-%05d", prefix, i), CreatedAt: start.UTC()}, Attributes: attrs}
		if i%4 != 0 { // three in four enrolled
			id.Cert = &store.Cert{Serial: fmt.Sprintf("%x", i+1), Fingerprint: fmt.Sprintf("%064x", i+1), NotAfter: start.Add(90 * 24 * time.Hour).UTC()}
		}
		rec, _ := json.Marshal(id)
		cmds[i] = store.Command{Op: store.OpCreate, Kind: store.Identities, Record: rec, At: start.UTC()}
	}
	if err := bulk.ApplyAll(context.Background(), cmds); err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %d identities in %v", n, time.Since(start).Round(time.Millisecond))
}
