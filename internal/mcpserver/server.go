package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/umbranet/umbra/internal/api"
)

// Bounds of what the server hands an assistant.
const (
	// MaxResult caps every tool result's JSON: a model pays for every byte it reads, and
	// 16 KB is a few thousand tokens. Lists page below it and say truncated.
	MaxResult = 16 << 10
	// defaultLimit is how many records a list returns when the caller names no limit.
	defaultLimit = 50
	// maxLimit is the most records one list call returns.
	maxLimit = 200
	// sampleNames is how many names a summary lists per heading (offline identities,
	// offline routers, links in trouble, recent changes).
	sampleNames = 10
	// arrayCap is how long an array inside one record may stay when the record alone is
	// over MaxResult (an identity with thousands of attributes, say).
	arrayCap = 20
	// auditTimeout bounds posting one call's audit event to the controller.
	auditTimeout = 5 * time.Second
	// defaultSince is how far back recent_events and explain_circuit_failure look.
	defaultSince = time.Hour
)

// AllWrite, given to Config.AllowWrite, enables every write tool.
const AllWrite = "all"

// Config is what New needs. The zero value of every field but API is usable.
type Config struct {
	// API is the controller client every tool calls through; its identity's role is
	// what the controller enforces.
	API *api.Client
	// Identity is the name of the identity API presents, for the log.
	Identity string
	// AllowWrite names the write tools to offer (WriteTools), or holds AllWrite for all
	// of them. Empty offers only read-only tools. create_identity and create_enrollment
	// return their token only when named here explicitly: AllWrite creates without
	// handing the token over.
	AllowWrite []string
	// Logger receives one line per tool call (tool, client, outcome, duration: never
	// arguments or results). Nil discards.
	Logger *slog.Logger
	// Version is reported to clients in the server's implementation info.
	Version string
}

// server holds what the tools share.
type server struct {
	api          *api.Client
	identity     string
	log          *slog.Logger
	allowed      map[string]bool // write tools offered
	revealTokens map[string]bool // write tools that may return a token
}

// New returns the MCP server with the read-only tools, and the write tools cfg allows.
// An unknown name in AllowWrite is an error that names the valid ones.
func New(cfg Config) (*mcp.Server, error) {
	if cfg.API == nil {
		return nil, errors.New("mcpserver: no API client")
	}
	s := &server{api: cfg.API, identity: cfg.Identity, log: cfg.Logger, allowed: map[string]bool{}, revealTokens: map[string]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range cfg.AllowWrite {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
		case name == AllWrite:
			for _, w := range WriteTools {
				s.allowed[w] = true
			}
		case slices.Contains(WriteTools, name):
			s.allowed[name] = true
			s.revealTokens[name] = true
		default:
			return nil, fmt.Errorf("mcpserver: --allow-write %q: want %s or a comma-separated list of %s", name, AllWrite, strings.Join(WriteTools, ", "))
		}
	}
	version := cfg.Version
	if version == "" {
		version = "dev"
	}
	srv := mcp.NewServer(&mcp.Implementation{Name: "umbra", Title: "umbra fleet", Version: version}, &mcp.ServerOptions{
		Instructions: "Tools over an umbra zero-trust overlay network (controller, routers, agents). Start with fleet_summary; lists page with limit/offset and say truncated. Write tools exist only when the operator enabled them.",
	})
	s.addReadTools(srv)
	s.addWriteTools(srv)
	srv.AddReceivingMiddleware(s.refuseDisabled)
	return srv, nil
}

// WriteTools names every tool that changes the controller's state: only these need
// --allow-write. Callers must not modify it.
var WriteTools = []string{
	"create_identity", "update_identity", "update_service", "update_policy",
	"delete_identity", "delete_service", "delete_router", "delete_policy",
	"create_enrollment",
}

// refuseDisabled answers a call of a write tool that was not enabled with a clear tool
// error (rather than the SDK's "unknown tool"), and audits it as refused.
func (s *server) refuseDisabled(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		call, ok := req.(*mcp.CallToolRequest)
		if method != "tools/call" || !ok || call.Params == nil {
			return next(ctx, method, req)
		}
		name := call.Params.Name
		if !slices.Contains(WriteTools, name) || s.allowed[name] {
			return next(ctx, method, req)
		}
		s.audit(ctx, call.Session, name, api.OutcomeRefused, 0)
		res := &mcp.CallToolResult{}
		res.SetError(fmt.Errorf("%s is a write tool and this server is read-only for it: the operator must start umbra mcp with --allow-write %s (or --allow-write all); nothing was changed", name, name))
		return res, nil
	}
}

// readOnly and the other annotation sets are MCP's hints for each class of tool.
var (
	readOnly    = &mcp.ToolAnnotations{ReadOnlyHint: true, OpenWorldHint: ptr(false)}
	additive    = &mcp.ToolAnnotations{DestructiveHint: ptr(false), OpenWorldHint: ptr(false)}
	editing     = &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)}
	destructive = &mcp.ToolAnnotations{DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)}
)

func ptr[T any](v T) *T { return &v }

// add registers one tool whose handler returns a value to hand back as bounded JSON;
// every call is logged and audited, and its answer or error is scrubbed of secrets.
func add[In any](s *server, srv *mcp.Server, t *mcp.Tool, h func(ctx context.Context, in In) (any, error)) {
	mcp.AddTool(srv, t, func(ctx context.Context, req *mcp.CallToolRequest, in In) (*mcp.CallToolResult, any, error) {
		start := time.Now()
		out, err := h(ctx, in)
		var text string
		if err == nil {
			text, err = bounded(out, s.revealTokens[t.Name])
		}
		outcome := api.OutcomeOK
		if err != nil {
			outcome = api.OutcomeError
			if api.HasCode(err, api.CodeForbidden) || errors.Is(err, errRefused) {
				outcome = api.OutcomeRefused
			}
		}
		s.audit(ctx, req.Session, t.Name, outcome, time.Since(start))
		if err != nil {
			return nil, nil, errors.New(scrub(err.Error(), false))
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil, nil
	})
}

// errRefused marks a tool's own refusal (a deletion whose id does not match).
var errRefused = errors.New("refused")

// audit records the call in the controller's trail and in the log. A trail that cannot
// be written is logged, not hidden: the call has happened either way.
func (s *server) audit(ctx context.Context, ss *mcp.ServerSession, tool, outcome string, took time.Duration) {
	client := clientName(ss)
	s.log.Info("mcp call", "tool", tool, "client", client, "identity", s.identity, "outcome", outcome, "took", took.Round(time.Millisecond))
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := s.api.Audit(actx, api.AuditEvent{Client: client, Tool: tool, Outcome: outcome}); err != nil {
		s.log.Warn("mcp call not recorded in the controller's trail", "tool", tool, "err", scrub(err.Error(), false))
	}
}

// clientName is the MCP client's name from its initialize request, made fit for the
// trail: printable, at most api.MaxAuditField bytes, "unknown" when it gave none.
func clientName(ss *mcp.ServerSession) string {
	name := ""
	if ss != nil {
		if p := ss.InitializeParams(); p != nil && p.ClientInfo != nil {
			name = p.ClientInfo.Name
		}
	}
	name = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, name)
	for len(name) > api.MaxAuditField {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		return "unknown"
	}
	return name
}

// bounded is v as JSON of at most MaxResult bytes, scrubbed of secrets (a token only
// when reveal). A list page that is too long loses items from its end and says so; a
// single record loses the tail of its long arrays; what still does not fit is an error.
func bounded(v any, reveal bool) (string, error) {
	if p, ok := v.(*page); ok {
		return p.fit(reveal)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode result: %w", err)
	}
	if len(data) > MaxResult {
		var m any
		json.Unmarshal(data, &m)
		data, _ = json.Marshal(capArrays(m))
	}
	text := scrub(string(data), reveal)
	if len(text) > MaxResult {
		return "", fmt.Errorf("result of %d bytes is over the %d-byte cap: ask for less (a name filter, a smaller limit)", len(text), MaxResult)
	}
	return text, nil
}

// capArrays shortens every array longer than arrayCap inside v, marking each map that
// lost some with "truncated": true.
func capArrays(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if arr, ok := e.([]any); ok && len(arr) > arrayCap {
				x[k] = arr[:arrayCap]
				x["truncated"] = true
				x["note"] = fmt.Sprintf("arrays cut to their first %d elements", arrayCap)
				continue
			}
			x[k] = capArrays(e)
		}
	case []any:
		for i := range x {
			x[i] = capArrays(x[i])
		}
	}
	return v
}

// Patterns of what must never leave the process.
var (
	pemRE = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)`)
	// jwtRE matches a compact JWS: three base64url parts, the first two JSON objects.
	jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*`)
)

// scrub removes PEM blocks (certificates, keys) and, unless reveal, JWTs (enrollment
// tokens) from s. The API does not hand keys out; this is the last line should it ever.
func scrub(s string, reveal bool) string {
	s = pemRE.ReplaceAllString(s, "[PEM block withheld]")
	if !reveal {
		s = jwtRE.ReplaceAllString(s, "[token withheld]")
	}
	return s
}
