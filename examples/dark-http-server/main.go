// Command dark-http-server serves HTTP on an umbra service and listens on no socket: the
// circuits of dialers the controller allows arrive over the agent's outbound link to
// its router. GET / greets the caller by identity; GET /blob?n=N returns N bytes of a
// fixed pseudo-random stream (ChaCha8, seed Blob), which a client can check byte for
// byte.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/umbranet/umbra/agent"
)

// Blob is the seed of the /blob stream.
var Blob = [32]byte{'u', 'm', 'b', 'r', 'a'}

// maxBlob bounds what /blob serves.
const maxBlob = 64 << 20

func main() {
	var (
		idPath  = flag.String("identity", "id.json", "identity file (written by -token on first use)")
		token   = flag.String("token", "", "one-time enrollment token file, used when -identity does not exist yet")
		service = flag.String("service", "web", "service to host")
		routers = flag.String("routers", "", "edge routers HOST:PORT, comma-separated (default: the controller's list)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *idPath, *token, *service, *routers); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, idPath, token, service, routers string) error {
	id, err := identity(ctx, idPath, token)
	if err != nil {
		return err
	}
	cfg := agent.Config{Identity: id, NoAutoServices: true}
	if routers != "" {
		cfg.Routers = strings.Split(routers, ",")
	}
	a, err := agent.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	ln, err := a.Listen(lctx, service)
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("serving %s as %s\n", service, id.Name())

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// RemoteAddr is SERVICE@IDENTITY: the dialer proved its identity end to end.
		fmt.Fprintf(w, "hello %s, this is %s\n", r.RemoteAddr, id.Name())
	})
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 || n > maxBlob {
			http.Error(w, fmt.Sprintf("n: want 0 to %d", maxBlob), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		io.CopyN(w, rand.NewChaCha8(Blob), int64(n))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// identity loads the identity file, enrolling with the token first if there is none.
func identity(ctx context.Context, path, tokenFile string) (*agent.Identity, error) {
	if _, err := os.Stat(path); err == nil || tokenFile == "" {
		return agent.LoadIdentity(path)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, err
	}
	return agent.Enroll(ctx, string(token), agent.EnrollOptions{Path: path})
}
