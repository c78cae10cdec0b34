package linksim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestConsole returns a console on a clean link whose stats are fixed.
func newTestConsole(t testing.TB) (*Console, *Link) {
	t.Helper()
	link, _ := NewLink(Impairment{}, Impairment{})
	ctx, cancel := context.WithCancel(context.Background())
	stats := Stats{Up: DirStats{PacketsIn: 7, Dropped: Drops{Loss: 2}}}
	c := NewConsole(ctx, link, func() Stats { return stats })
	t.Cleanup(func() {
		cancel()
		c.Close()
	})
	return c, link
}

func TestConsoleCommands(t *testing.T) {
	lte, _ := Profile("lte-bad")
	tests := []struct {
		name     string
		lines    []string
		up, down Impairment
		blackout bool
		reply    string
	}{
		{name: "loss sets both directions", lines: []string{"loss 0.1"}, up: Impairment{Loss: 0.1}, down: Impairment{Loss: 0.1}, reply: "up: loss=0.1"},
		{name: "up prefix sets only up", lines: []string{"up delay 200ms"}, up: Impairment{Delay: 200 * time.Millisecond}, reply: "down: clean"},
		{name: "down prefix sets only down", lines: []string{"down rate 64k"}, down: Impairment{RateBitsPerSec: 64_000}, reply: "down: rate=64k"},
		{name: "settings add up", lines: []string{"loss 0.1", "delay 50ms"}, up: Impairment{Loss: 0.1, Delay: 50 * time.Millisecond}, down: Impairment{Loss: 0.1, Delay: 50 * time.Millisecond}},
		{name: "clean clears one direction", lines: []string{"loss 0.1", "up clean"}, down: Impairment{Loss: 0.1}},
		{name: "blackout on blacks out the link", lines: []string{"blackout on"}, blackout: true, reply: "blackout on"},
		{name: "blackout off ends it", lines: []string{"blackout on", "blackout off"}, reply: "blackout off"},
		{name: "timed blackout is in force at once", lines: []string{"blackout 1h"}, blackout: true, reply: "blackout for 1h0m0s"},
		{name: "profile applies its impairments", lines: []string{"loss 0.5", "profile lte-bad"}, up: lte.Up, down: lte.Down, reply: "up: ge-good-to-bad=0.05"},
		{name: "stats prints both directions", lines: []string{"stats"}, reply: "up: in=7/0B out=0/0B drop=2 (loss=2"},
		{name: "show prints the state", lines: []string{"show"}, reply: "blackout: off"},
		{name: "help lists the parameters", lines: []string{"help"}, reply: "ge-good-to-bad"},
		{name: "comments and blank lines do nothing", lines: []string{"# loss 1", "   "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, link := newTestConsole(t)
			var reply string
			for _, line := range tt.lines {
				var err error
				if reply, err = c.Exec(line); err != nil {
					t.Fatalf("Exec(%q): %v", line, err)
				}
			}
			if got := link.Up(); got != tt.up {
				t.Errorf("got up %v, want %v", got, tt.up)
			}
			if got := link.Down(); got != tt.down {
				t.Errorf("got down %v, want %v", got, tt.down)
			}
			if got := link.BlackedOut(); got != tt.blackout {
				t.Errorf("got blacked out %v, want %v", got, tt.blackout)
			}
			if !strings.Contains(reply, tt.reply) {
				t.Errorf("got reply %q, want it to contain %q", reply, tt.reply)
			}
		})
	}
}

func TestConsoleRejectsBadCommands(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"unknown command", "latency 1s", "unknown command"},
		{"direction without a parameter", "up", "unknown command"},
		{"probability out of range", "loss 2", "want a probability"},
		{"value that does not parse", "up delay soon", "want a duration"},
		{"blackout without an argument", "blackout", "usage: blackout"},
		{"negative blackout", "blackout -1s", "positive duration"},
		{"unknown profile", "profile moon-relay", "unknown profile"},
		{"missing profile file", "profile-file /nonexistent/x.json", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, link := newTestConsole(t)
			if _, err := c.Exec("loss 0.1"); err != nil {
				t.Fatal(err)
			}
			_, err := c.Exec(tt.line)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got error %v, want one line containing %q", err, tt.want)
			}
			if got, want := link.Up(), (Impairment{Loss: 0.1}); got != want {
				t.Errorf("got up %v after a rejected command, want %v unchanged", got, want)
			}
		})
	}
}

func TestConsoleProfileRunsSchedule(t *testing.T) {
	c, link := newTestConsole(t)
	path := filepath.Join(t.TempDir(), "dark.json")
	data := `{"models": "goes dark at once", "up": {"loss": 0.01}, "schedule": [{"at": "0s", "blackout": "1h"}]}`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec("profile-file " + path); err != nil {
		t.Fatalf("profile-file: %v", err)
	}
	waitFor(t, settleTimeout, "the scheduled blackout", link.BlackedOut)
	if got, want := link.Up(), (Impairment{Loss: 0.01}); got != want {
		t.Errorf("got up %v, want %v from the file", got, want)
	}

	// A schedule far in the future must be stopped by the next profile and by Close.
	later := Conditions{Schedule: []Step{{At: time.Hour, Up: &Impairment{Loss: 1}}}}
	if err := c.Apply(later); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec("profile clean"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(settleTimeout):
		t.Fatalf("got Close still waiting after %v, want schedules stopped", settleTimeout)
	}
}

// FuzzConsoleExec checks that no command line crashes the console or leaves the link
// with an impairment Validate rejects.
func FuzzConsoleExec(f *testing.F) {
	f.Add("loss 0.1")
	f.Add("up delay 200ms")
	f.Add("blackout 30s")
	f.Fuzz(func(t *testing.T, line string) {
		if strings.Contains(line, "profile-file") {
			t.Skip("reads files; covered by FuzzParseConditions")
		}
		c, link := newTestConsole(t)
		reply, err := c.Exec(line)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("got multi-line error %q for %q, want one line", err, line)
		}
		if err == nil && strings.TrimSpace(line) != "" && !strings.HasPrefix(strings.TrimSpace(line), "#") && reply == "" {
			t.Fatalf("got an empty reply to %q, want one", line)
		}
		if err := link.Up().Validate(); err != nil {
			t.Fatalf("got invalid up after %q: %v", line, err)
		}
		if err := link.Down().Validate(); err != nil {
			t.Fatalf("got invalid down after %q: %v", line, err)
		}
	})
}
