package linksim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// Limits on profile files, which come from users.
const (
	// maxProfileBytes caps the size of a profile file; real ones are a few hundred bytes.
	maxProfileBytes = 1 << 20
	// maxScheduleSteps caps the length of a schedule.
	maxScheduleSteps = 10_000
)

// Conditions is a named set of link conditions: each direction's impairment and an
// optional schedule of changes to run with Link.Run. Its JSON form is the profile
// file format (see ParseConditions).
type Conditions struct {
	// Models says in a sentence what real link the conditions stand for.
	Models string `json:"models,omitempty"`
	// Up is client to target (side A to side B), Down is the other way.
	Up   Impairment `json:"up"`
	Down Impairment `json:"down"`
	// Schedule, when non-empty, is the timed part of the conditions.
	Schedule []Step `json:"schedule,omitempty"`
}

// profiles are the named conditions tests and figures refer to. Numbers are typical
// of the hardware named, not measurements of one unit.
var profiles = map[string]Conditions{
	// A perfect link: the baseline every figure is compared with.
	"clean": {
		Models: "a perfect link, the baseline every figure is compared with",
	},
	// A 433/915 MHz SiK-style telemetry radio: 64 kbit/s over the air, half-duplex,
	// frequency hopping, a small buffer in the modem.
	"telemetry-radio": {
		Models: "a 433/915 MHz SiK-style telemetry radio: 64 kbit/s, 5 % loss, 100 ms ± 20 ms, small modem buffer",
		Up:     telemetryRadio,
		Down:   telemetryRadio,
	},
	// LTE at the cell edge or from a fast-moving drone: bursty loss from handovers
	// and fading, high and variable delay, a deep operator queue.
	"lte-bad": {
		Models: "LTE at the cell edge: 10 % loss in bursts (Gilbert–Elliott), 100 ms ± 50 ms, 10 Mbit/s",
		Up:     lteBad,
		Down:   lteBad,
	},
	// An 802.11s/batman-adv Wi-Fi mesh a few hops deep.
	"mesh-radio": {
		Models: "a Wi-Fi mesh a few hops deep: 3 % loss, 30 ms ± 5 ms, 20 Mbit/s",
		Up:     meshRadio,
		Down:   meshRadio,
	},
	// A clean link that goes dark for 30 s after 5 s, as when a drone flies behind a
	// hill: the test of session survival and reconnection.
	"blackout-30s": {
		Models:   "a clean link that goes dark for 30 s after 5 s, as behind a hill",
		Schedule: []Step{{At: 5 * time.Second, Blackout: 30 * time.Second}},
	},
}

var (
	telemetryRadio = Impairment{
		Loss:           0.05,
		Delay:          100 * time.Millisecond,
		Jitter:         20 * time.Millisecond,
		RateBitsPerSec: 64_000,
		// About 2.5 s of 1200-byte datagrams at 64 kbit/s: SiK modems buffer little.
		QueuePackets: 16,
	}
	lteBad = Impairment{
		// Stationary bad-state share 0.05/(0.05+0.35) = 12.5 %, times 0.8 = 10 % loss,
		// in bursts of 1/0.35 ≈ 3 packets.
		PGoodToBad:     0.05,
		PBadToGood:     0.35,
		LossInBad:      0.8,
		Delay:          100 * time.Millisecond,
		Jitter:         50 * time.Millisecond,
		RateBitsPerSec: 10_000_000,
		QueuePackets:   500,
	}
	meshRadio = Impairment{
		Loss:           0.03,
		Delay:          30 * time.Millisecond,
		Jitter:         5 * time.Millisecond,
		RateBitsPerSec: 20_000_000,
	}
)

// Profile returns the named conditions, or false if there is no such profile. The
// result is a copy: changing it does not change the profile.
func Profile(name string) (Conditions, bool) {
	c, ok := profiles[name]
	if !ok {
		return Conditions{}, false
	}
	c.Schedule = slices.Clone(c.Schedule)
	for i := range c.Schedule {
		s := &c.Schedule[i]
		if s.Up != nil {
			up := *s.Up
			s.Up = &up
		}
		if s.Down != nil {
			down := *s.Down
			s.Down = &down
		}
	}
	return c, true
}

// ProfileNames returns the names Profile accepts, sorted.
func ProfileNames() []string {
	names := make([]string, 0, len(profiles))
	for n := range profiles {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Validate reports the first impairment or schedule step that is out of range, or nil.
func (c Conditions) Validate() error {
	if err := c.check(); err != nil {
		return fmt.Errorf("linksim: %w", err)
	}
	return nil
}

func (c Conditions) check() error {
	if err := c.Up.check(); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if err := c.Down.check(); err != nil {
		return fmt.Errorf("down: %w", err)
	}
	if len(c.Schedule) > maxScheduleSteps {
		return fmt.Errorf("schedule of %d steps, want at most %d", len(c.Schedule), maxScheduleSteps)
	}
	for i, s := range c.Schedule {
		if err := s.check(); err != nil {
			return fmt.Errorf("schedule[%d]: %w", i, err)
		}
	}
	return nil
}

// ParseConditions reads conditions in the profile file format, the JSON form of
// Conditions:
//
//	{
//	  "models": "our 868 MHz link over the lake",
//	  "up":   {"loss": 0.05, "delay": "80ms", "jitter": "20ms", "rate": 64000, "queue": 16},
//	  "down": {"loss": 0.05, "delay": "80ms", "jitter": "20ms", "rate": "64k"},
//	  "schedule": [{"at": "10s", "blackout": "30s"}, {"at": "60s", "up": {"loss": 0.3}}]
//	}
//
// Impairment keys are the parameter names of SetParam; a missing direction is clean.
// Unknown keys, trailing data, values out of range and input over 1 MiB are errors.
func ParseConditions(data []byte) (Conditions, error) {
	c, err := decodeConditions(data)
	if err != nil {
		return Conditions{}, fmt.Errorf("linksim: profile: %w", err)
	}
	return c, nil
}

// conditionsJSON is Conditions with its parts left raw, so each error can say where it is.
type conditionsJSON struct {
	Models   string            `json:"models"`
	Up       json.RawMessage   `json:"up"`
	Down     json.RawMessage   `json:"down"`
	Schedule []json.RawMessage `json:"schedule"`
}

func decodeConditions(data []byte) (Conditions, error) {
	if len(data) > maxProfileBytes {
		return Conditions{}, fmt.Errorf("%d bytes, want at most %d", len(data), maxProfileBytes)
	}
	var raw conditionsJSON
	if err := decodeStrict(data, &raw); err != nil {
		return Conditions{}, err
	}
	if len(raw.Schedule) > maxScheduleSteps {
		return Conditions{}, fmt.Errorf("schedule of %d steps, want at most %d", len(raw.Schedule), maxScheduleSteps)
	}
	c := Conditions{Models: raw.Models}
	var err error
	if raw.Up != nil {
		if c.Up, err = decodeImpairment(raw.Up); err != nil {
			return Conditions{}, fmt.Errorf("up: %w", err)
		}
	}
	if raw.Down != nil {
		if c.Down, err = decodeImpairment(raw.Down); err != nil {
			return Conditions{}, fmt.Errorf("down: %w", err)
		}
	}
	for i, rs := range raw.Schedule {
		s, err := decodeStep(rs)
		if err != nil {
			return Conditions{}, fmt.Errorf("schedule[%d]: %w", i, err)
		}
		c.Schedule = append(c.Schedule, s)
	}
	return c, nil
}

// decodeStrict decodes exactly one JSON value into v, rejecting unknown fields and
// anything after the value.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the value")
	}
	return nil
}

// LoadConditions reads a profile file (see ParseConditions).
func LoadConditions(path string) (Conditions, error) {
	f, err := os.Open(path)
	if err != nil {
		return Conditions{}, fmt.Errorf("linksim: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxProfileBytes+1))
	if err != nil {
		return Conditions{}, fmt.Errorf("linksim: read %s: %w", path, err)
	}
	c, err := decodeConditions(data)
	if err != nil {
		return Conditions{}, fmt.Errorf("linksim: %s: %w", path, err)
	}
	return c, nil
}

// stepJSON is the JSON form of a Step: offsets as duration strings.
type stepJSON struct {
	At       string          `json:"at"`
	Up       json.RawMessage `json:"up,omitempty"`
	Down     json.RawMessage `json:"down,omitempty"`
	Blackout string          `json:"blackout,omitempty"`
}

// MarshalJSON writes the step as {"at": "5s", "up": {...}, "down": {...}, "blackout": "30s"}.
func (s Step) MarshalJSON() ([]byte, error) {
	j := stepJSON{At: s.At.String()}
	var err error
	if s.Up != nil {
		if j.Up, err = s.Up.MarshalJSON(); err != nil {
			return nil, err
		}
	}
	if s.Down != nil {
		if j.Down, err = s.Down.MarshalJSON(); err != nil {
			return nil, err
		}
	}
	if s.Blackout != 0 {
		j.Blackout = s.Blackout.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the form MarshalJSON writes; "at" is required.
func (s *Step) UnmarshalJSON(data []byte) error {
	next, err := decodeStep(data)
	if err != nil {
		return fmt.Errorf("linksim: step: %w", err)
	}
	*s = next
	return nil
}

func decodeStep(data []byte) (Step, error) {
	var j stepJSON
	if err := decodeStrict(data, &j); err != nil {
		return Step{}, err
	}
	if j.At == "" {
		return Step{}, errors.New(`missing "at"`)
	}
	var s Step
	var err error
	if s.At, err = time.ParseDuration(j.At); err != nil {
		return Step{}, fmt.Errorf("at: want a duration such as 5s, got %q", j.At)
	}
	if j.Blackout != "" {
		if s.Blackout, err = time.ParseDuration(j.Blackout); err != nil {
			return Step{}, fmt.Errorf("blackout: want a duration such as 30s, got %q", j.Blackout)
		}
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  **Impairment
	}{{"up", j.Up, &s.Up}, {"down", j.Down, &s.Down}} {
		if d.raw == nil {
			continue
		}
		imp, err := decodeImpairment(d.raw)
		if err != nil {
			return Step{}, fmt.Errorf("%s: %w", d.name, err)
		}
		*d.dst = &imp
	}
	if err := s.check(); err != nil {
		return Step{}, err
	}
	return s, nil
}

// check reports a step Link.Run would reject, or a negative blackout.
func (s Step) check() error {
	if s.At < 0 {
		return fmt.Errorf("at = %v, want >= 0", s.At)
	}
	if s.Blackout < 0 {
		return fmt.Errorf("blackout = %v, want >= 0", s.Blackout)
	}
	for _, imp := range []*Impairment{s.Up, s.Down} {
		if imp == nil {
			continue
		}
		if err := imp.check(); err != nil {
			return err
		}
	}
	return nil
}
