package main

import (
	"testing"
	"time"

	"umbra/agent"
)

// TestParseFEC: --udp-fec takes off, K:M (with the agent's default flush delay) or
// K:M:FLUSH, and refuses anything else with the flag's name in the error.
func TestParseFEC(t *testing.T) {
	if c, err := parseFEC("off"); err != nil || c.K != 0 {
		t.Fatalf("off = %+v, %v", c, err)
	}
	c, err := parseFEC("32:8")
	if err != nil || c.K != 32 || c.M != 8 || c.FlushDelay != agent.DefaultFECFlush {
		t.Fatalf("32:8 = %+v, %v", c, err)
	}
	c, err = parseFEC("16:4:80ms")
	if err != nil || c.K != 16 || c.M != 4 || c.FlushDelay != 80*time.Millisecond {
		t.Fatalf("16:4:80ms = %+v, %v", c, err)
	}
	for _, bad := range []string{"8", "8:x", "8:4:soon", "8:4:-1s", "60:10", "1:2:3:4"} {
		if _, err := parseFEC(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
