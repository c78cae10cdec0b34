package main

import (
	"strings"
	"testing"
)

// TestCheckServiceAddresses: `edge create service` refuses a malformed --host or
// --intercept before it calls the controller, naming the flag on one line.
func TestCheckServiceAddresses(t *testing.T) {
	tests := []struct {
		name, host, intercept, want string // want "" when accepted
	}{
		{"no addresses are accepted", "", "", ""},
		{"well-formed addresses are accepted", "udp:127.0.0.1:14550", "tcp:[::1]:8080", ""},
		{"a host port above 65535 is refused", "tcp:host:99999", "", "--host: "},
		{"a negative host port is refused", "tcp:host:-1", "", "--host: "},
		{"a host port of letters is refused", "tcp:host:abc", "", "--host: "},
		{"a host name with a space is refused", "tcp:a b:1", "", "--host: "},
		{"an intercept with a shell substitution is refused", "", "tcp:$(id):1", "--intercept: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkServiceAddresses(tt.host, tt.intercept)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n")):
				t.Errorf("got %v, want one line starting %q", err, tt.want)
			}
		})
	}
}
