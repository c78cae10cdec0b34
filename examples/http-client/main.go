// Command http-client fetches a URL from a dark HTTP service with net/http's Client,
// whose transport dials through the agent: the URL's host is the service's name
// (http://web/hello). The body goes to stdout, or to -out.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/umbranet/umbra/agent"
)

func main() {
	var (
		idPath  = flag.String("identity", "id.json", "identity file (written by -token on first use)")
		token   = flag.String("token", "", "one-time enrollment token file, used when -identity does not exist yet")
		routers = flag.String("routers", "", "edge routers HOST:PORT, comma-separated (default: the controller's list)")
		out     = flag.String("out", "", "file to write the body to (default: stdout)")
		timeout = flag.Duration("timeout", time.Minute, "how long the whole fetch may take")
	)
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: http-client [flags] http://SERVICE/PATH")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *idPath, *token, *routers, flag.Arg(0), *out); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, idPath, token, routers, url, out string) error {
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
	client := &http.Client{Transport: &http.Transport{DialContext: a.Dialer().DialContext}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	w := io.Writer(os.Stdout)
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
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
