package linksim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ConsoleHelp describes the commands Console.Exec understands, one per line.
const ConsoleHelp = `commands:
  blackout on|off|DURATION   black out both directions (DURATION: timed, ends by itself)
  [up|down] PARAM VALUE      set one parameter of both directions, or of one (see below)
  [up|down] clean            clear every parameter
  profile NAME               apply a named profile and start its schedule
  profile-file PATH          apply a profile file and start its schedule
  show                       print the current impairments
  stats                      print the counters
  help                       print this text
parameters:`

// Console carries out text commands that change a running link, such as "loss 0.1",
// "up delay 200ms", "blackout 30s" or "profile lte-bad": the run-time control of
// `umbra linksim` (ConsoleHelp lists them all). Its methods are safe for concurrent use.
type Console struct {
	link  *Link
	stats func() Stats
	ctx   context.Context

	mu sync.Mutex
	// stopSchedule ends the schedule of the last profile applied.
	stopSchedule context.CancelFunc
	wg           sync.WaitGroup
}

// NewConsole returns a console for link; stats, if not nil, answers the stats command.
// Schedules started by profiles run until ctx ends, Close is called or another profile
// is applied.
func NewConsole(ctx context.Context, link *Link, stats func() Stats) *Console {
	return &Console{link: link, stats: stats, ctx: ctx, stopSchedule: func() {}}
}

// Apply gives the link the conditions' impairments and starts their schedule, ending
// the schedule of any conditions applied before.
func (c *Console) Apply(cond Conditions) error {
	if err := cond.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopSchedule()
	_ = c.link.SetUp(cond.Up)
	_ = c.link.SetDown(cond.Down)
	ctx, cancel := context.WithCancel(c.ctx)
	c.stopSchedule = cancel
	if len(cond.Schedule) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			_ = c.link.Run(ctx, cond.Schedule) // validated above; only ctx can end it early
		}()
	}
	return nil
}

// Close ends any running schedule and waits for it to stop.
func (c *Console) Close() {
	c.mu.Lock()
	c.stopSchedule()
	c.mu.Unlock()
	c.wg.Wait()
}

// Exec carries out one command line and returns what to print, one or more lines
// without a trailing newline. Empty lines and lines starting with # do nothing.
func (c *Console) Exec(line string) (string, error) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return "", nil
	}
	switch f[0] {
	case "help":
		return c.help(), nil
	case "show":
		return c.show(), nil
	case "stats":
		if c.stats == nil {
			return "", errors.New("linksim: no counters on this link")
		}
		return FormatStats(c.stats()), nil
	case "blackout":
		if len(f) != 2 {
			return "", errors.New("linksim: usage: blackout on|off|DURATION")
		}
		return c.blackout(f[1])
	case "profile", "profile-file":
		if len(f) != 2 {
			return "", fmt.Errorf("linksim: usage: %s NAME", f[0])
		}
		cond, err := c.lookup(f[0], f[1])
		if err != nil {
			return "", err
		}
		if err := c.Apply(cond); err != nil {
			return "", err
		}
		return c.show(), nil
	}
	setUp, setDown := true, true
	switch f[0] {
	case "up":
		setDown, f = false, f[1:]
	case "down":
		setUp, f = false, f[1:]
	}
	switch {
	case len(f) == 1 && f[0] == "clean":
		if setUp {
			_ = c.link.SetUp(Impairment{})
		}
		if setDown {
			_ = c.link.SetDown(Impairment{})
		}
		return c.show(), nil
	case len(f) == 2:
		if _, ok := lookupParam(f[0]); !ok {
			break
		}
		return c.set(setUp, setDown, f[0], f[1])
	}
	return "", fmt.Errorf("linksim: unknown command %q (try help)", strings.TrimSpace(line))
}

// set changes one parameter of the chosen directions; neither changes on error.
func (c *Console) set(setUp, setDown bool, name, value string) (string, error) {
	up, down := c.link.Up(), c.link.Down()
	if setUp {
		if err := SetParam(&up, name, value); err != nil {
			return "", err
		}
	}
	if setDown {
		if err := SetParam(&down, name, value); err != nil {
			return "", err
		}
	}
	_ = c.link.SetUp(up)
	_ = c.link.SetDown(down)
	return c.show(), nil
}

func (c *Console) blackout(arg string) (string, error) {
	switch arg {
	case "on":
		c.link.SetBlackout(true)
		return "blackout on", nil
	case "off":
		c.link.SetBlackout(false)
		return "blackout off", nil
	}
	d, err := time.ParseDuration(arg)
	if err != nil || d <= 0 {
		return "", fmt.Errorf("linksim: blackout: want on, off or a positive duration such as 30s, got %q", arg)
	}
	c.link.Blackout(d)
	return "blackout for " + d.String(), nil
}

func (c *Console) lookup(cmd, arg string) (Conditions, error) {
	if cmd == "profile-file" {
		return LoadConditions(arg)
	}
	cond, ok := Profile(arg)
	if !ok {
		return Conditions{}, fmt.Errorf("linksim: unknown profile %q (have %s)", arg, strings.Join(ProfileNames(), ", "))
	}
	return cond, nil
}

func (c *Console) show() string {
	state := "off"
	if c.link.BlackedOut() {
		state = "on"
	}
	return fmt.Sprintf("up: %v\ndown: %v\nblackout: %s", c.link.Up(), c.link.Down(), state)
}

func (c *Console) help() string {
	var b strings.Builder
	b.WriteString(ConsoleHelp)
	for _, p := range Params() {
		fmt.Fprintf(&b, "\n  %-16s %s", p.Name, p.Usage)
	}
	return b.String()
}

// FormatStats writes s as two lines, "up: …" and "down: …" (see DirStats.String).
func FormatStats(s Stats) string {
	return fmt.Sprintf("up: %v\ndown: %v", s.Up, s.Down)
}

// String writes the counters on one line as name=value pairs, such as
// "in=2000/128000B out=1600/102400B drop=400 (loss=400 blackout=0 mtu=0 queue=0) dup=0 reordered=0 senderr=0".
func (d DirStats) String() string {
	return fmt.Sprintf("in=%d/%dB out=%d/%dB drop=%d (loss=%d blackout=%d mtu=%d queue=%d) dup=%d reordered=%d senderr=%d",
		d.PacketsIn, d.BytesIn, d.PacketsOut, d.BytesOut, d.Dropped.Total(),
		d.Dropped.Loss, d.Dropped.Blackout, d.Dropped.MTU, d.Dropped.Queue,
		d.Duplicated, d.Reordered, d.SendErrors)
}
