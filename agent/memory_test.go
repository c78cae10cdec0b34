package agent

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeProcess is a process the trimmer test drives poll by poll.
type fakeProcess struct {
	s     trimSample
	trims int
	// freed is what a trim brings anonymous resident memory back to.
	freed uint64
}

func (f *fakeProcess) read() (trimSample, error) { return f.s, nil }
func (f *fakeProcess) free()                     { f.trims++; f.s.cpu += time.Millisecond; f.s.anon = f.freed }

func TestTrimmerPolicy(t *testing.T) {
	const (
		poll = 100 * time.Millisecond
		mb   = 1 << 20
	)
	cfg := TrimConfig{Poll: poll, Quiet: 300 * time.Millisecond, QuietCPU: 0.1, MinGain: 4 * mb}
	// step is one poll: CPU time used and anonymous memory grown since the previous.
	type step struct {
		cpu  time.Duration
		grow uint64
	}
	repeat := func(n int, s step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	seq := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	busy := step{cpu: 80 * time.Millisecond, grow: mb}
	idle := step{cpu: time.Millisecond}
	tests := []struct {
		name  string
		steps []step
		want  int // trims
		code  int // releases of the start-up code
	}{
		{"busy-agent-is-never-trimmed", repeat(50, busy), 0, 0},
		{"quiet-after-a-burst-trims-once", seq(repeat(5, busy), repeat(20, idle)), 1, 1},
		{"a-pause-shorter-than-quiet-does-not-trim", seq(repeat(5, busy), repeat(2, idle), repeat(5, busy)), 0, 0},
		{"quiet-but-grown-by-less-than-min-gain-is-left-alone", seq(repeat(3, busy), repeat(20, idle)), 0, 1},
		{"an-agent-still-busy-without-growing-is-not-trimmed", seq(repeat(5, busy), repeat(20, step{cpu: 50 * time.Millisecond})), 0, 0},
		{"quiet-is-below-the-cpu-share-not-at-zero", seq(repeat(5, busy), repeat(5, step{cpu: 9 * time.Millisecond})), 1, 1},
		{"a-second-burst-trims-again", seq(repeat(5, busy), repeat(5, idle), repeat(5, busy), repeat(5, idle)), 2, 1},
		{"growth-while-quiet-trims-once-quiet-long-enough", seq([]step{{grow: 5 * mb}}, repeat(2, idle), repeat(10, idle)), 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeProcess{s: trimSample{cpu: time.Second, anon: 2 * mb}, freed: 2 * mb}
			releases := 0
			tr, err := newTrimmer(cfg, f.read, f.free, func() (int64, error) { releases++; return 0, nil })
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.steps {
				f.s.cpu += s.cpu
				f.s.anon += s.grow
				tr.poll(poll)
			}
			if f.trims != tt.want {
				t.Errorf("trims = %d, want %d", f.trims, tt.want)
			}
			if releases != tt.code {
				t.Errorf("start-up code released %d times, want %d (once, the first time the agent is quiet)", releases, tt.code)
			}
		})
	}
}

// TestTrimMemoryReturnsABurstToTheOS is what a device's owner sees: after a burst of
// allocation the process's resident memory falls back once it goes quiet, instead of
// staying at the burst's size until the runtime's next forced GC minutes later.
func TestTrimMemoryReturnsABurstToTheOS(t *testing.T) {
	const (
		burst    = 32 << 20
		chunk    = 64 << 10
		deadline = 20 * time.Second
	)
	if _, err := rssAnonKB(); err != nil {
		t.Skipf("no resident memory to read here: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		TrimMemory(ctx, TrimConfig{Poll: 50 * time.Millisecond, Quiet: 200 * time.Millisecond})
	}()
	sink := make([][]byte, 0, burst/chunk)
	for range burst / chunk {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // resident, as a transfer's buffers are
		}
		sink = append(sink, b)
	}
	peak, err := rssAnonKB()
	if err != nil {
		t.Fatal(err)
	}
	runtime.KeepAlive(sink)
	sink = nil
	// At least half the burst comes back; under the race detector, whose shadow of the
	// burst stays resident whatever the heap does, a quarter (CI saw 14 of 32 MB come
	// back there, and none without the trim).
	back := burst >> 10 / 2
	if raceDetector {
		back = burst >> 10 / 4
	}
	want := peak - back
	var now int
	for end := time.Now().Add(deadline); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if now, err = rssAnonKB(); err != nil {
			t.Fatal(err)
		}
		if now <= want {
			break
		}
	}
	cancel()
	<-done
	if now > want {
		t.Fatalf("anonymous resident memory %d KB %v after a %d MB burst (peak %d KB), want at most %d KB",
			now, deadline, burst>>20, peak, want)
	}
}

// TestReleaseStartupCodeShrinksResidentMemory is what the owner of a board sees: once
// the agent has started and gone quiet, the pages of its binary that only starting up
// needed no longer count in its resident memory, and the code it runs again still runs.
func TestReleaseStartupCodeShrinksResidentMemory(t *testing.T) {
	// releases is how many times the test releases and looks again: what runs between
	// the release and the look maps its code back in (64 KB a fault), and on a busy
	// machine that is more (the runtime preempts, steals, starts threads): one look in
	// ten came out a few hundred KB above half while the agent's tests ran beside
	// others' builds. Quiet for one look of a few is what the trimmer waits for too.
	const releases = 5
	before, err := exeResidentKB()
	if err != nil {
		t.Skipf("no resident memory to read here: %v", err)
	}
	var advised int64
	after, tries := 0, 0
	for tries < releases && (tries == 0 || after > before/2) {
		tries++
		if advised, err = releaseStartupCode(); err != nil {
			t.Fatal(err)
		}
		if after, err = exeResidentKB(); err != nil {
			t.Fatal(err)
		}
	}
	// This test binary has run its packages' init functions and the tests before this
	// one: a few MB of its code and read-only data are mapped.
	if advised < 1<<20 || before < 1024 || after > before/2 {
		t.Fatalf("the binary's code and read-only data: %d KB resident before, %d KB after releasing %d KB of mappings (%d times), want it at least halved",
			before, after, advised>>10, tries)
	}
	t.Logf("the binary's code and read-only data: %d KB resident before, %d KB after (released %d times)", before, after, tries)
	// What runs again maps back in: parse a statm line and check the result.
	if r, sh, ok := parseStatm([]byte("100 40 10 1 0 20 0\n")); !ok || r != 40 || sh != 10 {
		t.Fatalf("parseStatm after the release = %d, %d, %v", r, sh, ok)
	}
}

func TestReadOnlyMappingOf(t *testing.T) {
	const exe = "/usr/bin/umbra-agent"
	tests := []struct {
		line   string
		lo, hi uintptr
		ok     bool
	}{
		{"00400000-0099b000 r-xp 00000000 08:01 123 /usr/bin/umbra-agent", 0x400000, 0x99b000, true},
		{"0099b000-00f45000 r--p 0059b000 08:01 123 /usr/bin/umbra-agent", 0x99b000, 0xf45000, true},
		{"00f45000-00fb9000 rw-p 00b45000 08:01 123 /usr/bin/umbra-agent", 0, 0, false}, // written data
		{"7f00-7f10 r-xs 00000000 08:01 9 /usr/bin/umbra-agent", 0, 0, false},           // shared
		{"7f00-7f10 r-xp 00000000 08:01 9 /usr/lib/libc.so.6", 0, 0, false},             // another file
		{"7f00-7f10 r-xp 00000000 08:01 9 /usr/bin/umbra-agent (deleted)", 0, 0, false},
		{"7f00-7f10 rw-p 00000000 00:00 0", 0, 0, false}, // anonymous
		{"zz-7f10 r-xp 00000000 08:01 9 /usr/bin/umbra-agent", 0, 0, false},
		{"7f10-7f00 r-xp 00000000 08:01 9 /usr/bin/umbra-agent", 0, 0, false},
	}
	for _, tt := range tests {
		lo, hi, ok := readOnlyMappingOf(tt.line, exe)
		if lo != tt.lo || hi != tt.hi || ok != tt.ok {
			t.Errorf("readOnlyMappingOf(%q) = %#x, %#x, %v, want %#x, %#x, %v", tt.line, lo, hi, ok, tt.lo, tt.hi, tt.ok)
		}
	}
}

// exeResidentKB sums the resident KB of this process's read-only mappings of its own
// executable, from /proc/self/smaps.
func exeResidentKB() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	total, counting := 0, false
	for line := range strings.Lines(string(b)) {
		if _, _, ok := readOnlyMappingOf(line, exe); ok {
			counting = true
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && counting {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return 0, err
			}
			total += n
			counting = false
		}
	}
	return total, nil
}

func TestCleanMappingsOf(t *testing.T) {
	const exe = "/usr/bin/umbra-agent"
	smaps := `00400000-0099b000 r-xp 00000000 08:01 123 /usr/bin/umbra-agent
Size:               5736 kB
Rss:                4844 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
0099b000-00f45000 r--p 0059b000 08:01 123 /usr/bin/umbra-agent
Size:               5800 kB
Anonymous:             8 kB
VmFlags: rd mr mw me
00f45000-00fb9000 rw-p 00b45000 08:01 123 /usr/bin/umbra-agent
Anonymous:           100 kB
00fb9000-03004000 rw-p 00000000 00:00 0
Anonymous:            96 kB
7f00a000-7f00b000 r--p 00000000 08:01 9 /usr/bin/umbra-agent
Rss:                   4 kB
Anonymous:             0 kB
`
	got := cleanMappingsOf(smaps, exe)
	want := []mapping{{0x400000, 0x99b000}, {0x7f00a000, 0x7f00b000}}
	if !slices.Equal(got, want) {
		t.Fatalf("cleanMappingsOf = %#x, want %#x: the code and the untouched read-only tail, not the relocated (written) read-only data or the writable data", got, want)
	}
}

// rssAnonKB reads this process's anonymous resident memory (heap, stacks, runtime
// metadata) from /proc/self/status, in KB.
func rssAnonKB() (int, error) { return statusKB("RssAnon:") }

// statusKB reads one figure in KB from /proc/self/status, field naming it with its colon.
func statusKB(field string) (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, os.ErrNotExist
}

func TestParseStatm(t *testing.T) {
	tests := []struct {
		in               string
		resident, shared uint64
		ok               bool
	}{
		{"196868 3354 2568 1442 0 30613 0\n", 3354, 2568, true},
		{"1 2 2", 2, 2, true},
		{"10 5 3\n", 5, 3, true},
		{"10 3 5 0 0 0 0\n", 0, 0, false}, // shared above resident
		{"10 5", 0, 0, false},
		{"", 0, 0, false},
		{"10  5 3", 0, 0, false},
		{"10 x 3", 0, 0, false},
		{"1 99999999999999999999 3", 0, 0, false}, // 20 digits
	}
	for _, tt := range tests {
		resident, shared, ok := parseStatm([]byte(tt.in))
		if resident != tt.resident || shared != tt.shared || ok != tt.ok {
			t.Errorf("parseStatm(%q) = %d, %d, %v; want %d, %d, %v", tt.in, resident, shared, ok, tt.resident, tt.shared, tt.ok)
		}
	}
}

func FuzzParseStatm(f *testing.F) {
	for _, seed := range []string{"196868 3354 2568 1442 0 30613 0\n", "1 2 2", "10 3 5", "", "1 99999999999999999999 3"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		resident, shared, ok := parseStatm(b)
		if ok && shared > resident {
			t.Errorf("parseStatm(%q) = %d, %d, ok with shared above resident", b, resident, shared)
		}
		if !ok && (resident != 0 || shared != 0) {
			t.Errorf("parseStatm(%q) = %d, %d, not ok but not zero", b, resident, shared)
		}
	})
}

// TestWatchingAllocatesNothing: the trimmer reads the process twice a second for the
// agent's whole life, so its reads must not be what grows an idle agent's heap.
func TestWatchingAllocatesNothing(t *testing.T) {
	p, err := openProcStat()
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	defer p.close()
	var s trimSample
	allocs := testing.AllocsPerRun(100, func() {
		if s, err = p.read(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per read = %v, want 0", allocs)
	}
	if s.anon == 0 || s.cpu <= 0 {
		t.Errorf("read = %+v, want some CPU time and anonymous memory", s)
	}
}
