package linksim

import (
	"slices"
	"time"
)

// Conditions is a named set of link conditions: each direction's impairment and an
// optional schedule of changes to run with Link.Run.
type Conditions struct {
	// Models says in a sentence what real link the conditions stand for.
	Models string
	// Up is client to target, Down is target to client.
	Up, Down Impairment
	// Schedule, when non-empty, is the timed part of the conditions.
	Schedule []Step
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
