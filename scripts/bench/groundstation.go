package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/umbranet/umbra/hal/keystore"
	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/enroll"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/pki"
)

// idleSettle is how long the quickstart sits idle before its memory is read.
const idleSettle = 2 * time.Second

// idleSteady is how long an agent sits idle before its steady-state memory is read: past
// the Go runtime's forced collection, which runs every two minutes and maps in what it
// touches.
const idleSteady = 130 * time.Second

// createWorkers is how many concurrent API calls fill the store.
const createWorkers = 4

// benchGroundStation measures issue 2's figures: quickstart readiness and idle memory,
// enrollment rate, and listing 10,000 identities.
func benchGroundStation(ctx context.Context, c config, r *report) error {
	umbra := filepath.Join(c.bin, "umbra")
	tmp, err := os.MkdirTemp("", "umbra-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Peer: starting a process of the same binary that does nothing.
	var execTimes []time.Duration
	for range c.quickRuns {
		t0 := time.Now()
		if err := exec.CommandContext(ctx, umbra, "version").Run(); err != nil {
			return err
		}
		execTimes = append(execTimes, time.Since(t0))
	}

	var fresh, again []time.Duration
	var rss int
	for i := range c.quickRuns {
		dir := filepath.Join(tmp, fmt.Sprintf("qs%d", i))
		cmd, d, err := startUntil(ctx, "ready", umbra, "quickstart", "--dir", dir)
		if err != nil {
			return err
		}
		fresh = append(fresh, d)
		stop(cmd)
		cmd, d, err = startUntil(ctx, "ready", umbra, "quickstart", "--dir", dir)
		if err != nil {
			return err
		}
		again = append(again, d)
		if i == c.quickRuns-1 {
			time.Sleep(idleSettle)
			rss = rssKB(cmd.Process.Pid)
		}
		stop(cmd)
	}
	r.printf("## Ground station (controller, PKI, enrollment, quickstart)\n\n")
	r.printf("| figure | umbra | peer (same run) | ratio |\n|---|---|---|---|\n")
	r.printf("| quickstart to `ready`, new directory (median of %d) | %s | `umbra version` process start: %s | %.1f× |\n",
		c.quickRuns, ms(median(fresh)), ms(median(execTimes)), ratio(median(fresh), median(execTimes)))
	r.printf("| quickstart to `ready`, existing directory (median of %d) | %s | `umbra version` process start: %s | %.1f× |\n",
		c.quickRuns, ms(median(again)), ms(median(execTimes)), ratio(median(again), median(execTimes)))
	r.printf("| quickstart resident memory, idle %v after ready (controller + router1 in one process) | %.1f MB | — | — |\n",
		idleSettle, float64(rss)/1024)

	// A quickstart to enroll against.
	dir := filepath.Join(tmp, "load")
	cmd, _, err := startUntil(ctx, "ready", umbra, "quickstart", "--dir", dir)
	if err != nil {
		return err
	}
	defer stop(cmd)
	admin, err := identity.Load(filepath.Join(dir, "admin.json"))
	if err != nil {
		return err
	}
	client, err := api.NewClient(ctx, admin)
	if err != nil {
		return err
	}
	defer client.Close()

	tokens := make([]string, c.enrollments)
	for i := range tokens {
		out, err := client.Create(ctx, "identities", api.CreateIdentity{Name: fmt.Sprintf("enroll-%d", i)})
		if err != nil {
			return err
		}
		tokens[i] = out.JWT
	}
	var enrollTotal time.Duration
	for _, tok := range tokens {
		key, _, err := keystore.NewFileKey()
		if err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := enroll.Enroll(ctx, tok, pki.KindIdentity, key); err != nil {
			return fmt.Errorf("enroll: %w", err)
		}
		enrollTotal += time.Since(t0)
	}
	enrollRate := float64(c.enrollments) / enrollTotal.Seconds()
	peerRate, err := httpsNewConnRate(ctx, c.enrollments)
	if err != nil {
		return err
	}
	r.printf("| enrollments per second (sequential, file key, %d) | %.0f /s | HTTPS POST on a new TLS 1.3 connection each: %.0f /s | %.2f× |\n",
		c.enrollments, enrollRate, peerRate, enrollRate/peerRate)

	// Fill the store to c.identities and time listing them.
	t0 := time.Now()
	have := c.enrollments + 1 // the admin and the enrolled ones
	if err := createIdentities(ctx, client, have, c.identities); err != nil {
		return err
	}
	created := c.identities - have
	createRate := float64(created) / time.Since(t0).Seconds()
	var lists []time.Duration
	var body []byte
	for range c.listRuns {
		t0 := time.Now()
		var raw json.RawMessage
		if err := client.Do(ctx, http.MethodGet, "/v1/identities", nil, &raw); err != nil {
			return err
		}
		lists = append(lists, time.Since(t0))
		body = raw
	}
	var n []map[string]any
	json.Unmarshal(body, &n)
	peerLists, err := httpsStaticGet(ctx, body, c.listRuns)
	if err != nil {
		return err
	}
	r.printf("| `list identities` with %d stored, API call (median of %d; p99 %s) | %s | HTTPS GET of the same %d KB from a static Go server: %s | %.1f× |\n",
		len(n), c.listRuns, ms(percentile(lists, 0.99)), ms(median(lists)), len(body)/1024, ms(median(peerLists)), ratio(median(lists), median(peerLists)))

	var cli []time.Duration
	env := append(os.Environ(), "UMBRA_ADMIN="+filepath.Join(dir, "admin.json"))
	for range 5 {
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, umbra, "edge", "list", "identities", "-o", "json")
		cmd.Env = env
		cmd.Stdout = io.Discard
		if err := cmd.Run(); err != nil {
			return err
		}
		cli = append(cli, time.Since(t0))
	}
	r.printf("| `umbra edge list identities -o json` with %d stored, whole command (median of 5) | %s | `umbra version` process start: %s | %.1f× |\n",
		len(n), ms(median(cli)), ms(median(execTimes)), ratio(median(cli), median(execTimes)))
	r.printf("| identity creations per second through the API (%d workers) | %.0f /s | — | — |\n\n", createWorkers, createRate)
	r.printf("For scale (not measured here): the issue records OpenZiti's quickstart at 10.8 s until its router is online, about 180 MB resident, on this kind of machine.\n\n")
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// createIdentities creates identities bulk-%d until the store holds want.
func createIdentities(ctx context.Context, client *api.Client, have, want int) error {
	jobs := make(chan int)
	errc := make(chan error, createWorkers)
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if _, err := client.Create(ctx, "identities", api.CreateIdentity{Name: fmt.Sprintf("bulk-%d", i), Attributes: []string{"drone", "fleet-a"}}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for i := have; i < want; i++ {
		select {
		case jobs <- i:
		case err := <-errc:
			close(jobs)
			wg.Wait()
			return err
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// peerServer is a Go HTTPS server on loopback with a P-256 certificate from a fresh CA,
// the same TLS setup umbra's controller uses.
func peerServer(h http.Handler) (*http.Server, string, *x509.CertPool, error) {
	key, _ := pki.NewKey()
	serial, _ := pki.NewSerial()
	tmpl := &x509.Certificate{SerialNumber: serial, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	cert, err := pki.Issue(tmpl, nil, &key.PublicKey, key)
	if err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, err
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}}}
	go srv.ServeTLS(ln, "", "")
	return srv, "https://" + ln.Addr().String(), pki.Pool(cert), nil
}

// httpsNewConnRate is the rate of small POSTs, each on a new TLS 1.3 connection.
func httpsNewConnRate(ctx context.Context, n int) (float64, error) {
	srv, url, pool, err := peerServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"ok":true}`))
	}))
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t0 := time.Now()
	for range n {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(make([]byte, 600)))
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// httpsStaticGet times GETs of body from a static server over one kept-alive connection.
func httpsStaticGet(ctx context.Context, body []byte, n int) ([]time.Duration, error) {
	srv, url, pool, err := peerServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var out []time.Duration
	for i := range n + 1 {
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		var raw json.RawMessage
		json.NewDecoder(resp.Body).Decode(&raw)
		resp.Body.Close()
		if i > 0 { // the first call pays the handshake, as the API client's warm connection did not
			out = append(out, time.Since(t0))
		}
	}
	return out, nil
}
