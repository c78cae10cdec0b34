// Package console is the ground station's web console: a page served on the operator's
// loopback that shows the fleet, the mesh, the services and the event trail live, and
// changes records, all through the management API with the admin identity this process
// holds. The browser never holds a key or a certificate and the controller opens no new
// port, as with `kubectl proxy`. The page's assets are embedded: a ground station is often
// offline. It must not decide anything the controller decides; it shows and forwards.
package console

import (
	"bufio"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/umbranet/umbra/internal/api"
)

//go:embed assets
var assets embed.FS

// Limits of the console.
const (
	// maxBody caps what the page may send in one request.
	maxBody = 64 << 10
	// readHeaderTimeout bounds a request's headers; the event stream has no write
	// timeout since it stays open.
	readHeaderTimeout = 10 * time.Second
	shutdownGrace     = 2 * time.Second
	// requestHeader must be on every request that changes something: a cross-site form
	// or image cannot set it, so a page elsewhere cannot drive the console.
	requestHeader = "X-Umbra-Console"
)

// kinds are the record kinds the page lists, gets, updates and deletes.
var kinds = map[string]bool{
	"identities": true, "routers": true, "services": true,
	"service-policies": true, "edge-router-policies": true, "links": true,
}

// Server serves the console for one admin client.
type Server struct {
	client *api.Client
	// origin is the console's own address, http://HOST:PORT; every request must name it
	// as Host, and a change as Origin (DNS rebinding, cross-site requests).
	origin string
}

// New returns a console that calls the controller through client and is reached at ln.
func New(client *api.Client, ln net.Listener) *Server {
	return &Server{client: client, origin: "http://" + ln.Addr().String()}
}

// URL is where the operator opens the console.
func (s *Server) URL() string { return s.origin + "/" }

// Serve answers on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: readHeaderTimeout, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// Handler is the console: the page, and /api/… forwarded to the management API.
func (s *Server) Handler() http.Handler {
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/events", s.serveEvents)
	mux.HandleFunc("GET /api/advice/{identity}/{service}", s.serveAdvice)
	mux.HandleFunc("GET /api/{kind}", s.serveList)
	mux.HandleFunc("POST /api/identities", s.serveCreateIdentity)
	mux.HandleFunc("POST /api/enrollments/{name}", s.serveReissue)
	mux.HandleFunc("PATCH /api/{kind}/{name}", s.serveUpdate)
	mux.HandleFunc("DELETE /api/{kind}/{name}", s.serveDelete)
	return s.guard(mux)
}

// guard refuses requests not addressed to the console's own loopback address (a DNS
// rebinding page names another Host) and changes not sent by its own page.
func (s *Server) guard(next http.Handler) http.Handler {
	host := strings.TrimPrefix(s.origin, "http://")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != host {
			writeError(w, http.StatusForbidden, "the console answers only at "+s.origin)
			return
		}
		if r.Method != http.MethodGet && (r.Header.Get("Origin") != s.origin || r.Header.Get(requestHeader) == "") {
			writeError(w, http.StatusForbidden, "changes are accepted only from the console's own page")
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if !kinds[kind] {
		writeError(w, http.StatusNotFound, "unknown kind "+kind)
		return
	}
	recs, err := s.client.List(r.Context(), kind)
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, recs)
}

func (s *Server) serveAdvice(w http.ResponseWriter, r *http.Request) {
	adv, err := s.client.Advise(r.Context(), r.PathValue("identity"), r.PathValue("service"))
	if err != nil {
		writeError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, adv)
}

// serveCreateIdentity creates an identity and hands its one-time token to the operator
// as a file to save: the token is the one secret the page ever sees, because the
// operator asked for it to carry to a device.
func (s *Server) serveCreateIdentity(w http.ResponseWriter, r *http.Request) {
	var req api.CreateIdentity
	if !decode(w, r, &req) {
		return
	}
	out, err := s.client.Create(r.Context(), "identities", req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sendToken(w, out)
}

func (s *Server) serveReissue(w http.ResponseWriter, r *http.Request) {
	var req api.CreateEnrollment
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	req.Name = r.PathValue("name")
	out, err := s.client.Create(r.Context(), strings.TrimPrefix(api.PathEnrollments, api.PathPrefix), req)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sendToken(w, out)
}

// sendToken answers with a created record's token as a .jwt file to download.
func sendToken(w http.ResponseWriter, out api.Created) {
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", out.Name+".jwt"))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, out.JWT+"\n")
}

func (s *Server) serveUpdate(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if !kinds[kind] || kind == "links" {
		writeError(w, http.StatusNotFound, "unknown kind "+kind)
		return
	}
	var body json.RawMessage
	if !decode(w, r, &body) {
		return
	}
	rec, err := s.client.Update(r.Context(), kind, r.PathValue("name"), body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	if !kinds[kind] || kind == "links" {
		writeError(w, http.StatusNotFound, "unknown kind "+kind)
		return
	}
	if err := s.client.Delete(r.Context(), kind, r.PathValue("name")); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveEvents passes the controller's followed event trail to the page as server-sent
// events, one JSON event each, until the page goes.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(s.client.Events(r.Context(), pw, time.Hour, true))
	}()
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if _, err := fmt.Fprintf(w, "data: %s\n\n", sc.Bytes()); err != nil {
			return
		}
		flusher.Flush()
	}
}

// decode reads one JSON body of at most maxBody into v, answering the request itself
// when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.Error{Error: msg})
}
