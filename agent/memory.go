package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"
)

// Defaults of TrimConfig.
const (
	// DefaultTrimPoll is how often the trimmer reads the process's CPU time and
	// resident memory: a getrusage and one small read of /proc, no stop-the-world.
	DefaultTrimPoll = 500 * time.Millisecond
	// DefaultTrimQuiet is how long the agent must have stayed quiet before a trim, so
	// that a pause in a transfer does not cost a collection whose memory is needed again
	// at once.
	DefaultTrimQuiet = time.Second
	// DefaultTrimQuietCPU is the share of one core below which the agent counts as
	// quiet: idle, it used 0.5 % of an x86 core, so a board ten times slower still
	// reads as quiet, while a transfer uses what the link allows. CPU time rather than
	// allocations or collections, since the data path allocates little: counting
	// collections, a trim came in the middle of a 256 MB echo.
	DefaultTrimQuietCPU = 0.10
	// DefaultTrimMinGain is how much the process's anonymous resident memory must have
	// grown since the last trim (or since TrimMemory started) to trim again. An idle
	// agent grows by less between the runtime's own collections (its heap goal is never
	// below 4 MB), and so does starting up and linking, so neither triggers a trim; a
	// 256 MB echo adds about 9 MB.
	DefaultTrimMinGain = 4 << 20
)

// TrimConfig tunes TrimMemory; the zero value is the defaults above.
type TrimConfig struct {
	// Poll is how often the trimmer looks; zero means DefaultTrimPoll.
	Poll time.Duration
	// Quiet is how long the agent must have used less than QuietCPU before a trim;
	// zero means DefaultTrimQuiet.
	Quiet time.Duration
	// QuietCPU is the share of one core (0.1 is 10 %) below which the agent counts as
	// quiet; zero means DefaultTrimQuietCPU.
	QuietCPU float64
	// MinGain is how many bytes the anonymous resident memory must have grown since the
	// last trim to trim again; zero means DefaultTrimMinGain.
	MinGain int64
	// Logger receives one debug line per trim; nil discards them.
	Logger *slog.Logger
}

// trimSample is what the trimmer reads of the process.
type trimSample struct {
	cpu  time.Duration // CPU time used so far, user and system
	anon uint64        // anonymous resident bytes: heap, stacks, runtime metadata
}

// trimmer decides when to trim; read, free and releaseCode are the process's, or fakes in
// tests.
type trimmer struct {
	cfg         TrimConfig
	read        func() (trimSample, error)
	free        func()
	releaseCode func() (int64, error)
	log         *slog.Logger

	codeReleased bool // releaseCode ran, the first time the agent was quiet

	last     trimSample // the previous poll
	base     uint64     // anonymous resident bytes right after the last trim
	quietFor time.Duration
}

// TrimMemory returns the memory the Go runtime holds but no longer uses to the OS each
// time the agent goes quiet after a burst that grew it (a transfer, say), until ctx
// ends. The first time the agent is quiet it also unmaps the pages of its executable that
// starting up mapped (see releaseStartupCode): idle, that took the hosting agent from
// 12.2 MB resident to about 9 MB two minutes later. Left alone, the runtime keeps freed pages for reuse up to the heap goal the
// burst raised and forces a collection only every two minutes: after a 256 MB echo
// the hosting agent stayed at 22 MB resident (still 17 to 19 MB two and a half minutes
// later); with the trim it is at about 14 MB two seconds after the echo's end. It changes neither GOGC nor
// GOMEMLIMIT, and does nothing where /proc/self/statm cannot be read.
func TrimMemory(ctx context.Context, cfg TrimConfig) {
	p, err := openProcStat()
	if err != nil {
		logNotTrimming(cfg.Logger, err)
		return
	}
	defer p.close()
	t, err := newTrimmer(cfg, p.read, trimRuntime, releaseStartupCode)
	if err != nil {
		logNotTrimming(cfg.Logger, err)
		return
	}
	t.run(ctx)
}

func logNotTrimming(log *slog.Logger, err error) {
	if log != nil {
		log.Debug("not trimming memory", "err", err)
	}
}

// run polls until ctx ends.
func (t *trimmer) run(ctx context.Context) {
	tick := time.NewTicker(t.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.poll(t.cfg.Poll)
		}
	}
}

// newTrimmer fills in cfg's defaults and takes the process as it is now for the base.
func newTrimmer(cfg TrimConfig, read func() (trimSample, error), free func(), releaseCode func() (int64, error)) (*trimmer, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultTrimPoll
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultTrimQuiet
	}
	if cfg.QuietCPU <= 0 {
		cfg.QuietCPU = DefaultTrimQuietCPU
	}
	if cfg.MinGain <= 0 {
		cfg.MinGain = DefaultTrimMinGain
	}
	t := &trimmer{cfg: cfg, read: read, free: free, releaseCode: releaseCode, log: cfg.Logger}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	s, err := read()
	if err != nil {
		return nil, err
	}
	t.last, t.base = s, s.anon
	return t, nil
}

// poll looks at the process elapsed after the previous poll and trims if it has used
// less than cfg.QuietCPU for cfg.Quiet and its anonymous resident memory has grown by
// cfg.MinGain since the last trim. It reports whether it trimmed.
func (t *trimmer) poll(elapsed time.Duration) bool {
	s, err := t.read()
	if err != nil {
		return false
	}
	used := s.cpu - t.last.cpu
	t.last = s
	if used.Seconds() > t.cfg.QuietCPU*elapsed.Seconds() {
		t.quietFor = 0
		return false
	}
	t.quietFor += elapsed
	if t.quietFor < t.cfg.Quiet {
		return false
	}
	if !t.codeReleased {
		t.codeReleased = true
		n, err := t.releaseCode()
		t.log.Debug("released start-up code pages", "mapped_kb", n>>10, "err", err)
	}
	if s.anon < t.base+uint64(t.cfg.MinGain) {
		return false
	}
	t.free()
	after, err := t.read()
	if err != nil {
		after = s
	}
	t.last, t.base, t.quietFor = after, after.anon, 0
	t.log.Debug("returned memory to the OS", "anon_before_kb", s.anon>>10, "anon_after_kb", after.anon>>10)
	return true
}

// trimRuntime collects twice and returns the free heap to the OS: the first collection
// moves sync.Pool contents (quic-go's packet buffers, say) to the pools' victim caches,
// the second frees them. After a 256 MB echo the hosting agent kept about 16 MB
// resident with one collection and about 14 MB with two.
func trimRuntime() {
	runtime.GC()
	debug.FreeOSMemory()
}

// procStat reads the process's CPU time (getrusage) and anonymous resident memory
// (/proc/self/statm: resident pages less the file-backed and shared ones) without
// allocating, so that watching an idle agent does not itself grow its heap. Measured on
// the idle agent, runtime.ReadMemStats (which stops the world and flushes every P's span
// cache) cost 0.35 MB more resident, and runtime/metrics (whose first use runs code
// found nowhere else in the agent) 0.13 MB.
type procStat struct {
	statm *os.File
	page  uint64
	buf   [128]byte
}

// openProcStat opens /proc/self/statm for the life of the trimmer.
func openProcStat() (*procStat, error) {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil, fmt.Errorf("agent: read resident memory: %w", err)
	}
	return &procStat{statm: f, page: uint64(os.Getpagesize())}, nil
}

func (p *procStat) close() { p.statm.Close() }

// read samples the process now.
func (p *procStat) read() (trimSample, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return trimSample{}, fmt.Errorf("agent: read CPU time: %w", err)
	}
	n, err := p.statm.ReadAt(p.buf[:], 0)
	if n == 0 {
		return trimSample{}, fmt.Errorf("agent: read resident memory: %w", err)
	}
	resident, shared, ok := parseStatm(p.buf[:n])
	if !ok {
		return trimSample{}, fmt.Errorf("agent: read resident memory: bad /proc/self/statm %q", p.buf[:n])
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return trimSample{cpu: cpu, anon: (resident - shared) * p.page}, nil
}

// parseStatm reads the resident and shared page counts from the start of
// /proc/self/statm, "size resident shared text lib data dt"; ok is false unless those
// three are decimal numbers separated by single spaces, shared no more than resident.
func parseStatm(b []byte) (resident, shared uint64, ok bool) {
	var field [3]uint64
	i, digits := 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9' && digits < 19: // 19 digits cannot overflow
			field[i] = field[i]*10 + uint64(c-'0')
			digits++
		case (c == ' ' || c == '\n') && digits > 0:
			if i++; i == len(field) {
				return statmPages(field)
			}
			digits = 0
		default:
			return 0, 0, false
		}
	}
	if i == len(field)-1 && digits > 0 { // the third field ends the input
		return statmPages(field)
	}
	return 0, 0, false
}

// statmPages checks statm's first three fields.
func statmPages(field [3]uint64) (resident, shared uint64, ok bool) {
	if field[2] > field[1] {
		return 0, 0, false
	}
	return field[1], field[2], true
}
