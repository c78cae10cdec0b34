package main

import (
	"runtime"
	"testing"
	"time"

	"github.com/umbranet/umbra/agent"
)

// TestParseFEC: --udp-fec takes off, K:M (leaving the flush delay to the agent) or
// K:M:FLUSH, and refuses anything else with the flag's name in the error.
func TestParseFEC(t *testing.T) {
	if c, off, err := parseFEC("auto"); err != nil || c.K != 0 || off {
		t.Fatalf("auto = %+v, off %v, %v", c, off, err)
	}
	if c, off, err := parseFEC("off"); err != nil || c.K != 0 || !off {
		t.Fatalf("off = %+v, off %v, %v", c, off, err)
	}
	if c, _, err := parseFEC("video"); err != nil || c != agent.VideoFEC {
		t.Fatalf("video = %+v, %v", c, err)
	}
	c, _, err := parseFEC("32:8")
	if err != nil || c.K != 32 || c.M != 8 || c.Flush != 0 {
		t.Fatalf("32:8 = %+v, %v", c, err)
	}
	c, _, err = parseFEC("16:4:80ms")
	if err != nil || c.K != 16 || c.M != 4 || c.Flush != 80*time.Millisecond {
		t.Fatalf("16:4:80ms = %+v, %v", c, err)
	}
	for _, bad := range []string{"8", "8:x", "8:4:soon", "8:4:-1s", "60:10", "1:2:3:4"} {
		if _, _, err := parseFEC(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSetProcs(t *testing.T) {
	was := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(was) })
	noEnv := func(string) string { return "" }
	tests := []struct {
		name    string
		n       int
		getenv  func(string) string
		want    int
		wantErr bool
	}{
		{name: "one cpu by default", n: defaultProcs, getenv: noEnv, want: 1},
		{name: "zero leaves the runtime's choice", n: 0, getenv: noEnv, want: was},
		{name: "GOMAXPROCS in the environment wins", n: 1, getenv: func(string) string { return "2" }, want: was},
		{name: "negative is refused", n: -1, getenv: noEnv, want: was, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GOMAXPROCS(was)
			err := setProcs(tt.n, tt.getenv)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got := runtime.GOMAXPROCS(0); got != tt.want {
				t.Errorf("got GOMAXPROCS %d, want %d", got, tt.want)
			}
		})
	}
}
