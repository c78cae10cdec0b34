//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/umbranet/umbra/firmware/initramfs/bootcfg"
)

func TestClockFloor(t *testing.T) {
	built := time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name             string
		now, built, want time.Time
		moved            bool
	}{
		{"rtc-after-build-is-kept", built.Add(time.Hour), built, built.Add(time.Hour), false},
		{"no-rtc-1970-moves-to-build", time.Unix(0, 0), built, built, true},
		{"no-build-time-keeps-the-clock", time.Unix(0, 0), time.Time{}, time.Unix(0, 0), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, moved := clockFloor(tc.now, tc.built)
			if !got.Equal(tc.want) || moved != tc.moved {
				t.Errorf("clockFloor(%v) = %v moved %v, want %v moved %v", tc.now, got, moved, tc.want, tc.moved)
			}
		})
	}
}

func TestAgentArgs(t *testing.T) {
	cfg := bootcfg.Default()
	cfg.Routers = []string{"198.18.0.1:4433", "198.18.0.2:4433"}
	cfg.Hosts = []string{"echo=tcp:127.0.0.1:7007", "mavlink=udp:127.0.0.1:14550"}
	got := strings.Join(agentArgs(cfg), " ")
	want := "run --identity /var/lib/umbra/identity.json --status-socket /run/umbra-agent.sock --routers 198.18.0.1:4433,198.18.0.2:4433 --host echo=tcp:127.0.0.1:7007 --host mavlink=udp:127.0.0.1:14550"
	if got != want {
		t.Errorf("agent command line\n got %s\nwant %s", got, want)
	}
	if got := hostedServices(cfg.Hosts); !slices.Equal(got, []string{"echo", "mavlink"}) {
		t.Errorf("hosted services = %v, want echo and mavlink", got)
	}
}

func TestReady(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status string
		want   []string
		ready  bool
	}{
		{"bound-and-linked", `{"links":[{"state":"up"}],"hosting":[{"service":"echo","state":"bound"}]}`, []string{"echo"}, true},
		{"still-binding", `{"links":[{"state":"up"}],"hosting":[{"service":"echo","state":"binding"}]}`, []string{"echo"}, false},
		{"link-down", `{"links":[{"state":"connecting"}],"hosting":[{"service":"echo","state":"bound"}]}`, []string{"echo"}, false},
		{"service-list-not-in-yet", `{"links":[{"state":"up"}],"hosting":[]}`, []string{"echo"}, false},
		{"configured-service-missing", `{"links":[{"state":"up"}],"hosting":[{"service":"video","state":"bound"}]}`, []string{"echo"}, false},
		{"one-of-two-links-up", `{"links":[{"state":"down"},{"state":"up"}],"hosting":[{"service":"video","state":"bound"}]}`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := parseStatus([]byte(tc.status))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := ready(st, tc.want); ok != tc.ready {
				t.Errorf("ready = %v, want %v", ok, tc.ready)
			}
		})
	}
}

func TestParseRSS(t *testing.T) {
	rss, hwm, err := readRSS(os.Getpid())
	if err != nil || rss <= 0 || hwm < rss {
		t.Fatalf("this test's own memory: rss %d kB, peak %d kB, %v; want rss > 0 and peak >= rss", rss, hwm, err)
	}
	_, _, err = parseRSS(strings.NewReader("Name:\tumbra-agent\nVmRSS:\t  12 MB\nVmHWM:\t 13 kB\n"))
	if err == nil {
		t.Error("VmRSS in MB accepted, want an error (the kernel writes kB)")
	}
	if _, _, err := parseRSS(strings.NewReader("Name:\tkthreadd\n")); err == nil {
		t.Error("a kernel thread's status (no Vm lines) accepted, want an error")
	}
}

func TestParseUptime(t *testing.T) {
	if got := parseUptime("4.75 7.10\n"); got != "4.75" {
		t.Errorf("parseUptime = %s, want 4.75", got)
	}
	if got := parseUptime(""); got != "-1" {
		t.Errorf("parseUptime of nothing = %s, want -1", got)
	}
}

func TestEchoService(t *testing.T) {
	ln, err := startEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	sent := bytes.Repeat([]byte("umbra"), 10000)
	go func() {
		c.Write(sent)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, sent) {
		t.Errorf("echoed %d bytes (%v), want the %d sent", len(got), err, len(sent))
	}
}

func TestConsoleLinesParse(t *testing.T) {
	var buf bytes.Buffer
	con := &console{w: &buf}
	con.event(bootcfg.EventRSS, "rss_kb", 9632, "hwm_kb", 11700)
	con.fatal(fmt.Errorf("init: no interface eth0 within 30s"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	ev, f, ok := bootcfg.ParseLine(lines[0])
	if !ok || ev != bootcfg.EventRSS || f["hwm_kb"] != "11700" {
		t.Errorf("rss line %q parses as %q %v", lines[0], ev, f)
	}
	if ev, _, ok := bootcfg.ParseLine(lines[1]); !ok || ev != bootcfg.EventFatal || !strings.Contains(lines[1], "no interface eth0") {
		t.Errorf("fatal line %q parses as %q", lines[1], ev)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"identity":"board1","links":[{"router":"198.18.0.1:4433","state":"up","rtt_ms":3.2}],"hosting":[{"service":"echo","address":"tcp:127.0.0.1:7007","state":"bound","circuits":0}],"dialing":null}`))
	f.Add([]byte(`{"links":null,"hosting":[{"state":"bound"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := parseStatus(data)
		if err != nil {
			return
		}
		bound, ok := ready(st, []string{"echo"})
		if ok && !slices.Contains(bound, "echo") {
			t.Fatalf("ready without the wanted service: %v", bound)
		}
	})
}
