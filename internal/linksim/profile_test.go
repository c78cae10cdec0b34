package linksim

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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

func TestProfilesRoundTripThroughJSON(t *testing.T) {
	for _, name := range ProfileNames() {
		t.Run(name, func(t *testing.T) {
			c, _ := Profile(name)
			data, err := json.Marshal(c)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			got, err := ParseConditions(data)
			if err != nil {
				t.Fatalf("got ParseConditions(%s) = %v, want it to read its own output", data, err)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("got %+v back from %s, want %+v", got, data, c)
			}
		})
	}
}

// profileExample is the file format as ParseConditions documents it.
const profileExample = `{
  "models": "our 868 MHz link over the lake",
  "up":   {"loss": 0.05, "delay": "80ms", "jitter": "20ms", "rate": 64000, "queue": 16},
  "down": {"loss": 0.05, "delay": "80ms", "jitter": "20ms", "rate": "64k"},
  "schedule": [{"at": "10s", "blackout": "30s"}, {"at": "60s", "up": {"loss": 0.3}}]
}`

func TestParseConditions(t *testing.T) {
	radio := Impairment{Loss: 0.05, Delay: 80 * time.Millisecond, Jitter: 20 * time.Millisecond, RateBitsPerSec: 64_000}
	radioUp := radio
	radioUp.QueuePackets = 16
	t.Run("documented example", func(t *testing.T) {
		got, err := ParseConditions([]byte(profileExample))
		if err != nil {
			t.Fatalf("got %v, want the example to parse", err)
		}
		want := Conditions{
			Models: "our 868 MHz link over the lake",
			Up:     radioUp,
			Down:   radio,
			Schedule: []Step{
				{At: 10 * time.Second, Blackout: 30 * time.Second},
				{At: 60 * time.Second, Up: &Impairment{Loss: 0.3}},
			},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
	t.Run("missing directions are clean", func(t *testing.T) {
		got, err := ParseConditions([]byte(`{"up": {"loss": 0.1}}`))
		if err != nil || got.Down != (Impairment{}) || got.Up.Loss != 0.1 {
			t.Errorf("got %+v, %v, want up loss 0.1 and a clean down", got, err)
		}
	})

	bad := []struct {
		name, json, want string
	}{
		{"unknown top-level key", `{"upp": {}}`, `unknown field "upp"`},
		{"unknown parameter", `{"up": {"latency": "1s"}}`, `up: unknown parameter "latency"`},
		{"probability out of range", `{"down": {"loss": 1.5}}`, "down: Loss = 1.5"},
		{"duration without a unit", `{"up": {"delay": 100}}`, "up: delay: want a duration"},
		{"impairment that is not an object", `{"up": [1]}`, "up: json"},
		{"null impairment", `{"up": null}`, "up: want an object"},
		{"parameter that is an object", `{"up": {"loss": {}}}`, "up: loss: want a number, string or boolean"},
		{"step without at", `{"schedule": [{"blackout": "1s"}]}`, `schedule[0]: missing "at"`},
		{"step with a negative at", `{"schedule": [{"at": "-1s"}]}`, "schedule[0]: at = -1s"},
		{"step with an unknown key", `{"schedule": [{"at": "1s", "loss": 1}]}`, `schedule[0]: json: unknown field "loss"`},
		{"step with a bad impairment", `{"schedule": [{"at": "1s", "down": {"mtu": -1}}]}`, "schedule[0]: down: MTU = -1"},
		{"trailing data", `{} {}`, "trailing data"},
		{"not json", `loss=0.1`, "invalid character"},
		{"too large", `{"models": "` + strings.Repeat("x", maxProfileBytes) + `"}`, "want at most"},
	}
	for _, tt := range bad {
		t.Run(tt.name+" is rejected", func(t *testing.T) {
			_, err := ParseConditions([]byte(tt.json))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "linksim: profile: ") || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("got error %q, want one line starting linksim: profile: and containing %q", msg, tt.want)
			}
		})
	}
}

func TestLoadConditions(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "lake.json")
	if err := os.WriteFile(good, []byte(profileExample), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConditions(good)
	if err != nil {
		t.Fatalf("got %v, want the file to load", err)
	}
	if got, want := c.Up.RateBitsPerSec, int64(64_000); got != want {
		t.Errorf("got rate %d, want %d", got, want)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"up": {"loss": 2}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConditions(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("got %v, want an error naming %s", err, bad)
	}
	if _, err := LoadConditions(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

// FuzzParseConditions checks that no input crashes the profile reader and that
// whatever it accepts is valid and survives a round trip through MarshalJSON.
func FuzzParseConditions(f *testing.F) {
	f.Add([]byte(profileExample))
	for _, name := range ProfileNames() {
		c, _ := Profile(name)
		data, _ := json.Marshal(c)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConditions(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted %q but Validate says %v", data, err)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("accepted %q but cannot write it back: %v", data, err)
		}
		again, err := ParseConditions(out)
		if err != nil {
			t.Fatalf("cannot read back %s (from %q): %v", out, data, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("got %+v after a round trip through %s, want %+v", again, out, c)
		}
	})
}
