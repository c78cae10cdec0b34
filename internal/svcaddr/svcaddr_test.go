package svcaddr

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // "" when refused
		why  string // part of the refusal
	}{
		{"a tcp hostname and port are accepted", "tcp:host:80", "tcp:host:80", ""},
		{"a udp loopback address is accepted", "udp:127.0.0.1:14550", "udp:127.0.0.1:14550", ""},
		{"a bracketed IPv6 literal is accepted", "tcp:[::1]:22", "tcp:[::1]:22", ""},
		{"a dotted hostname with hyphens is accepted", "tcp:cam-1.drone.local:8554", "tcp:cam-1.drone.local:8554", ""},
		{"the highest port is accepted", "udp:h:65535", "udp:h:65535", ""},
		{"a port above 65535 is refused", "tcp:host:99999", "", "port"},
		{"a negative port is refused", "tcp:host:-1", "", "port"},
		{"a port of letters is refused", "tcp:host:abc", "", "port"},
		{"port zero is refused", "tcp:host:0", "", "port"},
		{"a signed port is refused", "tcp:host:+80", "", "port"},
		{"an empty port is refused", "tcp:host:", "", "port"},
		{"a host with a space is refused", "tcp:a b:1", "", "host"},
		{"a host with a shell substitution is refused", "tcp:$(id):1", "", "host"},
		{"a host with a semicolon is refused", "tcp:h;reboot:1", "", "host"},
		{"a host with a backquote is refused", "tcp:`id`:1", "", "host"},
		{"an empty host is refused", "tcp::80", "", "host"},
		{"a label starting with a hyphen is refused", "tcp:-h:1", "", "host"},
		{"an empty label is refused", "tcp:a..b:1", "", "host"},
		{"an all-digit name that is no address is refused", "tcp:999.1.1.1:1", "", "host"},
		{"an IPv6 zone is refused", "tcp:[fe80::1%eth0]:1", "", "zone"},
		{"an overlong label is refused", "tcp:" + strings.Repeat("a", 64) + ":1", "", "host"},
		{"an unknown protocol is refused", "sctp:h:1", "", "want tcp:HOST:PORT"},
		{"an upper-case protocol is refused", "TCP:h:1", "", "want tcp:HOST:PORT"},
		{"a missing port is refused", "tcp:host", "", "want tcp:HOST:PORT"},
		{"an unbracketed IPv6 literal is refused", "tcp:::1:22", "", "want tcp:HOST:PORT"},
		{"a newline is refused on one line", "tcp:h\nx:1", "", `"tcp:h\nx:1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse(tt.in)
			if tt.want != "" {
				if err != nil || a.String() != tt.want {
					t.Fatalf("got %q, %v, want %q", a.String(), err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want a refusal naming %q", a, tt.why)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.why) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %q, want one line wrapping ErrInvalid and naming %q", err, tt.why)
			}
		})
	}
}

// FuzzParse: Parse never panics; what it accepts has a 1-65535 port, a host free of
// spaces and shell metacharacters, and reads back the same.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"tcp:host:80", "udp:[::1]:1", "tcp:$(id):1", "tcp:h:99999", "tcp:1.2.3.4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("got a refusal spanning lines: %q", err)
			}
			return
		}
		if a.Port == 0 {
			t.Fatalf("got port 0 from %q, want 1-65535", s)
		}
		if strings.ContainsAny(a.Host, " \t\n$`;|&<>()'\"\\*?!{}") {
			t.Fatalf("got host %q from %q, want no spaces or shell metacharacters", a.Host, s)
		}
		again, err := Parse(a.String())
		if err != nil || again != a {
			t.Fatalf("got %+v, %v re-parsing %q, want %+v", again, err, a.String(), a)
		}
	})
}
