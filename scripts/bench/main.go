// Command bench measures umbra against peers measured in the same run and rewrites
// docs/BENCHMARKS.md. Every figure stands beside its peer as a ratio, since absolute
// times on a shared machine drift. `make bench` builds the binaries and runs it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/umbranet/umbra/internal/lab"
	"github.com/umbranet/umbra/scripts/bench/peers"
)

// sectionBudget bounds each section that does not name a budget of its own; stopTimeout,
// how long an interrupted program may take to exit before it is killed.
const (
	sectionBudget = 30 * time.Minute
	stopTimeout   = 10 * time.Second
)

// Sizes of the runs, as flags so a quick run can shrink them.
type config struct {
	bin         string
	out         string
	quickRuns   int
	enrollments int
	identities  int
	listRuns    int
	bulk        int64
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin", "directory holding umbra and umbra-agent")
	flag.StringVar(&c.out, "out", "docs/BENCHMARKS.md", "report to write")
	flag.IntVar(&c.quickRuns, "quickstart-runs", 5, "quickstart starts to take the median of")
	flag.IntVar(&c.enrollments, "enrollments", 200, "enrollments to time")
	flag.IntVar(&c.identities, "identities", 10000, "identities stored before timing list")
	flag.IntVar(&c.listRuns, "list-runs", 20, "list calls to take the median of")
	flag.Int64Var(&c.bulk, "bulk", 256<<20, "bytes echoed through each data-plane path")
	only := flag.String("only", "", "comma-separated sections to run (groundstation,dataplane,relay,heal,operate,paths,keystore,boards,radio,defaults,mcp,observe,video,cluster); empty runs all")
	serveQUIC := flag.Bool("serve-quic-echo", false, "run as the cross-process quic-go echo peer (internal)")
	serveRelay := flag.String("serve-quic-relay", "", "run as a bare quic-go relay to this echo peer (internal)")
	flag.Parse()
	log.SetFlags(0)
	if *serveQUIC || *serveRelay != "" {
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
		defer cancel()
		serve := func() error { return peers.ServeQUICEcho(ctx, os.Stdout) }
		if *serveRelay != "" {
			serve = func() error { return peers.ServeQUICRelay(ctx, os.Stdout, *serveRelay) }
		}
		if err := serve(); err != nil {
			log.Fatal(err)
		}
		return
	}
	r := &report{}
	r.header()
	// Each section is bounded by its own budget: the radio section alone takes about 34
	// minutes, more than all the others together.
	sections := []struct {
		name   string
		budget time.Duration
		run    func(ctx context.Context) error
	}{
		{"groundstation", sectionBudget, func(ctx context.Context) error { return benchGroundStation(ctx, c, r) }},
		{"dataplane", sectionBudget, func(ctx context.Context) error { return benchDataPlane(ctx, c, r) }},
		{"relay", sectionBudget, func(ctx context.Context) error { return benchRelay(ctx, c, r) }},
		{"heal", sectionBudget, func(ctx context.Context) error { return benchHeal(ctx, c, r) }},
		{"operate", sectionBudget, func(ctx context.Context) error { return benchOperate(ctx, c, r) }},
		{"paths", sectionBudget, func(ctx context.Context) error { return benchPaths(ctx, r) }},
		{"keystore", sectionBudget, func(ctx context.Context) error { return benchKeystores(ctx, r) }},
		{"boards", sectionBudget, func(ctx context.Context) error { return benchBoards(ctx, c, r) }},
		{"radio", radioTimeout, func(ctx context.Context) error { return benchRadio(ctx, c, r) }},
		{"defaults", defaultsTimeout, func(ctx context.Context) error { return benchDefaults(ctx, c, r) }},
		{"mcp", sectionBudget, func(ctx context.Context) error { return benchMCP(ctx, c, r) }},
		{"observe", sectionBudget, func(ctx context.Context) error { return benchObserve(ctx, c, r) }},
		{"video", videoTimeout, func(ctx context.Context) error { return benchVideo(ctx, c, r) }},
		{"cluster", sectionBudget, func(ctx context.Context) error { return benchCluster(ctx, c, r) }},
	}
	for _, s := range sections {
		if *only != "" && !slices.Contains(strings.Split(*only, ","), s.name) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.budget)
		err := s.run(ctx)
		cancel()
		if err != nil {
			log.Fatalf("bench %s: %v", s.name, err)
		}
	}
	if err := os.WriteFile(c.out, []byte(r.String()), 0o644); err != nil {
		log.Fatalf("bench: %v", err)
	}
	fmt.Print(r.String())
}

// report accumulates the Markdown document.
type report struct{ b strings.Builder }

func (r *report) String() string { return r.b.String() }

func (r *report) printf(format string, args ...any) { fmt.Fprintf(&r.b, format, args...) }

func (r *report) header() {
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	r.printf("# umbra benchmarks\n\n")
	r.printf("Written by `make bench` (scripts/bench). Each figure stands beside a peer measured in the\n")
	r.printf("same run on the same machine; compare ratios, not absolute times, across runs.\n\n")
	r.printf("- date: %s\n- commit: %s\n- machine: %s, %d cores, %s\n\n",
		time.Now().UTC().Format(time.RFC3339), strings.TrimSpace(string(commit)), cpuModel(), runtime.NumCPU(), runtime.Version())
}

func hostArch() string { return runtime.GOOS + "/" + runtime.GOARCH }

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// rssKB reads a process's resident set size.
func rssKB(pid int) int { return statusKB(pid, "VmRSS:") }

// statusKB reads one figure in KB of a process's /proc/PID/status, field naming it with
// its colon (VmRSS:, RssAnon:, RssFile:); 0 if it cannot.
func statusKB(pid int, field string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}

// startUntil starts bin and returns once a line of its stdout starts with prefix, with
// the time that took.
func startUntil(ctx context.Context, prefix, bin string, args ...string) (*exec.Cmd, time.Duration, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	cmd.Stderr = io.Discard
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			d := time.Since(t0)
			go io.Copy(io.Discard, out)
			return cmd, d, nil
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, 0, fmt.Errorf("%s exited before printing %q", filepath.Base(bin), prefix)
}

// stop interrupts cmd and kills it if it has not exited within stopTimeout.
func stop(cmd *exec.Cmd) { lab.StopCmd(cmd, os.Interrupt, stopTimeout) }
