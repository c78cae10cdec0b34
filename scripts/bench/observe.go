package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/umbranet/umbra/internal/api"
	"github.com/umbranet/umbra/internal/identity"
	"github.com/umbranet/umbra/internal/lab"
)

// Sizes of the observe section (issue 15).
const (
	// observeCircuits is how many TCP circuits the router carries while it is scraped:
	// the "a router carrying 100 circuits".
	observeCircuits = 100
	// scrapeRuns is how many scrapes each scrape figure is the median of.
	scrapeRuns = 20
	// consoleIdentities is the size of the fleet the console's first page lists.
	consoleIdentities = 100
	// consoleRuns is how many first page loads (and peer CLI runs) the median is taken of.
	consoleRuns = 10
	// observeWait bounds each wait of the section (circuits counted, the console up).
	observeWait = 30 * time.Second
	// observePoll is the pause between looks at the router's circuit gauge.
	observePoll = 50 * time.Millisecond
	// quickstartRouterName is the router a quickstart runs.
	quickstartRouterName = "router1"
)

// consoleFirstLoad is what a browser asks for on opening the console: the page, its
// script and style, and the fleet list the script fetches first.
var consoleFirstLoad = []string{"/", "/app.js", "/style.css", "/api/identities"}

// benchObserve measures issue 15's figures: scraping the quickstart's /metrics while its
// router carries observeCircuits circuits, the console's first page load, and the agent
// binary beside the umbra binary.
func benchObserve(ctx context.Context, c config, r *report) error {
	l, metricsURL, err := newQuickstartLab(ctx, c)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	defer l.close()
	idle, busy, err := l.scrapeFigures(metricsURL)
	if err != nil {
		return fmt.Errorf("observe: %w\n%s", err, l.logs())
	}
	load, err := l.consoleFigures()
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	sizes, err := binarySizes(c.bin)
	if err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	writeObserve(r, idle, busy, load, sizes)
	return nil
}

// newQuickstartLab starts `umbra quickstart` and returns it as a relayLab whose one
// router is the quickstart's router1, so the relay lab's helpers (identities, agents,
// the echo service) work against it; and the quickstart's metrics URL.
func newQuickstartLab(ctx context.Context, c config) (*relayLab, string, error) {
	dir, err := os.MkdirTemp("", "umbra-bench-observe")
	if err != nil {
		return nil, "", err
	}
	qsDir := filepath.Join(dir, "qs")
	qs, _, err := startUntil(ctx, "ready", filepath.Join(c.bin, "umbra"), "quickstart", "--dir", qsDir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("quickstart: %w", err)
	}
	// The quickstart's directory holds admin.json as a controller's data directory does;
	// the lab never restarts this controller.
	l := &relayLab{ctx: ctx, umbra: filepath.Join(c.bin, "umbra"), agent: filepath.Join(c.bin, "umbra-agent"), dir: dir,
		env: append(os.Environ(), "UMBRA_ADMIN="+filepath.Join(qsDir, "admin.json")), procs: []*exec.Cmd{qs}, ctrl: qs, ctrlData: qsDir,
		routers: map[string]*exec.Cmd{quickstartRouterName: qs}, routerAddr: map[string]string{}}
	state, err := lab.ReadQuickstart(qsDir)
	if err != nil || state.Metrics == "" {
		l.close()
		return nil, "", fmt.Errorf("quickstart.json names no router or metrics URL (%v)", err)
	}
	l.routerAddr[quickstartRouterName] = state.Router
	return l, state.Metrics, nil
}

// scrapeRow is one scrape figure: the scrapes' times and the size of the exposition.
type scrapeRow struct {
	circuits int
	times    []time.Duration
	bytes    int
}

// scrapeFigures scrapes the quickstart with observeCircuits TCP circuits open through
// one operator's dial listener, each having echoed echoProbe bytes; and idle, no circuit
// running, both before the circuits open and after they close, so the peer shares the
// busy figure's warm-up and drift.
func (l *relayLab) scrapeFigures(metricsURL string) (idle, busy scrapeRow, err error) {
	listen, err := l.echoFleet()
	if err != nil {
		return idle, busy, err
	}
	if idle, err = idleScrapes(l.ctx, metricsURL); err != nil {
		return idle, busy, err
	}
	conns, err := openEchoed(listen, observeCircuits)
	if err != nil {
		closeAll(conns)
		return idle, busy, err
	}
	err = waitActive(l.ctx, metricsURL, observeCircuits)
	if err == nil {
		busy, err = timeScrapes(l.ctx, metricsURL, observeCircuits)
	}
	closeAll(conns)
	if err != nil {
		return idle, busy, err
	}
	after, err := idleScrapes(l.ctx, metricsURL)
	idle.times = append(idle.times, after.times...)
	return idle, busy, err
}

// idleScrapes waits until no circuit runs and times scrapeRuns scrapes.
func idleScrapes(ctx context.Context, metricsURL string) (scrapeRow, error) {
	if err := waitActive(ctx, metricsURL, 0); err != nil {
		return scrapeRow{}, err
	}
	return timeScrapes(ctx, metricsURL, 0)
}

// echoFleet runs a drone hosting echo (a greeting echo server) and an operator dialing
// it at the returned listener, and waits until a circuit echoes.
func (l *relayLab) echoFleet() (string, error) {
	host, err := serveGreetingEcho(l.ctx, "drone")
	if err != nil {
		return "", err
	}
	if err := l.echoService(host); err != nil {
		return "", err
	}
	op := &operateLab{relayLab: l, listen: freeTCPPort()}
	for _, a := range []struct{ name, attr string }{{"drone", "drone"}, {"op", "operator"}} {
		id, err := l.identity(a.name, a.attr)
		if err != nil {
			return "", err
		}
		var args []string
		if a.name == "op" {
			args = []string{"--dial", "echo=tcp:" + op.listen}
		}
		if _, err := l.run(id, quickstartRouterName, args...); err != nil {
			return "", err
		}
	}
	_, err = op.waitCircuit(time.Now(), "drone")
	return op.listen, err
}

// openEchoed opens n circuits through listen, each past its greeting and one echo, and
// leaves them open.
func openEchoed(listen string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, _, err := echoedConn(listen, circuitAttempt)
		if err != nil {
			return conns, fmt.Errorf("circuit %d of %d: %w", i+1, n, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// waitActive waits until the router's umbra_router_circuits_active reads want, so a
// scrape sees the circuits it is meant to (and a closed probe circuit is gone).
func waitActive(ctx context.Context, metricsURL string, want int) error {
	line := fmt.Sprintf("\numbra_router_circuits_active %d\n", want)
	deadline := time.Now().Add(observeWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		body, _, err := scrapeOnce(ctx, metricsURL)
		if err == nil && bytes.Contains(body, []byte(line)) {
			return nil
		}
		time.Sleep(observePoll)
	}
	return fmt.Errorf("umbra_router_circuits_active did not reach %d within %v", want, observeWait)
}

// timeScrapes scrapes metricsURL scrapeRuns times and returns the times and the last
// exposition's size.
func timeScrapes(ctx context.Context, metricsURL string, circuits int) (scrapeRow, error) {
	row := scrapeRow{circuits: circuits}
	for range scrapeRuns {
		body, d, err := scrapeOnce(ctx, metricsURL)
		if err != nil {
			return row, err
		}
		row.times = append(row.times, d)
		row.bytes = len(body)
	}
	return row, nil
}

// scrapeOnce GETs url as a scraper does, on a new connection, and returns the body and
// the time to its last byte.
func scrapeOnce(ctx context.Context, url string) ([]byte, time.Duration, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t0 := time.Now()
	body, err := httpGet(ctx, client, url, nil)
	return body, time.Since(t0), err
}

// httpGet GETs url with header and returns the body, or an error for any status but 200.
func httpGet(ctx context.Context, client *http.Client, url string, header http.Header) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, err
}

// consoleLoad is the console's first page load beside the CLI listing the same fleet.
type consoleLoad struct {
	identities int
	loads      []time.Duration
	bytes      int
	cli        []time.Duration
	cliBytes   int
}

// consoleFigures fills the fleet to consoleIdentities, runs `umbra console` and times
// its first page load, consoleRuns times, beside `umbra edge list identities -o json`.
func (l *relayLab) consoleFigures() (consoleLoad, error) {
	var f consoleLoad
	n, err := l.fillIdentities(consoleIdentities)
	if err != nil {
		return f, err
	}
	f.identities = n
	addr := freeTCPPort()
	console, _, err := startUntil(l.ctx, "console ", l.umbra, "console", "--admin", l.adminFile(), "--listen", addr)
	if err != nil {
		return f, fmt.Errorf("umbra console: %w", err)
	}
	l.procs = append(l.procs, console)
	for range consoleRuns {
		d, size, err := firstPageLoad(l.ctx, "http://"+addr)
		if err != nil {
			return f, err
		}
		f.loads, f.bytes = append(f.loads, d), size
		d, size, err = l.timedCLI("edge", "list", "identities", "-o", "json")
		if err != nil {
			return f, err
		}
		f.cli, f.cliBytes = append(f.cli, d), size
	}
	return f, nil
}

// fillIdentities creates identities until the quickstart holds want and returns how
// many it holds.
func (l *relayLab) fillIdentities(want int) (int, error) {
	admin, err := identity.Load(l.adminFile())
	if err != nil {
		return 0, err
	}
	client, err := api.NewClient(l.ctx, admin)
	if err != nil {
		return 0, err
	}
	defer client.Close()
	have, err := client.List(l.ctx, "identities")
	if err != nil {
		return 0, err
	}
	if err := createIdentities(l.ctx, client, len(have), want); err != nil {
		return 0, err
	}
	all, err := client.List(l.ctx, "identities")
	return len(all), err
}

// adminFile is the lab controller's admin identity.
func (l *relayLab) adminFile() string { return filepath.Join(l.ctrlData, "admin.json") }

// firstPageLoad GETs consoleFirstLoad in order, on one new kept-alive connection as a
// fresh tab opens it, and returns the total time and bytes.
func firstPageLoad(ctx context.Context, origin string) (time.Duration, int, error) {
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	size := 0
	t0 := time.Now()
	for _, path := range consoleFirstLoad {
		body, err := httpGet(ctx, client, origin+path, nil)
		if err != nil {
			return 0, 0, fmt.Errorf("console: %w", err)
		}
		size += len(body)
	}
	return time.Since(t0), size, nil
}

// timedCLI runs umbra with args as the admin and returns its time and output size.
func (l *relayLab) timedCLI(args ...string) (time.Duration, int, error) {
	cmd := exec.CommandContext(l.ctx, l.umbra, args...)
	cmd.Env = l.env
	var out bytes.Buffer
	cmd.Stdout = &out
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("umbra %s: %w", strings.Join(args, " "), err)
	}
	return time.Since(t0), out.Len(), nil
}

// binarySize is one built binary's size and the prometheus modules linked into it.
type binarySize struct {
	path       string
	bytes      int64
	prometheus []string // the github.com/prometheus/… modules go version -m names
}

// binarySizes reads the agent (native, and arm64 when built) and the umbra binary.
func binarySizes(bin string) ([]binarySize, error) {
	var out []binarySize
	for _, p := range []string{filepath.Join(bin, "umbra-agent"), filepath.Join(bin, "linux_arm64", "umbra-agent"), filepath.Join(bin, "umbra")} {
		fi, err := os.Stat(p)
		if os.IsNotExist(err) && strings.Contains(p, "linux_arm64") {
			continue // `make cross` not run: the native figures stand alone
		}
		if err != nil {
			return nil, err
		}
		mods, err := exec.Command("go", "version", "-m", p).Output()
		if err != nil {
			return nil, fmt.Errorf("go version -m %s: %w", p, err)
		}
		out = append(out, binarySize{path: p, bytes: fi.Size(), prometheus: prometheusModules(string(mods))})
	}
	return out, nil
}

// prometheusModules picks the github.com/prometheus/… dependencies out of `go version -m`.
func prometheusModules(versionM string) []string {
	var mods []string
	for _, line := range strings.Split(versionM, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "dep" && strings.HasPrefix(f[1], "github.com/prometheus/") {
			mods = append(mods, strings.TrimPrefix(f[1], "github.com/prometheus/"))
		}
	}
	return mods
}

// writeObserve renders the section.
func writeObserve(r *report, idle, busy scrapeRow, load consoleLoad, sizes []binarySize) {
	r.printf("## Seeing the fleet: metrics and console (issue 15)\n\n")
	r.printf("### Scraping the quickstart's /metrics\n\n")
	r.printf("`umbra quickstart` (controller and router1 in one process, one exposition), a drone hosting a TCP\n")
	r.printf("echo and an operator agent; each scrape a GET on a new connection, timed to its last byte. The busy\n")
	r.printf("figure has %d TCP circuits open through the operator's dial listener, each having echoed %d bytes\n", busy.circuits, echoProbe)
	r.printf("(`umbra_router_circuits_active` reads %d); the peer is the same scrape with no circuit running,\n", busy.circuits)
	r.printf("%d scrapes before the circuits open and %d after they close.\n\n", scrapeRuns, scrapeRuns)
	bt, it := median(busy.times), median(idle.times)
	r.printf("| figure | %d circuits | peer: 0 circuits (same run) | ratio |\n|---|---|---|---|\n", busy.circuits)
	r.printf("| scrape time (median of %d; peer of %d) | %s | %s | %.2f× |\n", len(busy.times), len(idle.times), msFine(bt), msFine(it), ratio(bt, it))
	r.printf("| exposition size | %d bytes | %d bytes | %.2f× |\n\n", busy.bytes, idle.bytes, float64(busy.bytes)/float64(idle.bytes))
	r.printf("Labels are services, directions, reasons and link peers, never circuits: %d circuits of one service\n", busy.circuits)
	r.printf("add the series of that service once, whatever their number.\n\n")

	r.printf("### The console's first page load\n\n")
	r.printf("`umbra console` against the quickstart holding %d identities: `GET %s` in order on one new\n", load.identities, strings.Join(consoleFirstLoad, "`, `GET "))
	r.printf("kept-alive connection, as a fresh tab opens the fleet page (%d bytes in all); the peer lists the same\n", load.bytes)
	r.printf("identities with the CLI, a whole process (%d bytes of JSON).\n\n", load.cliBytes)
	r.printf("| figure | umbra console | peer (same run) | ratio |\n|---|---|---|---|\n")
	r.printf("| first page load, %d identities (median of %d) | %s | `umbra edge list identities -o json`: %s | %.2f× |\n\n",
		load.identities, consoleRuns, ms(median(load.loads)), ms(median(load.cli)), ratio(median(load.loads), median(load.cli)))

	r.printf("### The agent binary and its metrics\n\n")
	r.printf("The agent's metrics are written by hand in the text format (agent/metrics.go, from its status), so\n")
	r.printf("client_golang is not linked into it; a build without them needs a build tag that does not exist, so\n")
	r.printf("the agent stands beside the `umbra` binary, which links client_golang for the controller and router.\n")
	r.printf("The last column is whether `go version -m BINARY | grep prometheus` prints anything.\n\n")
	r.printf("| binary | size | prometheus modules linked |\n|---|---|---|\n")
	for _, b := range sizes {
		linked := "none (`go version -m` prints no prometheus line)"
		if len(b.prometheus) > 0 {
			linked = strings.Join(b.prometheus, ", ")
		}
		r.printf("| `%s` | %.1f MB (%d bytes) | %s |\n", b.path, float64(b.bytes)/(1<<20), b.bytes, linked)
	}
	r.printf("\n")
}
