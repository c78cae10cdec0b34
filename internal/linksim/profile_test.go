package linksim

import (
	"os"
	"strings"
	"testing"
)

func TestProfiles(t *testing.T) {
	required := []string{"clean", "telemetry-radio", "lte-bad", "mesh-radio", "blackout-30s"}
	for _, name := range required {
		t.Run(name+" is a profile", func(t *testing.T) {
			if _, ok := Profile(name); !ok {
				t.Errorf("got Profile(%q) missing, want it defined", name)
			}
		})
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	for _, name := range ProfileNames() {
		t.Run(name+" is valid and documented", func(t *testing.T) {
			c, ok := Profile(name)
			if !ok {
				t.Fatalf("got Profile(%q) missing, want it listed by ProfileNames", name)
			}
			if c.Models == "" {
				t.Errorf("got empty Models, want a sentence on what %q stands for", name)
			}
			if err := c.Up.Validate(); err != nil {
				t.Errorf("got Up invalid: %v", err)
			}
			if err := c.Down.Validate(); err != nil {
				t.Errorf("got Down invalid: %v", err)
			}
			if !strings.Contains(string(readme), "`"+name+"`") {
				t.Errorf("got README without `%s`, want it in the profiles table", name)
			}
		})
	}
	t.Run("unknown name is not a profile", func(t *testing.T) {
		if _, ok := Profile("no-such-link"); ok {
			t.Errorf("got Profile(%q) found, want missing", "no-such-link")
		}
	})
	t.Run("changing a returned profile leaves the table alone", func(t *testing.T) {
		c, _ := Profile("blackout-30s")
		c.Schedule[0].Blackout = 0
		again, _ := Profile("blackout-30s")
		if got := again.Schedule[0].Blackout; got == 0 {
			t.Errorf("got Blackout %v after editing a copy, want the original", got)
		}
	})
}
